"""``spaces generate predict``: summaries for extracted records, batched, streamed, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spaces.cards import CARD, CONFIG, GENERATOR, card_sha256, read_card
from spaces.config import EditConfig, GenerateConfig, GeneratorConfig, load_generator_config
from spaces.distributed import device
from spaces.errors import SpacesError
from spaces.generate.data import pad_sources, read_extracted, source_text
from spaces.generate.decoding import beam_search
from spaces.records import ExtractedRecord, Summary
from spaces.numbers import number_spans
from spaces.stream import MapRun, map_records
from spaces.text import CLAUSE_SEPARATORS


def end_cleanly(text: str) -> str:
    """A summary the length limit cut off ends after its last clause separator (or 、): the limit can fall inside a
    copied number (第一百零七条 cut to 第一百, a number the judgment never wrote) or inside a clause."""
    cut = max(text.rfind(c) for c in CLAUSE_SEPARATORS + "、")
    if cut >= 0:
        return text[:cut + 1]
    spans = number_spans(text)
    return text[:spans[-1][0]] if spans and spans[-1][1] == len(text) else text


def summarize_records(model, records: list[ExtractedRecord], config: GeneratorConfig) -> list[str]:
    """One batch of extracted records as summaries, by the generator of the kind the config names."""
    return [s.summary for s in summaries(model, records, config)]


def summaries(model, records: list[ExtractedRecord], config: GeneratorConfig, **fields) -> list[Summary]:
    """One batch of extracted records as ``Summary`` records (the editor's with their edit marks)."""
    if isinstance(config, EditConfig):
        from spaces.generate.editor import edit_records

        return [Summary(id=r.id, summary=s, source="generator", edits=marks, **fields)
                for r, (s, marks) in zip(records, edit_records(model, records, config))]
    return [Summary(id=r.id, summary=s, source="generator", **fields)
            for r, s in zip(records, decode_records(model, records, config))]


def decode_records(model, records: list[ExtractedRecord], config: GenerateConfig) -> list[str]:
    """Decode one batch of extracted records into summaries, in the judgments' own characters."""
    codec, limit = model.codec, config.model.max_source_length
    sources = [source_text(r, codec, limit) for r in records]
    ids, mask = pad_sources([codec.encode(s, limit) for s in sources], codec.pad_id)
    at = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs = beam_search(model, ids.to(at), mask.to(at), config.decode)
    model.train(was_training)
    texts = [codec.to_surface(codec.decode(seq), "".join(r.sentences)) for seq, r in zip(outputs, records)]
    return [end_cleanly(t) if len(seq) >= config.decode.max_new_tokens else t for t, seq in zip(texts, outputs)]


def generator_config(model_dir: Path, config: Path | None = None, overrides: dict[str, Any] | None = None
                     ) -> GeneratorConfig:
    """The config a model dir was trained with (its own config.yaml), or ``config``, plus overrides."""
    saved = Path(model_dir) / CONFIG
    if (Path(model_dir) / CARD).is_file():
        read_card(model_dir, GENERATOR)  # an extractor dir has a config.yaml too: say what it is, not its keys
    if config is None and not saved.is_file():
        raise SpacesError(f"no {CONFIG} in the generator dir: give --config, or train it with 'spaces generate "
                          "train' (which writes one into model-best/ and model-last/)", str(model_dir))
    return load_generator_config(config or saved, overrides)


def generator_card(model_dir: Path) -> dict[str, Any]:
    return read_card(model_dir, GENERATOR) if (Path(model_dir) / CARD).is_file() else {}


def load_generator(model_dir: Path, config: GeneratorConfig):
    """The model of a generator dir, of the kind its config names."""
    if isinstance(config, EditConfig):
        from spaces.generate.editor import Editor

        return Editor.load(model_dir).to(device())
    from spaces.generate.model import CopyGenerator

    return CopyGenerator.load(model_dir).to(device())


def predict_summaries(config: GeneratorConfig, model_dir: Path, input: Path | str, output: Path | str, *,
                      allow_empty: bool = False) -> MapRun:
    model = load_generator(model_dir, config)

    def work(batch: list[ExtractedRecord]) -> list[Summary]:
        return summaries(model, batch, config)

    return map_records(lambda: read_extracted(input, need_reference=False), input, output, work, desc="generate",
                       batch_size=config.decode.batch_size, allow_empty=allow_empty,
                       settings={"config": config.model_dump(mode="json"), "model": card_sha256(model_dir)})
