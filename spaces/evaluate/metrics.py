"""``spaces evaluate``: mean per-document ROUGE F-scores and the CAIL score, joined by id, and faithfulness.

Predictions are held by id (they are short); references stream past and are scored one by one, so a
reference file of whole judgments never sits in memory. Which field of a prediction is scored follows
its record type: ``summary`` of summary records, ``extract`` of extracted or labeled records (they carry
their reference only as ``reference``, so a stage file can never be scored against itself).
When the references carry the judgments' text, the faithfulness figures (``faithfulness.py``) are
computed against it too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from spaces.config import DataConfig
from spaces.errors import SpacesError
from spaces.evaluate.faithfulness import KEYS as FAITHFULNESS, faithfulness as faithfulness_of
from spaces.progress import progress
from spaces.records import (Document, JsonlWriter, UniqueIds, check_same_ids, count_records, display_name, document_from,
                            file_sha256, input_paths, read_jsonl, record_id, refuse_overwriting_inputs, same_file, sources,
                            write_json)
from spaces.rouge import Unit, cail_score, score_texts

KEYS = ("rouge-1", "rouge-2", "rouge-l")


def prediction_field(path: Path | str) -> str:
    """``extract`` for extracted or labeled records, ``summary`` otherwise (judged by the first record)."""
    first = next(read_jsonl(path), None)
    if first is None:
        raise SpacesError("no predictions", display_name(path))
    return "extract" if {"sentences", "extract"} <= set(first[1]) else "summary"


def read_predictions(path: Path | str, field: str | None = None) -> dict[str, tuple[str, str]]:
    """id -> (text, FILE:LINE) of every prediction; ids unique, the field (default: by record type) a string."""
    field = field or prediction_field(path)
    name, ids, out = display_name(path), UniqueIds(), {}
    for number, obj in read_jsonl(path):
        where = f"{name}:{number}"
        if "id" not in obj:
            raise SpacesError("missing id field 'id'", where)
        try:
            pid = record_id(obj["id"], "id")
        except ValueError as e:
            raise SpacesError(str(e), where) from e
        ids.add(pid, number, where)
        if field not in obj:
            hint = " (these are stage records: score 'extract')" if "extract" in obj else ""
            raise SpacesError(f"missing prediction field {field!r}{hint}", where)
        if not isinstance(obj[field], str):
            raise SpacesError(f"prediction field {field!r} must be a string", where)
        out[pid] = (obj[field], where)
    if not out:
        raise SpacesError("no predictions", name)
    return out


def tokenizer_settings(unit: Unit, data: DataConfig) -> dict[str, Any]:
    """What the word unit depends on: the same texts score otherwise with or without the user dictionary."""
    import jieba

    if unit == "char":
        return {"unit": "char"}
    return {"unit": "word", "tokenizer": f"jieba {jieba.__version__}, HMM off",
            "user_dict": str(Path(data.user_dict).resolve()) if data.user_dict else None,
            "user_dict_sha256": file_sha256(data.user_dict) if data.user_dict else None}


def score_document(hyp: str, ref: Document, unit: Unit, user_dict, faithfulness: bool = True) -> dict[str, Any]:
    """One document's row: ROUGE-1/2/L and the CAIL score, then (given the judgment's text) faithfulness."""
    row = {"id": ref.id, **score_texts(hyp, ref.summary, unit, user_dict)}
    if faithfulness and ref.text:
        row.update(faithfulness_of(hyp, ref.text, ref.summary, user_dict))
    return row


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over documents: each ROUGE F, the CAIL score of those means, each faithfulness figure."""
    n = len(rows)
    metrics: dict[str, Any] = {"n": n, **{k: sum(r[k] for r in rows) / n for k in KEYS}}
    metrics["main"] = cail_score(metrics)
    if any(k in r for r in rows for k in FAITHFULNESS):
        metrics["faithfulness"] = {k: _mean([r.get(k) for r in rows]) for k in FAITHFULNESS}
    return metrics


def evaluate(predictions: Path | str, references: Path | str, data: DataConfig, unit: Unit = "word",
             output: Path | str | None = None, per_document: Path | str | None = None,
             field: str | None = None, faithfulness: bool = True) -> dict:
    """Score every reference's prediction; missing and extra ids are one error that names both."""
    refuse_overwriting_inputs([output, per_document], [predictions, *input_paths(references), data.user_dict])
    if any(same_file(predictions, ref) for ref in input_paths(references)):
        raise SpacesError("the predictions are a references file: its summaries would be scored against "
                          "themselves (1.0); give a system's summaries", display_name(predictions))
    field = field or prediction_field(predictions)
    preds = read_predictions(predictions, field)
    ref_name = ", ".join(display_name(p) for p in input_paths(references))
    ref_ids = [doc.id for doc in read_references(references, data, need_text=False)]
    if not ref_ids:
        raise SpacesError("no references", ref_name)
    check_same_ids(preds, ref_ids, display_name(predictions), ref_name)
    rows: list[dict] = []
    earlier: dict[str, dict] = {}  # rows a killed run already wrote to the per-document file
    fingerprint = {"predictions": file_sha256(predictions), "field": field, "unit": unit, "faithfulness": faithfulness,
                   "references": [file_sha256(p) for p in input_paths(references)],
                   "tokenizer": tokenizer_settings(unit, data)}
    per_doc = JsonlWriter(per_document, on_resumed=lambda r: earlier.__setitem__(r["id"], r),
                          fingerprint=fingerprint) if per_document else None
    with per_doc or nullcontext():
        for ref in progress(read_references(references, data, need_text=faithfulness),
                            sum(count_records(p) or 0 for p in input_paths(references)) or None,
                            desc="evaluate"):
            row = earlier.pop(ref.id, None)
            if row is None:
                row = score_document(preds[ref.id][0], ref, unit, data.user_dict, faithfulness)
                if per_doc:
                    per_doc.write(row)
            rows.append(row)
    metrics = {**aggregate(rows), "prediction_field": field, **tokenizer_settings(unit, data)}
    if output is not None:
        write_json(output, metrics)
    return metrics


def read_references(references: Path | str | Sequence[Path | str], data: DataConfig,
                    need_text: bool) -> Iterator[Document]:
    """Reference documents (summary required), from one file or several (``records.source``); the text when
    asked for and present."""
    ids = UniqueIds()
    for src in sources(references, data):
        name = display_name(src.path)
        for number, obj in read_jsonl(src.path):
            where = f"{name}:{number}"
            doc = document_from(obj, src.data, where, need_text=need_text and src.data.text_field in obj,
                                need_summary=True)
            ids.add(doc.id, number, where)
            yield doc
