"""ROUGE exactly as the ``rouge-chinese`` package scores it by default, minus its cost.

rouge-chinese (``Rouge().get_scores(hyp, ref)`` on space-joined tokens) is the CAIL2020 reference.
What it computes, and what this module reproduces to the last bit:

* tokens: the text is cut into sentences by its ``cut_sent`` regexes, each sentence has its whitespace
  collapsed, and the sentences' ``split(" ")`` tokens are concatenated (``rouge_tokens`` below);
* ROUGE-N on the *sets* of n-grams: P = |H∩R|/|H|, R = |H∩R|/|R|;
* ROUGE-L on the LCS of the two whole token sequences: P = LCS/|H|, R = LCS/|R|;
* F = 2·(P·R)/(P + R + 1e-8), in that order of operations; an empty side scores 0.

Its LCS is a Python dict of (i, j) cells (seconds and GBs for a long pair); here it is rapidfuzz's
bit-parallel LCS over interned token ids, which is exact: ids are small ints and rapidfuzz compares
ints by value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rapidfuzz.distance import LCSseq

from spaces.text import words

Unit = Literal["word", "char"]

# rouge-chinese's Rouge.cut_sent, verbatim: breaks go after sentence terminators.
_CUT_SENT = [
    (re.compile("([。！？\\?])([^”’])"), r"\1\n\2"),
    (re.compile("(\\.{6})([^”’])"), r"\1\n\2"),
    (re.compile("(\\…{2})([^”’])"), r"\1\n\2"),
    (re.compile("([。！？\\?][”’])([^，。！？\\?])"), r"\1\n\2"),
]


def rouge_tokens(spaced: str) -> list[str]:
    """The tokens rouge-chinese sees in a space-joined text (its sentence cut can split a token)."""
    for pattern, replacement in _CUT_SENT:
        spaced = pattern.sub(replacement, spaced)
    out: list[str] = []
    for sentence in spaced.rstrip().split("\n"):
        if sentence:
            out.extend(" ".join(sentence.split()).split(" "))
    return out


def tokenize(text: str, unit: Unit = "word", user_dict: Path | str | None = None) -> list[str]:
    """Tokens of a raw text as CAIL2020 scores it: jieba words (HMM off) or characters."""
    pieces = words(text, user_dict) if unit == "word" else text
    return rouge_tokens(" ".join(pieces))


_VOCAB: dict[str, int] = {}


@dataclass(frozen=True, slots=True)
class Profile:
    """What ROUGE needs of one text, computed once however often the text is scored."""

    ids: list[int]
    unigrams: frozenset[int]
    bigrams: frozenset[tuple[int, int]]

    @classmethod
    def of(cls, tokens: Sequence[str]) -> Profile:
        get = _VOCAB.setdefault
        ids = [get(t, len(_VOCAB)) for t in tokens]
        return cls(ids, frozenset(ids), frozenset(zip(ids, ids[1:])))


def _f(overlap: int, hyp_count: int, ref_count: int) -> float:
    precision = overlap / hyp_count if hyp_count else 0.0
    recall = overlap / ref_count if ref_count else 0.0
    return 2.0 * ((precision * recall) / (precision + recall + 1e-8))


def rouge(hyp: Profile, ref: Profile) -> dict[str, float]:
    """ROUGE-1/2/L F-scores of a hypothesis against a reference (rouge-chinese defaults)."""
    if not hyp.ids or not ref.ids:
        return {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    lcs = LCSseq.similarity(hyp.ids, ref.ids)
    return {
        "rouge-1": _f(len(hyp.unigrams & ref.unigrams), len(hyp.unigrams), len(ref.unigrams)),
        "rouge-2": _f(len(hyp.bigrams & ref.bigrams), len(hyp.bigrams), len(ref.bigrams)),
        "rouge-l": _f(lcs, len(hyp.ids), len(ref.ids)),
    }


def cail_score(scores: dict[str, float]) -> float:
    """0.2·R1 + 0.4·R2 + 0.4·RL, summed in SPACES's order so ties break as they did there."""
    return scores["rouge-1"] * 0.2 + scores["rouge-2"] * 0.4 + scores["rouge-l"] * 0.4


def score_texts(hyp: str, ref: str, unit: Unit = "word", user_dict: Path | str | None = None) -> dict[str, float]:
    """ROUGE-1/2/L and the CAIL score ("main") of two raw texts."""
    scores = rouge(Profile.of(tokenize(hyp, unit, user_dict)), Profile.of(tokenize(ref, unit, user_dict)))
    scores["main"] = cail_score(scores)
    return scores
