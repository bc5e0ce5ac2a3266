"""SPACES's oracle: the clauses whose concatenation best matches the reference summary.

Greedy matching as in SPACES (``extract_matching``): take the longest summary clause (the first if
tied), find the document clause with the highest char-level CAIL score against it (the first if
tied), then recurse on (document clauses up to and including that match, summary clauses before it)
and on (document clauses from that match on, summary clauses after it). The labels are the sorted
set of matched document clauses. Scores are computed as rouge-chinese computes them (see
``spaces.rouge``), so every tie breaks the same way as in the original.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from spaces.config import DataConfig, ExtractConfig
from spaces.errors import SpacesError
from spaces.extract.sections import document_clauses
from spaces.progress import available_cores
from spaces.records import Document, LabeledRecord, read_documents
from spaces.rouge import Profile, cail_score, rouge, score_texts, tokenize
from spaces.stream import map_records
from spaces.text import split_clauses, words


def _char_profiles(clauses: Sequence[str]) -> list[Profile]:
    return [Profile.of(tokenize(c, "char")) for c in clauses]


def _best_match(docs: list[Profile], start: int, stop: int, ref: Profile) -> int:
    """Index in [start, stop) of the document clause with the highest CAIL score against ``ref``."""
    scores = [cail_score(rouge(docs[k], ref)) for k in range(start, stop)]
    return start + scores.index(max(scores))


def oracle_labels(clauses: Sequence[str], summary_clauses: Sequence[str]) -> list[int]:
    """Ascending indices of the clauses that the greedy matching picks for the summary."""
    docs, refs = _char_profiles(clauses), _char_profiles(summary_clauses)
    lengths = [len(s) for s in summary_clauses]
    matched: set[int] = set()
    todo = [(0, len(docs), 0, len(refs))]  # (doc start, doc stop, summary start, summary stop)
    while todo:
        d0, d1, s0, s1 = todo.pop()
        if d0 >= d1 or s0 >= s1:
            continue
        i = max(range(s0, s1), key=lengths.__getitem__)  # max() keeps the first of equals
        j = _best_match(docs, d0, d1, refs[i])
        matched.add(j)
        todo.append((d0, j + 1, s0, i))
        todo.append((j, d1, i + 1, s1))
    return sorted(matched)


def label_document(doc: Document, data: DataConfig) -> LabeledRecord:
    """The labeled record of one document, with its oracle extract's word-level CAIL score."""
    clauses, roles, dropped = document_clauses(doc, data.max_clauses)
    summary_clauses = split_clauses(doc.summary or "")
    if not summary_clauses:
        raise SpacesError("the summary is empty: nothing to label against", doc.where)
    labels = oracle_labels(clauses, summary_clauses)
    extract = "".join(clauses[i] for i in labels)
    score = score_texts(extract, doc.summary, "word", data.user_dict)["main"]
    return LabeledRecord(id=doc.id, sentences=clauses, labels=labels, extract=extract, reference=doc.summary,
                         score=score, roles=roles, dropped_clauses=dropped)


@dataclass
class OracleRun:
    labeled: int  # labelled by this run
    resumed: int  # found complete in a previous run's partial output
    skipped: int  # empty documents or summaries left out (only with skip_empty)
    mean_score: float  # word-level CAIL score of the oracle extracts, over all records of the output


def run_oracle(config: ExtractConfig, input: Path | str, output: Path | str, workers: int | None = None,
               skip_empty: bool = False, allow_empty: bool = False) -> OracleRun:
    """``spaces extract oracle``: label every document of ``input`` into ``output``.

    An empty document or summary is an error, or with ``skip_empty`` left out and counted.
    """
    if workers is not None and workers < 1:
        raise SpacesError(f"--workers must be at least 1, got {workers} (leave it out for all cores)")
    workers = workers or available_cores()
    words("", config.data.user_dict)  # load jieba once here: forked workers inherit it
    scores: list[float] = []
    label = partial(label_document, data=config.data)
    with (multiprocessing.Pool(workers) if workers > 1 else nullcontext()) as pool:

        def work(batch: list[Document]):
            for record in (pool.imap(label, batch, chunksize=4) if pool else map(label, batch)):
                scores.append(record.score)
                yield record

        run = map_records(lambda: read_documents(input, config.data, need_summary=True), input, output, work,
                          desc="oracle", batch_size=16 * workers,
                          skip=(lambda d: not (d.text.strip() and d.summary.strip())) if skip_empty else None,
                          on_resumed=lambda r: scores.append(r["score"]), allow_empty=allow_empty,
                          settings={"config": config.model_dump(mode="json")})
    return OracleRun(run.written, run.resumed, run.skipped, sum(scores) / len(scores) if scores else 0.0)
