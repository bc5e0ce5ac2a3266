"""The longest functions under spaces/ at a git revision (line spans by ast), for the house-keeping notes.

    python scripts/longest_functions.py [REV] [--top 10]
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev", nargs="?", default="HEAD")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", args.rev, "spaces"], capture_output=True,
                           text=True, check=True).stdout.split()
    found = []
    for name in (f for f in files if f.endswith(".py")):
        source = subprocess.run(["git", "show", f"{args.rev}:{name}"], capture_output=True, text=True,
                                check=True).stdout
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((node.end_lineno - node.lineno + 1, f"{name}:{node.name}"))
    for lines, where in sorted(found, reverse=True)[:args.top]:
        print(f"{lines:4d} {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
