"""Point a summarize config at whichever trained generator validated best (by its card), without a hand edit.

    python scripts/choose_generator.py CONFIG MODEL_DIR [MODEL_DIR ...]

Each MODEL_DIR is a generator's ``model-best/`` (the seq2seq generator's, the editor's): its card's
``validation.generator`` is its CAIL on the records it held out, beside ``validation.extract``, the extract's on
the same records (the same seed and share hold out the same records for every kind). CONFIG's ``generator:``
line is rewritten to the best one, relative to CONFIG's folder; ``use_generator: auto`` still prints the extract
unless that generator beat it. Prints what it chose and why.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("model_dirs", type=Path, nargs="+")
    args = parser.parse_args()
    scores = {}
    for d in args.model_dirs:
        card = d / "card.json"
        if not card.is_file():
            print(f"error: {d}: no card.json (train it with 'spaces generate train')", file=sys.stderr)
            return 1
        validation = json.loads(card.read_text(encoding="utf-8"))["validation"]
        if not validation:
            print(f"error: {d}: its card has no validation scores (trained with train.validation 0)", file=sys.stderr)
            return 1
        scores[d] = (validation["generator"], validation["extract"])
    best = max(scores, key=lambda d: scores[d][0])
    text = args.config.read_text(encoding="utf-8")
    relative = os.path.relpath(best.resolve(), args.config.resolve().parent)
    line = f"generator: {relative}"
    if not re.search(r"(?m)^generator:.*$", text):
        print(f"error: {args.config}: no 'generator:' line to point at {best}", file=sys.stderr)
        return 1
    new = re.sub(r"(?m)^generator:.*$", line, text, count=1)
    if new != text:
        tmp = args.config.with_name(args.config.name + ".partial")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(args.config)
    for d, (generator, extract) in scores.items():
        mark = "chosen" if d == best else "      "
        print(f"{mark} {d}: validation CAIL {generator:.4f} vs the extract's {extract:.4f}")
    beats = scores[best][0] > scores[best][1]
    print(f"{args.config}: {line} (summarize auto prints its summaries: {'yes' if beats else 'no, the extract'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
