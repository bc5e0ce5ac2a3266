"""How the extractor, the seq2seq generator and the editor grow with data, and what the extractor's features are
worth.

    python scripts/learning_curve.py [--run-dir runs/cail2020] [--sizes 10 20 40 60] [--out runs/learning-curve]
                                     [--no-generator] [--no-editor] [--no-variants]
                                     [--user-dict ../shared/cail2020/user_dict.txt]

Reads the split of `make reproduce-cail` (RUN_DIR/split.json, RUN_DIR/labeled.jsonl: the oracle-labelled
training records) and scores every point on the same held-out records.

1. Learning curve: for each size n, the first n training records after a seeded shuffle (each size holds the
   smaller ones; all of them is the reproduce-cail run itself, whose models are read, not trained again); the extractor trained k-fold with configs/extract.yaml (k = min(5, n)), its out-of-fold CAIL
   (cross-validated on the n) and its held-out CAIL; then the seq2seq generator (configs/generate.yaml) and the
   editor (configs/edit.yaml) on those n out-of-fold extracts, each with its validation CAIL against the
   extract's (its card) and its held-out CAIL.
2. Extractor variants on all training records (same seeds and folds), cross-validated and held out: the
   shipped config without the section-role features, without the position features, with the int8 encoder,
   and with a length budget tuned beside the threshold.

Writes OUT/learning_curve.json (what `make results` puts into README) and OUT/learning_curve.md.
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
sys.path.insert(0, str(ROOT))

from spaces.config import DataConfig  # noqa: E402
from spaces.records import read_documents  # noqa: E402

SPACES = [sys.executable, "-m", "spaces"]
VARIANTS = {
    "shipped": [],
    "without section features": ["--model.section_features", "false"],
    "without position features": ["--model.position_features", "false"],
    "int8 encoder": ["--model.quantize", "int8"],
    "budget tuned beside the threshold": ["--select.tune_budget", "true"],
}


def run(args: list[str]) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT)


def inputs(flag: str, specs: list[str]) -> list[str]:
    return [x for spec in specs for x in (flag, spec)]


def held_out_score(predictions: Path, test: list[str], user_dict: str) -> float:
    metrics = predictions.with_suffix(".metrics.json")
    run([*SPACES, "evaluate", "--predictions", predictions, *inputs("--references", test), "--user-dict", user_dict,
         "--no-faithfulness", "-o", metrics])
    return json.loads(metrics.read_text())["main"]


def extractor_point(labeled: Path, out: Path, test: list[str], user_dict: str, folds: int, extra: list[str],
                    trained: bool = False) -> dict:
    if not trained:
        run([*SPACES, "extract", "train", "-c", "configs/extract.yaml", "-i", labeled, "-o", out, "--data.user_dict",
             user_dict, "--train.folds", folds, *extra])
    card = json.loads((out / "card.json").read_text())
    scores = [f["val_score"] for f in card["fold_scores"]]
    run([*SPACES, "extract", "predict", "-m", out, *inputs("-i", test), "-o", out / "test-extracted.jsonl"])
    lengths = sorted(len(json.loads(line)["extract"]) for line in (out / "test-extracted.jsonl").open(encoding="utf-8"))
    return {"oof_score": card["oof_score"], "threshold": card["threshold"], "budget": card.get("budget"),
            "fold_mean": statistics.mean(scores), "fold_sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "held_out": held_out_score(out / "test-extracted.jsonl", test, user_dict),
            "held_out_chars_median": statistics.median(lengths),
            "held_out_chars_p90": lengths[min(len(lengths) - 1, round(0.9 * (len(lengths) - 1)))]}


def generator_point(config: str, oof: Path, extracted: Path, out: Path, test: list[str], user_dict: str,
                    trained: bool = False) -> dict:
    if not trained:
        run([*SPACES, "generate", "train", "-c", config, "-i", oof, "-o", out, "--data.user_dict", user_dict])
    card = json.loads((out / "card.json").read_text())
    predictions = out / "test-generated.jsonl"
    if not predictions.is_file() or predictions.stat().st_mtime < (out / "card.json").stat().st_mtime:
        run([*SPACES, "generate", "predict", "-m", out / "model-best", "-i", extracted, "-o", predictions])
    return {"validation": card["validation"], "best_epoch": (card["best"] or {}).get("epoch"),
            "seconds": card["seconds"], "held_out": held_out_score(out / "test-generated.jsonl", test, user_dict)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "cail2020")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40, 60])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "learning-curve")
    parser.add_argument("--user-dict", default=str(ROOT.parent / "shared" / "cail2020" / "user_dict.txt"))
    parser.add_argument("--no-generator", action="store_true")
    parser.add_argument("--no-editor", action="store_true")
    parser.add_argument("--no-variants", action="store_true")
    args = parser.parse_args()
    split_file, all_labeled = args.run_dir / "split.json", args.run_dir / "labeled.jsonl"
    if not (split_file.is_file() and all_labeled.is_file()):
        print(f"error: {args.run_dir}: run `make reproduce-cail` first (its split is what every point is scored on)",
              file=sys.stderr)
        return 1
    test = json.loads(split_file.read_text())["test"]
    lines = [line for line in all_labeled.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(42).shuffle(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    held_out = sum(1 for _ in read_documents(test, DataConfig(), need_summary=True))
    result: dict = {"held_out_records": held_out, "curve": [], "variants": {}}
    for n in [n for n in args.sizes if n <= len(lines)]:
        # all the training records: that is the reproduce-cail run itself (same records, configs and held-out)
        whole = n == len(lines) and (args.run_dir / "extractor" / "card.json").is_file()
        d = args.run_dir if whole else args.out / f"n{n}"
        if not whole:
            d.mkdir(exist_ok=True)
            (d / "labeled.jsonl").write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")  # the same every run
        # a point (or variant) an earlier run finished is read back, not trained again (a rerun resumes; a
        # model's held-out predictions are made again only when the model is newer than them)
        point = {"records": n, "folds": min(5, n), "extractor": extractor_point(
            d / "labeled.jsonl", d / "extractor", test, args.user_dict, min(5, n), [],
            trained=whole or (d / "extractor" / "card.json").is_file())}
        for key, config, skip in (("generator", "configs/generate.yaml", args.no_generator),
                                  ("editor", "configs/edit.yaml", args.no_editor)):
            if not skip:
                point[key] = generator_point(config, d / "extractor" / "oof.jsonl",
                                             d / "extractor" / "test-extracted.jsonl", d / key, test, args.user_dict,
                                             trained=(d / key / "card.json").is_file())
        result["curve"].append(point)
        (args.out / "learning_curve.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_variants:
        for name, extra in VARIANTS.items():
            d = args.out / ("variant-" + (extra[0].split(".")[-1] if extra else "shipped"))
            result["variants"][name] = extractor_point(all_labeled, d, test, args.user_dict, 5, extra,
                                                       trained=(d / "card.json").is_file())
            (args.out / "learning_curve.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    (args.out / "learning_curve.md").write_text(report, encoding="utf-8")
    print(report)
    return 0


def markdown(result: dict) -> str:
    n = result["held_out_records"]
    out = [f"Held out: the same {n} records for every point.", "",
           "| training records | extractor, out-of-fold CAIL (per fold mean ± sd) | extractor, held out | "
           "seq2seq generator: validation CAIL vs its extract's | generator, held out | editor: validation CAIL vs "
           "its extract's | editor, held out |", "|---|---|---|---|---|---|---|"]

    def cells(g: dict | None) -> str:
        if g is None:
            return "– | –"
        return f"{g['validation']['generator']:.4f} vs {g['validation']['extract']:.4f} | {g['held_out']:.4f}"

    for p in result["curve"]:
        e = p["extractor"]
        out.append(f"| {p['records']} | {e['oof_score']:.4f} ({e['fold_mean']:.3f} ± {e['fold_sd']:.3f}) | "
                   f"{e['held_out']:.4f} | {cells(p.get('generator'))} | {cells(p.get('editor'))} |")
    if result["variants"]:
        out += ["", "| extractor variant (all training records, same seeds and folds) | out-of-fold CAIL | "
                "per fold mean ± sd | held out | extract chars, median / p90 (held out) |", "|---|---|---|---|---|"]
        for name, e in result["variants"].items():
            budget = f" (threshold {e['threshold']}, budget {e['budget']})" if "budget" in name else ""
            out.append(f"| {name}{budget} | {e['oof_score']:.4f} | {e['fold_mean']:.3f} ± {e['fold_sd']:.3f} | "
                       f"{e['held_out']:.4f} | {e['held_out_chars_median']:.0f} / {e['held_out_chars_p90']} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
