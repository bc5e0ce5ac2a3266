"""``spaces summarize``: one raw judgment in, its summary out, through trained extractor and generator.

It composes the stages through their public functions and the records they exchange, exactly as the
JSONL pipeline does, so a single judgment gets the same summary as a batch run.
"""

from __future__ import annotations

import json
from pathlib import Path

from spaces.config import GenerateConfig, SummarizeConfig, load_config
from spaces.errors import SpacesError
from spaces.records import Document, document_text


def read_judgment(raw: str, config: SummarizeConfig, source: str) -> Document:
    """Plain text, or one JSON record (CAIL2020 shape or plain) with the configured field names."""
    stripped = raw.strip()
    if not stripped:
        raise SpacesError("no judgment text", source)
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise SpacesError(f"looks like JSON but is not valid: {e.msg} (column {e.colno})", source) from None
        if config.data.text_field not in obj:
            raise SpacesError(f"missing text field {config.data.text_field!r}", source)
        text = document_text(obj[config.data.text_field], config.data.text_field, source)
        return Document(str(obj.get(config.data.id_field, "input")), text, None, source)
    return Document("input", raw, None, source)


def summarize(config: SummarizeConfig, raw: str, source: str = "<stdin>") -> tuple[str, dict]:
    """The summary and the extracted record it was generated from."""
    from spaces.extract.predict import extract_documents, load_encoder
    from spaces.extract.tagger import Extractor

    if config.extractor is None:
        raise SpacesError("set the extractor dir: --extractor DIR in the config (or --extractor on the line)",
                          "extractor")
    extractor = Extractor(Path(config.extractor))
    doc = read_judgment(raw, config, source)
    (record,) = extract_documents(extractor, load_encoder(extractor, extractor.config), [doc],
                                  config.data.max_clauses)
    if config.generator is None:
        return record["extract"], record
    from spaces.generate.model import CopyGenerator
    from spaces.generate.predict import summarize_batch

    model_dir = Path(config.generator)
    saved = model_dir.parent / "config.yaml"
    gen_config = load_config(GenerateConfig, saved if saved.is_file() else None).model_copy(
        update={"decode": config.decode})
    (summary,) = summarize_batch(CopyGenerator.load(model_dir), [record["extract"]], gen_config)
    return summary, record
