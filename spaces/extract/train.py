"""``spaces extract train``: k-fold DGCNN training with out-of-fold extracts for every record.

Each fold's model is the epoch with the best validation extract CAIL score (word level); the
out-of-fold extracts (``oof.jsonl``) are what the generator trains on, since they are what the
extractor really produces on documents it has not seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from spaces.cards import write_card
from spaces.config import ExtractConfig, dump_config
from spaces.errors import SpacesError
from spaces.extract.dgcnn import DGCNN, masked_bce
from spaces.extract.encoders import SentenceEncoder
from spaces.extract.oracle import label_document
from spaces.extract.sections import section_roles
from spaces.extract.tagger import (KIND, clause_probs, document_features, extracted_record, pad_batch, save_fold,
                                   select)
from spaces.progress import progress
from spaces.records import STDIO, JsonlWriter, LabeledRecord, display_name, read_documents, read_jsonl, read_records
from spaces.rouge import score_texts


@dataclass
class Example:
    id: str
    clauses: list[str]
    labels: list[int]
    reference: str
    roles: list[str]


def load_examples(path: Path | str, config: ExtractConfig) -> list[Example]:
    """Labeled records (from ``extract oracle``) as they are, or documents labelled here by the oracle."""
    if str(path) == STDIO:
        raise SpacesError("training reads its records twice: give a file, not stdin", display_name(path))
    first = next(read_jsonl(path), None)
    if first is None:
        raise SpacesError("no records to train on", display_name(path))
    if "sentences" in first[1] and "labels" in first[1]:
        records = read_records(path, LabeledRecord)
    else:
        docs = read_documents(path, config.data, need_summary=True)
        records = (label_document(doc, config.data) for doc in progress(docs, None, "oracle labels"))
    return [Example(r.id, r.sentences, r.labels, r.reference, r.roles or section_roles(r.sentences))
            for r in records]


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

    def mean(self, idx: list[int], probs: list[np.ndarray], threshold: float, k: int) -> float:
        return float(np.mean([self(i, select(p, threshold, k)) for i, p in zip(idx, probs)]))


def train_extractor(config: ExtractConfig, input: Path | str, output_dir: Path) -> dict:
    """Train ``config.train.folds`` DGCNN taggers; write them, the card and oof.jsonl into ``output_dir``."""
    start_time = time.perf_counter()
    t, sel = config.train, config.select
    examples = load_examples(input, config)
    if len(examples) < t.folds:
        raise SpacesError(f"{len(examples)} records cannot make {t.folds} folds (set --train.folds lower)",
                          display_name(input))
    output_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    rank, size = accelerator.process_index, accelerator.num_processes
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
            torch.manual_seed(t.seed + k)
            train_idx = [i for i in range(len(examples)) if fold_of[i] != k]
            val_idx = [i for i in range(len(examples)) if fold_of[i] == k]
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
                                  pad_batch([vectors[i] for i in local], [examples[i].labels for i in local]))
                    # weighted so that DDP's mean over ranks is the mean over all clauses of the batch
                    weight = size * share / sum(len(vectors[i]) for i in batch)
                    loss = masked_bce(wrapped(x, mask), y, mask) * weight
                    optimizer.zero_grad()
                    accelerator.backward(loss)
                    optimizer.step()
                probs = clause_probs([model], [vectors[i] for i in val_idx])
                score = scorer.mean(val_idx, probs, sel.threshold, sel.fallback_top_k)
                if score > best[0]:
                    best = (score, epoch + 1, {n: p.detach().clone() for n, p in model.state_dict().items()})
                bar.update()
            model.load_state_dict(best[2])
            if accelerator.is_main_process:
                save_fold(model, output_dir / f"fold-{k}.safetensors")
            for i, p in zip(val_idx, clause_probs([model], [vectors[i] for i in val_idx])):
                oof[i] = p
            folds.append({"fold": k, "records": len(val_idx), "best_epoch": best[1], "val_score": best[0]})
            del wrapped, optimizer
            accelerator.free_memory()  # SPACES's 15 folds must not hold 15 models and optimizers

    all_idx = list(range(len(examples)))
    threshold = sel.threshold
    sweep = {}
    if sel.tune_threshold:
        for th in np.round(np.arange(0.05, 0.96, 0.05), 2):
            sweep[float(th)] = scorer.mean(all_idx, oof, float(th), sel.fallback_top_k)
        threshold = max(sweep, key=lambda th: (sweep[th], th == sel.threshold))
    oof_score = scorer.mean(all_idx, oof, threshold, sel.fallback_top_k)
    fields = {
        "encoder": {"name_or_path": config.model.name_or_path, "identity": encoder.identity, "dim": encoder.dim,
                    "quantize": config.model.quantize},
        "folds": t.folds,
        "fold_scores": folds,
        "threshold": threshold,
        "threshold_sweep": sweep,
        "oof_score": oof_score,
        "seconds": round(time.perf_counter() - start_time, 1),
    }
    card = {"data": {"records": len(examples)}, **fields}
    if accelerator.is_main_process:
        selection = sel.model_copy(update={"threshold": threshold})
        with JsonlWriter(output_dir / "oof.jsonl") as out:
            for ex, probs in zip(examples, oof):
                out.write(extracted_record(ex.id, ex.clauses, probs, selection, roles=ex.roles,
                                           reference=ex.reference, labels=ex.labels))
        dump_config(config, output_dir / "config.yaml")
        card = write_card(output_dir, KIND, input, len(examples), **fields)
    accelerator.wait_for_everyone()
    return card
