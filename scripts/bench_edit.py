"""Editor decoding against the seq2seq generator's beam search: seconds per document, same extracts, same run.

    python scripts/bench_edit.py [--run-dir runs/cail2020] [--repeat 3]

Loads the two models `make reproduce-cail` trained (RUN_DIR/editor/model-best, RUN_DIR/generator/model-best)
and summarizes the held-out extracts (RUN_DIR/test-extracted.jsonl) in process with each, at each model's
own decode settings and batch size, best of REPEAT passes. The editor is one encoder pass per window; the
generator runs beam search over its KV cache. Target: the editor >= 50x faster per document.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from spaces.generate.data import read_extracted  # noqa: E402
from spaces.generate.predict import generator_config, load_generator, summarize_records  # noqa: E402


def seconds_per_document(model_dir: Path, records: list, repeat: int) -> float:
    config = generator_config(model_dir)
    model = load_generator(model_dir, config)
    size = config.decode.batch_size
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeat):
            start = time.perf_counter()
            for i in range(0, len(records), size):
                summarize_records(model, records[i:i + size], config)
            best = min(best, time.perf_counter() - start)
    return best / len(records)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "cail2020")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    editor, generator = args.run_dir / "editor" / "model-best", args.run_dir / "generator" / "model-best"
    extracts = args.run_dir / "test-extracted.jsonl"
    missing = [p for p in (editor, generator, extracts) if not p.exists()]
    if missing:
        print(f"error: {missing[0]}: run `make reproduce-cail` first (this bench times its models)", file=sys.stderr)
        return 1
    records = list(read_extracted(extracts, need_reference=False))
    chars = sum(len(r.extract) for r in records) / len(records)
    edit = seconds_per_document(editor, records, args.repeat)
    beam = seconds_per_document(generator, records, args.repeat)
    print(f"{len(records)} extracts, {chars:.0f} characters on average; {torch.get_num_threads()} threads")
    print(f"editor (one encoder pass per window): {edit * 1000:.1f} ms per document")
    print(f"seq2seq generator (beam search):      {beam * 1000:.1f} ms per document")
    ratio = beam / edit
    print(f"editor speed-up: x{ratio:.1f} (target >= 50x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
