import json
import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from spaces.cli import app
from spaces.config import DecodeConfig, GenerateConfig
from spaces.generate.copy import copy_labels, lcs_alignment
from spaces.generate.data import encode, make_examples, pad_sources, pad_targets, Pair
from spaces.generate.decoding import beam_search
from spaces.generate.model import CopyGenerator
from spaces.generate.sparse_softmax import sparse_log_softmax, sparse_softmax_cross_entropy
from spaces.generate.train import _loss
from spaces.generate.vocab import add_compound_words, prune_vocab, train_tokenizer
from tests.conftest import JUDGMENTS, document_text, read_jsonl
from tests.test_rouge import lcs_dp

runner = CliRunner()


def fixture_texts():
    records = read_jsonl(JUDGMENTS)
    return [document_text(r) for r in records] + [r["summary"] for r in records]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(fixture_texts(), 300)


def tiny_mt5(vocab, seed=0, d_model=32):
    from transformers import MT5Config, MT5ForConditionalGeneration

    torch.manual_seed(seed)
    return MT5ForConditionalGeneration(MT5Config(
        vocab_size=vocab, d_model=d_model, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
        dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))


# ---- sparse softmax ---------------------------------------------------------------------------------

def test_sparse_softmax_by_hand():
    logits = torch.tensor([[3.0, 1.0, 0.0, 2.0]])
    # k=2: the top two are 3 and 2; gold 3.0 is among them
    assert sparse_softmax_cross_entropy(logits, torch.tensor([0]), 2).item() == pytest.approx(
        math.log(math.exp(3) + math.exp(2)) - 3)
    # gold 0.0 is outside the top two: it joins the normaliser, so the loss stays positive
    assert sparse_softmax_cross_entropy(logits, torch.tensor([2]), 2).item() == pytest.approx(
        math.log(math.exp(3) + math.exp(2) + math.exp(0)) - 0)


def test_sparse_softmax_with_k_at_least_vocab_is_cross_entropy():
    torch.manual_seed(0)
    logits, targets = torch.randn(5, 7, 11), torch.randint(0, 11, (5, 7))
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    for k in (11, 50):
        torch.testing.assert_close(sparse_softmax_cross_entropy(logits, targets, k), expected)


def test_sparse_loss_masks_padding():
    logits, targets = torch.randn(1, 3, 5), torch.tensor([[1, 2, 3]])
    full = sparse_softmax_cross_entropy(logits[:, :2], targets[:, :2], 3)
    masked = sparse_softmax_cross_entropy(logits, targets, 3, torch.tensor([[1, 1, 0]]))
    torch.testing.assert_close(masked, full)


def test_sparse_log_softmax_keeps_k():
    out = sparse_log_softmax(torch.tensor([[1.0, 4.0, 2.0, 3.0]]), 2)
    assert torch.isinf(out[0, [0, 2]]).all()
    torch.testing.assert_close(out[0, [1, 3]].exp().sum(), torch.tensor(1.0))


# ---- copy labels ------------------------------------------------------------------------------------

def test_copy_labels_by_hand():
    assert copy_labels([1, 2, 3, 4, 5], [9, 2, 3, 7, 5]) == [0, 1, 2, 0, 1]
    assert copy_labels([1, 2, 3], [1, 2, 3]) == [1, 2, 2]
    assert copy_labels([5, 6], [6, 5]) == [0, 1]  # one LCS of length 1
    assert copy_labels([1, 2, 9, 3], [1, 2, 3]) == [1, 2, 1]  # 3 follows 9 in the source: a new span
    assert copy_labels([], [1]) == [0] and copy_labels([1], []) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=25), st.lists(st.integers(0, 4), max_size=25))
def test_alignment_is_a_longest_common_subsequence(source, target):
    pairs = lcs_alignment(source, target)
    assert len(pairs) == lcs_dp(source, target)
    assert all(source[s] == target[t] for s, t in pairs)
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(pairs, pairs[1:]))


