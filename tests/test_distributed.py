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
from typer.testing import CliRunner

from spaces.cli import app
from tests.conftest import JUDGMENTS, USER_DICT, read_jsonl
from tests.test_generate import TINY

pytestmark = pytest.mark.distributed
runner = CliRunner()
ROOT = Path(__file__).parent.parent


def launch(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517", "-m", "spaces", *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
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


def test_extract_training_in_two_processes_matches_one(tmp_path, tiny_bert, many):
    args = ["extract", "train", "-i", str(many), "--model.name_or_path", str(tiny_bert), "--train.folds", "2",
            "--train.epochs", "3", "--model.dropout", "0", "--data.user_dict", str(USER_DICT)]
    assert runner.invoke(app, [*args, "-o", str(tmp_path / "one")]).exit_code == 0
    launch(*args, "-o", str(tmp_path / "two"))
    one, two = read_jsonl(tmp_path / "one" / "oof.jsonl"), read_jsonl(tmp_path / "two" / "oof.jsonl")
    assert [r["selected"] for r in one] == [r["selected"] for r in two]
    for a, b in zip(one, two):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)


def test_sharded_predict_merges_in_input_order_and_equals_one_process(tmp_path, tiny_bert, many):
    model = tmp_path / "extractor"
    assert runner.invoke(app, ["extract", "train", "-i", str(many), "-o", str(model), "--model.name_or_path",
                               str(tiny_bert), "--train.folds", "2", "--train.epochs", "1"]).exit_code == 0
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert runner.invoke(app, ["extract", "predict", "-m", str(model), "-i", str(many), "-o", str(one)]).exit_code == 0
    launch("extract", "predict", "-m", str(model), "-i", str(many), "-o", str(two))
    assert two.read_bytes() == one.read_bytes()
    assert not list(tmp_path.glob("two.jsonl.partial*"))
    # a killed two-process run leaves its shards; a rerun (here alone) finishes without redoing them
    three = tmp_path / "three.jsonl"
    rows = one.read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "three.jsonl.partial.0").write_text(rows[0] + rows[2], encoding="utf-8")
    (tmp_path / "three.jsonl.partial.1").write_text(rows[1] + rows[3][:10], encoding="utf-8")
    launch("extract", "predict", "-m", str(model), "-i", str(many), "-o", str(three))
    assert three.read_bytes() == one.read_bytes()


def test_generator_trains_and_predicts_in_two_processes(tmp_path):
    data = tmp_path / "extracted.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for i, r in enumerate(read_jsonl(JUDGMENTS) * 2):
            f.write(json.dumps({"id": f"g{i}", "extract": r["summary"][:60], "summary": r["summary"][:40]},
                               ensure_ascii=False) + "\n")
    launch("generate", "train", "-i", str(data), "-o", str(tmp_path / "gen"), "--train.epochs", "2", *TINY)
    card = json.loads((tmp_path / "gen" / "card.json").read_text())
    assert [h["epoch"] for h in card["history"]] == [1, 2]
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    model = str(tmp_path / "gen" / "model-best")
    assert runner.invoke(app, ["generate", "predict", "-m", model, "-i", str(data), "-o", str(one)]).exit_code == 0
    launch("generate", "predict", "-m", model, "-i", str(data), "-o", str(two))
    assert two.read_bytes() == one.read_bytes()
