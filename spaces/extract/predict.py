"""``spaces extract predict``: extracted records for new documents, streamed, resumable."""

from __future__ import annotations

from pathlib import Path

from spaces.config import ExtractConfig
from spaces.errors import SpacesError
from spaces.extract.encoders import SentenceEncoder
from spaces.extract.tagger import Extractor, clause_probs, per_document, select
from spaces.progress import batched, count_lines, progress
from spaces.distributed import device, open_output
from spaces.records import Document, read_documents
from spaces.text import split_clauses


def extract_record(doc_id: str, clauses: list[str], probs, extractor: Extractor, summary: str | None) -> dict:
    chosen = select(probs, extractor.select.threshold, extractor.select.fallback_top_k)
    record = {"id": doc_id, "sentences": clauses, "scores": [round(float(p), 6) for p in probs],
              "selected": chosen, "extract": "".join(clauses[i] for i in chosen)}
    if summary is not None:
        record["summary"] = summary  # the generator trains on extracted records that keep their reference
    return record


def load_encoder(extractor: Extractor, config: ExtractConfig) -> SentenceEncoder:
    """The encoder the extractor was trained with; a different one would feed it foreign vectors."""
    trained = extractor.card["encoder"]
    encoder = SentenceEncoder(trained["name_or_path"], extractor.config.model.max_length,
                              config.model.encode_batch_size, device=str(device()))
    if encoder.identity != trained["identity"]:
        raise SpacesError(f"encoder {trained['name_or_path']!r} is not the one this extractor was trained with "
                          f"(identity {encoder.identity} != {trained['identity']})")
    return encoder


def extract_documents(extractor: Extractor, encoder: SentenceEncoder, docs: list[Document],
                      max_clauses: int) -> list[dict]:
    """Extracted records for a batch of documents (clauses encoded together, the folds averaged)."""
    clauses = []
    for doc in docs:
        clauses.append(split_clauses(doc.text, max_clauses))
        if not clauses[-1]:
            raise SpacesError("the document has no text", doc.where)
    flat = encoder.encode([c for cs in clauses for c in cs])
    vectors = per_document(flat, clauses, extractor.config.model.position_features)
    return [extract_record(doc.id, cs, probs, extractor, doc.summary)
            for doc, cs, probs in zip(docs, clauses, clause_probs(extractor.models, vectors))]


def predict_extracts(config: ExtractConfig, model_dir: Path, input: Path | str, output: Path | str,
                     batch_size: int = 32, skip_empty: bool = False) -> tuple[int, int]:
    """Write one extracted record per input document; returns (written by this run, empty ones skipped)."""
    extractor = Extractor(model_dir)
    for model in extractor.models:
        model.to(device())
    encoder = load_encoder(extractor, config)
    written = skipped = 0

    def wanted(doc: Document) -> bool:
        nonlocal skipped
        if skip_empty and not doc.text.strip():
            skipped += 1
            return False
        return doc.id not in out.done

    order = lambda: (d.id for d in read_documents(input, config.data, need_text=False))  # noqa: E731
    with open_output(output, order) as out:
        docs = (d for i, d in enumerate(filter(wanted, read_documents(input, config.data))) if out.mine(i))
        total = count_lines(input)
        with progress(None, total and total - len(out.done), "extract") as bar:
            for batch in batched(docs, batch_size):
                for record in extract_documents(extractor, encoder, batch, config.data.max_clauses):
                    out.write(record)
                    written += 1
                    bar.update()
    return written, skipped
