"""Editor decoding against the seq2seq generator's beam search: seconds per document, same extracts, same run.

    python scripts/bench_edit.py [--run-dir runs/cail2020] [--repeat 3]

Loads the two models `make reproduce-cail` trained (RUN_DIR/editor/model-best, RUN_DIR/generator/model-best)
and summarizes the held-out extracts (RUN_DIR/test-extracted.jsonl) in process with each, at each model's
own decode settings and batch size, best of REPEAT passes. The editor is one encoder pass per window; the
generator runs beam search over its KV cache. Target: the editor >= 50x faster per document. Also: the
editor's windows and tokens, and the editor with `decode.mixed_precision: bf16` (how much faster, how many
summaries it changes; fast only where the hardware has bf16).
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


def seconds_per_document(model, config, records: list, repeat: int) -> tuple[float, list[str]]:
    """Best of ``repeat`` passes, per document, and the summaries."""
    size = config.decode.batch_size
    best, out = float("inf"), []
    with torch.inference_mode():
        for _ in range(repeat):
            start = time.perf_counter()
            out = [s for i in range(0, len(records), size) for s in summarize_records(model, records[i:i + size], config)]
            best = min(best, time.perf_counter() - start)
    return best / len(records), out


def bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN: avx512_bf16 or AMX); elsewhere bf16 is emulated."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def windows_and_tokens(model, records: list) -> tuple[int, int]:
    """The editor's windows and their tokens: what its encoder computes (each window alone, unpadded)."""
    lengths = [len(w.ids) for r in records for w in model.windows(r.extract)]
    return len(lengths), sum(lengths)


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
    edit_config, beam_config = generator_config(editor), generator_config(generator)
    model = load_generator(editor, edit_config)
    edit, summaries = seconds_per_document(model, edit_config, records, args.repeat)
    windows, tokens = windows_and_tokens(model, records)
    bf16_config = edit_config.model_copy(update={"decode": edit_config.decode.model_copy(
        update={"mixed_precision": "bf16"})})
    bf16, bf16_summaries = seconds_per_document(model, bf16_config, records, args.repeat)
    beam, _ = seconds_per_document(load_generator(generator, beam_config), beam_config, records, args.repeat)
    print(f"{len(records)} extracts, {chars:.0f} characters on average; {torch.get_num_threads()} threads")
    print(f"editor (one encoder pass per window): {edit * 1000:.1f} ms per document "
          f"({windows} windows, {tokens} tokens)")
    print(f"  decode.mixed_precision bf16:         {bf16 * 1000:.1f} ms per document, x{edit / bf16:.2f}; "
          f"{sum(a != b for a, b in zip(summaries, bf16_summaries))}/{len(records)} summaries differ from fp32 "
          f"(this CPU {'has' if bf16_native() else 'lacks'} native bf16)")
    print(f"seq2seq generator (beam search):      {beam * 1000:.1f} ms per document")
    print(f"editor speed-up: x{beam / edit:.1f} (target >= 50x); with bf16 x{beam / bf16:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
