"""Peak memory of the streaming commands as the input grows 10x (measured from the OS).

    python scripts/bench_memory.py [--run-dir runs/cail2020] [--small 100]

Runs `extract predict`, `generate predict` and `evaluate` as separate processes on SMALL and 10 x SMALL
records (the CAIL2020 records repeated under new ids) and reports each one's peak RSS (ru_maxrss of the
child process). Uses the models that `make reproduce-cail` trained. Target: ratio < 1.2.
Decoding is cut to 16 new tokens: memory, not summaries, is measured here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACES = [sys.executable, "-m", "spaces"]


def peak_rss_mb(args: list[str]) -> float:
    """Run one command in a fresh child of a fresh wrapper, so ru_maxrss is that command's alone."""
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    out = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(args)}\n{out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def replicate(source: Path, target: Path, n: int) -> Path:
    records = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(target, "w", encoding="utf-8") as f:
        for i in range(n):
            record = dict(records[i % len(records)], id=f"doc-{i:06d}")
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "cail2020")
    parser.add_argument("--small", type=int, default=100)
    args = parser.parse_args()
    run = args.run_dir
    needed = [run / "train" / "train.json", run / "extractor" / "card.json", run / "generator" / "model-best"]
    if not all(p.exists() for p in needed):
        print(f"error: {run}: run `make reproduce-cail` first (it trains the models measured here)", file=sys.stderr)
        return 1
    print(f"bench_memory: peak RSS (MB) at {args.small} and {10 * args.small} records")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = {}
        for n in (args.small, 10 * args.small):
            docs = replicate(run / "train" / "train.json", tmp / f"docs-{n}.jsonl", n)
            extracted, summaries = tmp / f"extracted-{n}.jsonl", tmp / f"summaries-{n}.jsonl"
            rows.setdefault("extract predict", []).append(peak_rss_mb(
                [*SPACES, "extract", "predict", "-m", str(run / "extractor"), "-i", str(docs), "-o", str(extracted)]))
            rows.setdefault("generate predict", []).append(peak_rss_mb(
                [*SPACES, "generate", "predict", "-m", str(run / "generator" / "model-best"), "-i", str(extracted),
                 "-o", str(summaries), "--decode.max_new_tokens", "16"]))
            rows.setdefault("evaluate", []).append(peak_rss_mb(
                [*SPACES, "evaluate", "--predictions", str(summaries), "--references", str(docs),
                 "--output", str(tmp / f"metrics-{n}.json")]))
        for name, (small, large) in rows.items():
            worst = max(worst, large / small)
            print(f"  {name:17s}: {small:8.1f} -> {large:8.1f}  ratio {large / small:.3f} (target < 1.2)")
    return 0 if worst < 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
