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

from spaces.cards import CONFIG, GENERATOR, finish_run
from spaces.config import EditConfig, GenerateConfig, GeneratorConfig, dump_config
from spaces.errors import SpacesError
from spaces.generate.data import Example, collate, make_examples, read_training_records
from spaces.generate.model import CopyGenerator, build_generator
from spaces.generate.predict import summarize_records
from spaces.generate.sparse_softmax import sparse_softmax_cross_entropy
from spaces.partial import partial_path, recover_dir, swap_in_dir, write_dir_atomic
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


# the query, key and value projections an attention layer holds (BERT's, T5's, BART's and Pegasus's names)
_PROJECTIONS = (("query", "key", "value"), ("q", "k", "v"), ("q_proj", "k_proj", "v_proj"))


def set_attention_dropout(model: torch.nn.Module, p: float) -> None:
    """The dropout on the attention weights of every attention layer (the module holding the query, key and value
    projections: a ``Dropout`` in BERT, a rate in T5 and BART), leaving the hidden states' dropout as it is."""
    for module in model.modules():
        if not any(all(hasattr(module, name) for name in names) for names in _PROJECTIONS):
            continue
        dropout = getattr(module, "dropout", None)
        if isinstance(dropout, torch.nn.Dropout):
            dropout.p = p
        elif isinstance(dropout, float):
            module.dropout = p


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
    best: dict  # the best validation so far: {"epoch", "val_score", "weights", and the recipe's details}


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


class Seq2SeqRecipe:
    """What the seq2seq generator brings to the shared loop: its model, examples, batches, loss and validation.

    A recipe (the editor's is ``editor.EditRecipe``) builds a model from the training records or from a
    checkpoint's skeleton, turns records into examples and examples into batches (rows first), says how many
    positions each row trains on, computes the loss, and validates (mean CAIL and details for the card)."""

    kind = "seq2seq"

    def __init__(self, config: GenerateConfig):
        self.config = config

    def build(self, records: list[ExtractedRecord]) -> CopyGenerator:
        texts = [r.reference for r in records] + [r.extract for r in records]
        texts += [r.oracle_extract for r in records if r.oracle_extract]
        return build_generator(self.config.model, texts)

    def skeleton(self, path: Path) -> CopyGenerator:
        return CopyGenerator.skeleton(path)

    def examples(self, model: CopyGenerator, records: list[ExtractedRecord]) -> list[Example]:
        return make_examples(records, model.codec, self.config)

    def collate(self, model: CopyGenerator, examples: list[Example], rng: torch.Generator):
        t = self.config.train
        return collate(examples, rng, t.oracle_mix, t.source_noise, model.pad_id)

    @staticmethod
    def supervised(batch) -> torch.Tensor:
        return (batch[2] != -100).sum(1)

    def loss(self, model, unwrapped: CopyGenerator, batch) -> torch.Tensor:
        return compute_loss(model, batch, self.config, unwrapped.decoder_inputs(batch[2]))

    def validate(self, model: CopyGenerator, records: list[ExtractedRecord], rank: int, size: int
                 ) -> tuple[float, dict]:
        return validate(model, records, self.config, rank, size), {}

    def describe(self, model: CopyGenerator, records: list[ExtractedRecord]) -> dict:
        return {"model": {"kind": self.kind, "name_or_path": self.config.model.name_or_path,
                          "family": model.config.model_type, "vocab": len(model.tokenizer), "eos_id": model.eos_id,
                          "pad_id": model.pad_id, "parameters": sum(p.numel() for p in model.parameters())}}


@dataclass
class Trainer:
    """What the loop works on: the recipe, the prepared model, optimizer, scheduler and EMA, data and state."""

    recipe: Seq2SeqRecipe
    config: GeneratorConfig
    accelerator: object
    model: torch.nn.Module  # as prepared by accelerate (DDP-wrapped under a launcher)
    unwrapped: torch.nn.Module
    optimizer: object
    scheduler: object
    ema: object
    examples: list
    validation: list[ExtractedRecord]
    state: TrainState

    def weights(self, which: str) -> torch.nn.Module:
        return self.ema.module if which == "ema" else self.unwrapped

    @property
    def candidates(self) -> list[str]:
        return ["ema", "raw"] if self.config.train.ema_decay > 0 else ["raw"]


