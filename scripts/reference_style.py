"""How a set of reference summaries writes what the editor's realization rules touch: the parties (原被告,
原告与被告, 原告被告) and statute titles (with or without 中华人民共和国) — what `decode.join_parties` assumes.

    python scripts/reference_style.py FILE[:TEXT_FIELD]... [--summary-field summary]

Each FILE is read as `spaces` reads references (CAIL's `text: [{sentence, label}]` or `{id, source,
summary}`; `:source` names the text field of a file where it differs). Prints one line per question, as
counts over the summaries.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spaces.config import DataConfig  # noqa: E402
from spaces.records import read_documents  # noqa: E402

_FULL_TITLE = re.compile(r"《中华人民共和国[^《》]*》")
_SHORT_LAW = re.compile(r"《(?!中华人民共和国)[^《》]*法》")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--summary-field", default="summary")
    args = parser.parse_args()
    data = DataConfig(summary_field=args.summary_field)
    summaries = [d.summary for d in read_documents(args.files, data, need_text=False, need_summary=True)]
    n = len(summaries)
    print(f"{n} reference summaries")
    for form in ("原被告", "原告与被告", "原告被告"):
        print(f"  the parties as {form}: in {sum(form in s for s in summaries)} of {n}")
    full = sum(len(_FULL_TITLE.findall(s)) for s in summaries)
    short = sum(len(_SHORT_LAW.findall(s)) for s in summaries)
    print(f"  statute titles with 中华人民共和国: {full}; laws cited without it (《…法》): {short}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
