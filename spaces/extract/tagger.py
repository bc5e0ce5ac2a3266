"""What train and predict share: batching clause vectors, running fold models, picking clauses."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from spaces.config import ExtractConfig, load_config
from spaces.errors import SpacesError
from spaces.extract.dgcnn import DGCNN

CARD = "card.json"


POSITION_FEATURES = 4


def with_positions(vectors: np.ndarray) -> np.ndarray:
    """Append [i/(n-1), 1 - i/(n-1), 1/(1+i), 1/(n-i)] to each of a document's n clause vectors."""
    n = len(vectors)
    i = np.arange(n, dtype=np.float32)
    rel = i / max(n - 1, 1)
    feats = np.stack([rel, 1 - rel, 1 / (1 + i), 1 / (n - i)], axis=1).astype(np.float32)
    return np.concatenate([vectors, feats], axis=1)


def per_document(flat: np.ndarray, clauses: Sequence[Sequence[str]], position_features: bool) -> list[np.ndarray]:
    """Cut the vectors of all documents' clauses (encoded together) back into one tagger input per document."""
    out, offset = [], 0
    for cs in clauses:
        vectors = flat[offset: offset + len(cs)]
        out.append(with_positions(vectors) if position_features else vectors)
        offset += len(cs)
    return out


def pad_batch(vectors: Sequence[np.ndarray], labels: Sequence[Sequence[int]] | None = None):
    """Documents of clause vectors -> padded [B, T, D] tensor, mask [B, T] and (optional) 0/1 targets."""
    longest = max(len(v) for v in vectors)
    dim = vectors[0].shape[1]
    x = torch.zeros(len(vectors), longest, dim)
    mask = torch.zeros(len(vectors), longest)
    y = torch.zeros(len(vectors), longest)
    for b, v in enumerate(vectors):
        x[b, : len(v)] = torch.from_numpy(v)
        mask[b, : len(v)] = 1
        if labels is not None:
            y[b, list(labels[b])] = 1
    return x, mask, y


@torch.inference_mode()
def clause_probs(models: Sequence[DGCNN], vectors: Sequence[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
    """Mean keep-probability of each clause over the given models (the k fold models at predict time)."""
    out: list[np.ndarray] = []
    for model in models:
        model.eval()
    device = next(models[0].parameters()).device
    for start in range(0, len(vectors), batch_size):
        chunk = vectors[start:start + batch_size]
        x, mask, _ = pad_batch(chunk)
        x, mask = x.to(device), mask.to(device)
        probs = torch.stack([m(x, mask) for m in models]).mean(0).float().cpu().numpy()
        out.extend(probs[b, : len(v)] for b, v in enumerate(chunk))
    return out


def select(probs: np.ndarray, threshold: float, fallback_top_k: int) -> list[int]:
    """Clauses with p > threshold, ascending; the k most probable if none passes (never empty)."""
    chosen = [i for i, p in enumerate(probs) if p > threshold]
    if not chosen and len(probs):
        chosen = sorted(np.argsort(-probs, kind="stable")[:fallback_top_k].tolist())
    return chosen


def save_fold(model: DGCNN, path: Path) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


class Extractor:
    """A trained extractor dir: config.yaml, card.json, fold-K.safetensors (predict averages the folds)."""

    def __init__(self, model_dir: Path):
        card = model_dir / CARD
        if not card.is_file():
            raise SpacesError("not an extractor model dir (no card.json); train one with 'spaces extract train'",
                              str(model_dir))
        try:
            self.card = json.loads(card.read_text(encoding="utf-8"))
            self.config = load_config(ExtractConfig, model_dir / "config.yaml")
            self.input_size = self.card["encoder"]["dim"] + (
                POSITION_FEATURES if self.config.model.position_features else 0)
            self.models = []
            for k in range(self.card["folds"]):
                model = DGCNN(self.input_size, self.config.model.hidden_size, self.config.model.dropout)
                model.load_state_dict(load_file(str(model_dir / f"fold-{k}.safetensors")))
                self.models.append(model.eval())
        except (ValueError, KeyError, OSError, RuntimeError, SafetensorError) as e:
            raise SpacesError(f"corrupt extractor model dir: {str(e).splitlines()[0]}", str(model_dir)) from None
        self.select = self.config.select.model_copy(update={"threshold": self.card["threshold"]})
