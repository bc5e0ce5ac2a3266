"""Hold out a fixed, seeded sample of records from one or several input files, each kept in its own shape.

    python scripts/split_records.py INPUT [INPUT ...] --out-dir DIR [--test-size 20] [--seed 42]

An INPUT is ``FILE`` or ``FILE:FIELD`` (as ``--input`` takes it). The held-out records are a seeded sample
of all records of all inputs in file order; each file's records go to ``DIR/train/NAME`` and
``DIR/test/NAME`` line for line, so the official shape and the plain one stay as they were. Prints the
``--input`` arguments of both parts and writes them to ``DIR/split.json`` (what scripts/learning_curve.py
reads).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spaces.config import DataConfig  # noqa: E402
from spaces.errors import SpacesError  # noqa: E402
from spaces.records import read_documents, sources  # noqa: E402


def split(inputs: list[str], out_dir: Path, test_size: int, seed: int) -> dict[str, list[str]]:
    """Write the two parts; returns each part's --input values."""
    data = DataConfig()
    files = sources(inputs, data)
    list(read_documents(inputs, data, need_summary=True))  # every record readable, ids unique across the files
    lines = [(k, line) for k, src in enumerate(files)
             for line in Path(src.path).read_text(encoding="utf-8").splitlines(keepends=True) if line.strip()]
    if not 0 < test_size < len(lines):
        raise SpacesError(f"cannot hold out {test_size} of {len(lines)} records", ", ".join(inputs))
    held_out = set(random.Random(seed).sample(range(len(lines)), test_size))
    parts: dict[str, list[str]] = {"train": [], "test": []}
    for part in parts:
        (out_dir / part).mkdir(parents=True, exist_ok=True)
        for k, (spec, src) in enumerate(zip(inputs, files)):
            path = out_dir / part / Path(src.path).name
            chosen = [line for i, (f, line) in enumerate(lines) if f == k and (i in held_out) == (part == "test")]
            path.write_text("".join(chosen), encoding="utf-8")
            parts[part].append(str(path) + spec[len(src.path):])  # the file's own field names, as given
    (out_dir / "split.json").write_text(json.dumps({**parts, "seed": seed}, indent=2) + "\n", encoding="utf-8")
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--test-size", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    try:
        parts = split(args.inputs, args.out_dir, args.test_size, args.seed)
    except SpacesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"held out {args.test_size} records (seed {args.seed})", file=sys.stderr)
    for part, specs in parts.items():
        print(f"{part}: " + " ".join(f"-i {spec}" for spec in specs), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
