"""JSONL in and out: the interface between stages.

Reading streams record by record and reports a bad line as ``FILE:LINE``. Writing goes to
``OUTPUT.partial`` with a flush per record and is renamed onto OUTPUT only when the command finishes,
so a killed run never leaves a file that looks complete, and a rerun resumes from the partial file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from spaces.config import DataConfig
from spaces.errors import SpacesError

STDIO = "-"


def display_name(path: Path | str) -> str:
    return "<stdin>" if str(path) == STDIO else str(path)


def read_jsonl(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; any bad line is a located error."""
    name = display_name(path)
    if str(path) == STDIO:
        stream = sys.stdin.buffer
    else:
        try:
            stream = open(path, "rb")
        except FileNotFoundError:
            raise SpacesError("file not found", name) from None
        except IsADirectoryError:
            raise SpacesError("is a directory, not a JSONL file", name) from None
    try:
        for number, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SpacesError(f"not valid UTF-8 (byte {e.start + 1} of the line)", f"{name}:{number}") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SpacesError(f"invalid JSON: {e.msg} (column {e.colno})", f"{name}:{number}") from None
            if not isinstance(obj, dict):
                raise SpacesError(f"expected a JSON object, got {type(obj).__name__}", f"{name}:{number}")
            yield number, obj
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


@dataclass(frozen=True)
class Document:
    """One judgment: its text with lines joined by ``\\n`` (CAIL sentences become lines)."""

    id: str
    text: str
    summary: str | None
    where: str  # FILE:LINE, for messages about this record


def _record_id(obj: dict[str, Any], field: str, where: str) -> str:
    if field not in obj:
        raise SpacesError(f"missing id field {field!r}", where)
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise SpacesError(f"id field {field!r} must be a string or an integer, got {type(value).__name__}", where)
    value = str(value)
    if not value:
        raise SpacesError(f"id field {field!r} is empty", where)
    return value


def document_text(value: Any, field: str, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        lines = []
        for k, item in enumerate(value):
            if isinstance(item, dict):
                item = item.get("sentence")
            if not isinstance(item, str):
                raise SpacesError(
                    f"{field}[{k}] must be a string or an object with a string 'sentence'", where
                )
            lines.append(item)
        return "\n".join(lines)
    raise SpacesError(f"text field {field!r} must be a string or a list, got {type(value).__name__}", where)


def read_documents(
    path: Path | str, data: DataConfig, *, need_text: bool = True, need_summary: bool = False
) -> Iterator[Document]:
    """Stream documents in any of DESIGN.md's shapes; ids must be present and unique."""
    name = display_name(path)
    seen: dict[str, int] = {}
    for number, obj in read_jsonl(path):
        where = f"{name}:{number}"
        doc_id = _record_id(obj, data.id_field, where)
        if doc_id in seen:
            raise SpacesError(f"duplicate id {doc_id!r} (first on line {seen[doc_id]})", where)
        seen[doc_id] = number
        text = ""
        if need_text:
            if data.text_field not in obj:
                raise SpacesError(f"missing text field {data.text_field!r}", where)
            text = document_text(obj[data.text_field], data.text_field, where)
        summary = obj.get(data.summary_field)
        if summary is None and need_summary:
            raise SpacesError(f"missing summary field {data.summary_field!r}", where)
        if summary is not None and not isinstance(summary, str):
            raise SpacesError(f"summary field {data.summary_field!r} must be a string", where)
        yield Document(doc_id, text, summary, where)


def complete_lines(path: Path) -> Iterator[tuple[dict[str, Any], int, int]]:
    """(record, byte offset, byte length) of each complete record line of a partial output file.

    Stops at the first torn (no newline) or foreign line: what follows it is not trusted.
    """
    offset = 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                return
            try:
                record = json.loads(raw)
                str(record["id"])
            except (ValueError, KeyError, TypeError):
                return
            yield record, offset, len(raw)
            offset += len(raw)


class JsonlWriter:
    """Write records to ``OUTPUT.partial`` (flushed per record) and rename onto OUTPUT on success.

    A partial file left by a killed run is picked up: its complete records count as done (``done``
    holds their ids and ``on_resumed`` sees each of them), a torn last line is dropped, and the
    caller skips those ids. On an error the partial file stays for the next run; OUTPUT is untouched.
    """

    def __init__(self, path: Path | str, on_resumed: Callable[[dict[str, Any]], None] | None = None):
        self.path = str(path)
        self.done: set[str] = set()
        self._file: TextIO
        if self.path == STDIO:
            self._file = sys.stdout
            return
        target = Path(self.path)
        if target.is_dir():
            raise SpacesError("is a directory; give a file name for the output", self.path)
        if not target.parent.exists():
            raise SpacesError(f"output folder {target.parent} does not exist", self.path)
        self.partial = target.with_name(target.name + ".partial")
        if self.partial.exists():
            self._resume(on_resumed)
        self._file = open(self.partial, "a", encoding="utf-8")

    def _resume(self, on_resumed: Callable[[dict[str, Any]], None] | None) -> None:
        keep = 0
        for record, _, length in complete_lines(self.partial):
            self.done.add(str(record["id"]))
            keep += length
            if on_resumed:
                on_resumed(record)
        os.truncate(self.partial, keep)  # a torn last line (or anything after it) is redone

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def mine(self, index: int) -> bool:
        """Every record is this writer's (a sharded writer takes only its rank's share)."""
        return True

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.path == STDIO:
            self._file.flush()
            return
        self._file.close()
        if exc_type is None:
            os.replace(self.partial, self.path)


def file_sha256(path: Path | str) -> str | None:
    """The data file's hash for a model card (None for stdin)."""
    if str(path) == STDIO:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: Path | str, obj: Any) -> None:
    """Write one JSON document atomically (temp file, then rename)."""
    text = json.dumps(obj, ensure_ascii=False, indent=2) + "\n"
    if str(path) == STDIO:
        sys.stdout.write(text)
        return
    target = Path(path)
    tmp = target.with_name(target.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
