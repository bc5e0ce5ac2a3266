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
from tests.conftest import JUDGMENTS, USER_DICT, document_text, read_jsonl
from spaces.text import degenerate
from tests.test_generate import TINY

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
