"""Bad input gets one clear line and loses nothing; killed runs resume; same seed, same bytes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spaces.cli import app
from tests.conftest import JUDGMENTS, TINY, USER_DICT, document_text, read_jsonl
from spaces.text import degenerate

runner = CliRunner()
GOOD = JUDGMENTS.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("models")
    assert runner.invoke(app, ["extract", "train", "-i", str(JUDGMENTS), "-o", str(root / "extractor"),
                               "--model.name_or_path", str(tiny_bert), "--train.folds", "2", "--train.epochs", "1",
                               "--data.user_dict", str(USER_DICT)]).exit_code == 0
    assert runner.invoke(app, ["generate", "train", "-i", str(root / "extractor" / "oof.jsonl"),
                               "-o", str(root / "generator"), "--train.epochs", "1", *TINY]).exit_code == 0
    return root


def write(path: Path, lines) -> Path:
    path.write_bytes(b"".join((l if isinstance(l, bytes) else l.encode("utf-8")) + b"\n" for l in lines))
    return path


def commands(models: Path, inp: Path, out: Path, refs: Path = JUDGMENTS) -> dict[str, list[str]]:
    return {
        "oracle": ["extract", "oracle", "-i", str(inp), "-o", str(out), "--workers", "1"],
        "extract-train": ["extract", "train", "-i", str(inp), "-o", str(out), "--train.folds", "2"],
        "extract-predict": ["extract", "predict", "-m", str(models / "extractor"), "-i", str(inp), "-o", str(out)],
        "generate-train": ["generate", "train", "-i", str(inp), "-o", str(out), *TINY],
        "generate-predict": ["generate", "predict", "-m", str(models / "generator" / "model-best"), "-i", str(inp),
                             "-o", str(out)],
        "evaluate": ["evaluate", "--predictions", str(inp), "--references", str(refs), "--output", str(out)],
    }


BAD_LINES = {
    "malformed JSON": ('{"id": "x", "text": "原告', "invalid JSON"),
    "missing id": ('{"text": "原告，被告。", "summary": "原告", "extract": "原告"}', "id"),
    "wrong id type": ('{"id": [1], "text": "原告，被告。", "summary": "原告", "extract": "原告"}', "id"),
    "wrong text type": ('{"id": "x", "text": 5, "summary": 5, "extract": 5}', "must be"),
    "non-UTF-8": (b'{"id": "x", "text": "\xff\xfe", "summary": "\xff"}', "not valid UTF-8"),
    "lone surrogate": ('{"id": "x", "text": "原告\\ud800", "summary": "\\ud800", "extract": "\\ud800"}',
                       "lone surrogate"),
    "duplicate id": (GOOD[0], "duplicate id"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
@pytest.mark.parametrize("command", ["oracle", "extract-train", "extract-predict", "generate-train",
                                     "generate-predict", "evaluate"])
def test_bad_line_battery(models, tmp_path, command, case):
    line, message = BAD_LINES[case]
    if command in ("generate-train", "generate-predict", "evaluate"):
        # these read extracted or summary records: the first line is well formed for them
        first = json.dumps({"id": json.loads(GOOD[0])["id"], "sentences": ["原告"], "scores": [0.9], "selected": [0],
                            "extract": "原告", "reference": "原告", "summary": "原告"}, ensure_ascii=False)
    else:
        first = GOOD[0]
    if case == "duplicate id":
        line = first
    inp = write(tmp_path / "in.jsonl", [first, line])
    out = tmp_path / "out"
    result = runner.invoke(app, commands(models, inp, out)[command])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {inp}:2: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists() or out.is_dir() and not (out / "card.json").exists()


@pytest.mark.parametrize("command", ["oracle", "extract-predict"])
def test_empty_document_is_an_error_or_an_explicit_skip(models, tmp_path, command):
    empty = json.dumps({"id": "empty", "text": ["  ", ""], "summary": "原告"}, ensure_ascii=False)
    inp = write(tmp_path / "in.jsonl", [GOOD[0], empty, GOOD[1]])
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, commands(models, inp, out)[command])
    assert result.exit_code == 1 and f"{inp}:2" in result.stderr and "no text" in result.stderr
    result = runner.invoke(app, [*commands(models, inp, out)[command], "--skip-empty"])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read_jsonl(out)] == [json.loads(GOOD[0])["id"], json.loads(GOOD[1])["id"]]
    assert "1 skipped" in result.stderr


def test_a_50000_character_document_goes_through(models, tmp_path):
    record = json.loads(GOOD[0])
    body = "，".join(document_text(record) for _ in range(40))[:50_000]
    big = write(tmp_path / "big.jsonl", [json.dumps({"id": "big", "text": body, "summary": record["summary"]},
                                                    ensure_ascii=False)])
    for command in ("oracle", "extract-predict"):
        out = tmp_path / f"{command}.jsonl"
        result = runner.invoke(app, commands(models, big, out)[command])
        assert result.exit_code == 0, result.output
        (row,) = read_jsonl(out)
        assert len(row["sentences"]) == 256  # the last 256 clauses, as configured
    summaries = tmp_path / "summaries.jsonl"
    result = runner.invoke(app, commands(models, tmp_path / "extract-predict.jsonl", summaries)["generate-predict"])
    assert result.exit_code == 0, result.output
    (row,) = read_jsonl(summaries)
    assert row["summary"].strip() and not degenerate(row["summary"]), row["summary"]


def test_corrupt_model_dirs(models, tmp_path):
    import shutil

    broken = tmp_path / "extractor"
    shutil.copytree(models / "extractor", broken)
    (broken / "fold-1.safetensors").write_bytes(b"not safetensors")
    result = runner.invoke(app, ["extract", "predict", "-m", str(broken), "-i", str(JUDGMENTS), "-o",
                                 str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1 and "corrupt extractor model dir" in result.stderr
    gen = tmp_path / "generator"
    shutil.copytree(models / "generator" / "model-best", gen)
    (gen / "config.json").write_text("{not json")
    result = runner.invoke(app, ["generate", "predict", "-m", str(gen), "-i", str(models / "extractor" / "oof.jsonl"),
                                 "-o", str(tmp_path / "y.jsonl")])
    assert result.exit_code == 1 and "corrupt generator model dir" in result.stderr
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "y.jsonl").exists()


@pytest.mark.parametrize("command", ["oracle", "extract-train", "extract-predict", "generate-train",
                                     "generate-predict", "evaluate"])
def test_config_errors_for_every_command(models, tmp_path, command):
    args = commands(models, JUDGMENTS, tmp_path / "out")[command]
    result = runner.invoke(app, [*args, "--data.no_such_key", "1"])
    assert result.exit_code == 1 and result.stderr.startswith("error: --data.no_such_key: unknown config key")
    result = runner.invoke(app, [*args, "--data.max_clauses", "many"])
    assert result.exit_code == 1 and "valid integer" in result.stderr


# ---- killed runs resume -----------------------------------------------------------------------------

def many_documents(path: Path, n: int) -> Path:
    records = [json.loads(line) for line in GOOD]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            r = dict(records[i % len(records)], id=f"doc-{i:05d}")
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def kill_mid_way(args: list[str], partial: Path, env=None) -> None:
    """Run the real console script and SIGKILL it once some records are on disk."""
    proc = subprocess.Popen([sys.executable, "-m", "spaces", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and partial.read_bytes().count(b"\n") >= 3:  # 2 kept even if the test tears one
            break
        time.sleep(0.01)
    assert proc.poll() is None, "finished before it could be killed: give it more input"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("command", ["extract-predict", "generate-predict", "evaluate"])
def test_sigkill_then_rerun_equals_an_uninterrupted_run(models, tmp_path, command):
    """Killed mid-way, torn last line and all, then rerun: the same bytes as a run never interrupted,
    and the records the killed run finished are not redone."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    docs = many_documents(tmp_path / "docs.jsonl", 3000 if command != "generate-predict" else 400)
    if command == "generate-predict":
        inp = tmp_path / "extracted.jsonl"
        assert runner.invoke(app, commands(models, docs, inp)["extract-predict"]).exit_code == 0
    elif command == "evaluate":
        inp = tmp_path / "preds.jsonl"
        with open(inp, "w", encoding="utf-8") as f:
            for i, r in enumerate(read_jsonl(docs)):
                f.write(json.dumps({"id": r["id"], "summary": r["summary"][: 40 + i % 60]}, ensure_ascii=False) + "\n")
    else:
        inp = docs

    def args_for(out: Path) -> list[str]:
        args = commands(models, inp, out, refs=docs)[command]
        if command == "evaluate":  # the resumable output of evaluate is its per-document file
            args = [*args[:-2], "--per-document", str(out), "--output", str(out.with_suffix(".metrics.json"))]
        return args

    straight = tmp_path / "straight.jsonl"
    assert runner.invoke(app, args_for(straight)).exit_code == 0
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    kill_mid_way(args_for(out), partial, env)
    assert not out.exists()
    data = partial.read_bytes()
    if data.endswith(b"\n"):  # the kill fell between two records: tear the last one, as a kill mid-write does
        data = data[:-7]
    *complete, torn = data.split(b"\n")
    assert len(complete) >= 2 and torn  # records to keep, and a torn line the rerun must drop and redo
    first = json.loads(complete[0])
    first["resumed_marker"] = True  # a redone record would lose it
    complete[0] = json.dumps(first, ensure_ascii=False).encode("utf-8")
    partial.write_bytes(b"\n".join(complete) + b"\n" + torn)
    result = runner.invoke(app, args_for(out))
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert rows[0].get("resumed_marker") is True and not partial.exists()
    del rows[0]["resumed_marker"]
    expected = read_jsonl(straight)
    assert rows == expected  # every record once, in input order, the same values
    assert [json.dumps(r, ensure_ascii=False) for r in rows] == straight.read_text(encoding="utf-8").splitlines()
    if command == "evaluate":
        assert out.with_suffix(".metrics.json").read_bytes() == straight.with_suffix(".metrics.json").read_bytes()


