"""The one convention every output is written by: ``TARGET.partial``, renamed onto TARGET when complete.

- A whole file (a metrics JSON, a config, a report page) is written to ``TARGET.partial`` and renamed
  (``write_atomic``): a failed write leaves TARGET as it was and no partial behind.
- A JSONL output grows record by record in ``TARGET.partial`` (``records.JsonlWriter``). A run holds an
  exclusive lock on it (``lock``), so a second run on the same output stops with one line instead of
  writing into a file the first is about to rename. Beside it, ``TARGET.partial.json`` keeps the
  fingerprint of the input and settings that wrote it (``check_fingerprint``): a rerun resumes only what
  the same input and settings wrote, and refuses, naming the partial, anything else.
- A directory (a model dir) is built as ``TARGET.partial/`` and swapped in.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import IO, Any

from spaces.errors import SpacesError, WriteError


def partial_path(target: Path | str) -> Path:
    target = Path(target)
    return target.with_name(target.name + ".partial")


def fingerprint_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def check_target(target: Path | str) -> Path:
    """An output path a file can be written to: not a directory, in a folder that exists."""
    target = Path(target)
    if target.is_dir():
        raise SpacesError("is a directory; give a file name for the output", str(target))
    if not target.parent.exists():
        raise SpacesError(f"output folder {target.parent} does not exist", str(target))
    return target


def write_error(e: OSError, where: Path | str) -> WriteError:
    """An OS error of a write (disk full, read-only, permission) as one located line."""
    return WriteError(f"cannot write: {e.strerror or e}", str(where))


def write_atomic(target: Path | str, content: str | bytes) -> None:
    """Write a whole file: to TARGET.partial, then renamed onto TARGET (nothing left behind on failure)."""
    target = check_target(target)
    tmp = partial_path(target)
    try:
        if isinstance(content, str):
            tmp.write_text(content, encoding="utf-8")
        else:
            tmp.write_bytes(content)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(e, target) from e


def swap_in_dir(target: Path) -> None:
    """Put the finished ``TARGET.partial/`` in place of ``target``: a kill never leaves half a dir under its
    name (between the two renames only ``TARGET.old`` is there, which ``recover_dir`` takes back)."""
    old = target.with_name(target.name + ".old")
    if target.exists():
        target.rename(old)
    partial_path(target).rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_dir_atomic(save, target: Path) -> None:
    """Build a directory as ``TARGET.partial/`` with ``save(path)``, then swap it in for ``target``."""
    shutil.rmtree(partial_path(target), ignore_errors=True)
    save(partial_path(target))
    swap_in_dir(target)


def recover_dir(target: Path) -> None:
    """A kill between the two renames of ``swap_in_dir`` leaves only ``TARGET.old``: take it back."""
    old = target.with_name(target.name + ".old")
    if not target.exists() and old.exists():
        old.rename(target)


def save_tensors(tensors: dict, path: Path) -> None:
    """safetensors' ``save_file`` with the modes of every other file (it writes 0600, so a model dir copied
    to a shared folder could not be read by its team); a failed write (disk full) leaves no file."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    except SafetensorError as e:
        path.unlink(missing_ok=True)
        raise SpacesError(f"cannot write: {str(e).splitlines()[0]}", str(path)) from e
    share(path)


def share(path: Path) -> None:
    """Give a file (or every file under a dir) the modes the umask gives new files."""
    umask = os.umask(0)
    os.umask(umask)
    for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        os.chmod(file, 0o666 & ~umask)


def lock(path: Path, target: Path | str) -> IO[bytes]:
    """``path`` opened for appending (created if need be) under an exclusive lock held until it is closed.

    Refused at once when another run holds it. The lock is taken on the file the name points to now: if a
    finishing run renamed it away meanwhile, the new file of that name is locked instead.
    """
    while True:
        try:
            handle = open(path, "ab")
        except OSError as e:
            raise write_error(e, target) from e
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            handle.close()
            raise SpacesError(f"another run is writing this output (it holds {path.name}); wait for it to end or "
                              "write to another file", str(target)) from e
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            return handle
        handle.close()


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def check_fingerprint(partial: Path, fingerprint: dict[str, Any] | None, holds_records: bool) -> None:
    """Refuse to resume a partial that another input or other settings wrote (or that no run fingerprinted)."""
    if fingerprint is None or not holds_records:
        return
    saved_in = fingerprint_path(partial)
    try:
        saved = json.loads(saved_in.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SpacesError(f"holds records this command did not write here (no readable {saved_in.name} beside it "
                          "says from which input and settings): delete it to start over", str(partial)) from e
    want, have = _flat(fingerprint), _flat(saved if isinstance(saved, dict) else {})
    if want.get("input") is None or have.get("input") is None:  # stdin has no hash: the ids are checked instead
        want.pop("input", None)
        have.pop("input", None)
    if want != have:
        differ = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
        raise SpacesError(f"was written from another input or with other settings ({', '.join(differ[:5])}"
                          f"{' …' if len(differ) > 5 else ''} differ), so it cannot be resumed: rerun the command "
                          "that wrote it, or delete it to start over", str(partial))


def save_fingerprint(partial: Path, fingerprint: dict[str, Any] | None) -> None:
    if fingerprint is not None:
        write_atomic(fingerprint_path(partial), json.dumps(fingerprint, ensure_ascii=False, sort_keys=True) + "\n")


def remove_fingerprint(partial: Path) -> None:
    fingerprint_path(partial).unlink(missing_ok=True)
