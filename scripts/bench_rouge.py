"""ROUGE scoring: spaces vs rouge-chinese, numbers compared, ratios measured in the same run.

    python scripts/bench_rouge.py [--cail-dir ../shared/cail2020] [--pairs 500]

1. PAIRS pairs of ~300-character texts (windows of judgments against their summaries), word and char
   unit. "scoring" times both on the same space-joined tokens; "end to end" adds jieba for both.
2. One 3,000-character pair at char level (rouge-chinese's dict LCS table: seconds and GBs), its peak
   memory measured in a child process from the OS.
Targets: >= 10x faster on the pairs with equal numbers; the long pair in < 0.1 s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.cail import CAIL_DIR, cail_documents  # noqa: E402

from spaces.rouge import Profile, rouge, rouge_tokens, tokenize  # noqa: E402
from spaces.text import words  # noqa: E402
from spaces.reference import reference_spaced  # noqa: E402

KEYS = ("rouge-1", "rouge-2", "rouge-l")


def load_texts(cail_dir: Path) -> tuple[list[str], list[str]]:
    _, documents = cail_documents(cail_dir)
    return [d.text for d in documents], [d.summary or "" for d in documents]


def make_pairs(docs: list[str], summaries: list[str], n: int, size: int = 300) -> list[tuple[str, str]]:
    pairs, k = [], 0
    while len(pairs) < n:
        doc = docs[k % len(docs)]
        offset = (k // len(docs)) * 97 % max(1, len(doc) - size)
        pairs.append((doc[offset:offset + size], summaries[k % len(docs)][:size]))
        k += 1
    return pairs


def spaced(text: str, unit: str) -> str:
    return " ".join(words(text) if unit == "word" else text)


def ours(h: str, r: str) -> dict:
    return rouge(Profile.of(rouge_tokens(h)), Profile.of(rouge_tokens(r)))


def bench_pairs(pairs, unit):
    joined = [(spaced(h, unit), spaced(r, unit)) for h, r in pairs]
    start = time.perf_counter()
    theirs = [reference_spaced(h, r) for h, r in joined]
    ref_s = time.perf_counter() - start
    start = time.perf_counter()
    mine = [ours(h, r) for h, r in joined]
    our_s = time.perf_counter() - start
    worst = max(abs(a[k] - b[k]) for a, b in zip(mine, theirs) for k in KEYS)
    # end to end: raw text in, jieba (or characters) included for both, both measured
    start = time.perf_counter()
    for h, r in pairs:
        reference_spaced(spaced(h, unit), spaced(r, unit))
    e2e_ref = time.perf_counter() - start
    start = time.perf_counter()
    for h, r in pairs:
        rouge(Profile.of(tokenize(h, unit)), Profile.of(tokenize(r, unit)))
    e2e_ours = time.perf_counter() - start
    return ref_s, our_s, worst, e2e_ref, e2e_ours


def _reference_long(h, r, queue):
    start = time.perf_counter()
    scores = reference_spaced(h, r)
    queue.put((time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, scores))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cail-dir", type=Path, default=CAIL_DIR)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--skip-long-reference", action="store_true", help="do not run rouge-chinese on the long pair")
    args = parser.parse_args()
    docs, summaries = load_texts(args.cail_dir)
    words("预热")  # jieba's dictionary loads outside the timings
    pairs = make_pairs(docs, summaries, args.pairs)
    ok = True
    print(f"bench_rouge: {len(pairs)} pairs of <= 300 characters")
    for unit in ("word", "char"):
        ref_s, our_s, worst, e2e_ref, e2e_ours = bench_pairs(pairs, unit)
        ok &= worst == 0.0
        print(f"  {unit:4s} scoring   : rouge-chinese {ref_s:7.3f} s, spaces {our_s:7.3f} s, "
              f"speed-up {ref_s / our_s:6.1f}x (target >= 10x); max |diff| {worst:.1e}")
        print(f"  {unit:4s} end to end: rouge-chinese {e2e_ref:7.3f} s, spaces {e2e_ours:7.3f} s, "
              f"speed-up {e2e_ref / e2e_ours:6.1f}x (tokenisation included on both sides)")
    long_doc = max(docs, key=len)
    text = "".join(long_doc.split())
    h, r = text[:3000], text[len(text) - 3000:] if len(text) >= 6000 else text[::-1][:3000]
    hs, rs = " ".join(h), " ".join(r)
    start = time.perf_counter()
    mine = ours(hs, rs)
    our_s = time.perf_counter() - start
    print(f"  long pair (3,000 chars each, char level): spaces {our_s * 1000:.1f} ms (target < 100 ms)")
    if not args.skip_long_reference:
        queue = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(target=_reference_long, args=(hs, rs, queue))
        child.start()
        ref_s, ref_mb, theirs = queue.get()
        child.join()
        worst = max(abs(mine[k] - theirs[k]) for k in KEYS)
        ok &= worst == 0.0
        print(f"  long pair rouge-chinese: {ref_s:.1f} s, peak RSS {ref_mb:.0f} MB; "
              f"speed-up {ref_s / our_s:.0f}x; max |diff| {worst:.1e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
