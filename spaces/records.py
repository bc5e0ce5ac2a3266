"""Typed JSONL records: the contract between the stages.

Only raw documents are read through the configured field names (``data.id_field``, ``data.text_field``,
``data.summary_field``). Every file a stage writes for another stage uses the fixed keys of its record
type (``LabeledRecord``, ``ExtractedRecord``, ``Summary``), so a team whose judgments are keyed
``doc_id`` / ``fulltext`` / ``abstract`` configures that once, for the documents. A reference summary
travels in stage records as ``reference``: only a ``Summary`` has a ``summary``, so a stage file can
never be scored against itself by accident.

Reading streams record by record (plain or gzip, a UTF-8 BOM ignored) and reports a bad line as
``FILE:LINE``. Writing goes to ``OUTPUT.partial`` (``spaces.partial``), flushed per record, and is renamed
onto OUTPUT only when the command finishes, so a killed run never leaves a file that looks complete, a
failed one leaves nothing behind, and a rerun of the same command resumes from the partial file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from spaces.config import DataConfig
from spaces.errors import SpacesError
from spaces.partial import (check_fingerprint, check_target, lock, partial_path, remove_fingerprint,
                            save_fingerprint, write_atomic, write_error)

STDIO = "-"
BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"


def display_name(path: Path | str) -> str:
    return "<stdin>" if str(path) == STDIO else str(path)


def open_binary(path: Path | str) -> IO[bytes]:
    """A byte stream of a file (gunzipped when it is gzip) or of stdin; located errors, never a traceback."""
    if str(path) == STDIO:
        return sys.stdin.buffer
    name = display_name(path)
    try:
        stream = open(path, "rb")
    except FileNotFoundError as e:
        raise SpacesError("file not found", name) from e
    except IsADirectoryError as e:
        raise SpacesError("is a directory, not a file", name) from e
    except PermissionError as e:
        raise SpacesError("permission denied", name) from e
    if stream.peek(2)[:2] == GZIP_MAGIC:
        return gzip.open(stream)  # type: ignore[return-value]
    return stream


def read_text(path: Path | str) -> str:
    """A whole UTF-8 text file (or stdin), gzip and a BOM allowed."""
    stream = open_binary(path)
    try:
        raw = stream.read()
    except (OSError, EOFError) as e:
        raise SpacesError(f"cannot read: {e}", display_name(path)) from e
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    try:
        return raw.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpacesError(f"not valid UTF-8 (byte {e.start + 1})", display_name(path)) from e


def read_jsonl(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; any bad line is a located error."""
    name = display_name(path)
    stream = open_binary(path)
    try:
        number = 0
        while True:
            try:
                raw = stream.readline()
            except (OSError, EOFError) as e:  # a truncated or corrupt gzip file
                raise SpacesError(f"cannot read: {e}", f"{name}:{number + 1}") from e
            if not raw:
                break
            number += 1
            if number == 1:
                raw = raw.removeprefix(BOM)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SpacesError(f"not valid UTF-8 (byte {e.start + 1} of the line)", f"{name}:{number}") from e
            if not line.strip():
                continue
            if line.lstrip().startswith("["):
                raise SpacesError("expected a JSON object, got a JSON array (JSON Lines: one object per line)",
                                  f"{name}:{number}")
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SpacesError(f"invalid JSON: {e.msg} (column {e.colno})", f"{name}:{number}") from e
            if not isinstance(obj, dict):
                raise SpacesError(f"expected a JSON object, got {type(obj).__name__}", f"{name}:{number}")
            if "\\u" in line:
                check_unicode(obj, f"{name}:{number}")
            yield number, obj
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def check_unicode(obj: Any, where: str) -> None:
    """JSON may escape half a UTF-16 pair ("\\ud800"): no character, and no tokenizer takes it."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise SpacesError(f"a lone surrogate escape (\\u{ord(e.object[e.start]):04x}) is no character: not valid "
                          "Unicode", where) from e


def count_records(path: Path | str) -> int | None:
    """Non-blank lines of a JSONL file, for a progress bar's total (None for stdin)."""
    if str(path) == STDIO or not Path(path).is_file():
        return None
    stream = open_binary(path)
    try:
        return sum(1 for line in stream if line.strip())
    except (OSError, EOFError):
        return None
    finally:
        stream.close()


