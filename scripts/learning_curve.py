"""How the extractor's score grows with data, what its features are worth, and how the generator learns.

    python scripts/learning_curve.py [--cail-dir ../shared/cail2020] [--sizes 5 10 15 20] [--out runs/learning-curve]
                                     [--run-dir runs/cail2020]

1. Learning curve: for each size n, the first n records (after a seeded shuffle) are oracle-labelled and the
   extractor is trained k-fold with configs/extract.yaml (k = min(5, n)); the out-of-fold extract CAIL score
   and its spread over the folds are recorded.
2. A/B on all records, cross-validated (same seeds, same folds): the shipped config against it without the
   section-role features, without the position features, and with the int8 encoder.
3. A/B on the held-out records of `make reproduce-cail`'s split (RUN_DIR/train.jsonl -> RUN_DIR/test.jsonl):
   the same variants trained on the 15 and scored on the 5.
4. The generator's curve: validation CAIL of the EMA and raw weights by epoch, read from RUN_DIR's generator card.

Writes OUT/learning_curve.json and OUT/learning_curve.md.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACES = [sys.executable, "-m", "spaces"]
VARIANTS = {
    "shipped (positions + sections)": [],
    "without section features": ["--model.section_features", "false"],
    "without position features": ["--model.position_features", "false"],
    "int8 encoder": ["--model.quantize", "int8"],
}


def run(args: list[str]) -> None:
    subprocess.run(args, check=True, cwd=ROOT)


def train(labeled: Path, out: Path, user_dict: str, folds: int, extra: list[str]) -> dict:
    run([*SPACES, "extract", "train", "-c", "configs/extract.yaml", "-i", str(labeled), "-o", str(out),
         "--data.user_dict", user_dict, "--train.folds", str(folds), *extra])
    card = json.loads((out / "card.json").read_text())
    scores = [f["val_score"] for f in card["fold_scores"]]
    return {"oof_score": card["oof_score"], "threshold": card["threshold"], "fold_mean": statistics.mean(scores),
            "fold_sd": statistics.stdev(scores) if len(scores) > 1 else 0.0, "fold_min": min(scores),
            "fold_max": max(scores)}


def held_out(run_dir: Path, out: Path, user_dict: str, extra: list[str]) -> float:
    labeled = out / "labeled.jsonl"
    if not labeled.exists():
        run([*SPACES, "extract", "oracle", "-i", str(run_dir / "train.jsonl"), "-o", str(labeled),
             "--data.user_dict", user_dict])
    model = out / ("extractor-" + (extra[0].split(".")[-1] if extra else "shipped"))
    run([*SPACES, "extract", "train", "-c", "configs/extract.yaml", "-i", str(labeled), "-o", str(model),
         "--data.user_dict", user_dict, *extra])
    run([*SPACES, "extract", "predict", "-m", str(model), "-i", str(run_dir / "test.jsonl"),
         "-o", str(model / "test-extracted.jsonl")])
    run([*SPACES, "evaluate", "--predictions", str(model / "test-extracted.jsonl"), "--references",
         str(run_dir / "test.jsonl"), "--user-dict", user_dict, "--no-faithfulness", "-o", str(model / "metrics.json")])
    return json.loads((model / "metrics.json").read_text())["main"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cail-dir", type=Path, default=ROOT.parent / "shared" / "cail2020")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 15, 20])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "learning-curve")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "cail2020")
    args = parser.parse_args()
    lines = [line for line in (args.cail_dir / "train.json").read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(42).shuffle(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    user_dict = str(args.cail_dir / "user_dict.txt")
    result: dict = {"curve": [], "cross_validated": {}, "held_out": {}, "generator": []}
    labeled = {}
    for n in args.sizes:
        d = args.out / f"n{n}"
        d.mkdir(exist_ok=True)
        (d / "docs.jsonl").write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
        run([*SPACES, "extract", "oracle", "-i", str(d / "docs.jsonl"), "-o", str(d / "labeled.jsonl"),
             "--data.user_dict", user_dict])
        labeled[n] = d / "labeled.jsonl"
        result["curve"].append({"records": n, "folds": min(5, n),
                                **train(labeled[n], d / "extractor", user_dict, min(5, n), [])})
    n = max(args.sizes)
    for name, extra in VARIANTS.items():
        result["cross_validated"][name] = (result["curve"][-1] if not extra else
                                           train(labeled[n], args.out / f"n{n}-{extra[0].split('.')[-1]}",
                                                 user_dict, min(5, n), extra))
    if (args.run_dir / "train.jsonl").is_file():
        held = args.out / "held-out"
        held.mkdir(exist_ok=True)
        for name, extra in VARIANTS.items():
            result["held_out"][name] = held_out(args.run_dir, held, user_dict, extra)
    card = args.run_dir / "generator" / "card.json"
    if card.is_file():
        result["generator"] = json.loads(card.read_text())["history"]
    (args.out / "learning_curve.json").write_text(json.dumps(result, indent=2) + "\n")
    report = ["# Learning curves", "", "## Extractor: out-of-fold extract CAIL (word level) by training records", "",
              "| records | folds | out-of-fold CAIL | per-fold mean ± sd (min–max) |", "|---|---|---|---|"]
    report += [f"| {e['records']} | {e['folds']} | {e['oof_score']:.4f} | {e['fold_mean']:.3f} ± {e['fold_sd']:.3f} "
               f"({e['fold_min']:.3f}–{e['fold_max']:.3f}) |" for e in result["curve"]]
    report += ["", f"## Extractor variants ({n} records, 5-fold cross-validated; held-out: trained on the split's "
               "training records, scored on its held-out ones)", "",
               "| variant | out-of-fold CAIL | per-fold mean ± sd | held-out CAIL |", "|---|---|---|---|"]
    for name, e in result["cross_validated"].items():
        held = result["held_out"].get(name)
        report.append(f"| {name} | {e['oof_score']:.4f} | {e['fold_mean']:.3f} ± {e['fold_sd']:.3f} | "
                      f"{'–' if held is None else f'{held:.4f}'} |")
    if result["generator"]:
        report += ["", "## Generator: by epoch (validation records of its card)", "",
                   "| epoch | training loss | validation CAIL (EMA) | validation CAIL (raw) |", "|---|---|---|---|"]
        report += [f"| {h['epoch']} | {h['loss']:.3f} | {h.get('val_ema', '–')} | {h.get('val_raw', '–')} |"
                   for h in result["generator"] if "val_raw" in h]
    (args.out / "learning_curve.md").write_text("\n".join(report) + "\n", encoding="utf-8")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
