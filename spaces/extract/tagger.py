"""What train and predict share: the tagger's input features, running fold models, picking clauses,
building the extracted record, and the extractor dir."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from spaces.cards import CARD, CONFIG, EXTRACTOR, read_card
from spaces.config import ExtractConfig, ExtractModelConfig, SelectConfig, load_config
from spaces.errors import SpacesError
from spaces.extract.dgcnn import DGCNN, REACH
from spaces.extract.sections import ROLES, position_in_section
from spaces.partial import save_tensors
from spaces.records import ExtractedRecord

POSITION_FEATURES = 4
SECTION_FEATURES = len(ROLES) + 2


def feature_size(encoder_dim: int, model: ExtractModelConfig) -> int:
    return (encoder_dim + POSITION_FEATURES * model.position_features
            + SECTION_FEATURES * model.section_features)


def position_features(n: int) -> np.ndarray:
    """[i/(n-1), 1 - i/(n-1), 1/(1+i), 1/(n-i)] for each of a document's n clauses."""
    i = np.arange(n, dtype=np.float32)
    rel = i / max(n - 1, 1)
    return np.stack([rel, 1 - rel, 1 / (1 + i), 1 / (n - i)], axis=1).astype(np.float32)


def section_features(roles: Sequence[str]) -> np.ndarray:
    """One-hot section role, then the clause's relative place in its section and 1/(1 + index in it)."""
    out = np.zeros((len(roles), SECTION_FEATURES), dtype=np.float32)
    for row, (role, (k, n)) in enumerate(zip(roles, position_in_section(roles))):
        out[row, ROLES.index(role)] = 1.0
        out[row, -2] = k / max(n - 1, 1)
        out[row, -1] = 1 / (1 + k)
    return out


def document_features(flat: np.ndarray, roles: Sequence[Sequence[str]], model: ExtractModelConfig) -> list[np.ndarray]:
    """Cut the vectors of all documents' clauses (encoded together) into one tagger input per document."""
    out, offset = [], 0
    for doc_roles in roles:
        n = len(doc_roles)
        parts = [flat[offset: offset + n]]
        if model.position_features:
            parts.append(position_features(n))
        if model.section_features:
            parts.append(section_features(doc_roles))
        out.append(np.concatenate(parts, axis=1))
        offset += n
    return out


def pack_batch(vectors: Sequence[np.ndarray], labels: Sequence[Sequence[int]] | None = None):
    """Documents of clause vectors -> one row [1, L, D], its mask [1, L] and (optional) 0/1 targets.

    The documents lie end to end with ``REACH`` masked clauses between them: no convolution reaches across
    the gap, so each document's outputs are its outputs alone (up to float rounding), and the batch costs
    its clauses rather than its longest document times its size (random batches of 4 CAIL judgments: 71%
    of a padded batch is real clauses)."""
    dim, total = vectors[0].shape[1], sum(len(v) for v in vectors) + REACH * (len(vectors) - 1)
    x, mask, y = torch.zeros(1, total, dim), torch.zeros(1, total), torch.zeros(1, total)
    start = 0
    for b, v in enumerate(vectors):
        x[0, start:start + len(v)] = torch.from_numpy(v)
        mask[0, start:start + len(v)] = 1
        if labels is not None:
            y[0, [start + i for i in labels[b]]] = 1
        start += len(v) + REACH
    return x, mask, y


