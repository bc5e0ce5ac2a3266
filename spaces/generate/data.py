"""Generator examples: what the generator reads of an extracted record, targets and copy labels.

An extract longer than ``model.max_source_length`` tokens is not cut at its end (where the holding is):
its most probable clauses that fit are kept, in document order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from spaces.config import GenerateConfig
from spaces.errors import SpacesError
from spaces.generate.codec import TextCodec
from spaces.generate.copy import copy_labels
from spaces.records import ExtractedRecord, display_name, read_records


def _needs_reference(record: ExtractedRecord, where: str) -> None:
    if record.reference is None:
        raise SpacesError("no 'reference' summary to train on (extract documents that have a summary, or use "
                          "the extractor's oof.jsonl)", where)


def read_extracted(path: Path | str, need_reference: bool) -> Iterator[ExtractedRecord]:
    """Stream extracted records (from ``extract predict`` or the extractor's ``oof.jsonl``)."""
    return read_records(path, ExtractedRecord, _needs_reference if need_reference else None)


def read_training_records(path: Path | str) -> list[ExtractedRecord]:
    records = list(read_extracted(path, need_reference=True))
    if not records:
        raise SpacesError("no records to train on", display_name(path))
    return records


def source_text(record: ExtractedRecord, codec: TextCodec, max_tokens: int) -> str:
    """The extract as the generator reads it: whole when it fits, else its most probable clauses that do."""
    if len(codec.body(record.extract)) < max_tokens:
        return record.extract
    budget, chosen = max_tokens - 1, []
    for i in sorted(record.selected, key=lambda i: (-record.scores[i], i)):
        n = len(codec.body(record.sentences[i]))
        if n <= budget:
            chosen.append(i)
            budget -= n
    return "".join(record.sentences[i] for i in sorted(chosen))


@dataclass
class Example:
    sources: list[list[int]]  # [out-of-fold extract] or [out-of-fold, oracle]
    copies: list[list[int]]  # copy labels of the target against each source
    target: list[int]


def make_examples(records: list[ExtractedRecord], codec: TextCodec, config: GenerateConfig) -> list[Example]:
    m = config.model
    out = []
    for r in records:
        target = codec.encode(r.reference, m.max_target_length)
        sources = [codec.encode(source_text(r, codec, m.max_source_length), m.max_source_length)]
        if r.oracle_extract:
            sources.append(codec.encode(r.oracle_extract, m.max_source_length))
        # the final eos is structure, not copied text
        out.append(Example(sources, [copy_labels(s[:-1], target[:-1]) + [0] for s in sources], target))
    return out


def collate(examples: list[Example], generator: torch.Generator, oracle_mix: float, noise: float, pad: int):
    """A training batch: source choice (oracle with prob ``oracle_mix``) and random source-token noise."""
    sources, copies, targets = [], [], []
    for ex in examples:
        k = 1 if len(ex.sources) > 1 and torch.rand((), generator=generator).item() < oracle_mix else 0
        src = list(ex.sources[k])
        body = len(src) - 1
        if noise > 0 and body > 1:
            hit = (torch.rand(body, generator=generator) < noise).nonzero().flatten().tolist()
            picks = torch.randint(0, body, (len(hit),), generator=generator).tolist()
            original = src[:body]
            for pos, pick in zip(hit, picks):
                src[pos] = original[pick]
        sources.append(src)
        copies.append(ex.copies[k])
        targets.append(ex.target)
    return pad_sources(sources, pad) + pad_targets(targets, copies)


def pad_sources(sources: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in sources)
    ids = torch.full((len(sources), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(sources), longest), dtype=torch.long)
    for i, s in enumerate(sources):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def pad_targets(targets: list[list[int]], copies: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(t) for t in targets)
    labels = torch.full((len(targets), longest), -100, dtype=torch.long)
    copy = torch.zeros((len(targets), longest), dtype=torch.long)
    for i, (t, c) in enumerate(zip(targets, copies)):
        labels[i, : len(t)] = torch.tensor(t)
        copy[i, : len(c)] = torch.tensor(c)
    return labels, copy
