"""Edits that turn an extract into a summary (LaserTagger, Malmi et al. 2019): each unit of the extract is kept
or deleted, and a phrase from a small vocabulary may be inserted before it.

Labels come from one LCS alignment of the extract's and the reference's characters (``copy.lcs_alignment``,
the alignment the copy labels use): a unit is kept when most of its characters lie on it, and the reference
text between two kept units is the phrase inserted before the second. The phrase vocabulary is the most
frequent of those insertions that hold no digit, numeral, 第 or 《》, so every number and citation an edited
summary holds is source text. Realization keeps number and citation spans whole and closes up (puts the
source text back into) any join that would still make a number or citation the extract does not have.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spaces.citations import citation_spans, unsupported_spans
from spaces.generate.copy import lcs_alignment
from spaces.numbers import CHINESE_NUMERALS, UNITS, number_spans
from spaces.text import words

NOT_IN_PHRASES = frozenset("0123456789０１２３４５６７８９" + CHINESE_NUMERALS + "第《》〈〉")
PUNCTUATION = "。；：，、,;:"
_STRENGTH = {c: i for i, c in enumerate("、,，;；:：。")}  # of two marks meeting at a join, the stronger stays
_TITLE = re.compile(r"《[^《》]*》")
_UNIT = re.compile(f"\\s*(?:{UNITS})")
_RANGE = "至到-－—~～"  # one of these between two numbers makes a range
_LIST_AFTER = "：:；;，,。\n"  # a number after one of these, and followed by 、, is a list number
_CONNECTIVES = "与和及、诉"  # 原告张三与被告李四: what may join the parties

Span = tuple[int, int]


@dataclass
class EditTags:
    """One decision per unit: keep it, and the phrase inserted before it ("" for none)."""

    keep: list[bool]
    insert: list[str]


@dataclass(frozen=True)
class Style:
    """How tags are realized beyond keeping, deleting and inserting (the editor's ``decode.`` switches); each
    rule only deletes source text, puts it back, or ends a sentence, so a summary stays the extract's text."""

    join_parties: bool = False  # 原告张三与被告李四 with the names deleted reads 原被告 (``_join_parties``)
    short_gaps: int = 0  # a deletion of at most this many characters inside kept text is not made
    section_breaks: bool = False  # kept text that opens a section starts a sentence (``_break_sections``)


PLAIN = Style()


def unit_spans(text: str, starts: Sequence[int]) -> list[Span]:
    """Units tiling ``text``, one per (ascending, distinct) token start: each runs to the next one's start, the
    first from 0."""
    bounds = [0, *starts[1:]] if starts else []
    return list(zip(bounds, [*bounds[1:], len(text)]))


def alignment_tags(text: str, spans: Sequence[Span], reference: str) -> EditTags:
    """The tags that turn ``text`` into ``reference`` as closely as its units allow."""
    codes: dict[str, int] = {}
    pairs = lcs_alignment([codes.setdefault(c, len(codes)) for c in text],
                          [codes.setdefault(c, len(codes)) for c in reference])
    target = dict(pairs)
    keep, insert, last = [], [], -1
    for a, b in spans:
        matched = [target[i] for i in range(a, b) if i in target]
        kept = 2 * len(matched) > b - a
        keep.append(kept)
        insert.append(reference[last + 1:matched[0]] if kept else "")
        if kept:
            last = matched[-1]
    return EditTags(keep, insert)


def by_words(text: str, spans: Sequence[Span], keep: np.ndarray) -> np.ndarray:
    """Each unit's p(keep) as the mean over the units that share a word with it (jieba's own dictionary,
    words chained where a unit straddles two): the decision is taken per word, so a word is never cut in half
    (故原告的陈述自相矛盾 → 原告的陈自相矛盾)."""
    parent = list(range(len(spans)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    at, first = 0, 0
    for word in words(text):
        a, b = at, at + len(word)
        at = b
        while first < len(spans) and spans[first][1] <= a:
            first += 1
        i = first
        while i + 1 < len(spans) and spans[i + 1][0] < b:
            parent[root(i + 1)] = root(first)
            i += 1
    groups: dict[int, list[int]] = {}
    for i in range(len(spans)):
        groups.setdefault(root(i), []).append(i)
    out = np.asarray(keep, dtype=float).copy()
    for members in groups.values():
        if len(members) > 1:
            out[members] = out[members].mean()
    return out


def allowed_phrase(phrase: str, max_chars: int) -> bool:
    return 0 < len(phrase) <= max_chars and not NOT_IN_PHRASES.intersection(phrase)


def mine_phrases(tags: Sequence[EditTags], size: int, max_chars: int) -> list[tuple[str, int]]:
    """The ``size`` most frequent allowed insertions seen at least twice, with their counts (ties by first
    appearance): a phrase seen once is one summary's wording, not an edit."""
    counts = Counter(p for t in tags for p in t.insert if allowed_phrase(p, max_chars))
    return [(p, n) for p, n in counts.most_common(size) if n >= 2]


def _with_unit(text: str, start: int, end: int) -> Span:
    """A number with its 第 before it and its unit after it (第三条, 3日): deleting the number alone would leave
    its unit behind (被告支付原告日的工资)."""
    unit = _UNIT.match(text, end)
    return (start - 1 if start and text[start - 1] == "第" else start), (unit.end() if unit else end)


def _list_marker(text: str, span: Span) -> Span:
    """A list number with its mark (1、 （2）): keeping the number alone would run it into the text (请求：1被告)."""
    start, end = span
    opened = start and text[start - 1] in "（("
    if opened and end < len(text) and text[end] in "）)":
        return start - 1, end + 1
    if not opened and end < len(text) and text[end] in "、．" and (not start or text[start - 1] in _LIST_AFTER):
        return start, end + 1
    return span


def _dates_and_ranges(spans: list[Span], text: str) -> list[Span]:
    """Numbers that meet (2016年11月3日) or make a range (7月1日至11月3日) as one span: keeping a part of a date
    would make another date (3日), a part of a range another period."""
    out: list[Span] = []
    for s, e in sorted(spans):
        if out and (s <= out[-1][1] or (s - out[-1][1] == 1 and text[out[-1][1]] in _RANGE)):
            out[-1] = (out[-1][0], max(e, out[-1][1]))
        else:
            out.append((s, e))
    return out


def _protected(text: str) -> tuple[list[Span], list[Span]]:
    """Spans that stay whole (numbers with their units, dates, ranges and list marks, citations, titles) and
    stray title marks that never stay."""
    numbers = _dates_and_ranges([_list_marker(text, _with_unit(text, s, e)) for s, e, _ in number_spans(text)], text)
    whole = numbers + [(s, e) for s, e, _ in citation_spans(text)]
    titles = [m.span() for m in _TITLE.finditer(text)]
    whole += titles
    stray = [(i, i + 1) for i, c in enumerate(text) if c in "《》" and not any(s <= i < e for s, e in titles)]
    return whole, stray


def _groups(text: str, spans: Sequence[Span]) -> tuple[list[list[int]], set[int]]:
    """Runs of units that are kept or deleted together (a protected span inside or across them), and the units
    that hold a stray title mark."""
    whole, stray = _protected(text)
    joined = [False] * len(spans)  # unit i joined to unit i - 1
    for s, e in whole:
        inside = [i for i, (a, b) in enumerate(spans) if a < e and s < b]
        for i in inside[1:]:
            joined[i] = True
    groups: list[list[int]] = []
    for i in range(len(spans)):
        if joined[i] and groups:
            groups[-1].append(i)
        else:
            groups.append([i])
    banned = {i for i, (a, b) in enumerate(spans) if any(a < e and s < b for s, e in stray)}
    return groups, banned


@dataclass
class _Piece:
    start: int  # a source piece: text[start:end]; a phrase: where in the source it goes in
    end: int
    phrase: str = ""

    def text(self, source: str) -> str:
        return self.phrase or source[self.start:self.end]


def _pieces(text: str, spans: Sequence[Span], keep: Sequence[bool], insert: Sequence[str]) -> list[_Piece]:
    groups, banned = _groups(text, spans)
    pieces: list[_Piece] = []
    for group in groups:
        first = group[0]
        if insert[first]:
            pieces.append(_Piece(spans[first][0], spans[first][0], insert[first]))
        kept = 2 * sum(keep[i] for i in group) >= len(group) and not banned.intersection(group)
        if not kept:
            continue
        a, b = spans[group[0]][0], spans[group[-1]][1]
        if pieces and not pieces[-1].phrase and pieces[-1].end == a:
            pieces[-1].end = b
        else:
            pieces.append(_Piece(a, b))
    return pieces


def _join_parties(pieces: list[_Piece], text: str) -> None:
    """A clause that opens on 原告, its names and connective deleted, and goes on at 被告 (原告张三与被告李四 ->
    原告被告) reads 原被告, "the parties": 原告被告 is not Chinese, and CAIL references write 原被告 (57 of the 80
    shared ones, 原告被告 none: scripts/reference_style.py). Only where what was deleted ends on a connective
    (与 和 及 、 诉) and holds no clause mark, so 原告张三向被告借款 never becomes "the parties borrowed". The 告
    of 原告 is deleted (the piece before the join ends one character sooner): the summary is still the
    extract's text, and the marks show it."""
    clause_marks = set(PUNCTUATION) - {"、"}
    for before, after in zip(pieces, pieces[1:]):
        if before.phrase or after.phrase:
            continue
        if not (text.endswith("原告", before.start, before.end) and text.startswith("被告", after.start)):
            continue
        gap = text[before.end:after.start]
        opens = before.end == 2 or text[before.end - 3] in PUNCTUATION + "\n"
        if opens and gap and gap[-1] in _CONNECTIVES and not clause_marks & set(gap):
            before.end -= 1


def short_gaps(text: str, spans: Sequence[Span], keep: Sequence[bool], most: int) -> list[tuple[int, int]]:
    """The deletions (ranges of units) of at most ``most`` characters, no mark among them, with kept units on
    both sides: what ``Style.short_gaps`` puts back."""
    out, marks, i = [], set(PUNCTUATION), 0
    while i < len(keep):
        j = i
        while j < len(keep) and keep[j] == keep[i]:
            j += 1
        if not keep[i] and 0 < i and j < len(keep):
            gap = text[spans[i][0]:spans[j - 1][1]]
            if len(gap) <= most and not marks & set(gap):
                out.append((i, j))
        i = j
    return out


def _keep_short_gaps(text: str, spans: Sequence[Span], keep: Sequence[bool], most: int) -> list[bool]:
    """Keep the units of each short deletion inside kept text. The editor's cuts of one or two characters
    there mostly agree with the reference (`scripts/edit_headroom.py` counts them), yet keeping them all
    scores higher: a right one saves a character or two (判决如下 -> 判决), a wrong one cuts a word and the
    n-grams across it (被告孙某 -> 被告孙)."""
    keep = list(keep)
    for i, j in short_gaps(text, spans, keep, most):
        keep[i:j] = [True] * (j - i)
    return keep


def _break_sections(pieces: list[_Piece], breaks: Sequence[int]) -> list[_Piece]:
    """An 。 where kept text runs into a new section (a break offset lies between two kept characters, or a
    kept piece spans one): 一案，原告诉请： -> 一案。原告诉请：, as CAIL references join the claims, the defence
    and the court's findings, one sentence each. The 。 is a phrase piece (none where a phrase at the join
    already ends the sentence); ``_compose`` drops the weaker mark it meets."""
    out: list[_Piece] = []
    behind = -1  # a break at or before this offset has been placed
    for piece in pieces:
        ended = piece.phrase.startswith("。") or (out and out[-1].phrase.endswith("。"))  # by a phrase already
        if out and not ended and any(behind < b <= piece.start for b in breaks):
            out.append(_Piece(piece.start, piece.start, "。"))
        if piece.phrase:
            out.append(piece)
            behind = piece.start
            continue
        start = piece.start
        for b in sorted(b for b in breaks if piece.start < b < piece.end):
            out += [_Piece(start, b), _Piece(b, b, "。")]
            start = b
        out.append(_Piece(start, piece.end))
        behind = piece.end - 1
    return out


@dataclass
class _Composed:
    text: str  # the summary
    joins: list[int]  # where in it each piece after the first begins (its join with the one before)
    dropped: set[tuple[int, int]]  # (piece, character) the tidying left out
    closed: bool  # the final 。 is the realization's, not the extract's


def _compose(pieces: list[_Piece], source: str) -> _Composed:
    """The pieces joined, each join tidied (no leading mark, of two marks meeting the stronger stays, the end
    on one 。), with what the tidying left out, so the marks can show it."""
    out: list[str] = []
    origin: list[tuple[int, int]] = []  # (piece, character) of each character of ``out``
    joins: list[int] = []
    dropped: set[tuple[int, int]] = set()
    loose = PUNCTUATION + " \u3000"
    for n, piece in enumerate(pieces):
        part = piece.text(source)
        k = 0
        if n:
            joins.append(len(out))
        if not out:
            while k < len(part) and part[k] in loose:
                dropped.add((n, k))
                k += 1
        while out and k < len(part) and out[-1] in _STRENGTH and part[k] in _STRENGTH:
            # the stronger stays; of two equal ones, the extract's own rather than a phrase's
            before, after = _STRENGTH[out[-1]], _STRENGTH[part[k]]
            if after > before or (after == before and pieces[origin[-1][0]].phrase and not piece.phrase):
                out.pop()
                dropped.add(origin.pop())
            else:
                dropped.add((n, k))
                k += 1
        out += part[k:]
        origin += [(n, i) for i in range(k, len(part))]
    tail: list[tuple[str, tuple[int, int]]] = []  # the marks and spaces at the end, last first
    while out and out[-1] in loose:
        tail.append((out.pop(), origin.pop()))
    text = "".join(out)
    # the extract's own 。 among them ends the summary, where there is text before it
    final = next((o for c, o in reversed(tail) if c == "。" and not pieces[o[0]].phrase), None) if text else None
    dropped.update(o for _, o in tail if o != final)
    return _Composed(text + "。" if text else text, joins, dropped, bool(text) and final is None)


def _close_up(pieces: list[_Piece], n: int) -> list[_Piece]:
    """Undo the join before piece ``n``: a phrase there goes, and source pieces meeting there take back the
    source text between them."""
    pieces = list(pieces)
    if pieces[n].phrase:
        del pieces[n]
    elif pieces[n - 1].phrase:
        del pieces[n - 1]
        n -= 1
    else:
        pieces[n - 1:n + 1] = [_Piece(pieces[n - 1].start, pieces[n].end)]
        return pieces
    if 0 < n < len(pieces) and not pieces[n].phrase and not pieces[n - 1].phrase:
        pieces[n - 1:n + 1] = [_Piece(pieces[n - 1].start, pieces[n].end)]
    return pieces


def _plan(text: str, spans: Sequence[Span], keep: Sequence[bool], insert: Sequence[str], style: Style,
          breaks: Sequence[int]) -> list[_Piece]:
    if style.short_gaps:
        keep = _keep_short_gaps(text, spans, keep, style.short_gaps)
    pieces = _pieces(text, spans, keep, insert)
    if style.join_parties:
        _join_parties(pieces, text)
    if style.section_breaks and breaks:
        pieces = _break_sections(pieces, breaks)
    while True:
        composed = _compose(pieces, text)
        summary, joins = composed.text, composed.joins
        bad = unsupported_spans(summary, text)
        if not bad or not joins:
            return pieces
        at = [k for k, j in enumerate(joins) if any(s <= j <= e for s, e in bad)]
        nearest = min(range(len(joins)), key=lambda k: min(abs(joins[k] - s) for s, _ in bad))
        # one join at a time: closing one can remove two pieces, which moves the joins after it
        pieces = _close_up(pieces, max(at, default=nearest) + 1)


def realize(text: str, spans: Sequence[Span], keep: Sequence[bool], insert: Sequence[str], style: Style = PLAIN,
            breaks: Sequence[int] = ()) -> str:
    """The edited summary: kept units in order with their phrases, punctuation tidied at each join (no leading
    or doubled marks, one final 。), and no number or citation the extract does not hold; ``style`` adds the
    rules of ``Style``, ``breaks`` are where the extract's sections begin (``Style.section_breaks``)."""
    return _compose(_plan(text, spans, keep, insert, style, breaks), text).text


def edit_marks(text: str, spans: Sequence[Span], keep: Sequence[bool], insert: Sequence[str], style: Style = PLAIN,
               breaks: Sequence[int] = ()) -> list[tuple[str, str]]:
    """The extract with the summary's edits in place, for a reviewer: ("keep" | "delete" | "insert", text) runs;
    the kept and inserted runs read the summary, the kept and deleted ones the extract."""
    pieces = _plan(text, spans, keep, insert, style, breaks)
    return _marks(pieces, text, _compose(pieces, text))


def edit(text: str, spans: Sequence[Span], keep: Sequence[bool], insert: Sequence[str], style: Style = PLAIN,
         breaks: Sequence[int] = ()) -> tuple[str, list[tuple[str, str]]]:
    """``realize`` and ``edit_marks`` together, from one plan of the edits."""
    pieces = _plan(text, spans, keep, insert, style, breaks)
    composed = _compose(pieces, text)
    return composed.text, _marks(pieces, text, composed)


def _marks(pieces: list[_Piece], text: str, composed: _Composed) -> list[tuple[str, str]]:
    """Each piece's characters as kept or inserted, or, where the tidying left a source character out, deleted
    (an inserted one left out is no edit); the final 。 an insertion where the realization wrote it."""
    marks: list[tuple[str, str]] = []

    def mark(kind: str, part: str) -> None:
        if part:
            marks.append((kind, marks.pop()[1] + part) if marks and marks[-1][0] == kind else (kind, part))

    at = 0
    for n, piece in enumerate(pieces):
        mark("delete", text[at:piece.start])
        at = max(at, piece.start)
        for k, c in enumerate(piece.text(text)):
            if (n, k) not in composed.dropped:
                mark("insert" if piece.phrase else "keep", c)
            elif not piece.phrase:
                mark("delete", c)
        if not piece.phrase:
            at = piece.end
    if composed.closed:
        mark("insert", "。")
    mark("delete", text[at:])
    return marks
