import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spaces.cli import app
from tests.conftest import JUDGMENTS, TINY, USER_DICT, document_text, mark_first_record, read_jsonl

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
    # relative paths in a config file are relative to the file's folder
    config = root / "configs" / "summarize.yaml"
    config.parent.mkdir()
    config.write_text("extractor: ../extractor\ngenerator: ../generator/model-best\nuse_generator: always\n"
                      "decode:\n  max_new_tokens: 12\n")
    return root, config


def pipeline(root, tmp_path, record, *generate_args):
    """The same judgment through extract predict + generate predict."""
    docs, extracted, summaries = tmp_path / "docs.jsonl", tmp_path / "extracted.jsonl", tmp_path / "summaries.jsonl"
    docs.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert runner.invoke(app, ["extract", "predict", "-m", str(root / "extractor"), "-i", str(docs),
                               "-o", str(extracted)]).exit_code == 0
    result = runner.invoke(app, ["generate", "predict", "-m", str(root / "generator" / "model-best"), "-i",
                                 str(extracted), "-o", str(summaries), *generate_args])
    assert result.exit_code == 0, result.output
    return read_jsonl(extracted)[0], read_jsonl(summaries)[0]


def test_summarize_plain_text_matches_the_batch_pipeline(trained, tmp_path, monkeypatch):
    root, config = trained
    record = read_jsonl(JUDGMENTS)[0]
    text_file = tmp_path / "judgment.txt"
    text_file.write_text(document_text(record), encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the config's relative paths do not depend on the current folder
    result = runner.invoke(app, ["summarize", "--config", str(config), str(text_file)])
    assert result.exit_code == 0, result.output
    _, summary = pipeline(root, tmp_path, record, "--decode.max_new_tokens", "12")
    assert result.stdout.strip() == summary["summary"]
    assert "printing the generator's summaries: use_generator is always" in result.stderr


def test_auto_prints_the_extract_when_the_generator_does_not_beat_it(trained, tmp_path):
    root, config = trained
    card = json.loads((root / "generator" / "model-best" / "card.json").read_text())
    assert card["validation"]["generator_beats_extract"] is False  # a one-epoch tiny model
    record = read_jsonl(JUDGMENTS)[1]
    result = runner.invoke(app, ["summarize", "--config", str(config), "--use-generator", "auto", "-"],
                           input=json.dumps(record, ensure_ascii=False))
    assert result.exit_code == 0, result.output
    extracted, _ = pipeline(root, tmp_path, record)
    assert result.stdout.strip() == extracted["extract"]
    assert "printing the extracts: the generator's validation CAIL" in result.stderr
    assert "does not beat the extract's" in result.stderr
    # the same judgment when the generator's card says it wins
    beaten = tmp_path / "winner"
    shutil.copytree(root / "generator" / "model-best", beaten)
    card["validation"].update(generator=0.9, extract=0.1)
    (beaten / "card.json").write_text(json.dumps(card))
    result = runner.invoke(app, ["summarize", "--config", str(config), "--use-generator", "auto", "--generator",
                                 str(beaten), "-"], input=json.dumps(record, ensure_ascii=False))
    assert result.exit_code == 0 and "beats the extract's 0.1000" in result.stderr


@pytest.mark.parametrize("flag", [["--use-generator", "never"], ["--generator", "null"], ["--generator", "none"]])
def test_extract_only_on_demand(trained, tmp_path, flag):
    root, config = trained
    record = read_jsonl(JUDGMENTS)[2]
    result = runner.invoke(app, ["summarize", "--config", str(config), *flag, "-"],
                           input=json.dumps(record, ensure_ascii=False))
    assert result.exit_code == 0, result.output
    extracted, _ = pipeline(root, tmp_path, record)
    assert result.stdout.strip() == extracted["extract"]


def test_explain_lists_the_picked_clauses_with_probabilities_and_sections(trained):
    root, config = trained
    line = JUDGMENTS.read_text(encoding="utf-8").splitlines()[1]
    result = runner.invoke(app, ["summarize", "--config", str(config), "--explain", "-"], input=line)
    assert result.exit_code == 0, result.output
    extracted = json.loads(runner.invoke(app, ["extract", "predict", "-m", str(root / "extractor"), "-i", "-",
                                               "-o", "-"], input=line).stdout.splitlines()[0])
    assert f"picked {len(extracted['selected'])} of {len(extracted['sentences'])} clauses" in result.stderr
    for i in extracted["selected"]:
        assert f"{extracted['scores'][i]:.3f}" in result.stderr and extracted["roles"][i] in result.stderr


def test_batch_summarize_equals_one_at_a_time_and_resumes(trained, tmp_path, interrupt_after):
    root, config = trained
    out = tmp_path / "summaries.jsonl"
    result = runner.invoke(app, ["summarize", "--config", str(config), "--input", str(JUDGMENTS), "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [r["id"] for r in read_jsonl(JUDGMENTS)]
    assert all(r["source"] == "generator" for r in rows)
    one = runner.invoke(app, ["summarize", "--config", str(config), "-"], input=JUDGMENTS.read_text().splitlines()[3])
    assert one.stdout.strip() == rows[3]["summary"]
    # a partial output is picked up: the marked record is not redone
    out.unlink()
    stop = interrupt_after(1)
    result = runner.invoke(app, ["summarize", "--config", str(config), "-i", str(JUDGMENTS), "-o", str(out)])
    assert result.exit_code == 130 and "1 records are saved" in result.stderr
    stop()
    mark_first_record(tmp_path / "summaries.jsonl.partial", summary="MARK")
    result = runner.invoke(app, ["summarize", "--config", str(config), "-i", str(JUDGMENTS), "-o", str(out)])
    assert result.exit_code == 0 and "(1 resumed)" in result.stderr
    assert [r["summary"] for r in read_jsonl(out)] == ["MARK"] + [r["summary"] for r in rows[1:]]


def test_python_api(trained, capsys):
    """README's Python example, run as written (on the tiny models), then the API's promises."""
    import re
    from pathlib import Path

    from spaces import Summarizer

    root, _ = trained
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    code = code.replace("runs/cail2020/extractor", str(root / "extractor"))
    code = code.replace("runs/cail2020/generator/model-best", str(root / "generator" / "model-best"))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["summaries"]) == 2 and "the generator's validation CAIL" in capsys.readouterr().out
    summarize = Summarizer.load(root / "extractor", root / "generator" / "model-best", use_generator="always")
    texts = [document_text(r) for r in read_jsonl(JUDGMENTS)]
    batch = summarize.batch(texts)
    assert len(batch) == 4 and batch[0] == summarize(texts[0])
    extract_only = Summarizer.load(root / "extractor")
    assert extract_only.reason == "no generator" and extract_only(texts[0])


@pytest.mark.parametrize("stdin, message", [
    ("", "no judgment text"),
    ('{"id": "x", "text": ', "not valid"),
    ('{"id": "x"}', "missing text field"),
    ('[{"id": "x", "text": "原告"}]', "a JSON array"),
    ('{"id": "x", "text": "原告\\udc00"}', "lone surrogate"),
    ('{"id": "a", "text": "原告"}\n{"id": "b", "text": "被告"}', "more than one JSON record"),
])
def test_summarize_bad_input(trained, stdin, message):
    root, config = trained
    result = runner.invoke(app, ["summarize", "--config", str(config), "-"], input=stdin)
    assert result.exit_code == 1 and message in result.stderr and result.stderr.splitlines()[-1].startswith(
        "error: <stdin>")


def test_a_bom_is_read_past_and_never_reaches_the_output(trained, tmp_path):
    root, config = trained
    record = read_jsonl(JUDGMENTS)[0]
    plain = runner.invoke(app, ["summarize", "--config", str(config), "--use-generator", "never", "-"],
                          input=json.dumps(record, ensure_ascii=False))
    for body in (json.dumps(record, ensure_ascii=False), document_text(record)):
        path = tmp_path / "bom.txt"
        path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
        result = runner.invoke(app, ["summarize", "--config", str(config), "--use-generator", "never", str(path)])
        assert result.exit_code == 0, result.output
        assert "\ufeff" not in result.stdout and result.stdout == plain.stdout
        assert record["summary"][:20] not in result.stdout  # the record was read as JSON, not as text


def test_summarize_a_directory_is_an_error(trained, tmp_path):
    root, config = trained
    result = runner.invoke(app, ["summarize", "--config", str(config), str(tmp_path)])
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {tmp_path}: is a directory")


def test_a_long_judgment_says_how_many_clauses_were_dropped(trained, tmp_path):
    root, config = trained
    body = "，".join(document_text(r) for r in read_jsonl(JUDGMENTS) * 20)
    result = runner.invoke(app, ["summarize", "--config", str(config), "--use-generator", "never", "-"], input=body)
    assert result.exit_code == 0, result.output
    assert "clauses; its first" in result.stderr and "were dropped (data.max_clauses 256)" in result.stderr


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


def test_the_summarize_config_takes_the_file_then_the_overrides_then_the_flags(tmp_path):
    from spaces.summarize import summarize_config

    config = tmp_path / "summarize.yaml"
    config.write_text("extractor: ex\ngenerator: gen/model-best\nuse_generator: auto\n")
    cfg = summarize_config(config, {"use_generator": "never", "decode.num_beams": 2})
    assert (cfg.extractor, cfg.generator, cfg.use_generator, cfg.decode.num_beams) == (
        tmp_path / "ex", tmp_path / "gen" / "model-best", "never", 2)
    cfg = summarize_config(config, {"use_generator": "never"}, extractor="other", use_generator="always")
    assert (cfg.extractor, cfg.use_generator) == (Path("other"), "always")
    for none in ("null", "None", ""):
        assert summarize_config(config, {}, generator=none).generator is None


@pytest.mark.parametrize("files, input, output, explain, message", [
    ([], ["docs.jsonl"], None, False, "batch mode takes both --input and --output"),
    ([], None, Path("out.jsonl"), False, "batch mode takes both --input and --output"),
    (["a.txt"], ["docs.jsonl"], Path("out.jsonl"), False, "FILE and --explain are for one judgment"),
    ([], ["docs.jsonl"], Path("out.jsonl"), True, "FILE and --explain are for one judgment"),
    (["a.txt", "b.txt"], None, None, False, "one judgment at a time, got 2 files: a.txt b.txt"),
])
def test_one_judgment_or_a_batch_never_both(files, input, output, explain, message):
    from spaces.errors import SpacesError
    from spaces.summarize import check_mode

    with pytest.raises(SpacesError, match=message):
        check_mode(files, input, output, explain)


@pytest.mark.parametrize("files, input, output, explain", [
    ([], None, None, True), (["a.txt"], None, None, False), ([], ["docs.jsonl"], Path("out.jsonl"), False)])
def test_each_mode_alone_is_accepted(files, input, output, explain):
    from spaces.summarize import check_mode

    check_mode(files, input, output, explain)


def test_explain_rows_and_the_dropped_note_come_from_the_record():
    from spaces.records import ExtractedRecord
    from spaces.summarize import dropped_note, picked_clauses

    record = ExtractedRecord(id="a", sentences=["原告诉称，", "本院认为，", "判决如下："], scores=[0.9, 0.2, 0.71234],
                             selected=[0, 2], extract="原告诉称，判决如下：", roles=["claims", "reasoning", "judgment"])
    assert picked_clauses(record) == [("0", "0.900", "claims", "原告诉称，"), ("2", "0.712", "judgment", "判决如下：")]
    assert dropped_note(record, 400) is None
    long = record.model_copy(update={"dropped_clauses": 5})
    assert dropped_note(long, 3) == "note: the judgment has 8 clauses; its first 5 were dropped (data.max_clauses 3)"
