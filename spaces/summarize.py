"""Judgments in, summaries out, through a trained extractor and (optionally) generator: the Python API
and ``spaces summarize``.

    from spaces import Summarizer
    s = Summarizer.load("runs/cail2020/extractor", "runs/cail2020/generator/model-best")
    s("判决书全文…")           # one summary
    s.batch([text1, text2])    # several, batched

It composes the stages through their public functions and the records they exchange, exactly as the
JSONL pipeline does, so a judgment gets the same summary here as from a batch run. The generator's
summary is used only where it should be (``use_generator``): ``auto`` reads the generator's card and
uses it only when its validation score beat the extract's, ``always`` and ``never`` decide outright;
``reason`` says which was chosen and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from spaces.cards import card_sha256
from spaces.config import DataConfig, SummarizeConfig, UseGenerator, load_config
from spaces.errors import SpacesError
from spaces.records import Document, ExtractedRecord, Summary, check_unicode, document_from, read_documents
from spaces.stream import MapRun, map_records


@dataclass
class SummarizeRun(MapRun):
    truncated: int = 0  # judgments longer than data.max_clauses (their first clauses dropped)


def choose_generator(mode: UseGenerator, card: dict[str, Any]) -> tuple[bool, str]:
    """Whether to print the generator's summaries, and why (for stderr)."""
    if mode == "never":
        return False, "use_generator is never"
    if mode == "always":
        return True, "use_generator is always"
    scores = card.get("validation") or {}
    if "generator" not in scores or "extract" not in scores:
        raise SpacesError("--use-generator auto compares the generator's validation score with the extract's, and "
                          "this generator dir's card.json has none (no card, or trained with train.validation 0): set "
                          "use_generator to always or never", "use_generator")
    generator, extract = scores["generator"], scores["extract"]
    if generator > extract:
        return True, f"its validation CAIL {generator:.4f} beats the extract's {extract:.4f}"
    return False, (f"the generator's validation CAIL {generator:.4f} does not beat the extract's {extract:.4f} "
                   "(use_generator always prints the generator's anyway)")


@dataclass
class Summarizer:
    """Trained models loaded once; call it on judgments."""

    extractor: Any
    encoder: Any
    data: DataConfig
    generator: Any = None
    generator_config: Any = None
    use_generator: bool = False
    reason: str = "no generator"
    models: dict[str, Any] = field(default_factory=dict)  # the model dirs' cards, which decide the summaries

    @classmethod
    def load(cls, extractor: Path | str, generator: Path | str | None = None, *, use_generator: UseGenerator = "auto",
             data: DataConfig | None = None, decode: dict[str, Any] | None = None) -> Summarizer:
        """Load the model dirs. ``decode`` overrides keys of the generator's own decode settings."""
        from spaces.extract.predict import load_encoder
        from spaces.extract.tagger import Extractor

        for name, value in (("extractor", extractor), ("generator", generator)):
            if not isinstance(value, (str, Path)) and (value is not None or name == "extractor"):
                raise SpacesError(f"{name} must be a model dir (a path), got {type(value).__name__}", name)
        if use_generator not in ("auto", "always", "never"):
            raise SpacesError(f"use_generator must be auto, always or never, got {use_generator!r}", "use_generator")
        extractor_model = Extractor(Path(extractor))
        encoder = load_encoder(extractor_model, extractor_model.config)
        out = cls(extractor_model, encoder, data or DataConfig(), models={"extractor": card_sha256(extractor)})
        if generator is None or use_generator == "never":
            out.reason = "no generator" if generator is None else "use_generator is never"
            return out
        from spaces.generate.predict import generator_card, generator_config, load_generator

        out.use_generator, out.reason = choose_generator(use_generator, generator_card(Path(generator)))
        if out.use_generator:
            config = generator_config(Path(generator))
            if decode:
                try:
                    settings = type(config.decode).model_validate({**config.decode.model_dump(), **decode})
                except ValidationError as e:
                    raise SpacesError("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
                                                for err in e.errors()), "decode") from e
                config = config.model_copy(update={"decode": settings})
            out.generator, out.generator_config = load_generator(Path(generator), config), config
            out.models.update(generator=card_sha256(generator), decode=config.decode.model_dump(mode="json"))
        return out

    @classmethod
    def from_config(cls, config: SummarizeConfig) -> Summarizer:
        if config.extractor is None:
            raise SpacesError("set the extractor dir: extractor: DIR in the config (or --extractor DIR)", "extractor")
        decode = {k: getattr(config.decode, k) for k in config.decode.model_fields_set}
        return cls.load(config.extractor, config.generator, use_generator=config.use_generator, data=config.data,
                        decode=decode)

    @property
    def batch_size(self) -> int:
        """Judgments per batch: the generator's decode.batch_size, or the extractor's when it runs alone."""
        from spaces.extract.predict import BATCH_DOCUMENTS

        return self.generator_config.decode.batch_size if self.use_generator else BATCH_DOCUMENTS

    def summarize_documents(self, docs: list[Document]) -> list[tuple[ExtractedRecord, Summary]]:
        """Each document's extracted record and its summary (the generator's, or the extract)."""
        from spaces.extract.predict import extract_documents

        records = extract_documents(self.extractor, self.encoder, docs, self.data.max_clauses)
        if self.use_generator:
            from spaces.generate.predict import summaries

            out = summaries(self.generator, records, self.generator_config)
        else:
            out = [Summary(id=r.id, summary=r.extract, source="extract") for r in records]
        for r, summary in zip(records, out):
            summary.dropped_clauses = r.dropped_clauses or None
        return list(zip(records, out))

    def batch(self, texts: list[str]) -> list[str]:
        docs = [Document(str(i), text, None, f"text {i}") for i, text in enumerate(texts)]
        out = []
        for start in range(0, len(docs), self.batch_size):
            out += [s.summary for _, s in self.summarize_documents(docs[start:start + self.batch_size])]
        return out

    def __call__(self, text: str) -> str:
        return self.batch([text])[0]

    def summarize_file(self, input: Path | str, output: Path | str, *, skip_empty: bool = False,
                       allow_empty: bool = False) -> SummarizeRun:
        """Batch mode: documents JSONL in, ``Summary`` records out (resumable, shardable like every stage)."""
        truncated = 0

        def work(batch: list[Document]) -> list[Summary]:
            nonlocal truncated
            summaries = [s for _, s in self.summarize_documents(batch)]
            truncated += sum(bool(s.dropped_clauses) for s in summaries)
            return summaries

        run = map_records(lambda: read_documents(input, self.data), input, output, work, desc="summarize",
                          batch_size=self.batch_size, skip=(lambda d: not d.text.strip()) if skip_empty else None,
                          allow_empty=allow_empty, settings={"data": self.data.model_dump(mode="json"), **self.models})
        return SummarizeRun(run.written, run.resumed, run.skipped, truncated)


