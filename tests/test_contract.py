"""The records between stages, and what a new user hits: field names, id joins, inputs never overwritten,
empty and compressed inputs, config errors all at once, one source of defaults."""

import gzip
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
from spaces.config import STAGES, render_defaults
from tests.conftest import JUDGMENTS, TINY, USER_DICT, document_text, read_jsonl

runner = CliRunner()
ROOT = Path(__file__).parent.parent
GOOD_LINE = JUDGMENTS.read_text(encoding="utf-8").splitlines()[0]


def run(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def one_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def extractor(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("contract")
    assert run("extract", "train", "-i", JUDGMENTS, "-o", root / "extractor", "--model.name_or_path", tiny_bert,
               "--train.folds", "2", "--train.epochs", "1", "--data.user_dict", USER_DICT).exit_code == 0
    return root / "extractor"


# ---- one record format ------------------------------------------------------------------------------

def test_the_whole_pipeline_on_judgments_keyed_doc_id_fulltext_abstract(tmp_path, tiny_bert):
    docs = tmp_path / "docs.jsonl"
    with open(docs, "w", encoding="utf-8") as f:
        for r in read_jsonl(JUDGMENTS):
            f.write(json.dumps({"doc_id": r["id"], "fulltext": r["text"], "abstract": r["summary"]},
                               ensure_ascii=False) + "\n")
    fields = ["--data.id_field", "doc_id", "--data.text_field", "fulltext", "--data.summary_field", "abstract"]
    assert run("extract", "oracle", "-i", docs, "-o", tmp_path / "labeled.jsonl", "--workers", 1, *fields).exit_code == 0
    result = run("extract", "train", "-i", tmp_path / "labeled.jsonl", "-o", tmp_path / "extractor", *fields,
                 "--model.name_or_path", tiny_bert, "--train.folds", 2, "--train.epochs", 1)
    assert result.exit_code == 0, result.output
    result = run("extract", "predict", "-m", tmp_path / "extractor", "-i", docs, "-o", tmp_path / "extracted.jsonl",
                 *fields)
    assert result.exit_code == 0, result.output
    result = run("generate", "train", "-i", tmp_path / "extractor" / "oof.jsonl", "-o", tmp_path / "generator",
                 "--train.epochs", 1, *TINY)
    assert result.exit_code == 0, result.output
    result = run("generate", "predict", "-m", tmp_path / "generator" / "model-best", "-i",
                 tmp_path / "extracted.jsonl", "-o", tmp_path / "summaries.jsonl")
    assert result.exit_code == 0, result.output
    result = run("evaluate", "--predictions", tmp_path / "summaries.jsonl", "--references", docs, *fields,
                 "-o", tmp_path / "metrics.json")
    assert result.exit_code == 0, result.output
    ids = [r["id"] for r in read_jsonl(JUDGMENTS)]
    for name in ("labeled.jsonl", "extracted.jsonl", "summaries.jsonl"):
        assert [r["id"] for r in read_jsonl(tmp_path / name)] == ids  # stage files use fixed keys
    assert all(r["reference"] for r in read_jsonl(tmp_path / "extracted.jsonl"))
    assert json.loads((tmp_path / "metrics.json").read_text())["n"] == 4


def test_two_files_of_two_shapes_run_through_the_whole_pipeline_in_one_run(tmp_path, tiny_bert):
    """CAIL's official shape (text: [{sentence, label}]) beside the plain one ({id, source, summary}), each read
    with its own text field, through oracle, train, predict and evaluate together."""
    records = read_jsonl(JUDGMENTS)
    official = tmp_path / "official.jsonl"
    official.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records[:2]), encoding="utf-8")
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"id": r["id"], "source": document_text(r), "summary": r["summary"]},
                                        ensure_ascii=False) + "\n" for r in records[2:]), encoding="utf-8")
    both = ["-i", official, "-i", f"{plain}:source"]
    result = run("extract", "oracle", *both, "-o", tmp_path / "labeled.jsonl", "--workers", 1)
    assert result.exit_code == 0, result.output
    result = run("extract", "train", *both, "-o", tmp_path / "extractor", "--model.name_or_path", tiny_bert,
                 "--train.folds", 2, "--train.epochs", 1)
    assert result.exit_code == 0, result.output
    assert run("extract", "predict", "-m", tmp_path / "extractor", *both, "-o", tmp_path / "x.jsonl").exit_code == 0
    result = run("evaluate", "--predictions", tmp_path / "x.jsonl", "--references", official, "--references",
                 f"{plain}:text=source", "-o", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    ids = [r["id"] for r in records]
    labeled = read_jsonl(tmp_path / "labeled.jsonl")
    assert [r["id"] for r in labeled] == [r["id"] for r in read_jsonl(tmp_path / "x.jsonl")] == ids
    one = tmp_path / "one.jsonl"  # the same records in one file of one shape label the same
    one.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    assert run("extract", "oracle", "-i", one, "-o", tmp_path / "one-labeled.jsonl", "--workers", 1).exit_code == 0
    assert read_jsonl(tmp_path / "one-labeled.jsonl") == labeled
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] == 4 and metrics["faithfulness"]["unsupported_numbers"] is not None
    card = json.loads((tmp_path / "extractor" / "card.json").read_text())
    assert card["data"]["records"] == 4 and len(card["data"]["sha256"]) == 2