# ---- determinism ------------------------------------------------------------------------------------

def test_same_seed_same_bytes(tmp_path, tiny_bert):
    """Two runs, same seed and inputs, one thread count: every model file, card and output is identical."""
    outputs = []
    for run in ("a", "b"):
        root = tmp_path / run
        assert runner.invoke(app, ["extract", "train", "-i", str(JUDGMENTS), "-o", str(root / "extractor"),
                                   "--model.name_or_path", str(tiny_bert), "--train.folds", "2",
                                   "--train.epochs", "2", "--data.user_dict", str(USER_DICT)]).exit_code == 0
        assert runner.invoke(app, ["generate", "train", "-i", str(root / "extractor" / "oof.jsonl"),
                                   "-o", str(root / "generator"), "--train.epochs", "2", *TINY]).exit_code == 0
        assert runner.invoke(app, ["extract", "predict", "-m", str(root / "extractor"), "-i", str(JUDGMENTS),
                                   "-o", str(root / "extracted.jsonl")]).exit_code == 0
        assert runner.invoke(app, ["generate", "predict", "-m", str(root / "generator" / "model-best"),
                                   "-i", str(root / "extracted.jsonl"), "-o", str(root / "summaries.jsonl")]).exit_code == 0
        files = {}
        for path in sorted(root.rglob("*")):
            if path.is_file() and "checkpoint" not in path.parts:
                content = path.read_bytes()
                if path.name == "card.json":  # wall-clock seconds and the data file's path differ by design
                    card = json.loads(content)
                    card.pop("seconds")
                    card["data"].pop("file")
                    content = json.dumps(card, sort_keys=True).encode()
                files[path.relative_to(root)] = content
        outputs.append(files)
    assert outputs[0].keys() == outputs[1].keys()
    assert {"extractor/fold-0.safetensors", "extractor/fold-1.safetensors", "generator/model-best/model.safetensors",
            "generator/model-last/model.safetensors", "generator/card.json"} <= {str(p) for p in outputs[0]}
    for name in outputs[0]:
        assert outputs[0][name] == outputs[1][name], name


