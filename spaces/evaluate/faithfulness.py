"""Faithfulness of a summary to its judgment: what ROUGE does not see.

A legal summary that invents an amount or a statute is wrong whatever its ROUGE. Per document:

* ``unsupported_numbers``: share of the numbers in the summary whose value occurs nowhere in the judgment.
  Numbers are Arabic (``10000``, ``46,677.20``, ``1.5万``, ``5%``) or Chinese (``一万``, ``二百零六``,
  ``二〇一七``) and compared by value, so ``一万元`` matches ``10000元`` and ``第二百零六条`` matches
  ``第206条``. A Chinese numeral counts only before a unit or after 第 (``一案`` and ``统一`` are no numbers).
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

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from spaces.text import degenerate, words

KEYS = ("unsupported_numbers", "unsupported_citations", "citation_recall", "novel_bigrams", "copy_rate",
        "degenerate")

_DIGITS = {"零": 0, "〇": 0, "一": 1, "壹": 1, "二": 2, "两": 2, "贰": 2, "三": 3, "叁": 3, "四": 4, "肆": 4,
           "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7, "八": 8, "捌": 8, "九": 9, "玖": 9}
_SMALL = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_LARGE = {"万": 10_000, "亿": 100_000_000}
_CN = "零〇一壹二两贰三叁四肆五伍六陆七柒八捌九玖十拾百佰千仟万亿"
_UNITS = ("元|万|亿|条|款|项|年|月|日|天|个月|周|小时|%|％|倍|次|号|人|份|岁|周岁|平方米|米|公里|千米|吨|辆|台|股|"
          "期|级|层|间|套|张|件|名|户|亩|克|公斤|斤|页|元整|美元|港币")
ARABIC = re.compile(r"(?<![\d.])(\d+(?:[,，]\d{3})*(?:\.\d+)?)\s*(万|亿)?")
CHINESE = re.compile(f"(第)?([{_CN}]++)(?={_UNITS})|第([{_CN}]++)")  # possessive: 一万 is no 一 before 万


def chinese_value(numeral: str) -> int | None:
    """二百零六 -> 206, 一万 -> 10000, 二〇一七 -> 2017 (digit by digit), 十五 -> 15; None if malformed."""
    if not numeral:
        return None
    if all(c in _DIGITS for c in numeral):  # 二〇一七: a string of digits
        return int("".join(str(_DIGITS[c]) for c in numeral)) if len(numeral) > 1 else _DIGITS[numeral]
    total, section, digit = 0, 0, None
    for c in numeral:
        if c in _DIGITS:
            digit = _DIGITS[c]
        elif c in _SMALL:
            section += (1 if digit is None else digit) * _SMALL[c]
            digit = None
        elif c in _LARGE:
            total = (total + section + (digit or 0)) * _LARGE[c]
            section, digit = 0, None
        else:
            return None
    return total + section + (digit or 0)


def _canonical(value: Decimal) -> str:
    value = value.normalize()
    return format(value, "f")


def number_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, canonical value) of each number a text mentions, in order (10000, 206, 46677.2)."""
    out = []
    covered = [False] * len(text)
    for m in ARABIC.finditer(text):
        try:
            value = Decimal(m.group(1).replace(",", "").replace("，", ""))
        except InvalidOperation:
            continue
        if m.group(2):
            value *= _LARGE[m.group(2)]
        out.append((m.start(), m.end(), _canonical(value)))
        for i in range(m.start(), m.end()):
            covered[i] = True
    for m in CHINESE.finditer(text):
        if covered[m.start()]:
            continue
        group = 2 if m.group(2) else 3
        value = chinese_value(m.group(group))
        if value is not None:
            out.append((m.start(group), m.end(group), str(value)))
    return sorted(out)


def numbers(text: str) -> list[str]:
    return [value for _, _, value in number_spans(text)]


# ---- citations --------------------------------------------------------------------------------------

_TITLE = re.compile(r"《([^《》]{1,80})》")
_NUM = f"(?:[{_CN}]+|\\d+)"
_ARTICLE = re.compile(f"\\s*(?:[、，,及和]|以及)?\\s*第({_NUM})条(?:之[{_CN}]+)?(?:第({_NUM})款)?(?:第({_NUM})项)?")


def _number(token: str | None) -> int | None:
    if token is None:
        return None
    return int(token) if token.isdigit() else chinese_value(token)


def canonical_title(title: str) -> str:
    """A statute title without its 中华人民共和国 prefix, inner brackets or spaces."""
    title = re.sub(r"[〈〉<>\s《》]", "", title)
    return title.replace("中华人民共和国", "")


@dataclass(frozen=True)
class Citation:
    title: str  # canonical
    article: int | None = None
    paragraph: int | None = None
    item: int | None = None

    def found_in(self, others: list[Citation]) -> bool:
        """Cited among ``others``: same title and article; a 款/项 one side leaves out is not a mismatch."""
        for o in others:
            if o.title != self.title:
                continue
            if self.article is None or o.article is None:
                if self.article is None:
                    return True
                continue
            if o.article == self.article and all(a is None or b is None or a == b for a, b in
                                                 ((self.paragraph, o.paragraph), (self.item, o.item))):
                return True
        return False


def citation_spans(text: str) -> list[tuple[int, int, Citation]]:
    """Every 《title》 with the articles that follow it (《合同法》第六十条、第一百零九条 -> two citations),
    each with the span of the text it covers."""
    out = []
    for m in _TITLE.finditer(text):
        title = canonical_title(m.group(1))
        pos, found = m.end(), []
        while (a := _ARTICLE.match(text, pos)) is not None:
            start = m.start() if not found else a.start(1) - 1
            found.append((start, a.end(), Citation(title, _number(a.group(1)), _number(a.group(2)),
                                                   _number(a.group(3)))))
            pos = a.end()
        out += found or [(m.start(), m.end(), Citation(title))]
    return out


def citations(text: str) -> list[Citation]:
    return [c for _, _, c in citation_spans(text)]


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
