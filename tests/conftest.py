import json
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
JUDGMENTS = FIXTURES / "judgments.jsonl"
USER_DICT = FIXTURES / "user_dict.txt"
CAIL_DIR = HERE.parent.parent / "shared" / "cail2020"


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def cail_records():
    """The 20 real CAIL2020 records, read in place (never copied into the repo)."""
    path = CAIL_DIR / "train.json"
    if not path.is_file():
        pytest.skip(f"real CAIL2020 sample not found at {path} (it lives in ../shared/cail2020)")
    return read_jsonl(path)


@pytest.fixture(scope="session")
def cail_user_dict():
    path = CAIL_DIR / "user_dict.txt"
    if not path.is_file():
        pytest.skip(f"CAIL2020 user dictionary not found at {path}")
    return path


def document_text(record):
    return "\n".join(s["sentence"] for s in record["text"])
