import json
import shutil

import pytest
from typer.testing import CliRunner

from spaces.cli import app
from tests.conftest import JUDGMENTS, USER_DICT, document_text, mark_first_record, read_jsonl
from spaces.reference import reference_scores

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", [[], ["extract"], ["extract", "oracle"], ["evaluate"]])
def test_help_explains_each_command(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output
    assert len(result.output.split()) > 20


def oracle(tmp_path, *extra):
    out = tmp_path / "labeled.jsonl"
    return run("extract", "oracle", "--input", JUDGMENTS, "--output", out, "--data.user_dict", USER_DICT, *extra), out


def test_oracle_labels_every_document(tmp_path):
    result, out = oracle(tmp_path, "--workers", 1)
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert [r["id"] for r in records] == [r["id"] for r in read_jsonl(JUDGMENTS)]
    for r in records:
        assert r["labels"] == sorted(set(r["labels"])) and r["labels"]
        assert r["extract"] == "".join(r["sentences"][i] for i in r["labels"])
    mean = sum(r["score"] for r in records) / len(records)
    assert f"upper bound): {mean:.4f}" in result.stderr
    assert not list(tmp_path.glob("*.partial"))


def test_workers_do_not_change_the_output(tmp_path):
    (a := tmp_path / "a").mkdir()
    (b := tmp_path / "b").mkdir()
    assert oracle(a, "--workers", 1)[0].exit_code == 0
    assert oracle(b, "--workers", 2)[0].exit_code == 0
    assert (a / "labeled.jsonl").read_bytes() == (b / "labeled.jsonl").read_bytes()


def test_oracle_resumes_without_redoing_finished_records(tmp_path, interrupt_after):
    stop = interrupt_after(1)
    result, out = oracle(tmp_path, "--workers", 1)
    assert result.exit_code == 130 and not out.exists()
    stop()
    partial = tmp_path / "labeled.jsonl.partial"
    mark_first_record(partial, score=123.0)  # a redone record would get its real score back
    with open(partial, "a", encoding="utf-8") as f:
        f.write('{"id": "torn')
    result, out = oracle(tmp_path, "--workers", 1)
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert [r["id"] for r in records] == [r["id"] for r in read_jsonl(JUDGMENTS)]
    assert records[0]["score"] == 123.0
    assert "(1 resumed)" in result.stderr


def test_evaluate_scores_extracts_like_rouge_chinese(tmp_path):
    _, labeled = oracle(tmp_path, "--workers", 1)
    metrics_path, per_doc = tmp_path / "metrics.json", tmp_path / "per_doc.jsonl"
    result = run("evaluate", "--predictions", labeled, "--prediction-field", "extract", "--references", JUDGMENTS,
                 "--user-dict", USER_DICT, "--output", metrics_path, "--per-document", per_doc)
    assert result.exit_code == 0, result.output
    metrics = json.loads(metrics_path.read_text())
    expected = [reference_scores(r["extract"], r["reference"], "word", USER_DICT) for r in read_jsonl(labeled)]
    assert metrics["n"] == 4 and metrics["unit"] == "word"
    for key in ("rouge-1", "rouge-2", "rouge-l"):
        assert metrics[key] == sum(e[key] for e in expected) / 4
    assert abs(metrics["main"] - (0.2 * metrics["rouge-1"] + 0.4 * metrics["rouge-2"] + 0.4 * metrics["rouge-l"])) < 1e-12
    assert [d["main"] for d in read_jsonl(per_doc)] == [e["main"] for e in expected]
    assert "CAIL (main)" in result.output and "unsupported numbers" in result.output


def predictions(tmp_path, records):
    path = tmp_path / "pred.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def test_evaluate_char_unit_and_empty_prediction(tmp_path):
    refs = read_jsonl(JUDGMENTS)
    preds = [{"id": r["id"], "summary": document_text(r)[:200]} for r in refs]
    preds[0]["summary"] = ""
    result = run("evaluate", "--predictions", predictions(tmp_path, preds), "--references", JUDGMENTS,
                 "--unit", "char", "--per-document", tmp_path / "pd.jsonl", "--output", "-")
    assert result.exit_code == 0, result.output
    per_doc = read_jsonl(tmp_path / "pd.jsonl")
    assert per_doc[0]["main"] == 0.0
    for p, r, d in zip(preds[1:], refs[1:], per_doc[1:]):
        assert d["main"] == reference_scores(p["summary"], r["summary"], "char")["main"]
    assert json.loads(result.stdout)["unit"] == "char"


def test_evaluate_missing_and_extra_ids_are_named(tmp_path):
    refs = read_jsonl(JUDGMENTS)
    preds = [{"id": r["id"], "summary": "原告"} for r in refs]
    result = run("evaluate", "--predictions", predictions(tmp_path, preds[:-1]), "--references", JUDGMENTS)
    one_error_line(result, "pred.jsonl", "1 id(s) of", "have no prediction: 'fx-lease-004'")
    result = run("evaluate", "--predictions", predictions(tmp_path, preds + [{"id": "zz", "summary": "x"}]),
                 "--references", JUDGMENTS)
    one_error_line(result, "pred.jsonl", "1 prediction(s) have no reference", "'zz'")


def test_bad_input_is_one_line_and_leaves_no_output(tmp_path):
    bad = tmp_path / "bad.jsonl"
    shutil.copy(JUDGMENTS, bad)
    with open(bad, "a") as f:
        f.write('{"id": "x", "text": \n')
    out = tmp_path / "labeled.jsonl"
    result = run("extract", "oracle", "--input", bad, "--output", out, "--workers", 1)
    one_error_line(result, f"{bad}:5", "invalid JSON")
    assert not out.exists()
    lines = bad.read_text().splitlines()
    bad.write_text("\n".join(lines[:-1] + ['{"id": "x", "text": "原告，被告。", "summary": "原告"}']) + "\n")
    result = run("extract", "oracle", "--input", bad, "--output", out, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read_jsonl(out)][-2:] == ["fx-lease-004", "x"]


def test_config_errors_name_the_key(tmp_path):
    result = run("extract", "oracle", "--input", JUDGMENTS, "--output", tmp_path / "o.jsonl", "--data.txt_field", "x")
    one_error_line(result, "--data.txt_field", "unknown config key")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  max_clauses: lots\n")
    result = run("extract", "oracle", "--config", cfg, "--input", JUDGMENTS, "--output", tmp_path / "o.jsonl")
    one_error_line(result, str(cfg), "data.max_clauses")


def test_empty_summary_is_an_error_for_the_oracle(tmp_path):
    path = predictions(tmp_path, [{"id": "a", "text": "原告，被告。", "summary": ""}])
    one_error_line(run("extract", "oracle", "--input", path, "--output", tmp_path / "o.jsonl"), ":1", "summary is empty")


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "extract", "oracle", "--input", tmp_path / "none.jsonl", "--output", tmp_path / "o.jsonl")
    assert result.exit_code == 1 and result.exception is not None
    assert type(result.exception).__name__ == "SpacesError"


def test_console_script_takes_debug_anywhere(monkeypatch, tmp_path):
    import signal

    from spaces import cli

    monkeypatch.setattr("sys.argv", ["spaces", "evaluate", "--predictions", str(tmp_path / "x"),
                                     "--references", str(tmp_path / "y"), "--debug"])
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(Exception) as e:
            cli.main()
    finally:
        signal.signal(signal.SIGTERM, handler)  # main() installs its SIGTERM handler: not for the test process
    assert type(e.value).__name__ == "SpacesError"


def test_a_bad_record_stops_the_console_script_and_its_worker_pool(tmp_path):
    """The oracle's pool is stopped with SIGTERM: its forked workers must die of it, not save and wait."""
    import subprocess
    import sys
    from pathlib import Path

    lines = JUDGMENTS.read_text(encoding="utf-8").splitlines()
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(lines * 40) + "\n", encoding="utf-8")  # a duplicate id at line 5, workers busy
    result = subprocess.run([sys.executable, "-m", "spaces", "extract", "oracle", "-i", str(docs), "-o",
                             str(tmp_path / "l.jsonl"), "--workers", "2"], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert result.returncode == 1 and "duplicate id" in result.stderr