def summarize_config(config: Path | None, overrides: dict[str, Any], *, extractor: Path | str | None = None,
                     generator: str | None = None, use_generator: UseGenerator | None = None) -> SummarizeConfig:
    """The config ``spaces summarize`` runs: the file's, then the dotted overrides, then the named flags
    (a ``generator`` of 'null', 'none' or '' is no generator)."""
    overrides = dict(overrides)
    if extractor is not None:
        overrides["extractor"] = str(extractor)
    if generator is not None:
        overrides["generator"] = None if generator.lower() in ("null", "none", "") else generator
    if use_generator is not None:
        overrides["use_generator"] = use_generator
    return load_config(SummarizeConfig, config, overrides)


def check_mode(files: list[str], input: list[str] | None, output: Path | None, explain: bool) -> None:
    """One judgment (FILE or stdin, ``--explain`` allowed) or batch mode (``--input`` with ``--output``), not both."""
    if (input is None) != (output is None):
        raise SpacesError("batch mode takes both --input and --output")
    if input is not None and (files or explain):
        raise SpacesError("--input/--output summarize a JSONL file; FILE and --explain are for one judgment")
    if len(files) > 1:
        raise SpacesError(f"one judgment at a time, got {len(files)} files: {' '.join(files)} (use --input FILE "
                          "--output FILE for many)")


def dropped_note(record: ExtractedRecord, max_clauses: int) -> str | None:
    """What to tell the user when the judgment was too long for ``data.max_clauses``."""
    if not record.dropped_clauses:
        return None
    return (f"note: the judgment has {len(record.sentences) + record.dropped_clauses} clauses; its first "
            f"{record.dropped_clauses} were dropped (data.max_clauses {max_clauses})")


def picked_clauses(record: ExtractedRecord) -> list[tuple[str, str, str, str]]:
    """``--explain``'s rows: each picked clause's index, probability, section role and text."""
    return [(str(i), f"{record.scores[i]:.3f}", record.roles[i] if record.roles else "", record.sentences[i])
            for i in record.selected]


def read_judgment(raw: str, data: DataConfig, source: str) -> Document:
    """Plain text, or one JSON record (CAIL2020 shape or plain) with the configured field names."""
    stripped = raw.removeprefix("\ufeff").strip()
    if not stripped:
        raise SpacesError("no judgment text", source)
    if stripped.startswith("["):
        raise SpacesError("a JSON array: summarize takes one judgment (plain text or one JSON object); for many, "
                          "write JSON Lines and use --input FILE --output FILE", source)
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as e:
            if "Extra data" in e.msg:
                raise SpacesError("more than one JSON record: summarize one judgment at a time, or use --input FILE "
                                  "--output FILE for JSON Lines", source) from e
            raise SpacesError(f"looks like JSON but is not valid: {e.msg} (column {e.colno})", source) from e
        check_unicode(obj, source)
        return document_from(obj, data, source, default_id="input")
    return Document("input", stripped, None, source)
