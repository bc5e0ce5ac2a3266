"""Split a JSONL file into train and held-out test records, reproducibly (by seed, in file order).

    python scripts/split_records.py INPUT --train TRAIN --test TEST [--test-size 5] [--seed 42]
"""

from __future__ import annotations

import argparse
import random
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input")
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--test-size", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    with open(args.input, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    if not 0 < args.test_size < len(lines):
        print(f"error: {args.input}: cannot hold out {args.test_size} of {len(lines)} records", file=sys.stderr)
        return 1
    held_out = set(random.Random(args.seed).sample(range(len(lines)), args.test_size))
    with open(args.train, "w", encoding="utf-8") as train, open(args.test, "w", encoding="utf-8") as test:
        for i, line in enumerate(lines):
            (test if i in held_out else train).write(line)
    print(f"split {len(lines)} records: {len(lines) - args.test_size} train, {args.test_size} held out", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