def record_id(value: Any, field: str) -> str:
    """An id as a string: a non-empty string or an integer (never a bool, list or null)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"id field {field!r} must be a string or an integer, got {type(value).__name__}")
    value = str(value)
    if not value:
        raise ValueError(f"id field {field!r} is empty")
    return value


class UniqueIds:
    """The one duplicate check: remembers where each id was first seen (across several files too)."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[str, int]] = {}

    def add(self, record_id: str, number: int, where: str) -> None:
        file = where.rsplit(":", 1)[0]
        if record_id in self.first:
            first_file, first_line = self.first[record_id]
            seen = f"line {first_line}" if first_file == file else f"{first_file}:{first_line}"
            raise SpacesError(f"duplicate id {record_id!r} (first on {seen})", where)
        self.first[record_id] = (file, number)


def some(ids: list[str], k: int = 3) -> str:
    """A few ids for a message: 'a', 'b', 'c' and 4 more."""
    shown = ", ".join(repr(i) for i in ids[:k])
    return shown + (f" and {len(ids) - k} more" if len(ids) > k else "")


def check_same_ids(predicted: Iterable[str], expected: Iterable[str], predicted_name: str, expected_name: str) -> None:
    """The one id join check: every expected id has a prediction and no prediction is left over.

    Both sides are named in one message, with counts, so one run shows everything to fix.
    """
    predicted, expected = list(predicted), list(expected)
    have, want = set(predicted), set(expected)
    missing = [i for i in expected if i not in have]
    extra = [i for i in predicted if i not in want]
    problems = []
    if missing:
        problems.append(f"{len(missing)} id(s) of {expected_name} have no prediction: {some(missing)}")
    if extra:
        problems.append(f"{len(extra)} prediction(s) have no reference in {expected_name}: {some(extra)}")
    if problems:
        raise SpacesError("; ".join(problems), predicted_name)


# ---- raw documents ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Document:
    """One judgment: its text with lines joined by ``\\n`` (CAIL sentences become lines)."""

    id: str
    text: str
    summary: str | None
    where: str  # FILE:LINE, for messages about this record


# Control characters (an escaped NUL, a stray \r) are no text of a judgment: a summary must not print them.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def document_text(value: Any, field: str, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        lines = []
        for k, item in enumerate(value):
            if isinstance(item, dict):
                item = item.get("sentence")
            if not isinstance(item, str):
                raise SpacesError(f"{field}[{k}] must be a string or an object with a string 'sentence'", where)
            lines.append(item)
        return "\n".join(lines)
    raise SpacesError(f"text field {field!r} must be a string or a list, got {type(value).__name__}", where)


def document_from(obj: dict[str, Any], data: DataConfig, where: str, *, need_text: bool = True,
                  need_summary: bool = False, default_id: str | None = None) -> Document:
    """A document from one raw JSON object, through the configured field names."""
    if data.id_field in obj or default_id is None:
        if data.id_field not in obj:
            raise SpacesError(f"missing id field {data.id_field!r}", where)
        try:
            doc_id = record_id(obj[data.id_field], data.id_field)
        except ValueError as e:
            raise SpacesError(str(e), where) from e
    else:
        doc_id = default_id
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
    return Document(doc_id, CONTROL.sub("", text.removeprefix("\ufeff")), summary, where)


@dataclass(frozen=True)
class Source:
    """One input file of documents and the field names it is read with."""

    path: str
    data: DataConfig


FIELD_KEYS = {"id": "id_field", "text": "text_field", "summary": "summary_field"}


