"""The Chinese checkpoints users bring, each as a tiny model built here: BART + BERT vocab.txt
(bart-base-chinese), MT5 + BERT vocab.txt with jieba pre-tokenisation (T5-PEGASUS, untied output layer),
MT5 + an NFKC sentencepiece (mT5), Pegasus + a BPE tokenizer, and a BERT2BERT EncoderDecoderModel.

For each: fine-tune with the copy head, prune the vocabulary, save, reload with ``from_pretrained`` alone,
decode with the copy constraint, and get the judgment's own punctuation back.
"""

import json
import unicodedata

import pytest
import torch
from typer.testing import CliRunner

from spaces.cli import app
from spaces.config import DecodeConfig, GenerateConfig, GenerateModelConfig
from spaces.generate.data import make_examples, pad_sources, pad_targets
from spaces.generate.decoding import beam_search
from spaces.generate.model import CopyGenerator, build_generator
from spaces.generate.train import compute_loss
from spaces.records import ExtractedRecord
from tests.conftest import JUDGMENTS, document_text, read_jsonl

runner = CliRunner()
WORDS = ["原告", "被告", "纠纷", "一案", "借款", "判决", "合同", "本院认为"]


def texts():
    records = read_jsonl(JUDGMENTS)
    return [document_text(r) for r in records] + [r["summary"] for r in records]


def chars():
    return sorted({c for t in texts() for c in t if not c.isspace()})


