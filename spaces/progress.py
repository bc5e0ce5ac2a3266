"""Progress bars and worker pools shared by the long-running commands."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None, desc: str, unit: str = "doc") -> tqdm:
    """A progress bar on stderr, hidden when stderr is not a terminal (logs stay readable)."""
    return tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=None)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