# ---- vocabulary -------------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=40))
@example(" ")
@example("  原告 ，被告\n")
def test_tokenizer_round_trips_any_text(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_tokenizer_keeps_chinese_punctuation(tokenizer):
    assert "，" in tokenizer.convert_ids_to_tokens(tokenizer("原告，被告")["input_ids"])


def test_pruning_keeps_the_used_rows(tokenizer):
    model = tiny_mt5(len(tokenizer)).eval()
    text = "原告张某与被告李某民间借贷纠纷一案"
    before_ids = tokenizer(text)["input_ids"]
    with torch.no_grad():
        before = model(input_ids=torch.tensor([before_ids]), decoder_input_ids=torch.tensor([[0, before_ids[0]]]))
    pruned, new_tok = prune_vocab(model, tokenizer, [text])
    after_ids = new_tok(text)["input_ids"]
    assert len(new_tok) < len(tokenizer) and pruned.config.vocab_size == len(new_tok)
    assert new_tok.decode(after_ids, skip_special_tokens=True) == text
    kept = sorted(set(before_ids) | {0, 1, 2})
    assert after_ids == [kept.index(i) for i in before_ids]
    with torch.no_grad():
        after = pruned(input_ids=torch.tensor([after_ids]), decoder_input_ids=torch.tensor([[0, after_ids[0]]]))
    torch.testing.assert_close(after.logits[0, :, :], before.logits[0][:, kept])


def test_compound_words_start_as_the_mean_of_their_pieces(tokenizer):
    model = tiny_mt5(len(tokenizer))
    pieces = tokenizer("民间借贷纠纷", add_special_tokens=False)["input_ids"]
    expected = model.get_input_embeddings().weight[pieces].mean(0).detach().clone()
    assert add_compound_words(model, tokenizer, ["民间借贷纠纷"]) == 1
    new_id = tokenizer.convert_tokens_to_ids("民间借贷纠纷")
    assert tokenizer("原告民间借贷纠纷", add_special_tokens=False)["input_ids"][-1] == new_id
    torch.testing.assert_close(model.get_input_embeddings().weight[new_id], expected)


# ---- decoding ---------------------------------------------------------------------------------------

def test_unconstrained_beam_search_equals_hf_generate():
    model = CopyGenerator(tiny_mt5(120, seed=3), None).eval()
    torch.manual_seed(1)
    ids = torch.randint(3, 120, (4, 25))
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    ours = beam_search(model, ids, mask, DecodeConfig(num_beams=3, max_new_tokens=15, top_k=1000,
                                                      copy_constraint=False))
    hf = model.seq2seq.generate(input_ids=ids, attention_mask=mask, num_beams=3, max_new_tokens=15,
                                early_stopping=True, do_sample=False, bad_words_ids=[[0]])
    assert ours == [[t for t in row[1:].tolist() if t not in (0, 1)] for row in hf]


def copied_spans(tokens, labels):
    spans, current = [], []
    for tok, label in zip(tokens, labels):
        if label == 2:
            current.append(tok)
            continue
        if current:
            spans.append(current)
        current = [tok] if label == 1 else []
    if current:
        spans.append(current)
    return spans


def occurs(span, source):
    return any(source[i:i + len(span)] == span for i in range(len(source) - len(span) + 1))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(-2, 4), st.floats(-2, 4), st.integers(1, 3))
def test_spans_labelled_as_copied_occur_verbatim_in_the_source(seed, start_bias, continue_bias, beams):
    model = CopyGenerator(tiny_mt5(60, seed=seed % 7), None).eval()
    with torch.no_grad():
        model.copy_head.bias.copy_(torch.tensor([0.0, start_bias, continue_bias]))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 60, (3, 20), generator=g)
    ids[:, 5:9] = ids[:, 10:14]  # repeated source n-grams: spans can continue in several places
    mask = torch.ones_like(ids)
    out = beam_search(model, ids, mask, DecodeConfig(num_beams=beams, max_new_tokens=25, top_k=5), return_labels=True)
    for (tokens, labels), source in zip(out, ids.tolist()):
        assert len(tokens) == len(labels)
        for span in copied_spans(tokens, labels):
            assert occurs(span, source), (span, source)


def train_tiny(tokenizer, pairs, steps=400):
    config = GenerateConfig.model_validate({"train": {"sparse_top_k": 10}})
    model = CopyGenerator(tiny_mt5(len(tokenizer), d_model=64), tokenizer)
    examples = make_examples(pairs, tokenizer, config)
    ids, mask = pad_sources([e.sources[0] for e in examples], tokenizer.pad_token_id)
    labels, copy = pad_targets([e.target for e in examples], [e.copies[0] for e in examples])
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(steps):
        loss = _loss(model, (ids, mask, labels, copy), config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), examples, ids, mask


@pytest.fixture(scope="module")
def overfit(tokenizer):
    records = read_jsonl(JUDGMENTS)[:3]
    pairs = [Pair(r["id"], document_text(r)[:120], None, r["summary"][:40]) for r in records]
    return train_tiny(tokenizer, pairs)


