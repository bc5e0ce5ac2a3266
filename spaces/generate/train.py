"""``spaces generate train``: the seq2seq generator with copy head, sparse softmax, noise and EMA.

One accelerate loop (CPU, one GPU or ``accelerate launch`` alike). After each epoch the EMA weights
are validated by decoding the held-out records; ``model-last/`` holds the latest EMA weights and
``model-best/`` the best by validation CAIL score. ``checkpoint/`` holds the optimizer, raw weights,
EMA and RNG state, so a rerun of the same command resumes after the last finished epoch.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path

import torch

import spaces
from spaces.config import GenerateConfig, dump_config
from spaces.errors import SpacesError
from spaces.generate.data import collate, make_examples, read_pairs
from spaces.generate.model import CopyGenerator, build_generator
from spaces.generate.predict import summarize_batch
from spaces.generate.sparse_softmax import sparse_softmax_cross_entropy
from spaces.progress import progress
from spaces.records import display_name, file_sha256
from spaces.rouge import score_texts

CARD = "card.json"
STATE = "trainer_state.json"


def _loss(model, batch, config: GenerateConfig, decoder_input_ids=None):
    ids, mask, labels, copy = batch
    if decoder_input_ids is None:
        decoder_input_ids = model.shift_right(labels)
    lm_logits, copy_logits, _ = model(ids, mask, decoder_input_ids=decoder_input_ids)
    target_mask = labels != -100
    targets = labels.clamp(min=0)
    lm = sparse_softmax_cross_entropy(lm_logits, targets, config.train.sparse_top_k, target_mask)
    cp = torch.nn.functional.cross_entropy(copy_logits.flatten(0, 1).float(), copy.flatten(), reduction="none")
    cp = (cp * target_mask.flatten()).sum() / target_mask.sum().clamp(min=1)
    return lm + config.train.copy_weight * cp


def validate(model: CopyGenerator, pairs, config: GenerateConfig, rank: int = 0, size: int = 1) -> float:
    """Mean CAIL score of the decoded held-out records; each process decodes its share, then all gather."""
    from accelerate.utils import gather_object

    if not pairs:
        return 0.0
    mine, scores = pairs[rank::size], []
    for start in range(0, len(mine), config.decode.batch_size):
        chunk = mine[start:start + config.decode.batch_size]
        for p, summary in zip(chunk, summarize_batch(model, [p.extract for p in chunk], config)):
            scores.append(score_texts(summary, p.summary, "word", config.data.user_dict)["main"])
    scores = gather_object(scores) if size > 1 else scores
    return sum(scores) / len(scores)


def train_generator(config: GenerateConfig, input: Path | str, output_dir: Path) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    t = config.train
    if t.mixed_precision == "fp16":
        raise SpacesError("fp16 is refused for T5-family models (mT5 overflows in fp16); use bf16 or no",
                          "--train.mixed_precision")
    start_time = time.perf_counter()
    set_seed(t.seed)
    pairs = read_pairs(input, config, need_summary=True)
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(t.seed)).tolist()
    n_val = min(len(pairs) - 1, max(1, round(len(pairs) * t.validation))) if t.validation > 0 else 0
    val_pairs = [pairs[i] for i in sorted(order[:n_val])]
    train_pairs = [pairs[i] for i in sorted(order[n_val:])]

    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint, state_file = output_dir / "checkpoint", output_dir / "checkpoint" / STATE
    resuming = state_file.is_file()
    if resuming:
        model = CopyGenerator.load(output_dir / "model-last").train()
        state = json.loads(state_file.read_text())
    else:
        texts = [p.summary for p in train_pairs] + [p.extract for p in train_pairs]
        texts += [p.oracle_extract for p in train_pairs if p.oracle_extract]
        model = build_generator(config.model, texts)
        state = {"epoch": 0, "best": None, "history": []}
    tokenizer = model.tokenizer
    examples = make_examples(train_pairs, tokenizer, config)

    accelerator = Accelerator(gradient_accumulation_steps=t.gradient_accumulation_steps,
                              mixed_precision=t.mixed_precision, cpu=not torch.cuda.is_available())
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    rank, size = accelerator.process_index, accelerator.num_processes
    ema = AveragedModel(unwrapped, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay))
    accelerator.register_for_checkpointing(ema)
    if resuming:
        accelerator.load_state(str(checkpoint))
    rng = torch.Generator().manual_seed(t.seed + state["epoch"])
    steps_per_epoch = -(-len(examples) // t.batch_size)
    with progress(None, (t.epochs - state["epoch"]) * steps_per_epoch, "train generator", unit="step") as bar:
        for epoch in range(state["epoch"], t.epochs):
            model.train()
            perm = torch.randperm(len(examples), generator=rng).tolist()
            total = 0.0
            for s in range(0, len(perm), t.batch_size):
                batch = collate([examples[i] for i in perm[s:s + t.batch_size]], rng, t.oracle_mix,
                                t.source_noise, tokenizer.pad_token_id)
                # every process sampled the same batch; each trains on its rows, weighted by its share of
                # the target tokens so that DDP's mean over processes is the mean over the whole batch
                rows = list(range(rank, len(batch[0]), size))
                tokens = (batch[2] != -100).sum(1)
                weight = size * tokens[rows].sum().item() / tokens.sum().item()
                batch = [x[rows or [0]].to(accelerator.device) for x in batch]
                with accelerator.accumulate(model):
                    loss = _loss(model, batch, config, unwrapped.shift_right(batch[2])) * weight
                    accelerator.backward(loss)
                    optimizer.step()
                    optimizer.zero_grad()
                if accelerator.sync_gradients:
                    ema.update_parameters(unwrapped)
                total += loss.item()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
            averaged = ema.module.eval()
            evaluate = (epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs
            score = validate(averaged, val_pairs, config, rank, size) if evaluate else None
            state["epoch"] = epoch + 1
            state["history"].append({"epoch": epoch + 1, "loss": total / steps_per_epoch, "val_score": score})
            if accelerator.is_main_process:
                averaged.save(output_dir / "model-last")
                if score is not None and (state["best"] is None or score > state["best"]["val_score"]):
                    state["best"] = {"epoch": epoch + 1, "val_score": score}
                    tmp = output_dir / "model-best.partial"
                    shutil.rmtree(tmp, ignore_errors=True)
                    averaged.save(tmp)
                    shutil.rmtree(output_dir / "model-best", ignore_errors=True)
                    tmp.rename(output_dir / "model-best")
            accelerator.save_state(str(checkpoint), safe_serialization=False)  # tied embeddings
            if accelerator.is_main_process:
                state_file.write_text(json.dumps(state, indent=2))
    card = {
        "kind": "spaces-generator",
        "data": {"file": display_name(input), "sha256": file_sha256(input), "records": len(pairs),
                 "train": len(train_pairs), "validation": len(val_pairs)},
        "model": {"name_or_path": config.model.name_or_path, "vocab": len(tokenizer),
                  "parameters": sum(p.numel() for p in ema.module.parameters())},
        "best": state["best"],
        "history": state["history"],
        "seconds": round(time.perf_counter() - start_time, 1),
        "versions": {"spaces": spaces.__version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    if accelerator.is_main_process:
        dump_config(config, output_dir / "config.yaml")
        (output_dir / CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return card
