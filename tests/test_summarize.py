import json

import pytest
from typer.testing import CliRunner

from spaces.cli import app
from tests.conftest import JUDGMENTS, USER_DICT, document_text, read_jsonl
from tests.test_generate import TINY

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("pipeline")
    result = runner.invoke(app, ["extract", "train", "-i", str(JUDGMENTS), "-o", str(root / "extractor"),
                                 "--model.name_or_path", str(tiny_bert), "--train.folds", "2", "--train.epochs", "1",
                                 "--data.user_dict", str(USER_DICT)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["generate", "train", "-i", str(root / "extractor" / "oof.jsonl"),
                                 "-o", str(root / "generator"), "--train.epochs", "1", *TINY])
    assert result.exit_code == 0, result.output
    config = root / "summarize.yaml"
    config.write_text(f"extractor: {root / 'extractor'}\ngenerator: {root / 'generator' / 'model-best'}\n"
                      "decode:\n  max_new_tokens: 12\n")
    return root, config


def test_summarize_plain_text_matches_the_batch_pipeline(trained, tmp_path):
    root, config = trained
    record = read_jsonl(JUDGMENTS)[0]
    text_file = tmp_path / "judgment.txt"
    text_file.write_text(document_text(record), encoding="utf-8")
    result = runner.invoke(app, ["summarize", "--config", str(config), str(text_file)])
    assert result.exit_code == 0, result.output
    # the same judgment through extract predict + generate predict
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    extracted, summaries = tmp_path / "extracted.jsonl", tmp_path / "summaries.jsonl"
    assert runner.invoke(app, ["extract", "predict", "-m", str(root / "extractor"), "-i", str(docs),
                               "-o", str(extracted)]).exit_code == 0
    assert runner.invoke(app, ["generate", "predict", "-m", str(root / "generator" / "model-best"), "-i",
                               str(extracted), "-o", str(summaries), "--decode.max_new_tokens", "12"]).exit_code == 0
    assert result.stdout.strip() == read_jsonl(summaries)[0]["summary"]


def test_summarize_a_cail_line_from_stdin_with_explain(trained):
    root, config = trained
    line = (JUDGMENTS.read_text(encoding="utf-8").splitlines()[1])
    result = runner.invoke(app, ["summarize", "--config", str(config), "--explain", "-"], input=line)
    assert result.exit_code == 0, result.output
    assert "picked" in result.stderr and "clause" in result.stderr


def test_summarize_without_generator_prints_the_extract(trained, tmp_path):
    root, _ = trained
    record = read_jsonl(JUDGMENTS)[2]
    result = runner.invoke(app, ["summarize", "--extractor", str(root / "extractor"), "-"],
                           input=json.dumps(record, ensure_ascii=False))
    assert result.exit_code == 0, result.output
    docs, extracted = tmp_path / "docs.jsonl", tmp_path / "extracted.jsonl"
    docs.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert runner.invoke(app, ["extract", "predict", "-m", str(root / "extractor"), "-i", str(docs),
                               "-o", str(extracted)]).exit_code == 0
    assert result.stdout.strip() == read_jsonl(extracted)[0]["extract"]


@pytest.mark.parametrize("stdin, message", [("", "no judgment text"), ('{"id": "x", "text": ', "not valid"),
                                            ('{"id": "x"}', "missing text field")])
def test_summarize_bad_input(trained, stdin, message):
    root, config = trained
    result = runner.invoke(app, ["summarize", "--config", str(config), "-"], input=stdin)
    assert result.exit_code == 1 and message in result.stderr and result.stderr.startswith("error: <stdin>")


def test_summarize_needs_an_extractor():
    result = runner.invoke(app, ["summarize", "-"], input="原告张某。")
    assert result.exit_code == 1 and "extractor" in result.stderr


def test_overrides_with_values_do_not_swallow_the_file(trained, tmp_path):
    root, config = trained
    text_file = tmp_path / "judgment.txt"
    text_file.write_text(document_text(read_jsonl(JUDGMENTS)[0]), encoding="utf-8")
    plain = runner.invoke(app, ["summarize", "--config", str(config), str(text_file)])
    spaced = runner.invoke(app, ["summarize", "--config", str(config), "--decode.max_new_tokens", "12", str(text_file)])
    assert spaced.exit_code == 0, spaced.output
    assert spaced.stdout == plain.stdout  # 12 is the config's own value: same summary
    both = runner.invoke(app, ["summarize", "--config", str(config), str(text_file), str(text_file)])
    assert both.exit_code == 1 and "one judgment at a time" in both.stderr