def test_tiny_mt5_overfits_and_reproduces_targets_with_the_constraint(overfit):
    model, examples, ids, mask = overfit
    out = beam_search(model, ids, mask, DecodeConfig(num_beams=3, max_new_tokens=60, copy_constraint=True))
    assert out == [e.target[:-1] for e in examples]


def test_save_load_gives_identical_output(overfit, tmp_path):
    model, _, ids, mask = overfit
    cfg = DecodeConfig(num_beams=2, max_new_tokens=30)
    before = beam_search(model, ids, mask, cfg)
    model.save(tmp_path / "gen")
    loaded = CopyGenerator.load(tmp_path / "gen")
    assert beam_search(loaded, ids, mask, cfg) == before
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


# ---- CLI --------------------------------------------------------------------------------------------

def extracted(tmp_path, n=4):
    path = tmp_path / "extracted.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for r in read_jsonl(JUDGMENTS)[:n]:
            text = document_text(r)
            f.write(json.dumps({"id": r["id"], "extract": text[:150], "oracle_extract": text[-150:],
                                "summary": r["summary"][:80]}, ensure_ascii=False) + "\n")
    return path


TINY = ["--model.vocab_size", "300", "--model.d_model", "32", "--model.d_ff", "64", "--model.num_layers", "1",
        "--model.num_heads", "2", "--model.d_kv", "16", "--train.batch_size", "2", "--decode.max_new_tokens", "12",
        "--train.validation", "0.25"]


def test_cli_train_predict_and_resume(tmp_path):
    data = extracted(tmp_path)
    out = tmp_path / "gen"
    result = runner.invoke(app, ["generate", "train", "-i", str(data), "-o", str(out), "--train.epochs", "1", *TINY])
    assert result.exit_code == 0, result.output
    assert {"model-best", "model-last", "checkpoint", "card.json", "config.yaml"} <= {p.name for p in out.iterdir()}
    first = json.loads((out / "checkpoint" / "trainer_state.json").read_text())["history"]
    # the same command with more epochs resumes after epoch 1 instead of starting over
    result = runner.invoke(app, ["generate", "train", "-i", str(data), "-o", str(out), "--train.epochs", "2", *TINY])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert [h["epoch"] for h in card["history"]] == [1, 2] and card["history"][0] == first[0]
    assert len(card["data"]["sha256"]) == 64 and {"spaces", "torch"} <= set(card["versions"])
    summaries = tmp_path / "summaries.jsonl"
    result = runner.invoke(app, ["generate", "predict", "--model", str(out / "model-best"), "-i", str(data),
                                 "-o", str(summaries)])
    assert result.exit_code == 0, result.output
    rows = read_jsonl(summaries)
    assert [r["id"] for r in rows] == [r["id"] for r in read_jsonl(data)]
    assert all(isinstance(r["summary"], str) for r in rows)


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    data = extracted(tmp_path)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    args = ["generate", "train", "-i", str(data), *TINY]
    assert runner.invoke(app, [*args, "-o", str(straight), "--train.epochs", "2"]).exit_code == 0
    assert runner.invoke(app, [*args, "-o", str(resumed), "--train.epochs", "1"]).exit_code == 0
    assert runner.invoke(app, [*args, "-o", str(resumed), "--train.epochs", "2"]).exit_code == 0
    a = CopyGenerator.load(straight / "model-last").state_dict()
    b = CopyGenerator.load(resumed / "model-last").state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


def test_generate_errors(tmp_path):
    data = extracted(tmp_path)
    result = runner.invoke(app, ["generate", "predict", "--model", str(tmp_path), "-i", str(data),
                                 "-o", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 1 and "not a generator model dir" in result.stderr
    result = runner.invoke(app, ["generate", "train", "-i", str(data), "-o", str(tmp_path / "g"),
                                 "--train.mixed_precision", "fp16"])
    assert result.exit_code == 1 and "fp16 is refused" in result.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "summary": "x"}\n')
    result = runner.invoke(app, ["generate", "train", "-i", str(bad), "-o", str(tmp_path / "g")])
    assert result.exit_code == 1 and f"{bad}:1" in result.stderr and "'extract'" in result.stderr


def test_encode_truncates_and_ends_with_eos(tokenizer):
    ids = encode(tokenizer, "原告" * 50, 10)
    assert len(ids) == 10 and ids[-1] == tokenizer.eos_token_id
