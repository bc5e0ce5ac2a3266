"""Model cards: the small JSON file every trained model dir carries (data hash, counts, versions, metrics)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from spaces.errors import SpacesError
from spaces.records import display_name, file_sha256, write_json

CARD = "card.json"


def environment() -> dict[str, Any]:
    """Versions and the thread count: the same seed gives the same bytes only at the same thread count."""
    import torch
    import transformers

    import spaces

    return {"spaces": spaces.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads()}


def write_card(model_dir: Path, kind: str, data_file: Path | str, records: int, **fields: Any) -> dict[str, Any]:
    """Write ``model_dir/card.json`` atomically and return it."""
    card = {"kind": kind,
            "data": {"file": display_name(data_file), "sha256": file_sha256(data_file), "records": records},
            **fields, "versions": environment()}
    write_json(model_dir / CARD, card)
    return card


def card_sha256(model_dir: Path | str) -> str | None:
    """What a partial output made with this model dir is fingerprinted by (retraining changes its card)."""
    path = Path(model_dir) / CARD
    return file_sha256(path) if path.is_file() else None


def read_card(model_dir: Path, kind: str) -> dict[str, Any]:
    """A model dir's card; a missing or foreign one is a located error that says how to make one."""
    path = Path(model_dir) / CARD
    command = {"spaces-extractor": "spaces extract train", "spaces-generator": "spaces generate train"}[kind]
    what = {"spaces-extractor": "an extractor", "spaces-generator": "a generator"}[kind]
    if not path.is_file():
        raise SpacesError(f"not {what} model dir (no {CARD}); train one with '{command}'", str(model_dir))
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise SpacesError(f"corrupt {what.split()[-1]} model dir: {CARD} is not JSON ({e})", str(model_dir)) from None
    if not isinstance(card, dict) or card.get("kind") != kind:
        raise SpacesError(f"not {what} model dir ({CARD} is of kind "
                          f"{card.get('kind') if isinstance(card, dict) else None!r})", str(model_dir))
    return card