def source(spec: Path | str, data: DataConfig) -> Source:
    """``FILE``, ``FILE:TEXT_FIELD`` or ``FILE:key=field,...`` (keys id, text, summary): one input file, read with
    the config's field names except those given after its last colon (``val60.jsonl:source``)."""
    spec = str(spec)
    path, colon, fields = spec.rpartition(":")
    if not colon or spec == STDIO or Path(spec).exists() or not path or "/" in fields:
        return Source(spec, data)
    names: dict[str, str] = {}
    for part in fields.split(","):
        key, eq, value = part.partition("=")
        key, value = (key.strip(), value.strip()) if eq else ("text", key.strip())
        if key not in FIELD_KEYS or not value:
            raise SpacesError(f"after the file name comes its text field (FILE:FIELD) or key=field pairs with keys "
                              f"{', '.join(FIELD_KEYS)} (FILE:text=source,id=doc_id), not {part!r}", spec)
        names[FIELD_KEYS[key]] = value
    return Source(path, data.model_copy(update=names))


def sources(inputs: Path | str | Sequence[Path | str], data: DataConfig) -> list[Source]:
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    out = [source(spec, data) for spec in inputs]
    if not out:
        raise SpacesError("give an input file (--input FILE)")
    if len(out) > 1 and STDIO in [s.path for s in out]:
        raise SpacesError("stdin ('-') is one input on its own, not one of several")
    return out


def input_paths(inputs: Path | str | Sequence[Path | str]) -> list[str]:
    """The files of ``--input`` values (their field names left out), for hashes, counts and messages."""
    return [s.path for s in sources(inputs, DataConfig())]


def read_documents(inputs: Path | str | Sequence[Path | str], data: DataConfig, *, need_text: bool = True,
                   need_summary: bool = False) -> Iterator[Document]:
    """Stream documents in any of the README's shapes from one or several files, each with its own field
    names (``source``); ids must be present and unique across all of them."""
    ids = UniqueIds()
    for src in sources(inputs, data):
        name = display_name(src.path)
        for number, obj in read_jsonl(src.path):
            doc = document_from(obj, src.data, f"{name}:{number}", need_text=need_text, need_summary=need_summary)
            ids.add(doc.id, number, doc.where)
            yield doc


# ---- stage records ----------------------------------------------------------------------------------

