"""Generator examples: tokenised sources (out-of-fold and oracle extracts), targets and copy labels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from spaces.config import GenerateConfig
from spaces.errors import SpacesError
from spaces.generate.copy import copy_labels
from spaces.records import display_name, read_jsonl


@dataclass
class Pair:
    id: str
    extract: str
    oracle_extract: str | None
    summary: str | None


def iter_pairs(path: Path | str, config: GenerateConfig, need_summary: bool) -> Iterator[Pair]:
    """Stream extracted records (``extract`` [+ ``oracle_extract``] [+ summary]); ids unique."""
    seen: dict[str, int] = {}
    count = 0
    name = display_name(path)
    for number, obj in read_jsonl(path):
        where = f"{name}:{number}"
        doc_id = obj.get(config.data.id_field)
        if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or doc_id == "":
            raise SpacesError(f"missing or invalid id field {config.data.id_field!r}", where)
        doc_id = str(doc_id)
        if doc_id in seen:
            raise SpacesError(f"duplicate id {doc_id!r} (first on line {seen[doc_id]})", where)
        seen[doc_id] = number
        extract = obj.get("extract")
        if not isinstance(extract, str):
            raise SpacesError("'extract' must be a string (extracted records come from 'spaces extract predict')",
                              where)
        oracle = obj.get("oracle_extract")
        summary = obj.get(config.data.summary_field)
        if need_summary and not isinstance(summary, str):
            raise SpacesError(f"missing summary field {config.data.summary_field!r} to train on", where)
        count += 1
        yield Pair(doc_id, extract, oracle if isinstance(oracle, str) else None, summary)
    if not count:
        raise SpacesError("no records", name)


def read_pairs(path: Path | str, config: GenerateConfig, need_summary: bool) -> list[Pair]:
    return list(iter_pairs(path, config, need_summary))


@dataclass
class Example:
    sources: list[list[int]]  # [out-of-fold extract] or [out-of-fold, oracle]
    copies: list[list[int]]  # copy labels of the target against each source
    target: list[int]


def encode(tokenizer, text: str, limit: int) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: limit - 1]
    return ids + [tokenizer.eos_token_id]


def make_examples(pairs: list[Pair], tokenizer, config: GenerateConfig) -> list[Example]:
    m = config.model
    out = []
    for p in pairs:
        target = encode(tokenizer, p.summary, m.max_target_length)
        sources = [encode(tokenizer, p.extract, m.max_source_length)]
        if p.oracle_extract is not None:
            sources.append(encode(tokenizer, p.oracle_extract, m.max_source_length))
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