def bert_vocab(path, words=()):
    path.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars(), *words]
    (path / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return len(tokens)


def nfkc_sentencepiece(path):
    """A unigram tokenizer with mT5's NFKC normaliser: '，' comes out as ','."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = sorted({unicodedata.normalize("NFKC", c) for c in chars()})
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(p, -5.0) for p in pieces]
    vocab += [(w, -3.0) for w in WORDS]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(path)
    return len(vocab)


def bpe_tokenizer(path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(texts(), trainers.BpeTrainer(vocab_size=700, special_tokens=["<pad>", "</s>", "<unk>"],
                                                         initial_alphabet=chars()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(path)
    return len(fast)


def build(family, path):
    """A tiny checkpoint dir of one family, as a user would point model.name_or_path at it."""
    from transformers import (BartConfig, BartForConditionalGeneration, BertConfig, BertLMHeadModel, BertModel,
                              EncoderDecoderModel, MT5Config, MT5ForConditionalGeneration, PegasusConfig,
                              PegasusForConditionalGeneration)

    torch.manual_seed(0)
    small = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=512)
    if family == "bart-bert":  # fnlp/bart-base-chinese: BertTokenizer, [CLS] 2 / [SEP] 3
        v = bert_vocab(path)
        model = BartForConditionalGeneration(BartConfig(vocab_size=v, pad_token_id=0, bos_token_id=2, eos_token_id=3,
                                                        decoder_start_token_id=3, forced_eos_token_id=3, **small))
    elif family == "t5pegasus":  # imxly/t5-pegasus: MT5 weights, BERT vocab with words, jieba, untied head
        v = bert_vocab(path, WORDS)
        model = MT5ForConditionalGeneration(MT5Config(vocab_size=v, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                                      num_heads=2, pad_token_id=0, eos_token_id=1,
                                                      decoder_start_token_id=2))
        model.lm_head = torch.nn.Linear(32, v, bias=False)  # T5-PEGASUS's output layer is its own
    elif family == "mt5-nfkc":
        v = nfkc_sentencepiece(path)
        model = MT5ForConditionalGeneration(MT5Config(vocab_size=v, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                                      num_heads=2, pad_token_id=0, eos_token_id=1,
                                                      decoder_start_token_id=0))
    elif family == "pegasus-bpe":
        v = bpe_tokenizer(path)
        model = PegasusForConditionalGeneration(PegasusConfig(vocab_size=v, pad_token_id=0, eos_token_id=1,
                                                              decoder_start_token_id=0, **small))
    else:  # bert2bert
        v = bert_vocab(path)
        cfg = dict(vocab_size=v, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        model = EncoderDecoderModel(encoder=BertModel(BertConfig(**cfg), add_pooling_layer=False),
                                    decoder=BertLMHeadModel(BertConfig(**cfg, is_decoder=True, add_cross_attention=True)))
        model.config.decoder_start_token_id, model.config.pad_token_id, model.config.eos_token_id = 2, 0, 3
    model.save_pretrained(path)
    return path


FAMILIES = ["bart-bert", "t5pegasus", "mt5-nfkc", "pegasus-bpe", "bert2bert"]


@pytest.fixture(scope="module", params=FAMILIES)
def checkpoint(request, tmp_path_factory):
    return request.param, build(request.param, tmp_path_factory.mktemp(request.param))


def pairs():
    out = []
    for r in read_jsonl(JUDGMENTS)[:2]:
        # the reference's numbers (五万元) are in the source: the number rule lets only those be written
        text = document_text(r).replace("\n", "")[:60] + r["summary"][:30]
        out.append(ExtractedRecord(id=r["id"], sentences=[text], scores=[1.0], selected=[0], extract=text,
                                   reference=r["summary"][:30]))
    return out


def test_fine_tune_prune_save_reload_and_decode_with_the_copy_constraint(checkpoint, tmp_path):
    family, path = checkpoint
    records = pairs()
    model_config = GenerateModelConfig(name_or_path=str(path), prune_vocab=True,
                                       pre_tokenize="jieba" if family == "t5pegasus" else "none")
    model = build_generator(model_config, [t for r in records for t in (r.extract, r.reference)])
    assert model.codec.eos_id is not None
    if family in ("bart-bert", "t5pegasus", "bert2bert"):
        assert model.tokenizer.eos_token_id is None and model.codec.eos_id == model.tokenizer.sep_token_id
    if family == "t5pegasus":  # a jieba word of the vocabulary stays one token
        assert model.tokenizer.convert_tokens_to_ids("纠纷") in model.codec.body("民间借贷纠纷")
        assert model.seq2seq.get_output_embeddings().weight is not model.seq2seq.get_input_embeddings().weight
    config = GenerateConfig(model=model_config)
    examples = make_examples(records, model.codec, config)
    ids, mask = pad_sources([e.sources[0] for e in examples], model.pad_id)
    labels, copy = pad_targets([e.target for e in examples], [e.copies[0] for e in examples])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        loss = compute_loss(model, (ids, mask, labels, copy), config, model.decoder_inputs(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save(tmp_path / "model")
    from transformers import AutoModelForSeq2SeqLM

    alone = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "model").eval()  # the pruned dir on its own
    with torch.no_grad():
        ours = model.seq2seq(input_ids=ids, attention_mask=mask, decoder_input_ids=model.decoder_inputs(labels)).logits
        theirs = alone(input_ids=ids, attention_mask=mask, decoder_input_ids=model.decoder_inputs(labels)).logits
    assert torch.equal(ours, theirs)
    loaded = CopyGenerator.load(tmp_path / "model")
    cfg = DecodeConfig(num_beams=2, max_new_tokens=40, copy_constraint=True, no_repeat_ngram_size=0)
    out = beam_search(loaded, ids, mask, cfg)
    summaries = [loaded.codec.to_surface(loaded.codec.decode(seq), r.extract) for seq, r in zip(out, records)]
    assert summaries == [r.reference for r in records]  # overfit: the targets, punctuation and all


def test_every_family_trains_and_predicts_through_the_cli_pruned_and_not(checkpoint, tmp_path):
    family, path = checkpoint
    data = tmp_path / "extracted.jsonl"
    data.write_text("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in pairs() * 2),
                    encoding="utf-8")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["id"] = f"r{i}"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    for prune in ("true", "false"):
        out = tmp_path / f"gen-{prune}"
        result = runner.invoke(app, ["generate", "train", "-i", str(data), "-o", str(out), "--model.name_or_path",
                                     str(path), "--model.prune_vocab", prune, "--train.epochs", "1",
                                     "--train.validation", "0.25", "--decode.max_new_tokens", "8",
                                     *(["--model.pre_tokenize", "jieba"] if family == "t5pegasus" else [])])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["generate", "predict", "-m", str(out / "model-best"), "-i", str(data),
                                     "-o", str(out / "s.jsonl")])
        assert result.exit_code == 0, result.output
        assert [r["id"] for r in read_jsonl(out / "s.jsonl")] == [r["id"] for r in rows]


def test_unsupported_setups_are_one_line_errors(tmp_path):
    path = build("mt5-nfkc", tmp_path / "mt5")
    data = tmp_path / "extracted.jsonl"
    data.write_text("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in pairs()), encoding="utf-8")
    result = runner.invoke(app, ["generate", "train", "-i", str(data), "-o", str(tmp_path / "g"),
                                 "--model.name_or_path", str(path), "--model.pre_tokenize", "jieba"])
    assert result.exit_code == 1 and "needs a WordPiece" in result.stderr and "Traceback" not in result.output
    not_seq2seq = tmp_path / "bert"
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=bert_vocab(not_seq2seq), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(not_seq2seq)
    result = runner.invoke(app, ["generate", "train", "-i", str(data), "-o", str(tmp_path / "g2"),
                                 "--model.name_or_path", str(not_seq2seq)])
    assert result.exit_code == 1 and "cannot load a seq2seq model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