class Record(BaseModel):
    """A record one stage writes for another: fixed keys, validated on reading."""

    model_config = ConfigDict(extra="ignore", validate_assignment=False)
    kind: ClassVar[str] = "record"
    id: str

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> str:
        return record_id(value, "id")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    @classmethod
    def parse(cls, obj: dict[str, Any], where: str):
        try:
            return cls.model_validate(obj)
        except ValidationError as e:
            problems = []
            for err in e.errors():
                key = ".".join(str(p) for p in err["loc"]) or cls.kind
                msg = err["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
                problems.append(f"missing field {key!r}" if err["type"] == "missing" else f"{key!r} {msg}"
                                if err["type"] != "value_error" else msg)
            article = "an" if cls.kind[0] in "aeiou" else "a"
            raise SpacesError(f"not {article} {cls.kind} record: {'; '.join(problems)}", where) from e


def _indices(values: list[int], n: int, name: str) -> list[int]:
    if any(not 0 <= i < n for i in values):
        raise ValueError(f"'{name}' must be indices into 'sentences' (0..{n - 1})")
    if values != sorted(set(values)):
        raise ValueError(f"'{name}' must be ascending and distinct")
    return values


# A clause's section of a civil judgment, in the order they come (``roles`` of the records below): the extract
# stage assigns them (spaces.extract.sections), the editor ends a sentence where one opens.
ROLES = ("header", "parties", "procedure", "claims", "defence", "facts", "reasoning", "judgment", "closing",
         "appendix")


class LabeledRecord(Record):
    """``extract oracle``: the clauses the greedy oracle matches to the reference summary."""

    kind: ClassVar[str] = "labeled"
    sentences: list[str]
    labels: list[int]
    extract: str
    reference: str
    score: float
    roles: list[str] | None = None
    dropped_clauses: int = 0

    @model_validator(mode="after")
    def _check(self) -> LabeledRecord:
        _indices(self.labels, len(self.sentences), "labels")
        if self.roles is not None and len(self.roles) != len(self.sentences):
            raise ValueError("'roles' must have one role per sentence")
        return self

    def as_extracted(self) -> ExtractedRecord:
        """The oracle's clauses as an extract (SPACES trains its generator on oracle extracts)."""
        chosen = set(self.labels)
        return ExtractedRecord(id=self.id, sentences=self.sentences,
                               scores=[float(i in chosen) for i in range(len(self.sentences))],
                               selected=self.labels, extract=self.extract, roles=self.roles,
                               dropped_clauses=self.dropped_clauses, reference=self.reference, labels=self.labels)


class ExtractedRecord(Record):
    """``extract predict`` (and the extractor's out-of-fold file): the clauses kept, with their scores.

    ``reference`` is the document's reference summary when it had one; the out-of-fold file also
    carries the oracle ``labels`` and ``oracle_extract``, which the generator trains on too.
    """

    kind: ClassVar[str] = "extracted"
    sentences: list[str]
    scores: list[float]
    selected: list[int]
    extract: str
    roles: list[str] | None = None
    dropped_clauses: int = 0
    reference: str | None = None
    labels: list[int] | None = None
    oracle_extract: str | None = None
    holding_added: bool | None = None  # the selection missed the court's holding, so it was added

    @model_validator(mode="after")
    def _check(self) -> ExtractedRecord:
        n = len(self.sentences)
        _indices(self.selected, n, "selected")
        if len(self.scores) != n:
            raise ValueError("'scores' must have one score per sentence")
        if self.roles is not None and len(self.roles) != n:
            raise ValueError("'roles' must have one role per sentence")
        if self.labels is not None:
            _indices(self.labels, n, "labels")
        return self

    @classmethod
    def parse(cls, obj: dict[str, Any], where: str):
        """An extracted record, or ``extract oracle``'s labeled one read as its oracle extract."""
        if "scores" not in obj and "score" in obj and "labels" in obj:
            return LabeledRecord.parse(obj, where).as_extracted()
        return super().parse(obj, where)


class Summary(Record):
    """A summary, from ``generate predict`` or ``summarize``; ``source`` says whether the generator wrote
    it or the extract was kept (``--use-generator auto``)."""

    kind: ClassVar[str] = "summary"
    summary: str
    source: str | None = None
    dropped_clauses: int | None = None  # summarize: clauses of a long judgment left out (data.max_clauses)
    edits: list[tuple[Literal["keep", "delete", "insert"], str]] | None = None  # the editor's: the extract, edited


R = TypeVar("R", bound=Record)


def read_records(path: Path | str, cls: type[R], check: Callable[[R, str], None] | None = None) -> Iterator[R]:
    """Stream records of one type; ids unique; ``check`` may refuse a record (e.g. a missing reference)."""
    name, ids = display_name(path), UniqueIds()
    for number, obj in read_jsonl(path):
        where = f"{name}:{number}"
        record = cls.parse(obj, where)
        ids.add(record.id, number, where)
        if check is not None:
            check(record, where)
        yield record


# ---- writing ----------------------------------------------------------------------------------------

def same_file(a: Path | str, b: Path | str) -> bool:
    if STDIO in (str(a), str(b)):
        return False
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting_inputs(outputs: Iterable[Path | str | None], inputs: Iterable[Path | str | None]) -> None:
    """An output that resolves to one of the command's inputs (also through a symlink) is an error."""
    inputs = [i for i in inputs if i is not None]
    for out in outputs:
        if out is None:
            continue
        for inp in inputs:
            if same_file(out, inp):
                raise SpacesError(f"the output is the input {display_name(inp)}: it would be overwritten; "
                                  "write to another file", display_name(out))


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


def _line(record: Record | dict[str, Any]) -> str:
    obj = record.to_json() if isinstance(record, Record) else record
    return json.dumps(obj, ensure_ascii=False) + "\n"


class PartialJsonl:
    """One JSONL file being written under ``spaces.partial``'s convention: locked, fingerprinted, resumable.

    Its complete records count as done (``done`` holds their ids, ``on_resumed`` sees each); a torn last
    line is dropped. ``close`` removes it when it holds nothing, so a failed run leaves no file.
    """

    def __init__(self, path: Path, target: Path | str, fingerprint: dict[str, Any] | None,
                 on_resumed: Callable[[dict[str, Any]], None] | None = None):
        self.path, self.target = path, target
        self.done: set[str] = set()
        self._file = lock(path, target)
        try:
            check_fingerprint(path, fingerprint, not self.empty())
            keep = 0
            for record, _, length in complete_lines(path):
                self.done.add(str(record["id"]))
                keep += length
                if on_resumed:
                    on_resumed(record)
            os.truncate(path, keep)  # a torn last line (or anything after it) is redone
            save_fingerprint(path, fingerprint)
        except BaseException:
            self._file.close()
            raise

    def write(self, record: Record | dict[str, Any]) -> None:
        try:
            self._file.write(_line(record).encode("utf-8"))
            self._file.flush()
        except OSError as e:
            raise write_error(e, self.target) from e

    def empty(self) -> bool:
        return os.fstat(self._file.fileno()).st_size == 0

    def close(self) -> None:
        """Release the lock; a partial that holds nothing goes (a failed run leaves no file behind)."""
        if self.empty():
            self.path.unlink(missing_ok=True)
            remove_fingerprint(self.path)
        self._file.close()

    def finish(self, into: Path | str) -> None:
        """Rename onto ``into`` (still under the lock, so no other run can take the name meanwhile)."""
        try:
            os.replace(self.path, into)
        except OSError as e:
            raise write_error(e, into) from e
        remove_fingerprint(self.path)
        self._file.close()


class JsonlWriter:
    """Write records to ``OUTPUT.partial`` and rename onto OUTPUT on success.

    A partial file left by a killed run is picked up when the same input and settings wrote it (the
    ``fingerprint``): its complete records count as done and the caller skips those ids. On an error the
    partial file stays for the next run (when it holds a record); OUTPUT is untouched.
    """

    def __init__(self, path: Path | str, on_resumed: Callable[[dict[str, Any]], None] | None = None,
                 fingerprint: dict[str, Any] | None = None):
        self.path = str(path)
        self.written = 0
        self.done: set[str] = set()
        if self.path == STDIO:
            return
        target = check_target(self.path)
        self._out = PartialJsonl(partial_path(target), self.path, fingerprint, on_resumed)
        self.done = self._out.done

    @property
    def partial(self) -> Path:
        return self._out.path

    def write(self, record: Record | dict[str, Any]) -> None:
        if self.path == STDIO:
            sys.stdout.write(_line(record))
            sys.stdout.flush()
        else:
            self._out.write(record)
        self.written += 1

    def mine(self, index: int) -> bool:
        """Every record is this writer's (a sharded writer takes only its rank's share)."""
        return True

    @property
    def saved_in(self) -> str:
        return display_name(self.path) if self.path == STDIO else str(self.partial)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.path == STDIO:
            sys.stdout.flush()
        elif exc_type is None:
            self._out.finish(self.path)  # an allowed empty output is still an output
        else:
            self._out.close()


def file_sha256(path: Path | str) -> str | None:
    """A file's hash for a model card or metrics (None for stdin)."""
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
    write_atomic(path, text)
