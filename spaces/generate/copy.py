"""SPACES's copy mechanism: copy labels for training and the copy constraint for decoding.

Training: source and target token ids are aligned by a longest common subsequence. A target token
matched to a source token is 1 when it starts a copied span, 2 when it continues one (the previous
target token is matched to the previous source token); unmatched target tokens are 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spaces.numbers import CHINESE_NUMERALS, numbers

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


def copy_decisions(copy_logits: torch.Tensor, span_len: list[int]) -> list[int]:
    """Each beam's copy label for this step: copy when p(start) + p(continue) > p(not copied), then
    continue the current span (if there is one) when continuing is likelier than starting anew.

    (SPACES took the argmax with 2 ruled out after a 0; a head trained on little data rarely puts its
    argmax on "start", and then never copies at all.)
    """
    p = copy_logits.float().softmax(-1)
    copying = (p[:, COPY_START] + p[:, COPY_CONTINUE] > p[:, NOT_COPIED]).tolist()
    continuing = (p[:, COPY_CONTINUE] >= p[:, COPY_START]).tolist()
    return [NOT_COPIED if not c else COPY_CONTINUE if n and k else COPY_START
            for c, k, n in zip(copying, continuing, span_len)]


class SourceIndex:
    """Where each token occurs in one source document (built once per document)."""

    def __init__(self, tokens: list[int]):
        self.tokens = tokens
        positions: dict[int, list[int]] = {}
        for p, t in enumerate(tokens):
            positions.setdefault(t, []).append(p)
        self.positions = {t: tuple(ps) for t, ps in positions.items()}

    def continuations(self, ends: tuple[int, ...]) -> list[int]:
        """Tokens that follow a span ending at any of ``ends``."""
        n = len(self.tokens)
        return list({self.tokens[p + 1] for p in ends if p + 1 < n})

    def extend(self, ends: tuple[int, ...], token: int) -> tuple[int, ...]:
        n = len(self.tokens)
        return tuple(p + 1 for p in ends if p + 1 < n and self.tokens[p + 1] == token)


NUMERALS = set(CHINESE_NUMERALS) | set("0123456789０１２３４５６７８９.．")  # 1.5 is one number


@dataclass
class NumberRule:
    """Numbers and statute titles come whole from the judgment (beyond SPACES): a number (Arabic or Chinese),
    a 《 》 or a 第 is written only inside a copied span, and a copied number is a whole number of the source
    (its span starts where a number starts and goes on to the token after the number), so an amount, a date
    or an article number is never the model's invention, nor a splice of two, nor given another unit.

    Pieces can hold a number and more (五十三条, 十日内, 万元 in a vocabulary with compound words): a piece
    that starts with a numeral starts a number, one that ends with a numeral leaves one open, and any piece
    that holds a number is copy-only."""

    leads: torch.Tensor  # [vocab] bool: tokens whose text starts with a numeral (第 aside): they start a number
    trails: list[bool]  # tokens whose text ends with a numeral: a number is open after them
    copy_only: torch.Tensor  # [vocab] bool: tokens with a numeral that may be a number, a title bracket or 第
    ordinal: torch.Tensor  # [vocab] bool: tokens that start with 第
    ordinals: set[int]  # tokens that end with 第
    titles: set[int]  # tokens that end with 》
    opens: set[int]  # tokens that open a title (《 and no 》 after it)

    @classmethod
    def of(cls, pieces: list[str], vocab_size: int, device) -> NumberRule:
        leads = torch.zeros(vocab_size, dtype=torch.bool)
        trails = [False] * vocab_size
        copy_only = torch.zeros(vocab_size, dtype=torch.bool)
        ordinal = torch.zeros(vocab_size, dtype=torch.bool)
        ordinals, titles, opens = set(), set(), set()
        for i, piece in enumerate(pieces[:vocab_size]):
            text = piece.strip()
            if not text:
                continue
            digits = text.removeprefix("第")  # a piece such as 第二 is an article number already
            leads[i] = digits[:1] in NUMERALS
            trails[i] = text[-1] in NUMERALS
            copy_only[i] = (leads[i] or trails[i] or text[0] == "第" or any(c.isdigit() or c in "《》" for c in text)
                            or (any(c in NUMERALS for c in text) and bool(numbers(text))))
            ordinal[i] = text.startswith("第")
            if text.endswith("第"):
                ordinals.add(i)
            if "》" in text:
                titles.add(i)
            if text.rfind("《") > text.rfind("》"):
                opens.add(i)
        return cls(leads.to(device), trails, copy_only.to(device), ordinal.to(device), ordinals, titles, opens)

    def span_starts(self, tokens: list[int]) -> set[int]:
        """Positions of a source where a copied span may start: not inside a number (only where it starts)
        and not inside a 《title》 (only at its 《), so no copy begins halfway through either."""
        leads, trails = self.leads.tolist(), self.trails
        out = {p for p, t in enumerate(tokens) if not (leads[t] and p > 0 and trails[tokens[p - 1]])}
        opened = None
        for p, t in enumerate(tokens):
            if t in self.titles and opened is not None:  # a 《 closed by its 》: the tokens after 《 are inside
                out.difference_update(range(opened + 1, p + 1))
                opened = None
            if t in self.opens:
                opened = p
        return out


class CopyConstraint:
    """SPACES's copy mechanism at decode time, one state per beam (the shape of fairseq's constraint hooks).

    Each step the copy head labels each beam: 0 free, 1 start a copied span, 2 continue it (2 is not
    allowed right after a 0). ``allowed`` turns the labels into the tokens each beam may take: starting
    a span restricts it to the source's tokens; continuing a span restricts it to the tokens that follow
    the span where it occurs in the source, falling back to any source token (a new span) when it occurs
    nowhere. Instead of rebuilding n-gram sets each step as SPACES did, each beam carries the source
    positions where its current span ends. ``advance`` follows the beams after the search reorders them.
    """

    def __init__(self, sources: list[list[int]], beams: int, vocab_size: int, device, track_labels: bool = False,
                 numbers: NumberRule | None = None):
        self.track_labels = track_labels
        self.numbers = numbers
        self.sources = [SourceIndex(s) for s in sources]
        self.rows = len(sources) * beams
        self.doc_of = [i // beams for i in range(self.rows)]
        self.source_tokens = torch.zeros(len(sources), vocab_size, dtype=torch.bool, device=device)
        for b, src in enumerate(self.sources):
            self.source_tokens[b, [t for t in src.positions if t < vocab_size]] = True
            if not src.positions:  # an empty source: nothing to copy from, so copying is not restricted
                self.source_tokens[b] = True
        if numbers is not None:  # a span starts only where a number or a title starts, or outside both
            self.span_starts = [numbers.span_starts(src.tokens) for src in self.sources]
            for b, src in enumerate(self.sources):
                if src.positions:
                    self.source_tokens[b] = False
                    self.source_tokens[b, [src.tokens[p] for p in self.span_starts[b] if src.tokens[p] < vocab_size]] \
                        = True
        self.span_len = [0] * self.rows
        self.span_ends: list[tuple[int, ...]] = [()] * self.rows
        self.in_title = [False] * self.rows  # inside a copied 《title》: it is copied to its end
        self.labels: list[list[int]] = [[] for _ in range(self.rows)]  # each beam's copy labels so far
        self.step_labels = [NOT_COPIED] * self.rows

    def allowed(self, copy_logits: torch.Tensor, last_tokens: list[int]) -> torch.Tensor:
        """[rows, vocab] mask of the tokens each beam may take now, from this step's copy logits [rows, 3]
        and each beam's last token."""
        labels = copy_decisions(copy_logits, self.span_len)
        in_number = [False] * self.rows
        if self.numbers is not None:
            trails = self.numbers.trails
            for i, last in enumerate(last_tokens):
                in_number[i] = self.span_len[i] > 0 and last < len(trails) and trails[last]  # copied, still open
                src = self.sources[self.doc_of[i]]
                ends = [p for p in self.span_ends[i] if p + 1 < len(src.tokens)]
                if in_number[i] and ends:
                    labels[i] = COPY_CONTINUE  # a copied number is not cut short, and keeps what follows it in
                    # the source (its unit: 一 copied from 一案 and followed by 款 would make a number, 一款)
                elif self.in_title[i] and ends:
                    labels[i] = COPY_CONTINUE  # nor a copied statute title
        keep = torch.ones(self.rows, self.source_tokens.size(1), dtype=torch.bool, device=copy_logits.device)
        start_rows, cont_rows, cont_cols = [], [], []
        for i, label in enumerate(labels):
            if label == COPY_CONTINUE:
                nxt = self.sources[self.doc_of[i]].continuations(self.span_ends[i])
                if nxt:
                    cont_rows += [i] * len(nxt)
                    cont_cols += nxt
                    keep[i] = False
                    continue
                labels[i] = label = COPY_START  # the span occurs nowhere further: start a new one
            if label == COPY_START:
                start_rows.append(i)
        if start_rows:
            keep[start_rows] = self.source_tokens[[self.doc_of[i] for i in start_rows]]
        if cont_rows:
            keep[cont_rows, cont_cols] = True
        if self.numbers is not None:
            rule = self.numbers
            free = [i for i, label in enumerate(labels) if label == NOT_COPIED]
            keep[free] &= ~rule.copy_only
            not_copying = free + start_rows
            no_numeral = [i for i in not_copying if in_number[i] or last_tokens[i] in rule.ordinals]
            keep[no_numeral] &= ~rule.leads  # no number glued to another, none invented after 第
            after_title = [i for i in not_copying if last_tokens[i] in rule.titles]
            keep[after_title] &= ~rule.ordinal  # a statute's article continues its copied title
        self.step_labels = labels
        return keep

    def release(self, rows: list[int]) -> torch.Tensor:
        """These beams stop copying this step (nothing the constraint allows survives the other rules);
        returns the [rows, vocab] mask of what they may take: anything but what only a copy may write."""
        for i in rows:
            self.step_labels[i] = NOT_COPIED
        keep = torch.ones(len(rows), self.source_tokens.size(1), dtype=torch.bool, device=self.source_tokens.device)
        return keep if self.numbers is None else keep & ~self.numbers.copy_only

    def advance(self, beam_idx: list[int], tokens: list[int]) -> None:
        """Row k continues beam ``beam_idx[k]`` with ``tokens[k]`` (the search's reordering)."""
        span_len, span_ends, labels, in_title = [], [], [], []
        for src, tok in zip(beam_idx, tokens):
            if self.numbers is not None:
                opened = tok in self.numbers.opens or (self.in_title[src] and tok not in self.numbers.titles)
                in_title.append(opened and self.step_labels[src] != NOT_COPIED)
            label = self.step_labels[src]
            source = self.sources[self.doc_of[src]]
            if label == COPY_CONTINUE:
                span_len.append(self.span_len[src] + 1)
                span_ends.append(source.extend(self.span_ends[src], tok))
            elif label == COPY_START:
                span_len.append(1)
                ends = source.positions.get(tok, ())
                if self.numbers is not None:  # where a span may start (see ``NumberRule.span_starts``)
                    ends = tuple(p for p in ends if p in self.span_starts[self.doc_of[src]])
                span_ends.append(ends)
            else:
                span_len.append(0)
                span_ends.append(())
            labels.append(self.labels[src] + [label] if self.track_labels else self.labels[src])
        self.span_len, self.span_ends, self.labels = span_len, span_ends, labels
        if self.numbers is not None:
            self.in_title = in_title
