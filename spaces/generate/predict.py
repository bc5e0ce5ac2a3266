"""``spaces generate predict``: summaries for extracted records, batched, streamed, resumable."""

from __future__ import annotations

from pathlib import Path

from spaces.config import GenerateConfig
from spaces.generate.data import encode, iter_pairs, pad_sources
from spaces.generate.decoding import beam_search
from spaces.progress import batched, count_lines, progress
from spaces.distributed import device, open_output


def summarize_batch(model, extracts: list[str], config: GenerateConfig) -> list[str]:
    """Decode one batch of extracts into summaries with the configured beam search."""
    tokenizer = model.tokenizer
    device = next(model.parameters()).device
    ids, mask = pad_sources([encode(tokenizer, e, config.model.max_source_length) for e in extracts],
                            tokenizer.pad_token_id)
    was_training = model.training
    model.eval()
    outputs = beam_search(model, ids.to(device), mask.to(device), config.decode)
    model.train(was_training)
    return [tokenizer.decode(seq, skip_special_tokens=True).strip() for seq in outputs]


def predict_summaries(config: GenerateConfig, model_dir: Path, input: Path | str, output: Path | str) -> int:
    from spaces.generate.model import CopyGenerator

    model = CopyGenerator.load(model_dir).to(device())
    written = 0
    order = lambda: (p.id for p in iter_pairs(input, config, need_summary=False))  # noqa: E731
    with open_output(output, order) as out:
        todo = (p for p in iter_pairs(input, config, need_summary=False) if p.id not in out.done)
        todo = (p for i, p in enumerate(todo) if out.mine(i))
        total = count_lines(input)
        with progress(None, total and total - len(out.done), "generate") as bar:
            for chunk in batched(todo, config.decode.batch_size):
                for p, summary in zip(chunk, summarize_batch(model, [p.extract for p in chunk], config)):
                    out.write({"id": p.id, "summary": summary})
                    written += 1
                    bar.update()
    return written
