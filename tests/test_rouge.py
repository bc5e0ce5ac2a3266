import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spaces.rouge import Profile, cail_score, rouge, rouge_tokens, score_texts, tokenize
from tests.conftest import document_text
from spaces.reference import lcs_dp, reference_scores, reference_spaced

KEYS = ("rouge-1", "rouge-2", "rouge-l")


def scores_of(hyp_tokens, ref_tokens):
    return rouge(Profile.of(rouge_tokens(" ".join(hyp_tokens))), Profile.of(rouge_tokens(" ".join(ref_tokens))))


def f(p, r):
    return 2.0 * ((p * r) / (p + r + 1e-8))


def test_hand_checked_scores():
    s = scores_of("a b c d".split(), "a b d".split())
    assert s["rouge-1"] == f(3 / 4, 3 / 3)
    assert s["rouge-2"] == f(1 / 3, 1 / 2)  # only "a b" is shared
    assert s["rouge-l"] == f(3 / 4, 3 / 3)  # LCS a b d


def test_ngrams_are_counted_as_sets():
    s = scores_of("a a a a".split(), "a".split())
    assert s["rouge-1"] == f(1.0, 1.0)  # {a} vs {a}
    assert s["rouge-2"] == 0.0  # the reference has no bigram
    assert s["rouge-l"] == f(1 / 4, 1.0)


def test_empty_sides_score_zero():
    zero = {k: 0.0 for k in KEYS}
    assert scores_of([], "a b".split()) == zero
    assert scores_of("a b".split(), []) == zero
    assert score_texts("", "原告") == {**zero, "main": 0.0}
    assert score_texts("  \n ", "原告", "char") == {**zero, "main": 0.0}


def test_cail_weights():
    assert cail_score({"rouge-1": 1.0, "rouge-2": 0.0, "rouge-l": 0.0}) == pytest.approx(0.2)
    assert cail_score({"rouge-1": 0.0, "rouge-2": 1.0, "rouge-l": 1.0}) == pytest.approx(0.8)


def test_sentence_cut_can_split_tokens_as_rouge_chinese_does():
    assert rouge_tokens("a。b c") == ["a。", "b", "c"]
    assert rouge_tokens("x  y\t z ") == ["x", "y", "z"]


# Small alphabets force repeated n-grams; the odd tokens exercise rouge-chinese's sentence cut.
TOKENS = st.sampled_from(["甲", "乙", "丙", "丁", "原告", "被告", "。", "？", "x。y", "!?", "......z", "……", "”", "a"])


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=40), st.lists(TOKENS, max_size=40))
def test_equals_rouge_chinese_on_random_token_sequences(hyp, ref):
    ours = scores_of(hyp, ref)
    theirs = reference_spaced(" ".join(hyp), " ".join(ref))
    for key in KEYS:
        assert ours[key] == theirs[key], key  # bit for bit


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=80), st.lists(st.integers(0, 5), max_size=80))
def test_rouge_l_uses_the_exact_lcs(x, y):
    hyp, ref = [str(t) for t in x], [str(t) for t in y]
    if hyp and ref:
        p, r = lcs_dp(hyp, ref) / len(hyp), lcs_dp(hyp, ref) / len(ref)
        assert scores_of(hyp, ref)["rouge-l"] == f(p, r)


def test_long_texts_beyond_64_tokens_are_exact():
    rng = random.Random(7)
    hyp = [rng.choice("甲乙丙丁戊") for _ in range(700)]
    ref = [rng.choice("甲乙丙丁戊") for _ in range(300)]
    ours = scores_of(hyp, ref)
    assert ours["rouge-l"] == f(lcs_dp(hyp, ref) / 700, lcs_dp(hyp, ref) / 300)


@pytest.mark.parametrize("unit", ["word", "char"])
def test_equals_rouge_chinese_on_real_records(cail_records, cail_user_dict, unit):
    for k, record in enumerate(cail_records):
        text = document_text(record)
        hyp = text[:600] if k > 2 else text  # three whole judgments, the rest cut (the reference is slow)
        ours = score_texts(hyp, record["summary"], unit, cail_user_dict)
        theirs = reference_scores(hyp, record["summary"], unit, cail_user_dict)
        for key in (*KEYS, "main"):
            assert ours[key] == theirs[key], (record["id"], key)  # bit for bit


def test_char_unit_ignores_whitespace():
    assert tokenize("民 事\t判决", "char") == ["民", "事", "判", "决"]
