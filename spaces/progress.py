"""Progress bars and worker pools shared by the long-running commands."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


# Off a terminal (a log file, a scheduler), a line every this many seconds instead of a bar.
LOG_INTERVAL = 30.0


class LogLines:
    """tqdm's interface as plain lines for logs: one every LOG_INTERVAL seconds, and a last one at the end
    of a run long enough to have printed any (a short run prints nothing)."""

    def __init__(self, items: Iterable[T] | None, total: int | None, desc: str, unit: str):
        self.items, self.total, self.desc, self.unit = items, total, desc, unit
        self.n, self.postfix = 0, ""
        self.start = self.last = time.monotonic()

    def __iter__(self) -> Iterator[T]:
        for item in self.items or ():
            yield item
            self.update()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= LOG_INTERVAL:
            self._line()

    def write(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self) -> None:
        self.last = time.monotonic()
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        print(f"{self.desc}: {done} {self.unit}{share}, {self.last - self.start:.0f}s"
              + (f", {self.postfix}" if self.postfix else ""), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.last > self.start:
            self._line()

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(items: Iterable[T], total: int | None, desc: str, unit: str = "doc") -> tqdm | LogLines:
    """A progress bar on stderr; off a terminal, a line now and then (``LogLines``), so a log shows a long
    run going."""
    if not sys.stderr.isatty():
        return LogLines(items, total, desc, unit)
    return tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
