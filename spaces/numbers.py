"""Numbers in Chinese legal text, by value: what a summary may not invent (``spaces.evaluate`` counts
them, ``spaces.generate``'s number rule keeps them whole).

Arabic (``10000``, ``46,677.20``, ``1.5万``, ``5%``) or Chinese (``一万``, ``二百零六``, ``二〇一七``),
compared by value, so ``一万元`` matches ``10000元`` and ``第二百零六条`` matches ``第206条``. A Chinese
numeral counts only before a unit or after 第 (``一案`` and ``统一`` are no numbers).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_DIGITS = {"零": 0, "〇": 0, "一": 1, "壹": 1, "二": 2, "两": 2, "贰": 2, "三": 3, "叁": 3, "四": 4, "肆": 4,
           "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7, "八": 8, "捌": 8, "九": 9, "玖": 9}
_SMALL = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_LARGE = {"万": 10_000, "亿": 100_000_000}
CHINESE_NUMERALS = "零〇一壹二两贰三叁四肆五伍六陆七柒八捌九玖十拾百佰千仟万亿"
UNITS = ("元|万|亿|条|款|项|年|月|日|天|个月|周|小时|%|％|倍|次|号|人|份|岁|周岁|平方米|米|公里|千米|吨|辆|台|股|"
          "期|级|层|间|套|张|件|名|户|亩|克|公斤|斤|页|元整|美元|港币")
ARABIC = re.compile(r"(?<![\d.])(\d+(?:[,，]\d{3})*(?:\.\d+)?)\s*(万|亿)?")
_CN = CHINESE_NUMERALS
CHINESE = re.compile(f"(第)?([{_CN}]++)(?={UNITS})|第([{_CN}]++)")  # possessive: 一万 is no 一 before 万


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