# ---- one output, one writer; a partial output resumes only what wrote it --------------------------

def test_a_second_run_on_an_output_being_written_stops_and_loses_nothing(models, tmp_path):
    """Two runs on one output: the second says so in one line and exits 1; the first finishes whole."""
    from spaces.records import JsonlWriter

    out = tmp_path / "same.jsonl"
    with JsonlWriter(out) as first:  # a run in progress holds the output's partial file
        first.write({"id": "a"})
        result = runner.invoke(app, commands(models, JUDGMENTS, out)["oracle"])
        assert result.exit_code == 1 and "another run is writing this output" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
        first.write({"id": "b"})
    assert [r["id"] for r in read_jsonl(out)] == ["a", "b"]
    result = runner.invoke(app, commands(models, JUDGMENTS, out)["oracle"])  # once it is done, a rerun may write
    assert result.exit_code == 0 and len(read_jsonl(out)) == len(GOOD)


@pytest.mark.parametrize("command", ["extract-predict", "generate-predict"])
def test_a_partial_output_of_another_input_is_refused(models, tmp_path, interrupt_after, command):
    extracted = tmp_path / "extracted.jsonl"
    assert runner.invoke(app, commands(models, JUDGMENTS, extracted)["extract-predict"]).exit_code == 0
    source = {"extract-predict": JUDGMENTS, "generate-predict": extracted}[command]
    other = write(tmp_path / "other.jsonl", [json.dumps(dict(json.loads(line), id=f"x-{json.loads(line)['id']}"),
                                                        ensure_ascii=False) for line in source.read_text().splitlines()])
    out = tmp_path / "foreign.jsonl"
    stop = interrupt_after(3)
    assert runner.invoke(app, commands(models, other, out)[command]).exit_code == 130
    stop()
    partial = tmp_path / "foreign.jsonl.partial"
    result = runner.invoke(app, commands(models, source, out)[command])
    assert result.exit_code == 1 and f"{partial}: was written from another input" in result.stderr
    assert not out.exists() and partial.read_text().count("\n") == 3  # nothing lost, nothing merged
    partial.write_text(partial.read_text())
    (tmp_path / "foreign.jsonl.partial.json").unlink()  # a partial no run fingerprinted (left by hand)
    result = runner.invoke(app, commands(models, source, out)[command])
    assert result.exit_code == 1 and f"{partial}: holds records this command did not write" in result.stderr


