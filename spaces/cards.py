"""Model cards: the small JSON file every trained model dir carries (data hash, counts, versions, metrics)."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spaces.config import dump_config
from spaces.errors import SpacesError
from spaces.records import display_name, file_sha256, input_paths, write_json

CARD = "card.json"
CONFIG = "config.yaml"  # the config a model dir was trained with, beside its card
EXTRACTOR, GENERATOR = "spaces-extractor", "spaces-generator"
# The one registry of model-dir kinds: (the command that trains one, what it is, what takes it).
KINDS = {
    EXTRACTOR: ("spaces extract train", "an extractor", "extract predict -m or summarize --extractor"),
    GENERATOR: ("spaces generate train", "a generator", "generate predict -m or summarize --generator"),
}


def environment() -> dict[str, Any]:
    """Versions and the thread count: the same seed gives the same bytes only at the same thread count."""
    import torch
    import transformers

    import spaces

    return {"spaces": spaces.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads()}


def write_card(model_dir: Path, kind: str, data: Path | str | Sequence[Path | str], records: int,
               **fields: Any) -> dict[str, Any]:
    """Write ``model_dir/card.json`` atomically and return it (``data``: the input file, or several)."""
    files = input_paths(data)
    hashes = [file_sha256(f) for f in files]
    card = {"kind": kind,
            "data": {"file": ", ".join(display_name(f) for f in files),
                     "sha256": hashes[0] if len(hashes) == 1 else hashes, "records": records},
            **fields, "versions": environment()}
    write_json(model_dir / CARD, card)
    return card


def finish_run(accelerator, config, model_dir: Path, kind: str, data: Path | str | Sequence[Path | str],
               records: int, fields: dict[str, Any], also: Sequence[Path] = (), write=None) -> dict[str, Any]:
    """The end of a training run, the same for every stage: on the main process only, ``write()`` (the stage's
    own files), then ``config.yaml`` and the card in ``model_dir`` and the card in each of ``also`` that
    exists (``model-best/``, ``model-last/``); every process waits for it, and each returns the card."""
    card = {"data": {"records": records}, **fields}
    if accelerator.is_main_process:
        if write is not None:
            write()
        dump_config(config, model_dir / CONFIG)
        card = write_card(model_dir, kind, data, records, **fields)
        for path in also:
            if path.is_dir():
                write_card(path, kind, data, records, **fields)
    accelerator.wait_for_everyone()
    return card


def card_sha256(model_dir: Path | str) -> str | None:
    """What a partial output made with this model dir is fingerprinted by (retraining changes its card)."""
    path = Path(model_dir) / CARD
    return file_sha256(path) if path.is_file() else None


def read_card(model_dir: Path, kind: str) -> dict[str, Any]:
    """A model dir's card; a missing or foreign one is a located error that says how to make one."""
    path = Path(model_dir) / CARD
    command, what, _ = KINDS[kind]
    if not path.is_file():
        raise SpacesError(f"not {what} model dir (no {CARD}); train one with '{command}'", str(model_dir))
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise SpacesError(f"corrupt {what.split()[-1]} model dir: {CARD} is not JSON ({e})", str(model_dir)) from e
    found = card.get("kind") if isinstance(card, dict) else None
    if found in KINDS and found != kind:
        raise SpacesError(f"this is {KINDS[found][1]} model dir, not {what} one (give it to "
                          f"{KINDS[found][2]})", str(model_dir))
    if found != kind:
        raise SpacesError(f"not {what} model dir ({CARD} is of kind {found!r})", str(model_dir))
    return card
