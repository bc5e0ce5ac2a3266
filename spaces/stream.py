"""The one streaming skeleton every record-to-record command runs on (oracle, extract/generate predict,
batch summarize): read → skip what a previous run finished → this process's share → batch → write.

Resume, sharding across processes, the progress bar, per-record flushing, the atomic rename, the
empty-input rule and the Ctrl-C message live here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from spaces.distributed import open_output
from spaces.errors import Interrupted, SpacesError, WriteError
from spaces.progress import batched, progress
from spaces.records import Record, count_records, display_name, file_sha256, input_paths

T = TypeVar("T")


@dataclass
class MapRun:
    written: int  # records this run wrote (this process's share)
    resumed: int  # records a previous run had already written
    skipped: int  # input records left out on purpose (e.g. empty documents with --skip-empty)


def map_records(
    read: Callable[[], Iterator[T]],
    input: Path | str | Sequence[Path | str],
    output: Path | str,
    work: Callable[[list[T]], Iterable[Record | dict[str, Any]]],
    *,
    desc: str,
    batch_size: int = 1,
    skip: Callable[[T], bool] | None = None,
    on_resumed: Callable[[dict[str, Any]], None] | None = None,
    allow_empty: bool = False,
    key: Callable[[T], str] = lambda item: item.id,  # type: ignore[attr-defined]
    settings: dict[str, Any] | None = None,
) -> MapRun:
    """Write ``work(batch)`` for every item of ``read()`` not yet in ``output``, in input order.

    ``read`` is called again (ids only matter) when a multi-process run merges its shards. ``settings``
    (what else decides the records: config, model) and the input's hash fingerprint a partial output, so
    a rerun resumes only what this input and these settings wrote.
    """
    seen = skipped = 0
    paths = input_paths(input)
    hashes = [file_sha256(p) if Path(p).is_file() else None for p in paths]
    fingerprint = {"input": None if None in hashes else hashes, "settings": settings or {}}
    with open_output(output, lambda: (key(item) for item in read()), on_resumed, fingerprint) as out:
        resumed = len(out.done)
        found = 0  # resumed records whose id the input has (stdin has no hash to check up front)

        def todo() -> Iterator[T]:
            nonlocal seen, skipped, found
            index = 0
            for item in read():
                seen += 1
                if skip is not None and skip(item):
                    skipped += 1
                    continue
                if key(item) in out.done:
                    found += 1
                    continue
                if out.mine(index):
                    yield item
                index += 1

        counts = [count_records(p) for p in paths]
        total = None if None in counts else sum(counts)
        try:
            with progress(None, total and max(total - resumed, 0), desc) as bar:
                for batch in batched(todo(), batch_size):
                    for record in work(batch):
                        out.write(record)
                        bar.update()
        except KeyboardInterrupt as e:
            raise Interrupted(f"interrupted: {len(out.done) + out.written} records are saved in {out.saved_in}; "
                              "rerun the same command to resume") from e
        except WriteError as e:
            if out.written + len(out.done):
                raise WriteError(f"{e.message}; {len(out.done) + out.written} records are saved in {out.saved_in}: "
                                 "fix that and rerun the same command to resume", e.where) from e
            raise
        if found < len(out.done):
            raise SpacesError(f"the partial output holds {len(out.done) - found} records whose ids are not in this "
                              f"input: it was written from another input; delete {out.saved_in} to start over",
                              display_name(output))
        if not seen and not allow_empty:
            raise SpacesError("no records in the input (an empty input is an error; --allow-empty writes an "
                              "empty output)", ", ".join(display_name(p) for p in paths))
    return MapRun(out.written, resumed, skipped)
