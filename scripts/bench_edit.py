"""Editor decoding against the seq2seq generator's beam search: seconds per document, same extracts, same run.

    python scripts/bench_edit.py [--run-dir runs/cail2020] [--repeat 3]

Loads the two models `make reproduce-cail` trained (RUN_DIR/editor/model-best, RUN_DIR/generator/model-best)
and summarizes the held-out extracts (RUN_DIR/test-extracted.jsonl) in process with each, at each model's
own decode settings and batch size, best of REPEAT passes. The editor is one encoder pass per window; the
generator runs beam search over its KV cache. Target: the editor >= 50x faster per document. Also: the
editor's windows and tokens, and two ways to a faster encoder pass, each with how many summaries it changes
and its held-out CAIL beside fp32's: `decode.mixed_precision: bf16` (fast only where the hardware has bf16)
and the encoder exported to ONNX Runtime's dynamic int8 (the extractor's `model.quantize: int8`; not an
editor option).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers.modeling_outputs import BaseModelOutput  # noqa: E402

from spaces.extract.encoders import Int8Encoder  # noqa: E402
from spaces.generate.data import read_extracted  # noqa: E402
from spaces.generate.predict import generator_config, load_generator, summarize_records  # noqa: E402
from spaces.rouge import score_texts  # noqa: E402


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


class OnnxInt8(torch.nn.Module):
    """Stands in for the editor's encoder: its hidden states from ONNX Runtime's dynamic int8 export of it."""

    def __init__(self, encoder, tokenizer, path: Path):
        super().__init__()
        self.config, self.int8 = encoder.config, Int8Encoder(encoder, tokenizer, path)

    def forward(self, input_ids, attention_mask, return_dict=True):
        return BaseModelOutput(last_hidden_state=self.int8(input_ids, attention_mask))


def cail(summaries: list[str], records: list, user_dict) -> float:
    return float(np.mean([score_texts(s, r.reference, "word", user_dict)["main"] for s, r in zip(summaries, records)]))


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
    records = list(read_extracted(extracts, need_reference=True))
    chars = sum(len(r.extract) for r in records) / len(records)
    edit_config, beam_config = generator_config(editor), generator_config(generator)
    model = load_generator(editor, edit_config)
    edit, summaries = seconds_per_document(model, edit_config, records, args.repeat)
    windows, tokens = windows_and_tokens(model, records)
    bf16_config = edit_config.model_copy(update={"decode": edit_config.decode.model_copy(
        update={"mixed_precision": "bf16"})})
    bf16, bf16_summaries = seconds_per_document(model, bf16_config, records, args.repeat)
    fp32_encoder = model.encoder
    with tempfile.TemporaryDirectory() as tmp:
        model.encoder = OnnxInt8(fp32_encoder, model.tokenizer, Path(tmp) / "editor-int8.onnx")
        int8, int8_summaries = seconds_per_document(model, edit_config, records, args.repeat)
    model.encoder = fp32_encoder
    user_dict = edit_config.data.user_dict
    beam, _ = seconds_per_document(load_generator(generator, beam_config), beam_config, records, args.repeat)
    print(f"{len(records)} extracts, {chars:.0f} characters on average; {torch.get_num_threads()} threads")
    print(f"editor (one encoder pass per window): {edit * 1000:.1f} ms per document "
          f"({windows} windows, {tokens} tokens)")
    print(f"  decode.mixed_precision bf16:         {bf16 * 1000:.1f} ms per document, x{edit / bf16:.2f}; "
          f"{sum(a != b for a, b in zip(summaries, bf16_summaries))}/{len(records)} summaries differ from fp32 "
          f"(this CPU {'has' if bf16_native() else 'lacks'} native bf16); held-out CAIL "
          f"{cail(bf16_summaries, records, user_dict):.4f} against fp32 {cail(summaries, records, user_dict):.4f}")
    print(f"  ONNX Runtime int8 encoder:           {int8 * 1000:.1f} ms per document, x{edit / int8:.2f}; "
          f"{sum(a != b for a, b in zip(summaries, int8_summaries))}/{len(records)} summaries differ from fp32; "
          f"held-out CAIL {cail(int8_summaries, records, user_dict):.4f}")
    print(f"seq2seq generator (beam search):      {beam * 1000:.1f} ms per document")
    print(f"editor speed-up: x{beam / edit:.1f} (target >= 50x); with bf16 x{beam / bf16:.1f}, "
          f"with int8 x{beam / int8:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
