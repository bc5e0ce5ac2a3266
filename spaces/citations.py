"""Statute citations in Chinese legal text: a 《title》 with the 第…条/款/项 after it. What a summary may not
invent (``spaces.evaluate`` counts unsupported ones; ``spaces.generate``'s editor keeps them whole).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spaces.numbers import CHINESE_NUMERALS, chinese_value, number_spans, numbers

_TITLE = re.compile(r"《([^《》]{1,80})》")
_NUM = f"(?:[{CHINESE_NUMERALS}]+|\\d+)"
_ARTICLE = re.compile(f"\\s*(?:[、，,及和]|以及)?\\s*第({_NUM})条(?:之[{CHINESE_NUMERALS}]+)?(?:第({_NUM})款)?"
                      f"(?:第({_NUM})项)?")


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


def unsupported_spans(summary: str, judgment: str) -> list[tuple[int, int]]:
    """Where the summary names a number or a statute that the judgment does not (the report marks them; the
    editor's realization closes up the joins that would make them)."""
    known_numbers, known_citations = set(numbers(judgment)), citations(judgment)
    spans = [(s, e) for s, e, value in number_spans(summary) if value not in known_numbers]
    spans += [(s, e) for s, e, c in citation_spans(summary) if not c.found_in(known_citations)]
    return spans
