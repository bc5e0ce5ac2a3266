"""Faithfulness of a summary to its judgment: what ROUGE does not see.

A legal summary that invents an amount or a statute is wrong whatever its ROUGE. Per document:

* ``unsupported_numbers``: share of the numbers in the summary whose value occurs nowhere in the judgment
  (``spaces.numbers``: Arabic or Chinese, compared by value, so ``一万元`` matches ``10000元``).
* ``unsupported_citations``: share of the statute citations in the summary (a 《title》 with its
  第…条/款/项) not found in the judgment; a title matches without its 中华人民共和国 prefix, so
  《合同法》 is found where the judgment cites 《中华人民共和国合同法》.
* ``citation_recall``: share of the reference summary's citations that the summary reproduces.
* ``novel_bigrams``: share of the summary's word bigrams (jieba) absent from the judgment: how abstractive.
* ``copy_rate``: share of the summary's characters inside a span of 4 or more characters copied
  verbatim from the judgment.
* ``degenerate``: 1 when the summary repeats a unit four or more times in a row (``看看看看``), else 0.

A figure with nothing to count (no number in the summary, no citation in the reference) is ``None``
for that document and left out of the mean.
"""

from __future__ import annotations

from pathlib import Path

from spaces.citations import citations
from spaces.numbers import numbers
from spaces.text import degenerate, words

KEYS = ("unsupported_numbers", "unsupported_citations", "citation_recall", "novel_bigrams", "copy_rate",
        "degenerate")

# ---- copy and novelty -------------------------------------------------------------------------------

MIN_COPY = 4


def copied_spans(summary: str, judgment: str) -> list[tuple[int, int]]:
    """Maximal stretches of the summary covered by spans of >= 4 characters that occur in the judgment."""
    covered = [False] * len(summary)
    length = 0  # the longest match starting at i is at least the one at i-1, minus one
    for i in range(len(summary)):
        length = max(length - 1, 0)
        while i + length < len(summary) and summary[i:i + length + 1] in judgment:
            length += 1
        if length >= MIN_COPY:
            for k in range(i, i + length):
                covered[k] = True
    spans, start = [], None
    for i, c in enumerate([*covered, False]):
        if c and start is None:
            start = i
        elif not c and start is not None:
            spans.append((start, i))
            start = None
    return spans


def copy_rate(summary: str, judgment: str) -> float | None:
    """Share of the summary's characters covered by spans of >= 4 characters that occur in the judgment."""
    if not summary:
        return None
    return sum(end - start for start, end in copied_spans(summary, judgment)) / len(summary)


def _bigrams(tokens: list[str]) -> list[tuple[str, str]]:
    tokens = [t for t in tokens if t.strip()]
    return list(zip(tokens, tokens[1:]))


def novel_bigrams(summary: str, judgment: str, user_dict: Path | str | None = None) -> float | None:
    grams = _bigrams(words(summary, user_dict))
    if not grams:
        return None
    known = set(_bigrams(words(judgment, user_dict)))
    return sum(g not in known for g in grams) / len(grams)


def _share(missing: int, total: int) -> float | None:
    return missing / total if total else None


def faithfulness(summary: str, judgment: str, reference: str | None = None,
                 user_dict: Path | str | None = None) -> dict[str, float | None]:
    """The figures of one summary against its judgment (and the reference, for citation recall)."""
    judgment_numbers = set(numbers(judgment))
    summary_numbers = numbers(summary)
    judgment_citations = citations(judgment)
    summary_citations = citations(summary)
    reference_citations = citations(reference) if reference else []
    return {
        "unsupported_numbers": _share(sum(n not in judgment_numbers for n in summary_numbers), len(summary_numbers)),
        "unsupported_citations": _share(sum(not c.found_in(judgment_citations) for c in summary_citations),
                                        len(summary_citations)),
        "citation_recall": _share(sum(c.found_in(summary_citations) for c in reference_citations),
                                  len(reference_citations)),
        "novel_bigrams": novel_bigrams(summary, judgment, user_dict),
        "copy_rate": copy_rate(summary, judgment),
        "degenerate": float(degenerate(summary)),
    }
