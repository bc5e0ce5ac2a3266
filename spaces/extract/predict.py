"""``spaces extract predict``: extracted records for new documents, streamed, resumable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spaces.cards import card_sha256
from spaces.config import ExtractConfig
from spaces.distributed import device
from spaces.errors import SpacesError
from spaces.extract.encoders import SentenceEncoder
from spaces.extract.sections import document_clauses
from spaces.extract.tagger import Extractor, clause_probs, document_features, extracted_record
from spaces.records import Document, ExtractedRecord, read_documents
from spaces.stream import MapRun, map_records

# Documents per batch: their clauses are encoded together, and each batch is written (and saved
# against Ctrl-C) as soon as it is tagged.
BATCH_DOCUMENTS = 4


def load_encoder(extractor: Extractor, config: ExtractConfig) -> SentenceEncoder:
    """The encoder the extractor was trained with; a different one would feed it foreign vectors."""
    trained = extractor.card["encoder"]
    encoder = SentenceEncoder(trained["name_or_path"], extractor.config.model.max_length,
                              config.model.encode_batch_size, device=str(device()),
                              quantize=trained.get("quantize", "none"))
    if encoder.identity != trained["identity"]:
        raise SpacesError(f"encoder {trained['name_or_path']!r} is not the one this extractor was trained with "
                          f"(identity {encoder.identity} != {trained['identity']})")
    return encoder


def extract_documents(extractor: Extractor, encoder: SentenceEncoder, docs: list[Document],
                      max_clauses: int) -> list[ExtractedRecord]:
    """Extracted records for a batch of documents (clauses encoded together, the folds averaged)."""
    prepared = [document_clauses(doc, max_clauses) for doc in docs]
    flat = encoder.encode([c for clauses, _, _ in prepared for c in clauses])
    vectors = document_features(flat, [roles for _, roles, _ in prepared], extractor.config.model)
    return [extracted_record(doc.id, clauses, probs, extractor.select, roles=roles, dropped=dropped,
                             reference=doc.summary)
            for doc, (clauses, roles, dropped), probs in zip(docs, prepared, clause_probs(extractor.models, vectors))]


@dataclass
class ExtractRun(MapRun):
    truncated: int = 0  # documents longer than data.max_clauses (their first clauses dropped)
    holding: int = 0  # extracts the court's holding was added to (select.keep_holding)


def predict_extracts(config: ExtractConfig, model_dir: Path, input: Path | str, output: Path | str, *,
                     skip_empty: bool = False, allow_empty: bool = False,
                     overrides: dict[str, Any] | None = None) -> ExtractRun:
    """Write one extracted record per input document; a ``select.*`` key among the command line's
    ``overrides`` beats the model dir's own (its card's tuned threshold is the default)."""
    overrides = overrides or {}
    flags = {key.removeprefix("select.") for key in overrides if key.startswith("select.")}
    extractor = Extractor(model_dir, {key: getattr(config.select, key) for key in flags}).to(device())
    encoder = load_encoder(extractor, config)
    truncated = holding = 0

    def work(batch: list[Document]) -> list[ExtractedRecord]:
        nonlocal truncated, holding
        records = extract_documents(extractor, encoder, batch, config.data.max_clauses)
        truncated += sum(r.dropped_clauses > 0 for r in records)
        holding += sum(bool(r.holding_added) for r in records)
        return records

    run = map_records(lambda: read_documents(input, config.data), input, output, work, desc="extract",
                      batch_size=BATCH_DOCUMENTS, skip=(lambda d: not d.text.strip()) if skip_empty else None,
                      allow_empty=allow_empty,
                      settings={"config": config.model_dump(mode="json"), "model": card_sha256(model_dir)})
    return ExtractRun(run.written, run.resumed, run.skipped, truncated, holding)
