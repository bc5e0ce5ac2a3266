"""How the extractor's cross-validated score grows with training records, and how the generator learns.

    python scripts/learning_curve.py [--cail-dir ../shared/cail2020] [--sizes 5 10 15 20] [--out runs/learning-curve]

For each size n: the first n records (after a seeded shuffle) are oracle-labelled and the extractor is
trained k-fold with configs/extract.yaml (k = min(5, n)); the out-of-fold extract CAIL score is
recorded. The generator's curve is read from the card of the generator `make reproduce-cail` trained:
validation CAIL by epoch against its training loss. Writes OUT/learning_curve.md and .json.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACES = [sys.executable, "-m", "spaces"]


def run(args: list[str]) -> None:
    subprocess.run(args, check=True, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cail-dir", type=Path, default=ROOT.parent / "shared" / "cail2020")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 15, 20])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "learning-curve")
    parser.add_argument("--generator", type=Path, default=ROOT / "runs" / "cail2020" / "generator" / "card.json")
    args = parser.parse_args()
    lines = [l for l in (args.cail_dir / "train.json").read_text(encoding="utf-8").splitlines() if l.strip()]
    random.Random(42).shuffle(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    user_dict = str(args.cail_dir / "user_dict.txt")
    extractor = []
    for n in args.sizes:
        d = args.out / f"n{n}"
        d.mkdir(exist_ok=True)
        (d / "docs.jsonl").write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
        run([*SPACES, "extract", "oracle", "-i", str(d / "docs.jsonl"), "-o", str(d / "labeled.jsonl"),
             "--data.user_dict", user_dict])
        run([*SPACES, "extract", "train", "-c", "configs/extract.yaml", "-i", str(d / "labeled.jsonl"),
             "-o", str(d / "extractor"), "--data.user_dict", user_dict, "--train.folds", str(min(5, n))])
        card = json.loads((d / "extractor" / "card.json").read_text())
        extractor.append({"records": n, "folds": card["folds"], "oof_score": card["oof_score"],
                          "threshold": card["threshold"]})
    report = ["# Learning curves", "", "## Extractor: out-of-fold extract CAIL (word level) by training records", "",
              "| records | folds | out-of-fold CAIL | threshold |", "|---|---|---|---|"]
    report += [f"| {e['records']} | {e['folds']} | {e['oof_score']:.4f} | {e['threshold']} |" for e in extractor]
    generator = []
    if args.generator.is_file():
        card = json.loads(args.generator.read_text())
        generator = [h for h in card["history"] if h["val_score"] is not None]
        report += ["", f"## Generator (from scratch, {card['data']['train']} training records): by epoch", "",
                   "| epoch | training loss | validation CAIL |", "|---|---|---|"]
        report += [f"| {h['epoch']} | {h['loss']:.3f} | {h['val_score']:.4f} |" for h in generator]
    (args.out / "learning_curve.json").write_text(json.dumps({"extractor": extractor, "generator": generator},
                                                             indent=2) + "\n")
    (args.out / "learning_curve.md").write_text("\n".join(report) + "\n", encoding="utf-8")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
