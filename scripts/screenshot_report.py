"""Look at a report page as a person would: headless Chromium takes screenshots of it.

    python scripts/screenshot_report.py runs/cail2020/report.html [--out runs/cail2020/screenshots]

Takes two PNGs: the top of the page (metrics table and plots) and the page opened at its worst judgment
(``#worst``: sorted lowest first, the first entry expanded). Needs Debian's `chromium`
(`apt-get install -y chromium fonts-noto-cjk`); the test suite does not.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def screenshot(chromium: str, url: str, out: Path, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size=1280,{height}",
                        f"--screenshot={out}", url], check=True, capture_output=True, timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("error: no chromium on PATH (Debian: apt-get install -y chromium fonts-noto-cjk)", file=sys.stderr)
        return 1
    if not args.report.is_file():
        print(f"error: {args.report}: file not found", file=sys.stderr)
        return 1
    out = args.out or args.report.parent / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    url = args.report.resolve().as_uri()
    screenshot(chromium, url, out / "top.png", 1400)
    screenshot(chromium, url + "#worst", out / "worst.png", 2400)
    print(f"wrote {out / 'top.png'} and {out / 'worst.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