@torch.inference_mode()
def clause_probs(models: Sequence[DGCNN], vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Mean keep-probability of each clause over the given models (the k fold models at predict time).

    Each document is tagged alone (a DGCNN over at most a few hundred clauses is cheap): its probabilities
    depend on its own vectors only, never on the documents that share its batch or its process, so a
    resumed or sharded run tags a document exactly as an uninterrupted one does.
    """
    for model in models:
        model.eval()
    device = next(models[0].parameters()).device
    out: list[np.ndarray] = []
    for v in vectors:
        x = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))[None].to(device)
        mask = torch.ones(1, len(v), device=device)
        out.append(torch.stack([m(x, mask) for m in models]).mean(0)[0].float().cpu().numpy())
    return out


# The holding runs from the judgment section's cue clause (…判决如下：) to the end of its first item.
MAX_HOLDING_CLAUSES = 8


def holding(clauses: Sequence[str], roles: Sequence[str]) -> list[int]:
    """The court's decision: the first judgment-section clauses, through the first one ending a sentence."""
    out: list[int] = []
    for i, role in enumerate(roles):
        if role != "judgment":
            if out:
                break
            continue
        out.append(i)
        if len(out) > 1 and clauses[i].rstrip().endswith(("。", "；", ";")) or len(out) == MAX_HOLDING_CLAUSES:
            break
    return out


def select(probs: np.ndarray, clauses: Sequence[str], selection: SelectConfig,
           roles: Sequence[str] | None = None) -> tuple[list[int], bool]:
    """(ascending clause indices, whether the holding was added to them).

    Clauses with p > threshold; within ``budget`` characters, the most probable of them that fit; the k
    most probable if none passes; then the next most probable until ``min_chars``; and the holding
    when the selection has none of its decision (``keep_holding``). Never empty.
    """
    order = np.argsort(-probs, kind="stable").tolist()
    chosen = [i for i in order if probs[i] > selection.threshold]
    if selection.budget is not None:
        kept, room = [], selection.budget
        for i in chosen:
            if len(clauses[i]) <= room:
                kept.append(i)
                room -= len(clauses[i])
        chosen = kept
    if not chosen:
        chosen = order[:selection.fallback_top_k]
    size = sum(len(clauses[i]) for i in chosen)
    for i in order:
        if size >= selection.min_chars:
            break
        if i not in chosen:
            chosen.append(i)
            size += len(clauses[i])
    added = False
    if selection.keep_holding and roles is not None:
        decision = holding(clauses, roles)
        if len(decision) > 1 and not set(decision[1:]) & set(chosen):
            chosen, added = chosen + [i for i in decision if i not in chosen], True
    return sorted(chosen), added


def extracted_record(doc_id: str, clauses: list[str], probs: np.ndarray, selection: SelectConfig, *,
                     roles: list[str] | None = None, dropped: int = 0, reference: str | None = None,
                     labels: list[int] | None = None) -> ExtractedRecord:
    """The one builder of an extracted record (predict and the out-of-fold file alike)."""
    chosen, added = select(probs, clauses, selection, roles)
    return ExtractedRecord(
        id=doc_id, sentences=clauses, scores=[round(float(p), 6) for p in probs], selected=chosen,
        holding_added=added or None,
        extract="".join(clauses[i] for i in chosen), roles=roles, dropped_clauses=dropped, reference=reference,
        labels=labels, oracle_extract=None if labels is None else "".join(clauses[i] for i in labels))


def save_fold(model: DGCNN, path: Path) -> None:
    save_tensors(model.state_dict(), path)


class Extractor:
    """A trained extractor dir: config.yaml, card.json, fold-K.safetensors (predict averages the folds).

    Clauses are selected by the dir's own settings with its tuned threshold, except for the ``select``
    keys given (from flags such as ``--select.threshold``): those win.
    """

    def __init__(self, model_dir: Path, select: dict[str, Any] | None = None):
        self.card = read_card(model_dir, EXTRACTOR)
        part = model_dir / CONFIG
        try:
            self.config = load_config(ExtractConfig, part)
            part = model_dir / CARD
            self.input_size = feature_size(self.card["encoder"]["dim"], self.config.model)
            self.models = []
            for k in range(self.card["folds"]):
                part = model_dir / f"fold-{k}.safetensors"
                model = DGCNN(self.input_size, self.config.model.hidden_size, self.config.model.dropout)
                model.load_state_dict(load_file(str(part)))
                self.models.append(model.eval())
        except (ValueError, KeyError, TypeError, OSError, RuntimeError, SafetensorError, SpacesError) as e:
            message = e.message if isinstance(e, SpacesError) else str(e).splitlines()[0]
            raise SpacesError(f"corrupt extractor model dir: {message}", str(part)) from e
        tuned = {"threshold": self.card["threshold"], "budget": self.card.get("budget", self.config.select.budget)}
        self.select = self.config.select.model_copy(update={**tuned, **(select or {})})

    def to(self, device) -> Extractor:
        for model in self.models:
            model.to(device)
        return self
