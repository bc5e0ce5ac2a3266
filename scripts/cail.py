"""The judgments the benches measure on: the shared CAIL2020 records (``../shared/cail2020/train.json``),
read by ``read_documents`` as every stage reads them, or the project's fixture judgments (with a note) where
the shared folder is absent."""

from __future__ import annotations

import sys
from pathlib import Path

from spaces.config import DataConfig
from spaces.records import Document, read_documents

ROOT = Path(__file__).resolve().parent.parent
CAIL_DIR = ROOT.parent / "shared" / "cail2020"
FIXTURES = ROOT / "tests" / "fixtures" / "judgments.jsonl"


def cail_documents(cail_dir: Path = CAIL_DIR, name: str = "train.json") -> tuple[Path, list[Document]]:
    """The file read and its documents (each with its reference summary)."""
    path = cail_dir / name
    if not path.is_file():
        print(f"note: {path} not found; using the project's own fixture judgments", file=sys.stderr)
        path = FIXTURES
    return path, list(read_documents(path, DataConfig()))
