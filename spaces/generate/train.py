"""``spaces generate train``: the seq2seq generator with copy head, sparse softmax, noise and EMA.

``train_while_improving`` is the loop (one accelerate loop for a CPU, one GPU or ``accelerate launch``
alike): it yields every optimizer step and every validation, and stops early when validation stops
improving. ``train_generator`` sits around it: checkpoints, model dirs, the card and the log.

Recipe, for runs of a few hundred steps as much as for 60,000: AdamW with linear warm-up then decay
(transformers' ``get_scheduler``), gradient clipping, and an EMA whose decay warms up with the step
count, ``min(decay, (1+n)/(10+n))``, so that after n steps the initialisation weighs nothing (a fixed
0.999 keeps 0.999^400 = 67 % of it after 400 steps). Validation decodes the held-out records with both
the EMA and the raw weights; ``model-best/`` keeps the better of the two at its best epoch. The
identity baseline (each held-out record's extract as its summary) is scored too: ``summarize`` uses
the generator only where it beats it.

Every epoch's randomness (batch order, source choice and noise, dropout) derives from (seed, epoch)
inside the loop, and ``checkpoint/`` is replaced atomically after each epoch, so a run killed at any
point and rerun gives the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from spaces.cards import write_card
from spaces.config import GenerateConfig, dump_config
from spaces.errors import SpacesError
from spaces.generate.data import Example, collate, make_examples, read_training_records
from spaces.generate.model import CopyGenerator, build_generator
from spaces.generate.predict import CONFIG, KIND, summarize_records
from spaces.generate.sparse_softmax import sparse_softmax_cross_entropy
from spaces.progress import progress
from spaces.records import ExtractedRecord, file_sha256
from spaces.rouge import score_texts

STATE = "trainer_state.json"
SKELETON = "skeleton"


def ema_decay(updates: int, decay: float) -> float:
    """The EMA decay for the update after ``updates`` earlier ones: warmed up so a short run is not
    held at its initialisation (TF's ExponentialMovingAverage with num_updates)."""
    return min(decay, (1 + updates) / (10 + updates))


def _ema(decay: float):
    def average(averaged: torch.Tensor, current: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        d = ema_decay(int(updates), decay)
        return averaged * d + current * (1 - d)

    return average


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Every dropout of the model: its Dropout modules and the rates attention layers keep as numbers."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        for name in ("dropout", "attention_dropout", "activation_dropout", "dropout_rate"):
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, p)


def epoch_seed(seed: int, epoch: int) -> int:
    """Every epoch's own seed: a resumed epoch draws exactly what an uninterrupted one would."""
    return seed * 100_003 + epoch


def compute_loss(model: CopyGenerator, batch, config: GenerateConfig, decoder_input_ids: torch.Tensor):
    ids, mask, labels, copy = batch
    lm_logits, copy_logits, _ = model(ids, mask, decoder_input_ids=decoder_input_ids)
    target_mask = labels != -100
    lm = sparse_softmax_cross_entropy(lm_logits, labels.clamp(min=0), config.train.sparse_top_k, target_mask)
    cp = torch.nn.functional.cross_entropy(copy_logits.flatten(0, 1).float(), copy.flatten(), reduction="none")
    cp = (cp * target_mask.flatten()).sum() / target_mask.sum().clamp(min=1)
    return lm + config.train.copy_weight * cp


def validate(model: CopyGenerator, records: list[ExtractedRecord], config: GenerateConfig, rank: int = 0,
             size: int = 1) -> float:
    """Mean CAIL score of the decoded held-out records; each process decodes its share, then all gather."""
    from accelerate.utils import gather_object

    if not records:
        return 0.0
    mine, scores = records[rank::size], []
    for start in range(0, len(mine), config.decode.batch_size):
        chunk = mine[start:start + config.decode.batch_size]
        for r, summary in zip(chunk, summarize_records(model, chunk, config)):
            scores.append(score_texts(summary, r.reference, "word", config.data.user_dict)["main"])
    scores = gather_object(scores) if size > 1 else scores
    return sum(scores) / len(scores)


def extract_baseline(records: list[ExtractedRecord], config: GenerateConfig) -> float:
    """The identity baseline: each held-out record's extract scored as its summary."""
    if not records:
        return 0.0
    return sum(score_texts(r.extract, r.reference, "word", config.data.user_dict)["main"]
               for r in records) / len(records)


@dataclass
class Step:
    epoch: int
    loss: float
    learning_rate: float


@dataclass
class Evaluation:
    epoch: int
    loss: float  # mean training loss of the epoch
    scores: dict[str, float]  # validation CAIL of the "ema" and the "raw" weights
    improved: bool


@dataclass
class EpochEnd:
    epoch: int


@dataclass
class TrainState:
    epoch: int = 0
    best: dict | None = None  # {"epoch", "val_score", "weights"}
    stale: int = 0  # validations since the last improvement
    stopped_early: bool = False
    run: dict = field(default_factory=dict)  # the data's hash and the config: a resume must see the same
    history: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> TrainState:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")


@dataclass
class Trainer:
    """What the loop works on: the prepared model, optimizer, scheduler and EMA, data and state."""

    config: GenerateConfig
    accelerator: object
    model: torch.nn.Module  # as prepared by accelerate (DDP-wrapped under a launcher)
    unwrapped: CopyGenerator
    optimizer: object
    scheduler: object
    ema: object
    examples: list[Example]
    validation: list[ExtractedRecord]
    state: TrainState

    def weights(self, which: str) -> CopyGenerator:
        return self.ema.module if which == "ema" else self.unwrapped

    @property
    def candidates(self) -> list[str]:
        return ["ema", "raw"] if self.config.train.ema_decay > 0 else ["raw"]


def train_while_improving(trainer: Trainer) -> Iterator[Step | Evaluation | EpochEnd]:
    """Train until the last epoch or until validation stops improving, yielding as it goes."""
    t, accelerator, model, state = trainer.config.train, trainer.accelerator, trainer.model, trainer.state
    rank, size = accelerator.process_index, accelerator.num_processes
    pad = trainer.unwrapped.pad_id
    steps_per_epoch = -(-len(trainer.examples) // t.batch_size)
    from accelerate.utils import set_seed

    if state.stopped_early:  # a rerun of a run that stopped early has nothing left to do
        return
    for epoch in range(state.epoch, t.epochs):
        set_seed(epoch_seed(t.seed, epoch))  # dropout (and every other generator a checkpoint records)
        rng = torch.Generator().manual_seed(epoch_seed(t.seed, epoch))  # batches, source choice, noise
        model.train()
        perm = torch.randperm(len(trainer.examples), generator=rng).tolist()
        total = 0.0
        for s in range(0, len(perm), t.batch_size):
            batch = collate([trainer.examples[i] for i in perm[s:s + t.batch_size]], rng, t.oracle_mix,
                            t.source_noise, pad)
            # every process sampled the same batch; each trains on its rows, weighted by its share of
            # the target tokens so that DDP's mean over processes is the mean over the whole batch
            rows = list(range(rank, len(batch[0]), size))
            tokens = (batch[2] != -100).sum(1)
            weight = size * tokens[rows].sum().item() / tokens.sum().item()
            batch = [x[rows or [0]].to(accelerator.device) for x in batch]
            with accelerator.accumulate(model):
                decoder_inputs = trainer.unwrapped.decoder_inputs(batch[2])
                loss = compute_loss(model, batch, trainer.config, decoder_inputs) * weight
                accelerator.backward(loss)
                if accelerator.sync_gradients and t.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                trainer.optimizer.step()
                trainer.optimizer.zero_grad()
            if accelerator.sync_gradients:  # one schedule step per optimizer step, however many processes
                trainer.scheduler.step()
                trainer.ema.update_parameters(trainer.unwrapped)
            # each process's weighted loss: their mean over processes is the loss of the whole batch
            batch_loss = accelerator.reduce(loss.detach(), reduction="mean").item() if size > 1 else loss.item()
            total += batch_loss
            yield Step(epoch + 1, batch_loss, trainer.scheduler.get_last_lr()[0])
        state.epoch = epoch + 1
        mean_loss = total / steps_per_epoch
        record = {"epoch": epoch + 1, "loss": round(mean_loss, 6)}
        if (epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs:
            scores = {which: validate(trainer.weights(which).eval(), trainer.validation, trainer.config, rank, size)
                      for which in trainer.candidates}
            which = max(scores, key=lambda k: (scores[k], k == "ema"))
            improved = state.best is None or scores[which] > state.best["val_score"]
            if improved:
                state.best = {"epoch": epoch + 1, "val_score": scores[which], "weights": which}
                state.stale = 0
            else:
                state.stale += 1
            record.update({f"val_{k}": round(v, 6) for k, v in scores.items()})
            state.history.append(record)
            yield Evaluation(epoch + 1, mean_loss, scores, improved)
            if t.patience and state.stale >= t.patience:
                state.stopped_early = True
        else:
            state.history.append(record)
        yield EpochEnd(epoch + 1)
        if state.stopped_early:
            return


def _partial(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


def _swap_in(target: Path) -> None:
    """Put the finished ``TARGET.partial`` in place of ``target``: a kill never leaves half a dir under its name."""
    old = target.with_name(target.name + ".old")
    if target.exists():
        target.rename(old)
    _partial(target).rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _replace_dir(save, target: Path) -> None:
    shutil.rmtree(_partial(target), ignore_errors=True)
    save(_partial(target))
    _swap_in(target)


def _recover(target: Path) -> None:
    """A kill between the two renames of ``_replace_dir`` leaves only ``.old``: take it back."""
    old = target.with_name(target.name + ".old")
    if not target.exists() and old.exists():
        old.rename(target)


def _save_model(model: CopyGenerator, path: Path, config: GenerateConfig) -> None:
    model.save(path)
    dump_config(config, path / CONFIG)


def train_generator(config: GenerateConfig, input: Path | str, output_dir: Path) -> dict:
    from accelerate import Accelerator
    from torch.optim.swa_utils import AveragedModel
    from transformers import get_scheduler

    t = config.train
    start_time = time.perf_counter()
    records = read_training_records(input)
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(t.seed)).tolist()
    n_val = min(len(records) - 1, max(1, round(len(records) * t.validation))) if t.validation > 0 else 0
    val_records = [records[i] for i in sorted(order[:n_val])]
    train_records = [records[i] for i in sorted(order[n_val:])]

    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = output_dir / "checkpoint"
    for d in (checkpoint, output_dir / "model-best", output_dir / "model-last"):
        _recover(d)
    resuming = (checkpoint / STATE).is_file()
    torch.manual_seed(t.seed)
    run = {"data_sha256": file_sha256(input), "config": config.model_dump(mode="json", exclude={"train": {"epochs"}})}
    if resuming:
        state = TrainState.load(checkpoint / STATE)
        if state.run != run:
            raise SpacesError("its checkpoint/ was written for other data or other settings; remove the dir (or "
                              "choose another --output-dir) to train anew", str(output_dir))
        model = CopyGenerator.skeleton(checkpoint / SKELETON)
    else:
        texts = [r.reference for r in train_records] + [r.extract for r in train_records]
        texts += [r.oracle_extract for r in train_records if r.oracle_extract]
        model = build_generator(config.model, texts)
        state = TrainState(run=run)
    if config.model.dropout is not None:
        set_dropout(model, config.model.dropout)
    examples = make_examples(train_records, model.codec, config)

    accelerator = Accelerator(gradient_accumulation_steps=t.gradient_accumulation_steps,
                              mixed_precision=t.mixed_precision, cpu=not torch.cuda.is_available())
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    steps = t.epochs * -(-len(examples) // (t.batch_size * t.gradient_accumulation_steps))
    scheduler = get_scheduler(t.scheduler, optimizer, num_warmup_steps=round(t.warmup * steps),
                              num_training_steps=steps)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(prepared)
    ema = AveragedModel(unwrapped, avg_fn=_ema(t.ema_decay))
    accelerator.register_for_checkpointing(scheduler, ema)
    if resuming:
        accelerator.load_state(str(checkpoint))
    trainer = Trainer(config, accelerator, prepared, unwrapped, optimizer, scheduler, ema, examples, val_records,
                      state)

    def save_checkpoint() -> None:
        """Every process saves its part (accelerate keeps per-process RNG states) into one new dir."""
        tmp = _partial(checkpoint)
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=False)  # tied embeddings
        if accelerator.is_main_process:
            unwrapped.save_skeleton(tmp / SKELETON)
            state.save(tmp / STATE)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _swap_in(checkpoint)
        accelerator.wait_for_everyone()

    steps_per_epoch = -(-len(examples) // t.batch_size)
    with progress(None, (t.epochs - state.epoch) * steps_per_epoch, "train generator", unit="step") as bar:
        for event in train_while_improving(trainer):
            if isinstance(event, Step):
                bar.update()
                bar.set_postfix(epoch=event.epoch, loss=f"{event.loss:.3f}")
            elif isinstance(event, Evaluation):
                best = state.best
                bar.write(f"epoch {event.epoch}: loss {event.loss:.3f}; validation CAIL "
                          + ", ".join(f"{k} {v:.4f}" for k, v in event.scores.items())
                          + f"; best {best['val_score']:.4f} ({best['weights']}, epoch {best['epoch']})")
                if event.improved and accelerator.is_main_process:
                    _replace_dir(lambda p: _save_model(trainer.weights(best["weights"]), p, config),
                                 output_dir / "model-best")
            elif isinstance(event, EpochEnd):
                if accelerator.is_main_process:
                    _replace_dir(lambda p: _save_model(trainer.weights(trainer.candidates[0]), p, config),
                                 output_dir / "model-last")
                save_checkpoint()

    extract = extract_baseline(val_records, config)
    generator = state.best["val_score"] if state.best else 0.0
    fields = {
        "model": {"name_or_path": config.model.name_or_path, "family": unwrapped.config.model_type,
                  "vocab": len(unwrapped.tokenizer), "eos_id": unwrapped.eos_id, "pad_id": unwrapped.pad_id,
                  "parameters": sum(p.numel() for p in unwrapped.parameters())},
        "split": {"train": len(train_records), "validation": len(val_records)},
        "best": state.best,
        "validation": {"generator": generator, "extract": extract, "generator_beats_extract": generator > extract},
        "stopped_early": state.stopped_early,
        "history": state.history,
        "seconds": round(time.perf_counter() - start_time, 1),
    }
    card = {"data": {"records": len(records)}, **fields}
    if accelerator.is_main_process:
        dump_config(config, output_dir / CONFIG)
        card = write_card(output_dir, KIND, input, len(records), **fields)
        for name in ("model-best", "model-last"):
            if (output_dir / name).is_dir():
                write_card(output_dir / name, KIND, input, len(records), **fields)
    accelerator.wait_for_everyone()
    return card
