"""The real hub file sets of two Chinese checkpoints users bring (``../shared/checkpoints``): imxly/t5-pegasus
(config says ``tokenizer_class: T5Tokenizer`` beside a BERT vocab.txt, no tokenizer_config.json, an untied
output layer) and fnlp/bart-base-chinese v1 (``BartModel`` weights, the 21,128-token BERT vocabulary).

Each folder is used as the hub lays it out, with random weights of the real width and vocabulary built from
its config.json (only the depth is cut, for speed): pruned, fine-tuned a step, saved, reloaded by
``from_pretrained`` alone and decoded with the copy constraint.
"""

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from spaces.cli import app
from spaces.config import GenerateModelConfig
from spaces.generate.model import build_generator
from tests.conftest import HERE, JUDGMENTS, document_text, read_jsonl

CHECKPOINTS = HERE.parent.parent / "shared" / "checkpoints"
# model_type -> the config keys that set its depth, and the weights class its hub repo saved
DEPTH = {"mt5": ("num_layers", "num_decoder_layers"), "bart": ("encoder_layers", "decoder_layers", "num_hidden_layers")}
HUB = {"imxly-t5-pegasus": "jieba", "fnlp-bart-base-chinese-v1": "none"}  # folder -> the pre-tokenisation it needs
SPECIAL = ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")
runner = CliRunner()


@pytest.fixture(scope="module", params=sorted(HUB))
def hub(request, tmp_path_factory):
    """(folder name, checkpoint dir, the weights it holds): the hub's files, random weights from its config."""
    from transformers import AutoConfig, BartModel, MT5ForConditionalGeneration

    src = CHECKPOINTS / request.param
    if not (src / "config.json").is_file():
        pytest.skip(f"real checkpoint files not found at {src} (they live in ../shared/checkpoints)")
    path = tmp_path_factory.mktemp("hub") / request.param
    shutil.copytree(src, path)
    raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    raw.update({key: 1 for key in DEPTH[raw["model_type"]] if key in raw})
    (path / "config.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
    config = AutoConfig.from_pretrained(path)
    torch.manual_seed(0)
    if raw["model_type"] == "mt5":
        model = MT5ForConditionalGeneration(config)
        model.lm_head = torch.nn.Linear(config.d_model, config.vocab_size, bias=False)  # the hub's is its own
    else:
        model = BartModel(config)  # what fnlp saved: no LM head, keys without the "model." prefix
    weights = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(weights, path / "pytorch_model.bin")  # both hub repos ship a pytorch_model.bin
    return request.param, path, weights


def records():
    out = []
    for i, r in enumerate(read_jsonl(JUDGMENTS)[:2] * 2):
        text = document_text(r).replace("\n", "")[:80] + r["summary"][:30]
        out.append({"id": f"r{i}", "sentences": [text], "scores": [1.0], "selected": [0], "extract": text,
                    "reference": r["summary"][:30]})
    return out


def test_pruning_keeps_the_checkpoints_own_rows(hub):
    """Every kept token's input row, and its untied output row, are the checkpoint's rows for that token."""
    name, path, weights = hub
    vocab = (path / "vocab.txt").read_text(encoding="utf-8").split("\n")
    original = {token: i for i, token in reversed(list(enumerate(vocab)))}
    texts = [t for r in records() for t in (r["extract"], r["reference"])]
    model = build_generator(GenerateModelConfig(name_or_path=str(path), prune_vocab=True, pre_tokenize=HUB[name]),
                            texts)
    seq2seq = model.seq2seq
    kept = model.tokenizer.get_vocab()
    assert 1000 < len(kept) < len(vocab) - 1000  # pruned, but every single character is still there
    assert seq2seq.get_input_embeddings().weight.shape[0] == len(kept)
    rows = torch.tensor([original[token] for token, _ in sorted(kept.items(), key=lambda kv: kv[1])])
    embedding = weights["shared.weight"]
    assert torch.equal(seq2seq.get_input_embeddings().weight, embedding[rows])
    out = seq2seq.get_output_embeddings().weight
    if name == "imxly-t5-pegasus":
        assert out is not seq2seq.get_input_embeddings().weight
        assert not torch.equal(weights["lm_head.weight"], embedding)
        assert torch.equal(out, weights["lm_head.weight"][rows])  # its own trained output layer, not the embedding
    else:
        assert torch.equal(out, embedding[rows])  # BART ties its LM head to the shared embedding


def test_fine_tune_save_reload_alone_and_decode_with_the_copy_constraint(hub, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    from spaces.generate.model import CopyGenerator

    name, path, _ = hub
    data = tmp_path / "extracted.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records()), encoding="utf-8")
    out = tmp_path / "generator"
    result = runner.invoke(app, ["generate", "train", "-i", str(data), "-o", str(out), "--model.name_or_path",
                                 str(path), "--model.pre_tokenize", HUB[name], "--train.epochs", "1",
                                 "--train.batch_size", "4", "--train.validation", "0.25",
                                 "--decode.max_new_tokens", "12", "--decode.num_beams", "2"])
    assert result.exit_code == 0, result.output
    best = out / "model-best"
    meta = json.loads((best / "generator.json").read_text())
    assert meta["tied_output"] is (name != "imxly-t5-pegasus")
    ours = CopyGenerator.load(best)
    alone = AutoModelForSeq2SeqLM.from_pretrained(best).eval()  # the saved dir on its own, no spaces code
    ids = torch.tensor([ours.codec.encode(records()[0]["extract"], 64)])
    start = torch.tensor([[alone.config.decoder_start_token_id]])
    with torch.no_grad():
        theirs = alone(input_ids=ids, decoder_input_ids=start).logits
        mine = ours.seq2seq(input_ids=ids, decoder_input_ids=start).logits
    assert torch.equal(mine, theirs)
    summaries = tmp_path / "summaries.jsonl"
    result = runner.invoke(app, ["generate", "predict", "-m", str(best), "-i", str(data), "-o", str(summaries),
                                 "--decode.copy_constraint", "true"])
    assert result.exit_code == 0, result.output
    written = [r["summary"] for r in read_jsonl(summaries)]
    assert len(written) == 4 and any(written)
    assert not [s for s in written if any(token in s for token in SPECIAL)]
    # and where a model writes one, none is printed: every BERT special id decodes to nothing
    body = ours.codec.body("原告诉称")
    specials = [ours.tokenizer.convert_tokens_to_ids(token) for token in SPECIAL]
    assert ours.codec.decode([*specials, *body[:2], *specials, *body[2:], *specials]) == "原告诉称"
