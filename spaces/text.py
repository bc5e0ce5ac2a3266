"""Text primitives every stage shares: SPACES clauses and jieba words."""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path

from spaces.errors import SpacesError

CLAUSE_SEPARATORS = "。；：，"
# A clause is a run of non-separators followed by the run of separators that ends it (possibly none
# at the end of a line); a line that starts with separators yields them as a clause of their own.
_CLAUSE = re.compile(f"[^{CLAUSE_SEPARATORS}]*[{CLAUSE_SEPARATORS}]+|[^{CLAUSE_SEPARATORS}]+")


# A clause longer than this (a line with no Chinese clause punctuation: an English judgment, OCR output) is
# cut again, after its last weaker separator within the limit, else at the limit. Real CAIL2020 clauses
# are at most 291 characters, so they are never cut.
MAX_CLAUSE_CHARS = 300
_WEAK = re.compile(r"[、？！?!;,.\s]")


def _cut_long(clause: str) -> list[str]:
    out = []
    while len(clause) > MAX_CLAUSE_CHARS:
        window = clause[:MAX_CLAUSE_CHARS]
        cut = max((m.end() for m in _WEAK.finditer(window)), default=MAX_CLAUSE_CHARS)
        out.append(window[:cut].strip())
        clause = clause[cut:].strip()
    return [c for c in [*out, clause] if c]


def split_clauses(text: str, max_clauses: int | None = None) -> list[str]:
    """Cut a text into SPACES clauses (README, Records): per line, after every run of ``。；：，``.

    Each clause is stripped; empty ones are dropped; one longer than ``MAX_CLAUSE_CHARS`` is cut again;
    with ``max_clauses`` only the last ones are kept (SPACES keeps the end of a long judgment, where the
    holding is).
    """
    clauses = [c.strip() for line in text.split("\n") for c in _CLAUSE.findall(line)]
    clauses = [part for c in clauses if c for part in (_cut_long(c) if len(c) > MAX_CLAUSE_CHARS else [c])]
    if max_clauses is not None and len(clauses) > max_clauses:
        clauses = clauses[-max_clauses:]
    return clauses


def kept_clauses(clauses: list[str], max_clauses: int) -> tuple[list[str], int]:
    """The last ``max_clauses`` of a document's clauses and how many were dropped from its start."""
    dropped = max(len(clauses) - max_clauses, 0)
    return clauses[dropped:], dropped


@lru_cache(maxsize=None)
def _jieba(user_dict: str | None):
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    if user_dict is not None:
        path = Path(user_dict)
        if path.is_dir():
            raise SpacesError("is a directory, not a jieba user dictionary file", user_dict)
        if not path.is_file():
            raise SpacesError("user dictionary not found", user_dict)
        try:
            tokenizer.load_userdict(str(path))
        except (UnicodeDecodeError, ValueError) as e:
            raise SpacesError(f"not a jieba user dictionary: {e}", user_dict) from e
    return tokenizer


def words(text: str, user_dict: Path | str | None = None) -> list[str]:
    """jieba tokens with HMM off, as SPACES scores (the user dictionary is loaded once per process)."""
    return list(_jieba(None if user_dict is None else str(user_dict)).cut(text, HMM=False))


# A unit (1 to MAX_UNIT characters) may occur at most MAX_REPEATS times in a row; one more is a
# degenerate loop ("看看看看"). Digits ("10000元") and anonymisation marks ("××××") are not units.
MAX_REPEATS = 3
MAX_UNIT = 20
_NOT_UNITS = set("0123456789０１２３４５６７８９.,×*＊Xx○〇某")
_LOOP = re.compile(f"(?=(.{{1,{MAX_UNIT}}}?)\\1{{{MAX_REPEATS}}})", re.S)


def _is_unit(unit: str) -> bool:
    return bool(unit.strip()) and not set(unit) <= _NOT_UNITS


def repeats_at_end(text: str) -> bool:
    """Whether ``text`` ends with one unit repeated MAX_REPEATS + 1 times."""
    n = MAX_REPEATS + 1
    for size in range(1, min(MAX_UNIT, len(text) // n) + 1):
        unit = text[-size:]
        if text.endswith(unit * n) and _is_unit(unit):
            return True
    return False


def degenerate(text: str) -> bool:
    """Whether any unit occurs MAX_REPEATS + 1 times in a row anywhere in ``text``."""
    return any(_is_unit(m.group(1)) for m in _LOOP.finditer(text))