def test_an_id_in_two_input_files_is_one_error_naming_both(tmp_path):
    first = tmp_path / "a.jsonl"
    first.write_text(GOOD_LINE + "\n", encoding="utf-8")
    second = tmp_path / "b.jsonl"
    second.write_text(json.dumps({"id": json.loads(GOOD_LINE)["id"], "source": "原告张某。", "summary": "原告"},
                                 ensure_ascii=False) + "\n", encoding="utf-8")
    result = run("extract", "oracle", "-i", first, "-i", f"{second}:source", "-o", tmp_path / "l.jsonl")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {second}:1: duplicate id {json.loads(GOOD_LINE)['id']!r} "
                                     f"(first on {first}:1)")
    assert not (tmp_path / "l.jsonl").exists() and not (tmp_path / "l.jsonl.partial").exists()
    result = run("extract", "oracle", "-i", f"{second}:body=source", "-o", tmp_path / "l.jsonl")
    assert result.exit_code == 1 and "keys id, text, summary" in result.stderr


def test_evaluate_scores_an_extract_never_its_reference(tmp_path, extractor):
    """Extracted records carry the reference only as 'reference': nothing to score by mistake."""
    extracted = tmp_path / "extracted.jsonl"
    assert run("extract", "predict", "-m", extractor, "-i", JUDGMENTS, "-o", extracted).exit_code == 0
    result = run("evaluate", "--predictions", extracted, "--references", JUDGMENTS, "-o", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["prediction_field"] == "extract" and metrics["main"] < 0.99
    explicit = run("evaluate", "--predictions", extracted, "--references", JUDGMENTS, "--prediction-field",
                   "extract", "-o", tmp_path / "m2.json")
    assert explicit.exit_code == 0
    assert json.loads((tmp_path / "m2.json").read_text())["main"] == metrics["main"]
    one_error(run("evaluate", "--predictions", extracted, "--references", JUDGMENTS, "--prediction-field", "summary"),
              f"{extracted}:1", "missing prediction field 'summary'", "score 'extract'")


def test_missing_and_extra_ids_are_named_together(tmp_path):
    preds = tmp_path / "p.jsonl"
    refs = read_jsonl(JUDGMENTS)
    rows = [{"id": r["id"], "summary": "原告"} for r in refs[:-2]] + [{"id": "zz", "summary": "x"}]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = one_error(run("evaluate", "--predictions", preds, "--references", JUDGMENTS), str(preds))
    assert "2 id(s) of" in line and repr(refs[-2]["id"]) in line and repr(refs[-1]["id"]) in line
    assert "1 prediction(s) have no reference" in line and "'zz'" in line


# ---- config -----------------------------------------------------------------------------------------

def test_all_config_errors_at_once_each_with_its_key_and_flag(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  txt_field: x\n  max_clauses: lots\ntrain:\n  epochs: 0\n")
    line = one_error(run("extract", "oracle", "-c", cfg, "-i", JUDGMENTS, "-o", tmp_path / "o.jsonl"), str(cfg))
    assert "3 config errors" in line
    assert "data.txt_field: unknown config key (did you mean data.text_field?)" in line
    assert "data.max_clauses: Input should be a valid integer" in line and "--data.max_clauses" in line
    assert "train.epochs: Input should be greater than or equal to 1" in line
    line = one_error(run("extract", "oracle", "-i", JUDGMENTS, "-o", tmp_path / "o.jsonl", "--data.nope", "1",
                         "--train.folds", "x"))
    assert "--data.nope: unknown config key" in line and "--train.folds: Input should be a valid integer" in line


@pytest.mark.parametrize("stage", ["extract", "generate", "edit"])
def test_shipped_configs_are_the_schema_defaults(stage):
    """One source of defaults: configs/STAGE.yaml is exactly what `spaces config STAGE` prints."""
    schema, title = STAGES[stage]
    assert (ROOT / "configs" / f"{stage}.yaml").read_text(encoding="utf-8") == render_defaults(schema, title)
    assert run("config", stage).stdout == render_defaults(schema, title)


def test_a_config_with_a_bom_loads(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"\xef\xbb\xbfdata:\n  max_clauses: 12\n")
    from spaces.config import ExtractConfig, load_config

    assert load_config(ExtractConfig, cfg).data.max_clauses == 12


# ---- inputs and outputs -----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["oracle", "extract-predict", "evaluate-references", "evaluate-per-document"])
def test_an_output_that_is_an_input_is_refused(tmp_path, extractor, command):
    same = tmp_path / "same.jsonl"
    same.write_bytes(JUDGMENTS.read_bytes())
    link = tmp_path / "link.jsonl"
    link.symlink_to(same)
    args = {
        "oracle": ["extract", "oracle", "-i", same, "-o", link],
        "extract-predict": ["extract", "predict", "-m", extractor, "-i", same, "-o", same],
        "evaluate-references": ["evaluate", "--predictions", JUDGMENTS, "--references", same, "-o", link],
        "evaluate-per-document": ["evaluate", "--predictions", JUDGMENTS, "--references", same,
                                  "--per-document", same],
    }[command]
    one_error(run(*args), "the output is the input", "would be overwritten")
    assert same.read_bytes() == JUDGMENTS.read_bytes()


def test_gzip_and_bom_inputs_are_read_transparently(tmp_path):
    plain = run("extract", "oracle", "-i", JUDGMENTS, "-o", tmp_path / "plain.jsonl", "--workers", 1)
    gz = tmp_path / "docs.jsonl.gz"
    gz.write_bytes(gzip.compress(JUDGMENTS.read_bytes()))
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + JUDGMENTS.read_bytes())
    for source, out in ((gz, "gz.jsonl"), (bom, "bom.jsonl.out")):
        result = run("extract", "oracle", "-i", source, "-o", tmp_path / out, "--workers", 1)
        assert result.exit_code == 0, result.output
        assert (tmp_path / out).read_bytes() == (tmp_path / "plain.jsonl").read_bytes()
    assert plain.exit_code == 0


@pytest.mark.parametrize("content, message", [
    (b"", "no records in the input"),
    (b"\n  \n\n", "no records in the input"),
    (b'[{"id": "a", "text": "x", "summary": "y"}]\n', "a JSON array"),
    (gzip.compress(b'{"id": "a"')[:-6], "cannot read"),
])
def test_failed_runs_leave_no_partial_file(tmp_path, content, message):
    bad = tmp_path / "in.jsonl"
    bad.write_bytes(content)
    out = tmp_path / "out.jsonl"
    one_error(run("extract", "oracle", "-i", bad, "-o", out, "--workers", 1), message)
    assert not out.exists() and not (tmp_path / "out.jsonl.partial").exists()


def test_missing_input_and_duplicate_ids_leave_nothing(tmp_path):
    out = tmp_path / "out.jsonl"
    one_error(run("extract", "oracle", "-i", tmp_path / "none.jsonl", "-o", out), "file not found")
    first = JUDGMENTS.read_text(encoding="utf-8").splitlines()[0]
    dup = tmp_path / "dup.jsonl"
    dup.write_text(first + "\n" + first + "\n", encoding="utf-8")
    one_error(run("extract", "oracle", "-i", dup, "-o", out, "--workers", 1), "duplicate id")
    assert not list(tmp_path.glob("out.jsonl*")) or not (tmp_path / "out.jsonl").exists()


def test_an_empty_input_is_allowed_on_demand(tmp_path, extractor):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = run("extract", "predict", "-m", extractor, "-i", empty, "-o", tmp_path / "x.jsonl", "--allow-empty")
    assert result.exit_code == 0 and (tmp_path / "x.jsonl").read_text() == ""
    assert "extracted 0 documents" in result.stderr


def test_messages_count_documents_and_name_stdout(tmp_path, extractor):
    one = tmp_path / "one.jsonl"
    one.write_text(JUDGMENTS.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    result = run("extract", "predict", "-m", extractor, "-i", one, "-o", "-")
    assert result.exit_code == 0 and "extracted 1 document to stdout" in result.stderr


def test_long_judgments_report_their_dropped_clauses(tmp_path, extractor):
    record = read_jsonl(JUDGMENTS)[0]
    long = dict(record, id="long", text=[s["sentence"] for s in record["text"]] * 30)
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps(record, ensure_ascii=False) + "\n" + json.dumps(long, ensure_ascii=False) + "\n")
    result = run("extract", "predict", "-m", extractor, "-i", docs, "-o", tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    short_row, long_row = read_jsonl(tmp_path / "out.jsonl")
    assert short_row["dropped_clauses"] == 0 and len(long_row["sentences"]) == 256
    from spaces.text import split_clauses

    total = len(split_clauses("\n".join(long["text"])))
    assert long_row["dropped_clauses"] == total - 256 > 0
    assert "1 document longer than 256 clauses lost their first clauses" in result.stderr


def test_metrics_record_the_tokenizer_settings(tmp_path):
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": r["id"], "summary": r["summary"][:30]}, ensure_ascii=False) + "\n"
                             for r in read_jsonl(JUDGMENTS)))
    result = run("evaluate", "--predictions", preds, "--references", JUDGMENTS, "--user-dict", USER_DICT,
                 "-o", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    import hashlib

    assert metrics["user_dict"] == str(USER_DICT.resolve())
    assert metrics["user_dict_sha256"] == hashlib.sha256(USER_DICT.read_bytes()).hexdigest()
    assert metrics["tokenizer"].startswith("jieba")


def test_help_shows_flags_as_flags():
    for command in ([], ["extract", "predict"], ["summarize"], ["evaluate"]):
        result = run(*command, "--help")
        assert result.exit_code == 0 and "<bool>" not in result.output, command


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_saves_what_is_done_and_says_how_to_resume(tmp_path, extractor, signum):
    """Ctrl-C (or a SIGTERM, as a scheduler sends) while the command waits for more input on stdin: whatever
    the machine's speed, exactly the 12 records it was given are done when the signal lands."""
    records = read_jsonl(JUDGMENTS)
    lines = [json.dumps(dict(records[i % 4], id=f"d{i:04d}"), ensure_ascii=False) + "\n" for i in range(40)]
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # a suite run in the background (`make test &`, nohup) inherits SIGINT ignored, and Python then never turns
    # Ctrl-C into KeyboardInterrupt: the command gets the disposition a terminal gives it
    proc = subprocess.Popen([sys.executable, "-m", "spaces", "extract", "predict", "-m", str(extractor), "-i", "-",
                             "-o", str(out)], env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc.stdin.write("".join(lines[:12]))
    proc.stdin.flush()
    deadline = time.time() + 120
    while time.time() < deadline and not (partial.exists() and partial.read_text().count("\n") == 12):
        time.sleep(0.02)
    proc.send_signal(signum)
    proc.stdin.close()
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 130, stderr
    assert partial.read_text().count("\n") == 12 and f"interrupted: 12 records are saved in {partial}" in stderr
    assert "rerun the same command to resume" in stderr and "Traceback" not in stderr
    result = run("extract", "predict", "-m", extractor, "-i", docs, "-o", out)
    assert result.exit_code == 0 and "(12 resumed)" in result.stderr
    assert [r["id"] for r in read_jsonl(out)] == [f"d{i:04d}" for i in range(40)]


def test_the_held_out_split_is_seeded_and_keeps_each_files_shape(tmp_path):
    records = read_jsonl(JUDGMENTS)
    official, plain = tmp_path / "official.jsonl", tmp_path / "plain.jsonl"
    official.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records[:2]), encoding="utf-8")
    plain.write_text("".join(json.dumps({"id": r["id"], "source": document_text(r), "summary": r["summary"]},
                                        ensure_ascii=False) + "\n" for r in records[2:]), encoding="utf-8")

    def split(out: Path, seed: int) -> dict:
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / "split_records.py"), str(official),
                                 f"{plain}:source", "--test-size", "2", "--seed", str(seed), "--out-dir", str(out)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.json*")) if p.name != "split.json"}

    first, again, other = split(tmp_path / "a", 42), split(tmp_path / "b", 42), split(tmp_path / "c", 7)
    assert first == again and first != other
    lines = [line for content in first.values() for line in content.decode().splitlines()]
    assert sorted(lines) == sorted(official.read_text().splitlines() + plain.read_text().splitlines())
    assert sum(len(v.decode().splitlines()) for k, v in first.items() if k.startswith("test")) == 2
    spec = json.loads((tmp_path / "a" / "split.json").read_text())
    assert spec["test"] == [str(tmp_path / "a" / "test" / "official.jsonl"),
                            str(tmp_path / "a" / "test" / "plain.jsonl") + ":source"]
