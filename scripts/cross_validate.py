"""Cross-validate a generator (the editor, or the seq2seq generator) over out-of-fold extracts.

    python scripts/cross_validate.py OOF --config configs/edit.yaml --out DIR --references FILE... \
        [--folds 5] [--seed 42] [--user-dict ../shared/cail2020/user_dict.txt] [-- --train.patience 0 ...]

OOF is the extractor's oof.jsonl of `make cv-cail` (every record's extract from a model trained without it).
The records are dealt into FOLDS seeded folds; for each, a generator is trained (`spaces generate train`
with CONFIG) on the other folds' records and summarizes this fold's extracts. Every record is then scored
once, by a model that never saw its summary (its extract came from extractor folds that did see the other
records' summaries, as in any k-fold pipeline). Writes DIR/summaries.jsonl, DIR/metrics.json (`spaces
evaluate`) and DIR/cv.json: the mean, each fold's mean, their spread, and the extract's figures beside them.
A rerun skips the folds already trained. Arguments after `--` are dotted overrides for every fold's
`spaces generate train` and `predict` (a recipe cross-validated without editing its config; a `decode.`
override on a rerun re-decodes the models already trained).
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


def run(args: list) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT)


def fold_score(rows: list[dict], ids: set[str]) -> float:
    scores = [r["main"] for r in rows if r["id"] in ids]
    return sum(scores) / len(scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("oof", type=Path)
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--references", nargs="+", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--user-dict", default=str(ROOT.parent / "shared" / "cail2020" / "user_dict.txt"))
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, overrides = parser.parse_args(argv[:cut]), argv[cut + 1:]
    lines = [line for line in args.oof.read_text(encoding="utf-8").splitlines() if line.strip()]
    order = list(range(len(lines)))
    random.Random(args.seed).shuffle(order)
    folds = [sorted(order[k::args.folds]) for k in range(args.folds)]
    args.out.mkdir(parents=True, exist_ok=True)
    summaries = []
    for k, held in enumerate(folds):
        d = args.out / f"fold-{k}"
        d.mkdir(exist_ok=True)
        held_set = set(held)
        (d / "train.jsonl").write_text("".join(lines[i] + "\n" for i in range(len(lines)) if i not in held_set),
                                       encoding="utf-8")
        (d / "test.jsonl").write_text("".join(lines[i] + "\n" for i in held), encoding="utf-8")
        if not (d / "model" / "card.json").is_file():
            run([*SPACES, "generate", "train", "-c", args.config, "-i", d / "train.jsonl", "-o", d / "model",
                 "--data.user_dict", args.user_dict, *overrides])
        run([*SPACES, "generate", "predict", "-m", d / "model" / "model-best", "-i", d / "test.jsonl",
             "-o", d / "summaries.jsonl", *overrides])
        summaries += (d / "summaries.jsonl").read_text(encoding="utf-8").splitlines()
    (args.out / "summaries.jsonl").write_text("\n".join(summaries) + "\n", encoding="utf-8")
    refs = [x for r in args.references for x in ("--references", r)]
    result: dict = {"records": len(lines), "folds": args.folds, "config": args.config, "overrides": overrides}
    for name, predictions in (("generator", args.out / "summaries.jsonl"), ("extract", args.oof)):
        per_doc = args.out / f"per-document-{name}.jsonl"
        run([*SPACES, "evaluate", "--predictions", predictions, *refs, "--user-dict", args.user_dict,
             "-o", args.out / f"metrics-{name}.json", "--per-document", per_doc])
        rows = [json.loads(line) for line in per_doc.read_text(encoding="utf-8").splitlines() if line.strip()]
        ids = [{json.loads(lines[i])["id"] for i in held} for held in folds]
        per_fold = [fold_score(rows, f) for f in ids]
        metrics = json.loads((args.out / f"metrics-{name}.json").read_text(encoding="utf-8"))
        result[name] = {"main": metrics["main"], "per_fold": per_fold, "fold_mean": statistics.mean(per_fold),
                        "fold_sd": statistics.stdev(per_fold), "faithfulness": metrics.get("faithfulness")}
    gains = [g - e for g, e in zip(result["generator"]["per_fold"], result["extract"]["per_fold"])]
    result["gain"] = {"mean": result["generator"]["main"] - result["extract"]["main"], "per_fold": gains,
                      "folds_above_extract": sum(g > 0 for g in gains)}
    (args.out / "cv.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