def train_while_improving(trainer: Trainer) -> Iterator[Step | Evaluation | EpochEnd]:
    """Train until the last epoch or until validation stops improving, yielding as it goes."""
    t, accelerator, model, state = trainer.config.train, trainer.accelerator, trainer.model, trainer.state
    rank, size, recipe = accelerator.process_index, accelerator.num_processes, trainer.recipe
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
            batch = recipe.collate(trainer.unwrapped, [trainer.examples[i] for i in perm[s:s + t.batch_size]], rng)
            # every process sampled the same batch; each trains on its rows, weighted by its share of
            # the supervised positions so that DDP's mean over processes is the mean over the whole batch
            rows = list(range(rank, len(batch[0]), size))
            tokens = recipe.supervised(batch)
            weight = size * tokens[rows].sum().item() / max(tokens.sum().item(), 1)
            batch = [x[rows or [0]].to(accelerator.device) for x in batch]
            with accelerator.accumulate(model):
                loss = recipe.loss(model, trainer.unwrapped, batch) * weight
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
        if not trainer.validation:  # nothing to validate on (train.validation 0): the last epoch is the model
            state.best = {"epoch": epoch + 1, "val_score": None, "weights": trainer.candidates[0]}
            state.history.append(record)
        elif (epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs:
            results = {which: recipe.validate(trainer.weights(which).eval(), trainer.validation, rank, size)
                       for which in trainer.candidates}
            scores = {which: score for which, (score, _) in results.items()}
            if t.keep_epoch == "last":  # every validation is of the model kept so far
                which, improved = trainer.candidates[0], True
            else:
                which = max(scores, key=lambda k: (scores[k], k == "ema"))
                improved = state.best is None or scores[which] > state.best["val_score"]
            if improved:
                state.best = {"epoch": epoch + 1, "val_score": scores[which], "weights": which, **results[which][1]}
                state.stale = 0
            else:
                state.stale += 1
            record.update({f"val_{k}": round(v, 6) for k, v in scores.items()})
            state.history.append(record)
            yield Evaluation(epoch + 1, mean_loss, scores, improved, dict(state.best))
            if t.patience and state.stale >= t.patience:
                state.stopped_early = True
        else:
            state.history.append(record)
        yield EpochEnd(epoch + 1)
        if state.stopped_early:
            return


def _save_model(model, path: Path, config: GeneratorConfig) -> None:
    model.save(path)
    dump_config(config, path / CONFIG)


def recipe_for(config: GeneratorConfig):
    """The recipe of the generator kind a config names."""
    if isinstance(config, EditConfig):
        from spaces.generate.editor import EditRecipe

        return EditRecipe(config)
    return Seq2SeqRecipe(config)


def split_records(records: list[ExtractedRecord], share: float, seed: int
                  ) -> tuple[list[ExtractedRecord], list[ExtractedRecord]]:
    """(train, validation): a seeded share of the records held out, each side in input order."""
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(len(records) - 1, max(1, round(len(records) * share))) if share > 0 else 0
    return [records[i] for i in sorted(order[n_val:])], [records[i] for i in sorted(order[:n_val])]


@dataclass
class Run:
    """A prepared training run: the trainer, and where it saves."""

    trainer: Trainer
    output_dir: Path
    records: list[ExtractedRecord]
    train_records: list[ExtractedRecord]

    @property
    def accelerator(self):
        return self.trainer.accelerator

    def save_checkpoint(self) -> None:
        """Every process saves its part (accelerate keeps per-process RNG states) into one new dir."""
        accelerator, checkpoint = self.accelerator, self.output_dir / "checkpoint"
        tmp = partial_path(checkpoint)
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=False)  # tied embeddings
        if accelerator.is_main_process:
            self.trainer.unwrapped.save_skeleton(tmp / SKELETON)
            self.trainer.state.save(tmp / STATE)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            swap_in_dir(checkpoint)
        accelerator.wait_for_everyone()

    def save_model(self, which: str, name: str) -> None:
        if self.accelerator.is_main_process:
            write_dir_atomic(lambda p: _save_model(self.trainer.weights(which), p, self.trainer.config),
                         self.output_dir / name)


