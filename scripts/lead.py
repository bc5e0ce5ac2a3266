"""The Lead baseline: the first clauses of each judgment, up to a character budget.

    python scripts/lead.py OUTPUT DOCS [DOCS ...] [--chars 300]

Each DOCS is ``FILE`` or ``FILE:FIELD``, as ``--input`` takes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spaces.config import DataConfig  # noqa: E402
from spaces.records import JsonlWriter, read_documents  # noqa: E402
from spaces.text import split_clauses  # noqa: E402


def lead(text: str, chars: int) -> str:
    out = ""
    for clause in split_clauses(text):
        if out and len(out) + len(clause) > chars:
            break
        out += clause
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output")
    parser.add_argument("docs", nargs="+")
    parser.add_argument("--chars", type=int, default=300)
    args = parser.parse_args()
    with JsonlWriter(args.output) as out:
        for doc in read_documents(args.docs, DataConfig()):
            out.write({"id": doc.id, "summary": lead(doc.text, args.chars)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
