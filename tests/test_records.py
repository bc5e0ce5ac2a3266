import json

import pytest

from spaces.config import DataConfig
from spaces.errors import SpacesError
from spaces.records import JsonlWriter, read_documents


def write_lines(path, lines):
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


def docs(path, **data):
    return list(read_documents(path, DataConfig(**data), need_summary=False))


def test_reads_every_shape(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [
        json.dumps({"id": "a", "text": [{"sentence": "一", "label": 1}, {"sentence": "二"}], "summary": "s"}),
        json.dumps({"id": 7, "text": ["三", "四"]}),
        "",
        json.dumps({"id": "c", "text": "五\n六"}),
    ])
    got = docs(path)
    assert [(d.id, d.text, d.summary) for d in got] == [("a", "一\n二", "s"), ("7", "三\n四", None), ("c", "五\n六", None)]
    assert got[2].where == f"{path}:4"


def test_field_names_come_from_config(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [json.dumps({"doc": "x", "source": "正文", "target": "摘要"})])
    (doc,) = read_documents(path, DataConfig(id_field="doc", text_field="source", summary_field="target"))
    assert (doc.id, doc.text, doc.summary) == ("x", "正文", "摘要")


@pytest.mark.parametrize("line, message", [
    ('{"id": "a", "text": "x"', "invalid JSON"),
    ('["not", "an", "object"]', "expected a JSON object"),
    ('{"text": "x"}', "missing id field 'id'"),
    ('{"id": ["a"], "text": "x"}', "must be a string or an integer"),
    ('{"id": "", "text": "x"}', "is empty"),
    ('{"id": "b"}', "missing text field 'text'"),
    ('{"id": "b", "text": 3}', "must be a string or a list"),
    ('{"id": "b", "text": [{"label": 1}]}', "text[0] must be a string"),
    ('{"id": "b", "text": "x", "summary": 5}', "must be a string"),
    ('{"id": "a", "text": "again"}', "duplicate id 'a' (first on line 1)"),
    (b'{"id": "b", "text": "\xff\xfe"}', "not valid UTF-8"),
    ('{"id": "b", "text": "\\ud800"}', "lone surrogate escape (\\ud800)"),
])
def test_bad_lines_are_located(tmp_path, line, message):
    path = write_lines(tmp_path / "d.jsonl", ['{"id": "a", "text": "ok"}', line])
    with pytest.raises(SpacesError) as e:
        docs(path)
    assert e.value.where == f"{path}:2"
    assert message in e.value.message


def test_missing_file(tmp_path):
    with pytest.raises(SpacesError, match="file not found"):
        docs(tmp_path / "none.jsonl")


def test_writer_renames_only_on_success(tmp_path):
    out = tmp_path / "out.jsonl"
    with JsonlWriter(out) as w:
        w.write({"id": "a"})
        assert not out.exists() and (tmp_path / "out.jsonl.partial").exists()
    assert out.read_text() == '{"id": "a"}\n' and not (tmp_path / "out.jsonl.partial").exists()


def test_writer_keeps_partial_on_error_and_resumes(tmp_path):
    out = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with JsonlWriter(out) as w:
            w.write({"id": "a", "v": 1})
            raise RuntimeError("killed")
    assert not out.exists()
    partial = tmp_path / "out.jsonl.partial"
    with open(partial, "a") as f:
        f.write('{"id": "b", "v"')  # a torn last line
    seen = []
    with JsonlWriter(out, on_resumed=seen.append) as w:
        assert w.done == {"a"} and seen == [{"id": "a", "v": 1}]
        w.write({"id": "b", "v": 2})
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b"]


def test_writer_refuses_a_missing_folder(tmp_path):
    with pytest.raises(SpacesError, match="does not exist"):
        JsonlWriter(tmp_path / "no" / "out.jsonl")
