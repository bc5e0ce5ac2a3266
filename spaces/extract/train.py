"""``spaces extract train``: k-fold DGCNN training with out-of-fold extracts for every record.

Each fold's model is the epoch with the best validation extract CAIL score (word level); the
out-of-fold extracts (``oof.jsonl``) are what the generator trains on, since they are what the
extractor really produces on documents it has not seen.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from spaces.cards import EXTRACTOR, finish_run
from spaces.config import ExtractConfig, SelectConfig
from spaces.errors import SpacesError
from spaces.extract.dgcnn import DGCNN, masked_bce
from spaces.extract.encoders import SentenceEncoder
from spaces.extract.oracle import label_document
from spaces.extract.sections import section_roles
from spaces.extract.tagger import (clause_probs, document_features, extracted_record, pack_batch, save_fold,
                                   select)
from spaces.progress import progress
from spaces.records import (STDIO, JsonlWriter, LabeledRecord, display_name, input_paths, read_documents, read_jsonl,
                            read_records, sources)
from spaces.rouge import score_texts


@dataclass
class Example:
    id: str
    clauses: list[str]
    labels: list[int]
    reference: str
    roles: list[str]


def load_examples(inputs: Path | str | Sequence[Path | str], config: ExtractConfig) -> list[Example]:
    """Labeled records (from ``extract oracle``) as they are, or documents labelled here by the oracle; from
    one file or several (each with its own field names), ids unique across them."""
    out: list[Example] = []
    ids = set()
    for src in sources(inputs, config.data):
        if src.path == STDIO:
            raise SpacesError("training reads its records twice: give a file, not stdin", display_name(src.path))
        first = next(read_jsonl(src.path), None)
        if first is None:
            raise SpacesError("no records to train on", display_name(src.path))
        if "sentences" in first[1] and "labels" in first[1]:
            records = read_records(src.path, LabeledRecord)
        else:
            docs = read_documents([src.path], src.data, need_summary=True)
            records = (label_document(doc, src.data) for doc in progress(docs, None, "oracle labels"))
        for r in records:
            if r.id in ids:
                raise SpacesError(f"duplicate id {r.id!r}: an earlier input file has it too", display_name(src.path))
            ids.add(r.id)
            out.append(Example(r.id, r.sentences, r.labels, r.reference, r.roles or section_roles(r.sentences)))
    return out


class _Scorer:
    """Word-level CAIL score of an extract, memoised per (record, selection): epochs repeat selections."""

    def __init__(self, examples: list[Example], user_dict):
        self.examples, self.user_dict, self.memo = examples, user_dict, {}

    def __call__(self, i: int, chosen: list[int]) -> float:
        key = (i, tuple(chosen))
        if key not in self.memo:
            ex = self.examples[i]
            extract = "".join(ex.clauses[j] for j in chosen)
            self.memo[key] = score_texts(extract, ex.reference, "word", self.user_dict)["main"]
        return self.memo[key]

    def mean(self, idx: list[int], probs: list[np.ndarray], selection: SelectConfig) -> float:
        return float(np.mean([self(i, select(p, self.examples[i].clauses, selection, self.examples[i].roles)[0])
                              for i, p in zip(idx, probs)]))


THRESHOLDS = [round(float(t), 2) for t in np.arange(0.05, 0.96, 0.05)]
BUDGETS = [None, *range(250, 751, 50)]  # characters (CAIL references: 192-474, mean 283)


def tune_selection(sel: SelectConfig, score) -> tuple[SelectConfig, list[dict]]:
    """The threshold (and, with ``tune_budget``, the budget) that maximise ``score`` of the out-of-fold
    extracts; ties keep the configured value. Returns the selection and every point tried."""
    if not sel.tune_threshold:
        return sel, []
    budgets = BUDGETS if sel.tune_budget else [sel.budget]
    sweep = [{"threshold": t, "budget": b, "score": score(sel.model_copy(update={"threshold": t, "budget": b}))}
             for b in budgets for t in THRESHOLDS]
    best = max(sweep, key=lambda p: (p["score"], p["threshold"] == sel.threshold, p["budget"] == sel.budget))
    return sel.model_copy(update={"threshold": best["threshold"], "budget": best["budget"]}), sweep


def _train_fold(k: int, config: ExtractConfig, accelerator, examples: list[Example], vectors: list[np.ndarray],
                train_idx: list[int], val_idx: list[int], rng: np.random.Generator, scorer: _Scorer, bar
                ) -> tuple[DGCNN, dict]:
    """One fold's DGCNN, trained on ``train_idx`` with every process taking its share of each batch, at its best
    epoch on ``val_idx``; and the fold's line for the card."""
    t = config.train
    rank, size = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(t.seed + k)
    model = DGCNN(vectors[0].shape[1], config.model.hidden_size, config.model.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.learning_rate)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    best = (-1.0, 0, None)
    for epoch in range(t.epochs):
        model.train()
        order = rng.permutation(train_idx)
        for s in range(0, len(order), t.batch_size):
            batch = order[s: s + t.batch_size]
            local = list(batch[rank::size]) or [batch[0]]  # every rank must step: a spare one weighs 0
            share = sum(len(vectors[i]) for i in batch[rank::size])
            x, mask, y = (v.to(accelerator.device) for v in
                          pack_batch([vectors[i] for i in local], [examples[i].labels for i in local]))
            # weighted so that DDP's mean over ranks is the mean over all clauses of the batch
            weight = size * share / sum(len(vectors[i]) for i in batch)
            loss = masked_bce(wrapped(x, mask), y, mask) * weight
            optimizer.zero_grad()
            accelerator.backward(loss)
            optimizer.step()
        score = scorer.mean(val_idx, clause_probs([model], [vectors[i] for i in val_idx]), config.select)
        if score > best[0]:
            best = (score, epoch + 1, {n: p.detach().clone() for n, p in model.state_dict().items()})
        bar.update()
    model.load_state_dict(best[2])
    del wrapped, optimizer
    accelerator.free_memory()  # SPACES's 15 folds must not hold 15 models and optimizers
    return model, {"fold": k, "records": len(val_idx), "best_epoch": best[1], "val_score": best[0]}


