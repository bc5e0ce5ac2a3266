"""Collect a run's metrics files into metrics.json and a Markdown table (report.md).

    python scripts/report.py RUN_DIR NAME=METRICS.json [NAME=METRICS.json ...] [--note TEXT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


FAITH = ("unsupported_numbers", "unsupported_citations", "citation_recall", "copy_rate", "degenerate")


def markdown_table(rows: dict[str, dict]) -> str:
    """One row per system: n, CAIL, ROUGE-1/2/L and the faithfulness figures."""
    head = "| system | n | CAIL (main) | ROUGE-1 | ROUGE-2 | ROUGE-L | " + " | ".join(
        k.replace("_", " ") for k in FAITH) + " |"
    out = [head, "|" + "---|" * (6 + len(FAITH))]
    for name, m in rows.items():
        faith = m.get("faithfulness") or {}
        cells = ["–" if faith.get(k) is None else f"{faith[k]:.3f}" for k in FAITH]
        out.append(f"| {name} | {m['n']} | {m['main']:.4f} | {m['rouge-1']:.4f} | {m['rouge-2']:.4f} | "
                   f"{m['rouge-l']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("rows", nargs="+", help="NAME=path/to/metrics.json, in table order")
    parser.add_argument("--title", default="CAIL2020 summarization, held-out records")
    parser.add_argument("--note", action="append", default=[])
    args = parser.parse_args()
    rows = {}
    for spec in args.rows:
        name, _, path = spec.partition("=")
        rows[name] = json.loads(Path(path).read_text(encoding="utf-8"))
    (args.run_dir / "metrics.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", "utf-8")
    lines = [f"# {args.title}", "", markdown_table(rows), "",
             "Word-level F-scores (jieba, HMM off, user dictionary), mean over documents; "
             "CAIL = 0.2·R1 + 0.4·R2 + 0.4·RL. Faithfulness against each judgment's own text (`spaces evaluate`): "
             "unsupported numbers / citations, lower is better; copy rate, the share copied verbatim; degenerate, "
             "the share of looping summaries.", *(f"\n{n}" for n in args.note)]
    (args.run_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
