"""How far the editor is from the edits its held-out extracts need: the extract, the editor's summaries, and the
extract edited exactly as its alignment with the reference says (deletions only, then with the insertions).

    python scripts/edit_headroom.py [--run-dir runs/cail2020] [--user-dict ../shared/cail2020/user_dict.txt]

Reads RUN_DIR/test-extracted.jsonl (with references) and RUN_DIR/editor/model-best, as `make reproduce-cail`
leaves them. The aligned edits use the editor's own units, so the gap between them and the editor is the
tagger's, not the realization's. Also: the share of the extracts' units the alignment deletes, the editor's
precision and recall on those deletions at its calibrated threshold, and how many of its short cuts inside
kept text (those `decode.keep_short_gaps` puts back) the alignment makes too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spaces.generate.data import read_extracted  # noqa: E402
from spaces.generate.edit import alignment_tags, realize, short_gaps  # noqa: E402
from spaces.generate.editor import realization, tag_records  # noqa: E402
from spaces.generate.predict import generator_config, load_generator  # noqa: E402
from spaces.rouge import score_texts  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "cail2020")
    parser.add_argument("--user-dict", default=str(ROOT.parent / "shared" / "cail2020" / "user_dict.txt"))
    args = parser.parse_args()
    editor, extracts = args.run_dir / "editor" / "model-best", args.run_dir / "test-extracted.jsonl"
    if not (editor.is_dir() and extracts.is_file()):
        print(f"error: {args.run_dir}: run `make reproduce-cail` first", file=sys.stderr)
        return 1
    records = list(read_extracted(extracts, need_reference=True))
    config = generator_config(editor)
    model = load_generator(editor, config)
    threshold = float(model.keep_threshold)
    scores: dict[str, list[float]] = {"extract": [], "editor": [], "aligned deletions": [],
                                      "aligned deletions and insertions": []}
    gold_deleted = deleted = both = units = cuts = right_cuts = 0
    style = realization(config.decode)
    for record, tagged in zip(records, tag_records(model, records)):
        tags = alignment_tags(record.extract, tagged.units, record.reference)
        texts = {"extract": record.extract, "editor": tagged.summary(threshold, style),
                 "aligned deletions": realize(record.extract, tagged.units, tags.keep, [""] * len(tagged.units)),
                 "aligned deletions and insertions": realize(record.extract, tagged.units, tags.keep, tags.insert)}
        for name, text in texts.items():
            scores[name].append(score_texts(text, record.reference, "word", args.user_dict)["main"])
        predicted = [p <= threshold for p in tagged.keep]
        gold = [not k for k in tags.keep]
        units += len(gold)
        gold_deleted += sum(gold)
        deleted += sum(predicted)
        both += sum(p and g for p, g in zip(predicted, gold))
        for i, j in short_gaps(record.extract, tagged.units, [not p for p in predicted], style.short_gaps):
            cuts += 1
            right_cuts += 2 * sum(gold[i:j]) > j - i
    print(f"{len(records)} held-out extracts of {args.run_dir}; CAIL, word level:")
    for name, values in scores.items():
        print(f"  {name:34s} {statistics.mean(values):.4f}")
    print(f"the alignment deletes {gold_deleted / units:.1%} of the extracts' units; the editor (threshold "
          f"{threshold:.2f}) deletes {deleted / units:.1%}: precision {both / max(1, deleted):.3f}, "
          f"recall {both / max(1, gold_deleted):.3f}")
    print(f"its cuts of at most {style.short_gaps} characters inside kept text (decode.keep_short_gaps puts them "
          f"back): {cuts}, of which the alignment makes {right_cuts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
