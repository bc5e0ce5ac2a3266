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


def split_clauses(text: str, max_clauses: int | None = None) -> list[str]:
    """Cut a text into SPACES clauses (DESIGN.md): per line, after every run of ``。；：，``.

    Each clause is stripped; empty ones are dropped; with ``max_clauses`` only the last ones are kept
    (SPACES keeps the end of a long judgment, where the holding is).
    """
    clauses = [c.strip() for line in text.split("\n") for c in _CLAUSE.findall(line)]
    clauses = [c for c in clauses if c]
    if max_clauses is not None and len(clauses) > max_clauses:
        clauses = clauses[-max_clauses:]
    return clauses


@lru_cache(maxsize=None)
def _jieba(user_dict: str | None):
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    if user_dict is not None:
        path = Path(user_dict)
        if not path.is_file():
            raise SpacesError("user dictionary not found", user_dict)
        try:
            tokenizer.load_userdict(str(path))
        except (UnicodeDecodeError, ValueError) as e:
            raise SpacesError(f"not a jieba user dictionary: {e}", user_dict) from None
    return tokenizer


def words(text: str, user_dict: Path | str | None = None) -> list[str]:
    """jieba tokens with HMM off, as SPACES scores (the user dictionary is loaded once per process)."""
    return list(_jieba(None if user_dict is None else str(user_dict)).cut(text, HMM=False))
