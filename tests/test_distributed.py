"""Two processes (gloo on CPU) give the same results as one: training, sharded predict, merge, resume.

Launched the way users launch: ``accelerate launch --multi_gpu --num_processes 2 -m spaces ...``
(with no GPU the project runs gloo on the CPU; accelerate's own ``--cpu`` path expects MPI).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from spaces.cli import app
from tests.conftest import JUDGMENTS, TINY, USER_DICT, read_jsonl

pytestmark = pytest.mark.distributed
runner = CliRunner()
ROOT = Path(__file__).parent.parent


def launch_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def launch_command(*args: str, processes: int = 2) -> list[str]:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    return [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517", "-m", "spaces", *args]


def launch(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    result = subprocess.run(launch_command(*args, processes=processes), env=launch_env(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    path = tmp_path_factory.mktemp("docs") / "docs.jsonl"
    records = read_jsonl(JUDGMENTS)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(11):  # odd on purpose: the shards differ in size
            f.write(json.dumps(dict(records[i % len(records)], id=f"d{i:02d}"), ensure_ascii=False) + "\n")
    return path


def assert_extracts_match(got: list[dict], want: list[dict]) -> None:
    """Extracted records of two runs with other process counts: every field exactly, the clause
    probabilities to 1e-5 (two processes run at another thread count, so some CPUs sum in another order)."""
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for a, b in zip(got, want):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
        assert {**a, "scores": None} == {**b, "scores": None}


def test_extract_training_in_two_processes_matches_one(tmp_path, tiny_bert, many):
    args = ["extract", "train", "-i", str(many), "--model.name_or_path", str(tiny_bert), "--train.folds", "2",
            "--train.epochs", "3", "--model.dropout", "0", "--data.user_dict", str(USER_DICT)]
    assert runner.invoke(app, [*args, "-o", str(tmp_path / "one")]).exit_code == 0
    launch(*args, "-o", str(tmp_path / "two"))
    one, two = read_jsonl(tmp_path / "one" / "oof.jsonl"), read_jsonl(tmp_path / "two" / "oof.jsonl")
    assert [r["selected"] for r in one] == [r["selected"] for r in two]
    for a, b in zip(one, two):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)


def test_sharded_predict_merges_in_input_order_and_matches_one_process(tmp_path, tiny_bert, many):
    """Same records in the same order with the same clauses picked; a clause probability agrees to 1e-5, not
    to the bit: each process encodes and tags other mixes of documents per batch, so its sums run over other
    shapes, and on some CPUs the last bit moves (and a 6-decimal rounding with it)."""
    model = tmp_path / "extractor"
    assert runner.invoke(app, ["extract", "train", "-i", str(many), "-o", str(model), "--model.name_or_path",
                               str(tiny_bert), "--train.folds", "2", "--train.epochs", "1"]).exit_code == 0
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert runner.invoke(app, ["extract", "predict", "-m", str(model), "-i", str(many), "-o", str(one)]).exit_code == 0
    launch("extract", "predict", "-m", str(model), "-i", str(many), "-o", str(two))
    assert [r["id"] for r in read_jsonl(two)] == [f"d{i:02d}" for i in range(11)]
    assert_extracts_match(read_jsonl(two), read_jsonl(one))
    assert not list(tmp_path.glob("two.jsonl.partial*"))


def test_a_killed_two_process_run_resumes_without_redoing_its_records(tmp_path, tiny_bert):
    """SIGKILL a real 2-process run, mark what each process finished, rerun: marks survive, the rest is
    computed once, and the result matches a single uninterrupted process."""
    import signal
    import time

    docs = tmp_path / "docs.jsonl"
    records = read_jsonl(JUDGMENTS)
    with open(docs, "w", encoding="utf-8") as f:
        for i in range(600):
            f.write(json.dumps(dict(records[i % len(records)], id=f"d{i:04d}"), ensure_ascii=False) + "\n")
    model = tmp_path / "extractor"
    assert runner.invoke(app, ["extract", "train", "-i", str(JUDGMENTS), "-o", str(model), "--model.name_or_path",
                               str(tiny_bert), "--train.folds", "2", "--train.epochs", "1"]).exit_code == 0
    one, out = tmp_path / "one.jsonl", tmp_path / "out.jsonl"
    assert runner.invoke(app, ["extract", "predict", "-m", str(model), "-i", str(docs), "-o", str(one)]).exit_code == 0
    args = ["extract", "predict", "-m", str(model), "-i", str(docs), "-o", str(out)]
    proc = subprocess.Popen(launch_command(*args), env=launch_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    shards = [tmp_path / f"out.jsonl.partial.{rank}" for rank in (0, 1)]
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if all(s.exists() and s.read_bytes().count(b"\n") >= 3 for s in shards):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    import psutil  # the launcher starts its workers in sessions of their own: kill the whole tree

    launcher = psutil.Process(proc.pid)
    processes = [*launcher.children(recursive=True), launcher]
    for p in processes:
        p.send_signal(signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(processes, timeout=30)
    marked = set()
    for shard in shards:  # mark every complete record: a recomputed one would lose its mark
        lines = shard.read_bytes().split(b"\n")
        rows = [json.loads(line) for line in lines[:-1]]
        for row in rows:
            row["mark"] = True
            marked.add(row["id"])
        shard.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows) + lines[-1])
    assert len(marked) < 600
    launch(*args)
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [f"d{i:04d}" for i in range(600)]
    assert {r["id"] for r in rows if r.pop("mark", False)} == marked
    assert_extracts_match(rows, read_jsonl(one))


def test_generator_training_in_two_processes_matches_one(tmp_path):
    data = tmp_path / "extracted.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for i, r in enumerate(read_jsonl(JUDGMENTS) * 2):
            text = r["summary"]
            f.write(json.dumps({"id": f"g{i}", "sentences": [text[:60]], "scores": [0.9], "selected": [0],
                                "extract": text[:60], "reference": text[:40]}, ensure_ascii=False) + "\n")
    args = ["generate", "train", "-i", str(data), "--train.epochs", "2", "--model.dropout", "0",
            "--train.source_noise", "0", *TINY]
    assert runner.invoke(app, [*args, "-o", str(tmp_path / "one")]).exit_code == 0
    launch(*args, "-o", str(tmp_path / "two"))
    one, two = (json.loads((tmp_path / d / "card.json").read_text()) for d in ("one", "two"))
    assert [h["epoch"] for h in two["history"]] == [1, 2]
    for a, b in zip(one["history"], two["history"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)  # only the reduction order differs
    from safetensors.torch import load_file

    for name in ("model-last",):
        wa = load_file(str(tmp_path / "one" / name / "model.safetensors"))
        wb = load_file(str(tmp_path / "two" / name / "model.safetensors"))
        assert wa.keys() == wb.keys()
        for key in wa:
            torch.testing.assert_close(wb[key], wa[key], rtol=1e-4, atol=1e-5, msg=key)
    # The same summaries, byte for byte, where each document is decoded alone (batch size 1) at one thread on
    # both sides: then every sum runs over the same shapes in the same order on any CPU.
    predict = ["generate", "predict", "-m", str(tmp_path / "two" / "model-best"), "-i", str(data),
               "--decode.batch_size", "1", "-o"]
    first, second = tmp_path / "p1.jsonl", tmp_path / "p2.jsonl"
    alone = subprocess.run([sys.executable, "-m", "spaces", *predict, str(first)], env=launch_env(),
                           capture_output=True, text=True, timeout=600)
    assert alone.returncode == 0, alone.stderr[-3000:]
    launch(*predict, str(second))
    assert second.read_bytes() == first.read_bytes()
