"""``spaces evaluate``: mean per-document ROUGE F-scores and the CAIL score, joined by id.

Predictions are held by id (they are short); references stream past and are scored one by one, so a
reference file of whole judgments never sits in memory.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from spaces.config import DataConfig
from spaces.errors import SpacesError
from spaces.progress import count_lines, progress
from spaces.records import JsonlWriter, display_name, read_documents, write_json
from spaces.rouge import Profile, Unit, cail_score, rouge, tokenize

KEYS = ("rouge-1", "rouge-2", "rouge-l")


def _some(ids: list[str], k: int = 3) -> str:
    shown = ", ".join(repr(i) for i in ids[:k])
    return shown + (f" and {len(ids) - k} more" if len(ids) > k else "")


def read_predictions(path: Path | str, data: DataConfig, field: str) -> dict[str, tuple[str, str]]:
    """id -> (text, FILE:LINE) of every prediction; ids must be unique and the field a string."""
    name = display_name(path)
    out: dict[str, tuple[str, str]] = {}
    for doc in read_documents(path, data.model_copy(update={"summary_field": field}),
                              need_text=False, need_summary=True):
        out[doc.id] = (doc.summary, doc.where)
    if not out:
        raise SpacesError("no predictions", name)
    return out


def evaluate(predictions: Path | str, references: Path | str, data: DataConfig, unit: Unit = "word",
             output: Path | str | None = None, per_document: Path | str | None = None,
             prediction_field: str = "summary") -> dict:
    """Score every reference's prediction; missing or extra ids are errors that name some of them."""
    preds = read_predictions(predictions, data, prediction_field)
    totals = dict.fromkeys(KEYS, 0.0)
    n = 0
    earlier: dict[str, dict] = {}  # scores a killed run already wrote to the per-document file
    per_doc = JsonlWriter(per_document, on_resumed=lambda r: earlier.__setitem__(r["id"], r)) if per_document else None
    with per_doc or nullcontext():
        docs = read_documents(references, data, need_text=False, need_summary=True)
        for ref in progress(docs, count_lines(references), desc="evaluate"):
            if ref.id not in preds:
                raise SpacesError(f"no prediction for id {ref.id!r} in {display_name(predictions)}", ref.where)
            hyp, _ = preds.pop(ref.id)
            scores = earlier.pop(ref.id, None)
            if scores is None:
                scores = rouge(Profile.of(tokenize(hyp, unit, data.user_dict)),
                               Profile.of(tokenize(ref.summary, unit, data.user_dict)))
                scores["main"] = cail_score(scores)
                if per_doc:
                    per_doc.write({"id": ref.id, **scores})
            for key in KEYS:
                totals[key] += scores[key]
            n += 1
        if preds:
            extra = list(preds)
            raise SpacesError(f"{len(extra)} prediction(s) have no reference in {display_name(references)}: "
                              f"{_some(extra)}", preds[extra[0]][1])
    if n == 0:
        raise SpacesError("no references", display_name(references))
    metrics = {"n": n, "unit": unit, **{k: totals[k] / n for k in KEYS}}
    metrics["main"] = cail_score(metrics)
    if output is not None:
        write_json(output, metrics)
    return metrics