def test_a_partial_output_of_other_settings_is_refused(models, tmp_path, interrupt_after):
    extracted = tmp_path / "extracted.jsonl"
    assert runner.invoke(app, commands(models, JUDGMENTS, extracted)["extract-predict"]).exit_code == 0
    out = tmp_path / "summaries.jsonl"
    args = commands(models, extracted, out)["generate-predict"]
    stop = interrupt_after(2)
    assert runner.invoke(app, args).exit_code == 130
    stop()
    result = runner.invoke(app, [*args, "--decode.num_beams", "1"])
    assert result.exit_code == 1 and "with other settings (settings.config.decode.num_beams differ)" in result.stderr
    result = runner.invoke(app, args)  # the settings that wrote it resume it
    assert result.exit_code == 0 and "(2 resumed)" in result.stderr


def test_stdin_resumes_only_records_of_its_own_input(models, tmp_path, interrupt_after):
    out = tmp_path / "labeled.jsonl"
    stop = interrupt_after(2)
    assert runner.invoke(app, commands(models, Path("-"), out)["oracle"], input="\n".join(GOOD[1:])).exit_code == 130
    stop()
    result = runner.invoke(app, commands(models, Path("-"), out)["oracle"], input="\n".join(GOOD[:1]))
    assert result.exit_code == 1 and "2 records whose ids are not in this input" in result.stderr


@pytest.mark.parametrize("errno_, text", [(28, "No space left on device"), (30, "Read-only file system")])
def test_a_failed_write_is_one_line_that_says_a_rerun_resumes(models, tmp_path, monkeypatch, errno_, text):
    import errno
    import os as os_

    from spaces.records import PartialJsonl

    class Full:  # the partial's file once the disk is full (or remounted read-only)
        def __init__(self, file):
            self.file = file

        def write(self, data):
            raise OSError(errno_, os_.strerror(errno_))

        def __getattr__(self, name):
            return getattr(self.file, name)

    original, written = PartialJsonl.write, []

    def write(self, record):
        if len(written) == 2 and not isinstance(self._file, Full):
            self._file = Full(self._file)
        written.append(record)
        original(self, record)

    monkeypatch.setattr(PartialJsonl, "write", write)
    out = tmp_path / "labeled.jsonl"
    result = runner.invoke(app, commands(models, JUDGMENTS, out)["oracle"])
    assert errno.errorcode[errno_] and result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == (f"error: {out}: cannot write: {text}; 2 records are saved in {out}.partial: "
                                     "fix that and rerun the same command to resume")
    monkeypatch.setattr(PartialJsonl, "write", original)
    result = runner.invoke(app, commands(models, JUDGMENTS, out)["oracle"])
    assert result.exit_code == 0 and "(2 resumed)" in result.stderr


