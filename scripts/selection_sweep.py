"""What a character budget is worth beside the threshold, measured on an extractor's out-of-fold extracts.

    python scripts/selection_sweep.py EXTRACTOR_DIR [--user-dict F] [--out FILE.json]

Re-selects the clauses of EXTRACTOR_DIR/oof.jsonl (each record's probabilities come from a fold model that
never saw it) at every threshold, with no budget and with each budget of ``spaces.extract.train.BUDGETS``,
exactly as ``extract train --select.tune_budget true`` tunes them; prints the best point of each budget
and the lengths of the extracts it gives beside the references'. No held-out record is read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spaces.config import ExtractConfig, load_config  # noqa: E402
from spaces.extract.tagger import select  # noqa: E402
from spaces.extract.train import BUDGETS, THRESHOLDS  # noqa: E402
from spaces.records import ExtractedRecord, read_records  # noqa: E402
from spaces.rouge import score_texts  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("extractor", type=Path)
    parser.add_argument("--user-dict", default=str(ROOT.parent / "shared" / "cail2020" / "user_dict.txt"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sel = load_config(ExtractConfig, args.extractor / "config.yaml").select
    records = list(read_records(args.extractor / "oof.jsonl", ExtractedRecord))
    memo: dict = {}

    def score(r: ExtractedRecord, chosen: list[int]) -> float:
        key = (r.id, tuple(chosen))
        if key not in memo:
            memo[key] = score_texts("".join(r.sentences[i] for i in chosen), r.reference, "word", args.user_dict)["main"]
        return memo[key]

    def extracts(threshold: float, budget: int | None) -> list[list[int]]:
        s = sel.model_copy(update={"threshold": threshold, "budget": budget})
        return [select(np.array(r.scores), r.sentences, s, r.roles)[0] for r in records]

    rows = []
    for budget in BUDGETS:
        best = max(((statistics.mean(score(r, c) for r, c in zip(records, extracts(t, budget))), t)
                    for t in THRESHOLDS))
        lengths = [sum(len(r.sentences[i]) for i in c) for r, c in zip(records, extracts(best[1], budget))]
        rows.append({"budget": budget, "threshold": best[1], "oof_cail": round(best[0], 4),
                     "chars_median": statistics.median(lengths), "chars_p90": sorted(lengths)[int(0.9 * (len(lengths) - 1))]})
    refs = sorted(len(r.reference) for r in records)
    print(f"{len(records)} out-of-fold extracts of {args.extractor}; references: median {statistics.median(refs)} "
          f"chars, p90 {refs[int(0.9 * (len(refs) - 1))]}")
    print("| budget | best threshold | out-of-fold CAIL | extract chars, median / p90 |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['budget'] or 'none'} | {row['threshold']} | {row['oof_cail']:.4f} | "
              f"{row['chars_median']:.0f} / {row['chars_p90']} |")
    if args.out:
        args.out.write_text(json.dumps({"references_median": statistics.median(refs), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