def prepare(recipe, config: GeneratorConfig, input: Path | str, output_dir: Path) -> Run:
    """Split the records, build the model (or rebuild it from ``checkpoint/`` when resuming the same run), and
    prepare model, optimizer, schedule and EMA with accelerate."""
    from accelerate import Accelerator
    from torch.optim.swa_utils import AveragedModel
    from transformers import get_scheduler

    t = config.train
    records = read_training_records(input)
    train_records, val_records = split_records(records, t.validation, t.seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = output_dir / "checkpoint"
    for d in (checkpoint, output_dir / "model-best", output_dir / "model-last"):
        recover_dir(d)
    resuming = (checkpoint / STATE).is_file()
    torch.manual_seed(t.seed)
    run = {"data_sha256": file_sha256(input), "config": config.model_dump(mode="json", exclude={"train": {"epochs"}})}
    if resuming:
        state = TrainState.load(checkpoint / STATE)
        if state.run != run:
            raise SpacesError("its checkpoint/ was written for other data or other settings; remove the dir (or "
                              "choose another --output-dir) to train anew", str(output_dir))
        model = recipe.skeleton(checkpoint / SKELETON)
    else:
        model = recipe.build(train_records)
        state = TrainState(run=run)
    if getattr(config.model, "dropout", None) is not None:
        set_dropout(model, config.model.dropout)
    if config.model.attention_dropout is not None:
        set_attention_dropout(model, config.model.attention_dropout)
    examples = recipe.examples(model, train_records)

    accelerator = Accelerator(gradient_accumulation_steps=t.gradient_accumulation_steps,
                              mixed_precision=t.mixed_precision, cpu=not torch.cuda.is_available())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=t.learning_rate, weight_decay=t.weight_decay)
    steps = t.epochs * -(-len(examples) // (t.batch_size * t.gradient_accumulation_steps))
    scheduler = get_scheduler(t.scheduler, optimizer, num_warmup_steps=round(t.warmup * steps),
                              num_training_steps=steps)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(prepared)
    ema = AveragedModel(unwrapped, avg_fn=_ema(t.ema_decay))
    accelerator.register_for_checkpointing(scheduler, ema)
    if resuming:
        accelerator.load_state(str(checkpoint))
    trainer = Trainer(recipe, config, accelerator, prepared, unwrapped, optimizer, scheduler, ema, examples,
                      val_records, state)
    return Run(trainer, output_dir, records, train_records)


def finish(run: Run, input: Path | str, seconds: float) -> dict:
    """The card (the same in the dir, ``model-best/`` and ``model-last/``): the split, the best validation
    beside the extract's, the history and the recipe's account of its model."""
    trainer, accelerator = run.trainer, run.accelerator
    state, config = trainer.state, trainer.config
    validation = None  # no validation records: no score to compare, so summarize (auto) cannot choose it
    if trainer.validation:
        extract = extract_baseline(trainer.validation, config)
        generator = state.best["val_score"] if state.best else 0.0
        validation = {"generator": generator, "extract": extract, "generator_beats_extract": generator > extract}
    fields = {
        **trainer.recipe.describe(trainer.unwrapped, run.train_records),
        "split": {"train": len(run.train_records), "validation": len(trainer.validation)},
        "best": state.best,
        "validation": validation,
        "stopped_early": state.stopped_early,
        "history": state.history,
        "seconds": round(seconds, 1),
    }
    return finish_run(accelerator, config, run.output_dir, GENERATOR, input, len(run.records), fields,
                      also=[run.output_dir / "model-best", run.output_dir / "model-last"])


def train_generator(config: GeneratorConfig, input: Path | str, output_dir: Path) -> dict:
    """Train a generator of the kind the config names (seq2seq or edit) and return its card.

    ``model-best/`` is replaced at each validation that improves, ``model-last/`` and ``checkpoint/`` after each
    epoch, each atomically; rerunning after a kill resumes from ``checkpoint/``. The loop and the saving around
    it are the same for every kind; the recipe supplies the rest.
    """
    start_time = time.perf_counter()
    run = prepare(recipe_for(config), config, input, output_dir)
    trainer, t = run.trainer, config.train
    steps_per_epoch = -(-len(trainer.examples) // t.batch_size)
    label = "train editor" if isinstance(config, EditConfig) else "train generator"
    with progress(None, (t.epochs - trainer.state.epoch) * steps_per_epoch, label, unit="step") as bar:
        for event in train_while_improving(trainer):
            if isinstance(event, Step):
                bar.update()
                bar.set_postfix(epoch=event.epoch, loss=f"{event.loss:.3f}")
            elif isinstance(event, Evaluation):
                best = event.best
                bar.write(f"epoch {event.epoch}: loss {event.loss:.3f}; validation CAIL "
                          + ", ".join(f"{k} {v:.4f}" for k, v in event.scores.items())
                          + f"; best {best['val_score']:.4f} ({best['weights']}, epoch {best['epoch']})")
                if event.improved:
                    run.save_model(best["weights"], "model-best")
            elif isinstance(event, EpochEnd):
                run.save_model(trainer.candidates[0], "model-last")
                if not trainer.validation:
                    run.save_model(trainer.candidates[0], "model-best")
                run.save_checkpoint()
    return finish(run, input, time.perf_counter() - start_time)
