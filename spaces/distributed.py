"""Many processes, one output: inference split across ranks and merged in input order.

Launched by ``accelerate launch`` or ``torchrun`` (they set RANK / WORLD_SIZE / LOCAL_RANK), each process
takes every WORLD_SIZE-th record still to do and writes it to its own ``OUTPUT.partial.RANK``, flushed
record by record. When all are done the main process merges every partial file into OUTPUT in input
order and removes them. A killed run leaves those files behind; the rerun (with any number of
processes) counts the records in all of them as done. One process behaves exactly like ``JsonlWriter``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from spaces.errors import SpacesError
from spaces.partial import check_fingerprint, check_target, partial_path, remove_fingerprint, save_fingerprint, write_error
from spaces.records import STDIO, JsonlWriter, PartialJsonl, Record, complete_lines

_state = None


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process; (0, 1, 0) when not launched distributed."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def state():
    """accelerate's PartialState, on gloo when there is no GPU (accelerate's own CPU path wants MPI)."""
    global _state
    if _state is None:
        import torch
        from accelerate import PartialState

        _state = PartialState(cpu=not torch.cuda.is_available())
    return _state


def device():
    """This process's device: its own GPU when there are GPUs, else the CPU."""
    import torch

    return torch.device(f"cuda:{world()[2]}") if torch.cuda.is_available() else torch.device("cpu")


def _ids(path: Path) -> Iterable[tuple[str, int, int]]:
    return ((str(record["id"]), offset, length) for record, offset, length in complete_lines(path))


class ShardedJsonlWriter:
    """This rank's share of a distributed run; see the module docstring."""

    def __init__(self, path: Path | str, rank: int, size: int, order: Callable[[], Iterable[str]],
                 on_resumed: Callable[[dict[str, Any]], None] | None = None,
                 fingerprint: dict[str, Any] | None = None):
        self.path, self.rank, self.size, self.order = check_target(path), rank, size, order
        self.merged = partial_path(self.path)
        self.done: set[str] = set()
        self.written = 0
        parts = self._parts()
        check_fingerprint(self.merged, fingerprint, any(p.stat().st_size for p in parts))
        for part in parts:
            for record, _, _ in complete_lines(part):
                self.done.add(str(record["id"]))
                if on_resumed:
                    on_resumed(record)
        state().wait_for_everyone()  # everyone has read what is done before anyone appends
        if state().is_main_process:
            save_fingerprint(self.merged, fingerprint)
        self._out = PartialJsonl(self.merged.with_name(f"{self.merged.name}.{rank}"), self.path, None)
        self.saved_in = f"{self.merged.name}.*"

    def _parts(self) -> list[Path]:
        shards = [p for p in self.path.parent.glob(self.merged.name + ".*") if p.suffix[1:].isdigit()]
        return ([self.merged] if self.merged.exists() else []) + sorted(shards)

    def mine(self, index: int) -> bool:
        return index % self.size == self.rank

    def write(self, record: Record | dict[str, Any]) -> None:
        self._out.write(record)
        self.written += 1

    def __enter__(self) -> ShardedJsonlWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._out.close()
        if exc_type is not None:
            return
        state().wait_for_everyone()
        if state().is_main_process:
            self._merge()
        state().wait_for_everyone()

    def _merge(self) -> None:
        parts = self._parts()
        where = {i: (k, offset, length) for k, part in enumerate(parts) for i, offset, length in _ids(part)}
        handles = [open(p, "rb") for p in parts]
        tmp = self.path.with_name(self.path.name + ".merging")
        try:
            with open(tmp, "wb") as out:
                for record_id in self.order():
                    if record_id in where:
                        k, offset, length = where[record_id]
                        handles[k].seek(offset)
                        out.write(handles[k].read(length))
            os.replace(tmp, self.path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise write_error(e, self.path) from e
        finally:
            for h in handles:
                h.close()
        for part in parts:
            part.unlink()
        remove_fingerprint(self.merged)


def open_output(path: Path | str, order: Callable[[], Iterable[str]],
                on_resumed: Callable[[dict[str, Any]], None] | None = None,
                fingerprint: dict[str, Any] | None = None) -> JsonlWriter | ShardedJsonlWriter:
    """The writer for this process: plain when alone (or writing to stdout), sharded under a launcher."""
    rank, size, _ = world()
    if size == 1:
        return JsonlWriter(path, on_resumed, fingerprint)
    if str(path) == STDIO:
        raise SpacesError("a run split across processes writes to a file, not to stdout")
    return ShardedJsonlWriter(path, rank, size, order, on_resumed, fingerprint)
