"""Plain reference implementations on top of rouge-chinese, to prove the fast ones equal (the tests) and to
time them against (the benches); it needs the ``dev`` extra, and nothing in the pipeline imports it.

This is how SPACES itself scored (``compute_rouge`` / ``extract_matching`` in its repository),
written out again on the same package: slow, obviously right.
"""

from __future__ import annotations

import numpy as np
from rouge_chinese import Rouge

from spaces.text import words

_ROUGE = Rouge()


def reference_scores(hyp: str, ref: str, unit: str = "word", user_dict=None) -> dict[str, float]:
    if unit == "word":
        hyp, ref = " ".join(words(hyp, user_dict)), " ".join(words(ref, user_dict))
    else:
        hyp, ref = " ".join(hyp), " ".join(ref)
    return reference_spaced(hyp, ref)


def reference_spaced(hyp: str, ref: str) -> dict[str, float]:
    """rouge-chinese defaults on two space-joined texts; its ValueError (an empty side) scores 0."""
    try:
        s = _ROUGE.get_scores(hyps=hyp, refs=ref)[0]
        out = {k: s[k]["f"] for k in ("rouge-1", "rouge-2", "rouge-l")}
    except ValueError:
        out = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    out["main"] = out["rouge-1"] * 0.2 + out["rouge-2"] * 0.4 + out["rouge-l"] * 0.4
    return out


def reference_oracle(texts: list[str], summaries: list[str]) -> list[int]:
    """SPACES's recursive greedy matching, char-level CAIL score, argmax keeps the first of equals."""

    def matching(texts, summaries, start_i=0, start_j=0):
        if len(texts) == 0 or len(summaries) == 0:
            return []
        i = int(np.argmax([len(s) for s in summaries]))
        j = int(np.argmax([reference_scores(t, summaries[i], "char")["main"] for t in texts]))
        left = matching(texts[: j + 1], summaries[:i], start_i, start_j)
        right = matching(texts[j:], summaries[i + 1 :], start_i + i + 1, start_j + j)
        return left + [(start_i + i, start_j + j)] + right

    return sorted({j for _, j in matching(texts, summaries)})


def lcs_dp(x, y):
    """Length of a longest common subsequence, by the textbook dynamic programme (the reference for LCS code)."""
    row = [0] * (len(y) + 1)
    for a in x:
        prev_diag, row[0] = 0, 0
        for j, b in enumerate(y, 1):
            prev_diag, row[j] = row[j], prev_diag + 1 if a == b else max(row[j], row[j - 1])
    return row[-1]