def test_a_model_that_cannot_be_written_is_one_line_and_leaves_no_file(tmp_path, tiny_bert, monkeypatch):
    from safetensors import SafetensorError

    def full(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\0" * 8)  # what the disk took before it filled up
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
                              'space left on device" })')

    monkeypatch.setattr("safetensors.torch.save_file", full)
    out = tmp_path / "extractor"
    result = runner.invoke(app, ["extract", "train", "-i", str(JUDGMENTS), "-o", str(out), "--model.name_or_path",
                                 str(tiny_bert), "--train.folds", "2", "--train.epochs", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {out / 'fold-0.safetensors'}: cannot write: Error while serializing")
    assert len(result.stderr.strip().splitlines()) == 1 and not list(out.glob("*.safetensors"))


def test_report_onto_a_directory_is_one_line_and_leaves_no_partial(tmp_path):
    target = tmp_path / "existdir"
    target.mkdir()
    preds = write(tmp_path / "p.jsonl", [json.dumps({"id": json.loads(l)["id"], "summary": "原告"}) for l in GOOD])
    result = runner.invoke(app, ["report", "-p", str(preds), "--references", str(JUDGMENTS), "-o", str(target)])
    assert result.exit_code == 1 and result.stderr.strip() == f"error: {target}: is a directory; give a file name " \
                                                              "for the output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existdir", "p.jsonl"]


def test_weight_files_are_as_readable_as_the_rest_of_a_model_dir(models):
    modes = {p.name: p.stat().st_mode & 0o777 for d in (models / "extractor", models / "generator" / "model-best")
             for p in d.iterdir() if p.is_file()}
    assert modes["fold-0.safetensors"] == modes["config.yaml"] == modes["model.safetensors"] == \
        modes["copy_head.safetensors"], modes


def test_a_select_flag_beats_the_cards_tuned_threshold(models, tmp_path):
    card = json.loads((models / "extractor" / "card.json").read_text())

    def picked(*flags: str) -> list[tuple[list[int], list[int]]]:
        out = tmp_path / f"x{len(list(tmp_path.iterdir()))}.jsonl"
        assert runner.invoke(app, [*commands(models, JUDGMENTS, out)["extract-predict"], *flags]).exit_code == 0
        return [(r["selected"], r["scores"]) for r in read_jsonl(out)]

    def above(scores: list[float], threshold: float) -> list[int]:
        return [i for i, p in enumerate(scores) if p > threshold]

    default = picked()
    scores = sorted(p for _, row in default for p in row)
    thresholds = (round(scores[0] - 1e-4, 6), scores[len(scores) // 2], round(scores[-1] + 1e-4, 6))
    plain = ["--select.fallback_top_k", "1", "--select.min_chars", "0", "--select.keep_holding", "false"]
    runs = {t: picked("--select.threshold", str(t), *plain) for t in thresholds}
    for t, rows in runs.items():
        for selected, scores in rows:
            assert selected == (above(scores, t) or [max(range(len(scores)), key=scores.__getitem__)])
    assert len({str([s for s, _ in rows]) for rows in runs.values()}) == 3  # three thresholds, three selections
    for selected, scores in default:  # no flag: the card's tuned threshold (the floor and the holding may add)
        assert set(above(scores, card["threshold"])) <= set(selected)
    assert [s for s, _ in picked("--select.threshold", str(card["threshold"]), *plain)] == [
        sorted(set(above(scores, card["threshold"])) or {max(range(len(scores)), key=scores.__getitem__)})
        for _, scores in default]


def test_batch_summarize_says_which_judgments_lost_clauses(models, tmp_path):
    config = tmp_path / "summarize.yaml"
    config.write_text(f"extractor: {models / 'extractor'}\ngenerator: null\n", encoding="utf-8")
    out = tmp_path / "summaries.jsonl"
    result = runner.invoke(app, ["summarize", "-c", str(config), "-i", str(JUDGMENTS), "-o", str(out),
                                 "--data.max_clauses", "6"])
    assert result.exit_code == 0, result.output
    assert f"{len(GOOD)} documents longer than 6 clauses lost their first clauses" in result.stderr
    assert all(r["dropped_clauses"] > 0 for r in read_jsonl(out))


# ---- rough edges a new user met -------------------------------------------------------------------

@pytest.mark.parametrize("flag, value, message", [
    ("--train.epochs", "yes", "train.epochs"), ("--train.learning_rate", "inf", "a valid number"),
    ("--train.learning_rate", ".inf", "finite"),
    ("--model.prune_vocab", "1", "model.prune_vocab"), ("--train.mixed_precision", "fp16", "'bf16'"),
])
def test_config_values_are_strict(tmp_path, flag, value, message):
    data = write(tmp_path / "x.jsonl", ['{"id": "a", "sentences": ["原告。"], "scores": [1.0], "selected": [0], '
                                        '"extract": "原告。", "reference": "原告"}'])
    result = runner.invoke(app, ["generate", "train", "-i", str(data), "-o", str(tmp_path / "g"), flag, value])
    assert result.exit_code == 1 and message in result.stderr and flag in result.stderr, result.stderr


def test_oracle_workers_must_be_positive(tmp_path):
    result = runner.invoke(app, ["extract", "oracle", "-i", str(JUDGMENTS), "-o", str(tmp_path / "l.jsonl"),
                                 "--workers", "0"])
    assert result.exit_code == 1 and "--workers must be at least 1, got 0" in result.stderr


def test_a_directory_as_user_dictionary_says_so(tmp_path):
    result = runner.invoke(app, ["extract", "oracle", "-i", str(JUDGMENTS), "-o", str(tmp_path / "l.jsonl"),
                                 "--data.user_dict", str(tmp_path)])
    assert result.exit_code == 1 and "is a directory, not a jieba user dictionary file" in result.stderr


def test_an_extractor_dir_given_to_generate_predict_says_what_it_is(models, tmp_path):
    result = runner.invoke(app, ["generate", "predict", "-m", str(models / "extractor"), "-i", str(JUDGMENTS),
                                 "-o", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "this is an extractor model dir, not a generator one" in result.stderr


def test_a_corrupt_fold_is_named(models, tmp_path):
    import shutil

    broken = tmp_path / "extractor"
    shutil.copytree(models / "extractor", broken)
    (broken / "fold-1.safetensors").write_bytes(b"not weights")
    result = runner.invoke(app, ["extract", "predict", "-m", str(broken), "-i", str(JUDGMENTS),
                                 "-o", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {broken / 'fold-1.safetensors'}: corrupt")


def test_evaluate_refuses_references_as_predictions_and_says_when_faithfulness_is_off(tmp_path):
    result = runner.invoke(app, ["evaluate", "--predictions", str(JUDGMENTS), "--references", str(JUDGMENTS)])
    assert result.exit_code == 1 and "would be scored against themselves" in result.stderr
    refs = write(tmp_path / "refs.jsonl", [json.dumps({"id": json.loads(l)["id"], "summary": json.loads(l)["summary"]},
                                                      ensure_ascii=False) for l in GOOD])
    preds = write(tmp_path / "p.jsonl", [json.dumps({"id": json.loads(l)["id"], "summary": "原告"}) for l in GOOD])
    result = runner.invoke(app, ["evaluate", "--predictions", str(preds), "--references", str(refs)])
    assert result.exit_code == 0 and "note: no faithfulness figures: the references have no judgment text" in result.stderr


def test_control_characters_never_reach_a_summary(models, tmp_path):
    config = tmp_path / "summarize.yaml"
    config.write_text(f"extractor: {models / 'extractor'}\ngenerator: null\n", encoding="utf-8")
    record = json.loads(GOOD[0])
    record["text"] = [{"sentence": s["sentence"].replace("，", "\u0000，", 1), "label": 0} for s in record["text"]]
    result = runner.invoke(app, ["summarize", "-c", str(config), "-"], input=json.dumps(record))
    assert result.exit_code == 0 and result.stdout.strip() and "\x00" not in result.stdout


def test_the_python_api_says_what_it_needs(models):
    from spaces import Summarizer
    from spaces.errors import SpacesError

    for bad, message in (({"extractor": None}, "extractor must be a model dir"),
                         ({"extractor": 42}, "got int"),
                         ({"extractor": models / "extractor", "use_generator": "maybe"}, "auto, always or never")):
        with pytest.raises(SpacesError, match=message):
            Summarizer.load(**bad)
    summarizer = Summarizer.load(models / "extractor", models / "generator" / "model-best", use_generator="always",
                                 decode={"num_beams": 1})
    assert summarizer.generator_config.decode.num_beams == 1 and "--" not in summarizer.reason
    for decode, message in (({"num_beams": "three"}, "num_beams"), ({"beams": 2}, "beams")):
        with pytest.raises(SpacesError, match=message):
            Summarizer.load(models / "extractor", models / "generator" / "model-best", use_generator="always",
                            decode=decode)
