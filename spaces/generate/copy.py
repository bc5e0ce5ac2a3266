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
from transformers import LogitsProcessorList, NoRepeatNGramLogitsProcessor

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


NEG_INF = float("-inf")


@dataclass(frozen=True)
class CopyState:
    """One beam's copy state: the length of the span it is copying, the source positions where that span
    ends, whether it is inside a copied 《title》, and its copy labels so far (when they are tracked)."""

    span_len: int = 0
    ends: tuple[int, ...] = ()
    in_title: bool = False
    labels: tuple[int, ...] = ()


def _stuck(logprobs: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """Rows of live beams left without any finite log-probability."""
    return (~torch.isfinite(logprobs).any(-1) & live).nonzero().flatten()


class CopyConstraint:
    """SPACES's copy mechanism at decode time, one ``CopyState`` per beam (the shape of fairseq's
    constraint hooks: built per batch, ``log_probs`` each step, ``advance`` after the search reorders).

    Each step the copy head labels each beam: 0 free, 1 start a copied span, 2 continue it (2 is not
    allowed right after a 0). Starting a span restricts the beam to the source's tokens; continuing one
    restricts it to the tokens that follow the span where it occurs in the source, falling back to any
    source token (a new span) when it occurs nowhere. Instead of rebuilding n-gram sets each step as
    SPACES did, each beam carries the source positions where its current span ends.
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
        self.states = [CopyState()] * self.rows
        self.step_labels = [NOT_COPIED] * self.rows

    def labels(self, row: int) -> list[int]:
        """The copy labels of the beam in ``row`` so far (empty unless they are tracked)."""
        return list(self.states[row].labels)

    def log_probs(self, logits: torch.Tensor, copy_logits: torch.Tensor, tokens: torch.Tensor, live: torch.Tensor,
                  processors: LogitsProcessorList) -> torch.Tensor:
        """This step's [rows, vocab] log-probabilities under the copy constraint and the other rules, from the
        logits [rows, vocab], the copy logits [rows, 3], the tokens so far [rows, t] and which rows are live.

        The whole precedence, in order:
        1. the copy head's labels decide what each beam may take (``_mask``), then ``processors`` apply;
        2. where that leaves a live beam nothing and n-gram blocking is among the processors, copying wins
           over it (a statute's title is copied again whole): the processors apply without it;
        3. where the other rules still leave nothing, the beam stops copying this step and may take
           anything but what only a copy may write (the number rule's copy-only tokens) — the number rule
           never yields: if the processors leave nothing even then, it is they that give way.
        """
        last = tokens[:, -1].tolist()
        masked = torch.log_softmax(logits.masked_fill(~self._mask(copy_logits, last), NEG_INF), dim=-1)
        out = processors(tokens, masked)
        stuck = _stuck(out, live)
        if len(stuck) and any(isinstance(p, NoRepeatNGramLogitsProcessor) for p in processors):
            ngram_free = LogitsProcessorList(p for p in processors if not isinstance(p, NoRepeatNGramLogitsProcessor))
            out[stuck] = ngram_free(tokens[stuck], masked[stuck])
            stuck = _stuck(out, live)
        if len(stuck):
            rows = stuck.tolist()
            for i in rows:
                self.step_labels[i] = NOT_COPIED
            free = logits[stuck]
            if self.numbers is not None:
                free = free.masked_fill(self.numbers.copy_only, NEG_INF)
            free = torch.log_softmax(free, -1)
            ruled = processors(tokens[stuck], free.clone())
            out[stuck] = torch.where(torch.isfinite(ruled).any(-1, keepdim=True), ruled, free)
        return out

    def _decide(self, copy_logits: torch.Tensor, last_tokens: list[int]) -> tuple[list[int], list[bool]]:
        """Each beam's copy label for this step and whether it is inside a copied number: a copied number or
        statute title is not cut short (and a number keeps what follows it in the source, its unit: 一 copied
        from 一案 and followed by 款 would make a number, 一款)."""
        labels = copy_decisions(copy_logits, [s.span_len for s in self.states])
        in_number = [False] * self.rows
        if self.numbers is None:
            return labels, in_number
        trails = self.numbers.trails
        for i, (state, last) in enumerate(zip(self.states, last_tokens)):
            in_number[i] = state.span_len > 0 and last < len(trails) and trails[last]
            n = len(self.sources[self.doc_of[i]].tokens)
            if (in_number[i] or state.in_title) and any(p + 1 < n for p in state.ends):
                labels[i] = COPY_CONTINUE
        return labels, in_number

    def _mask(self, copy_logits: torch.Tensor, last_tokens: list[int]) -> torch.Tensor:
        """[rows, vocab] mask of the tokens each beam may take by its copy label (recorded in ``step_labels``)."""
        labels, in_number = self._decide(copy_logits, last_tokens)
        keep = torch.ones(self.rows, self.source_tokens.size(1), dtype=torch.bool, device=copy_logits.device)
        start_rows, cont_rows, cont_cols = [], [], []
        for i, label in enumerate(labels):
            if label == COPY_CONTINUE:
                nxt = self.sources[self.doc_of[i]].continuations(self.states[i].ends)
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

    def advance(self, beam_idx: list[int], tokens: list[int]) -> None:
        """Row k continues beam ``beam_idx[k]`` with ``tokens[k]`` (the search's reordering)."""
        self.states = [self._next(src, tok) for src, tok in zip(beam_idx, tokens)]

    def _next(self, row: int, token: int) -> CopyState:
        state, label = self.states[row], self.step_labels[row]
        source = self.sources[self.doc_of[row]]
        in_title = False
        if self.numbers is not None:
            opened = token in self.numbers.opens or (state.in_title and token not in self.numbers.titles)
            in_title = opened and label != NOT_COPIED
        labels = state.labels + (label,) if self.track_labels else state.labels
        if label == COPY_CONTINUE:
            return CopyState(state.span_len + 1, source.extend(state.ends, token), in_title, labels)
        if label == COPY_START:
            ends = source.positions.get(token, ())
            if self.numbers is not None:  # where a span may start (see ``NumberRule.span_starts``)
                ends = tuple(p for p in ends if p in self.span_starts[self.doc_of[row]])
            return CopyState(1, ends, in_title, labels)
        return CopyState(0, (), in_title, labels)