def train_extractor(config: ExtractConfig, input: Path | str | Sequence[Path | str], output_dir: Path) -> dict:
    """Train ``config.train.folds`` DGCNN taggers; write them, the card and oof.jsonl into ``output_dir``."""
    start_time = time.perf_counter()
    t, sel = config.train, config.select
    examples = load_examples(input, config)
    if len(examples) < t.folds:
        raise SpacesError(f"{len(examples)} records cannot make {t.folds} folds (set --train.folds lower)",
                          ", ".join(input_paths(input)))
    output_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    encoder = SentenceEncoder(config.model.name_or_path, config.model.max_length, config.model.encode_batch_size,
                              device=str(accelerator.device), quantize=config.model.quantize)
    all_clauses = [c for ex in examples for c in ex.clauses]
    with accelerator.main_process_first(), progress(None, len(all_clauses), "encode clauses", unit="clause") as bar:
        flat = encoder.encode(all_clauses, bar)  # the main process fills the vector cache, the others read it
    vectors = document_features(flat, [ex.roles for ex in examples], config.model)

    rng = np.random.default_rng(t.seed)
    fold_of = np.empty(len(examples), dtype=int)
    fold_of[rng.permutation(len(examples))] = np.arange(len(examples)) % t.folds
    scorer = _Scorer(examples, config.data.user_dict)
    oof: list[np.ndarray | None] = [None] * len(examples)
    folds = []
    with progress(None, t.folds * t.epochs, "train folds", unit="epoch") as bar:
        for k in range(t.folds):
            train_idx = [i for i in range(len(examples)) if fold_of[i] != k]
            val_idx = [i for i in range(len(examples)) if fold_of[i] == k]
            model, fold = _train_fold(k, config, accelerator, examples, vectors, train_idx, val_idx, rng, scorer, bar)
            if accelerator.is_main_process:
                save_fold(model, output_dir / f"fold-{k}.safetensors")
            for i, p in zip(val_idx, clause_probs([model], [vectors[i] for i in val_idx])):
                oof[i] = p
            folds.append(fold)

    selection, sweep = tune_selection(sel, lambda s: scorer.mean(list(range(len(examples))), oof, s))
    oof_score = scorer.mean(list(range(len(examples))), oof, selection)
    records = [extracted_record(ex.id, ex.clauses, probs, selection, roles=ex.roles, reference=ex.reference,
                                labels=ex.labels) for ex, probs in zip(examples, oof)]
    fields = {
        "encoder": {"name_or_path": config.model.name_or_path, "identity": encoder.identity, "dim": encoder.dim,
                    "quantize": config.model.quantize},
        "folds": t.folds,
        "fold_scores": folds,
        "threshold": selection.threshold,
        "budget": selection.budget,
        "selection_sweep": sweep,
        "oof_score": oof_score,
        "holding_added": sum(bool(r.holding_added) for r in records),
        "seconds": round(time.perf_counter() - start_time, 1),
    }

    def write_oof() -> None:
        with JsonlWriter(output_dir / "oof.jsonl") as out:
            for record in records:
                out.write(record)

    return finish_run(accelerator, config, output_dir, EXTRACTOR, input, len(examples), fields, write=write_oof)
