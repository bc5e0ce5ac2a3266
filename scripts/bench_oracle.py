"""Oracle labelling: spaces vs the plain rouge-chinese reference, one process, same run.

    python scripts/bench_oracle.py [--cail-dir ../shared/cail2020]

Prints one line per implementation and the speed-up; exits 1 if any label differs.
Target: identical labels, >= 20x faster on the 20 shared CAIL2020 records.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.cail import CAIL_DIR, cail_documents  # noqa: E402

from spaces.extract.oracle import oracle_labels  # noqa: E402
from spaces.text import split_clauses  # noqa: E402
from spaces.reference import reference_oracle  # noqa: E402


def load(cail_dir: Path) -> tuple[str, list[tuple[list[str], list[str]]]]:
    path, documents = cail_documents(cail_dir)
    return str(path), [(split_clauses(d.text, 256), split_clauses(d.summary or "")) for d in documents]


def timed(fn, pairs):
    start = time.perf_counter()
    labels = [fn(clauses, summary) for clauses, summary in pairs]
    return time.perf_counter() - start, labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cail-dir", type=Path, default=CAIL_DIR)
    args = parser.parse_args()
    source, pairs = load(args.cail_dir)
    timed(oracle_labels, pairs[:2])  # warm up imports and caches
    fast_s, fast = timed(oracle_labels, pairs)
    ref_s, ref = timed(reference_oracle, pairs)
    same = fast == ref
    n = len(pairs)
    print(f"bench_oracle: {n} records from {source}")
    print(f"  reference (rouge-chinese): {ref_s:8.3f} s  ({ref_s / n * 1000:7.1f} ms/record)")
    print(f"  spaces                   : {fast_s:8.3f} s  ({fast_s / n * 1000:7.1f} ms/record)")
    print(f"  speed-up {ref_s / fast_s:.1f}x (target >= 20x); labels identical: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
