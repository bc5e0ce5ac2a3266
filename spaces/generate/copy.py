"""SPACES's copy labels: which target tokens are copied from the source, and where copied spans start.

Source and target token ids are aligned by a longest common subsequence. A target token matched to a
source token is 1 when it starts a copied span, 2 when it continues one (the previous target token is
matched to the previous source token); unmatched target tokens are 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NOT_COPIED, COPY_START, COPY_CONTINUE = 0, 1, 2


def lcs_alignment(source: Sequence[int], target: Sequence[int]) -> list[tuple[int, int]]:
    """Matched (source index, target index) pairs of one LCS, ascending.

    The table is filled a row at a time with numpy (a row is a running max of the row above, shifted
    by the matches), then walked back as SPACES does: take a match when the tokens agree, else step
    along the larger neighbour, the source side on ties.
    """
    n, m = len(source), len(target)
    if not n or not m:
        return []
    tgt = np.asarray(target)
    table = np.zeros((n + 1, m + 1), dtype=np.int32)
    for i, token in enumerate(source, start=1):
        above = table[i - 1]
        row = above.copy()
        row[1:] = np.maximum(above[1:], above[:-1] + (tgt == token))
        table[i] = np.maximum.accumulate(row)
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        if source[i - 1] == target[j - 1]:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif table[i, j - 1] > table[i - 1, j]:
            j -= 1
        else:
            i -= 1
    return pairs[::-1]


def copy_labels(source: Sequence[int], target: Sequence[int]) -> list[int]:
    """One label per target token: 0 not copied, 1 starts a copied span, 2 continues it."""
    labels = [NOT_COPIED] * len(target)
    previous = None
    for s, t in lcs_alignment(source, target):
        contiguous = previous is not None and previous == (s - 1, t - 1)
        labels[t] = COPY_CONTINUE if contiguous else COPY_START
        previous = (s, t)
    return labels
