"""Faithfulness figures on crafted cases, and the report page that shows them."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spaces.cli import app
from spaces.citations import citation_spans, citations
from spaces.evaluate.faithfulness import copy_rate, faithfulness, novel_bigrams
from spaces.numbers import chinese_value, number_spans, numbers
from tests.conftest import JUDGMENTS, read_jsonl

runner = CliRunner()
JUDGMENT = ("原告张某与被告李某民间借贷纠纷一案。2018年3月，被告向原告借款五万元，约定月利率1.5%。"
            "本院认为，合法的借贷关系受法律保护。依照《中华人民共和国合同法》第二百零六条、第二百零七条，"
            "《中华人民共和国民事诉讼法》第一百四十四条的规定，判决：被告偿还原告借款50,000元。")
FAITHFUL = "被告向原告借款五万元。依照《合同法》第二百零六条的规定，判决被告偿还借款50000元。"
SWAPPED = "被告向原告借款六万元。依照《合同法》第二百一十条的规定，判决被告偿还借款60000元。"
REFERENCE = "原告诉称被告借款五万元未还。依照《中华人民共和国合同法》第二百零六条，判决被告还款。"


def test_numbers_are_compared_by_value():
    assert chinese_value("二百零六") == 206 and chinese_value("一万") == 10_000 and chinese_value("二〇一七") == 2017
    assert chinese_value("十五") == 15 and chinese_value("三万五千") == 35_000
    assert numbers("借款一万元，第206条，2018年3月，46,677.20元，1.5万元，5%") == \
        ["10000", "206", "2018", "3", "46677.2", "15000", "5"]
    assert numbers("纠纷一案，统一，一、判令") == []  # a Chinese numeral counts before a unit or after 第
    assert number_spans("第二百零六条")[0][:2] == (1, 5)


def test_citations_with_their_articles_and_shortened_titles():
    cites = citations("依照《中华人民共和国合同法》第六十条、第一百零九条，《最高人民法院关于民事诉讼证据的若干规定》第二条")
    assert [(c.title, c.article) for c in cites] == [("合同法", 60), ("合同法", 109),
                                                      ("最高人民法院关于民事诉讼证据的若干规定", 2)]
    assert citations("《合同法》第二百零六条第一款第二项")[0].paragraph == 1
    (start, end, _), = citation_spans("依照《合同法》第二百零六条的规定")
    assert "依照《合同法》第二百零六条的规定"[start:end] == "《合同法》第二百零六条"


def test_a_faithful_summary_and_one_that_swaps_the_statute_and_the_amount():
    good = faithfulness(FAITHFUL, JUDGMENT, REFERENCE)
    bad = faithfulness(SWAPPED, JUDGMENT, REFERENCE)
    assert good["unsupported_numbers"] == 0.0 and good["unsupported_citations"] == 0.0
    assert good["citation_recall"] == 1.0
    assert bad["unsupported_numbers"] == pytest.approx(3 / 3) and bad["unsupported_citations"] == 1.0
    assert bad["citation_recall"] == 0.0
    assert good["degenerate"] == bad["degenerate"] == 0.0


def test_copy_rate_novel_bigrams_and_degenerate():
    assert copy_rate("被告向原告借款五万元", JUDGMENT) == 1.0
    assert copy_rate("天气很好", JUDGMENT) == 0.0
    assert copy_rate("被告向原告借款。天气很好", JUDGMENT) == pytest.approx(7 / 12)
    assert novel_bigrams("被告向原告借款", JUDGMENT) == 0.0 and novel_bigrams("天气很好今天", JUDGMENT) == 1.0
    assert faithfulness("看看看看", JUDGMENT)["degenerate"] == 1.0
    assert faithfulness("驳回原告的，驳回原告的，驳回原告的，驳回原告的，", JUDGMENT)["degenerate"] == 1.0
    assert faithfulness("借款10000元，2222年", JUDGMENT)["degenerate"] == 0.0  # digits are no loop


def test_nothing_to_count_is_none_and_left_out_of_the_mean():
    row = faithfulness("被告未答辩。", JUDGMENT, "无引用")
    assert row["unsupported_numbers"] is None and row["unsupported_citations"] is None
    assert row["citation_recall"] is None


def documents(tmp_path):
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"id": "j1", "text": JUDGMENT, "summary": REFERENCE}, ensure_ascii=False) + "\n" +
                    "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in read_jsonl(JUDGMENTS)),
                    encoding="utf-8")
    ids = ["j1"] + [r["id"] for r in read_jsonl(JUDGMENTS)]
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text("".join(json.dumps({"id": i, "summary": FAITHFUL}, ensure_ascii=False) + "\n" for i in ids))
    bad.write_text("".join(json.dumps({"id": i, "summary": SWAPPED}, ensure_ascii=False) + "\n" for i in ids))
    return refs, good, bad


def test_evaluate_reports_faithfulness_per_document_and_in_the_mean(tmp_path):
    refs, good, bad = documents(tmp_path)
    result = runner.invoke(app, ["evaluate", "--predictions", str(bad), "--references", str(refs), "-o",
                                 str(tmp_path / "m.json"), "--per-document", str(tmp_path / "rows.jsonl")])
    assert result.exit_code == 0, result.output
    assert "unsupported citations" in result.stderr or "unsupported citations" in result.output
    rows = read_jsonl(tmp_path / "rows.jsonl")
    assert rows[0]["unsupported_citations"] == 1.0 and rows[0]["unsupported_numbers"] == 1.0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["faithfulness"]["unsupported_citations"] == pytest.approx(
        sum(r["unsupported_citations"] for r in rows if r["unsupported_citations"] is not None)
        / sum(r["unsupported_citations"] is not None for r in rows))
    result = runner.invoke(app, ["evaluate", "--predictions", str(bad), "--references", str(refs),
                                 "--no-faithfulness", "-o", str(tmp_path / "plain.json")])
    assert "faithfulness" not in json.loads((tmp_path / "plain.json").read_text())


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.marks, self.urls, self.stack, self.text_in = set(), [], [], [], {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("src", "href"):
            if attrs.get(key, "").startswith(("http:", "https:", "//")):
                self.urls.append(attrs[key])
        self.stack.append((tag, attrs.get("class")))
        if tag == "mark":
            self.marks.append([attrs.get("class"), ""])

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1][0] == "mark" and self.marks:
            self.marks[-1][1] += data


def test_report_page_marks_what_a_summary_invented_and_needs_no_network(tmp_path):
    refs, good, bad = documents(tmp_path)
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "-p", f"faithful={good}", "-p", f"swapped={bad}", "--references",
                                 str(refs), "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    assert {"metrics", "plots", "documents", "doc-j1", "docs"} <= page.ids
    assert {f"doc-{r['id']}" for r in read_jsonl(JUDGMENTS)} <= page.ids
    j1 = Page()  # the marks of the crafted judgment's entry
    j1.feed(html[html.index('id="doc-j1"'):html.index("<section", html.index('id="doc-j1"'))])
    unsupported = [text for cls, text in j1.marks if cls == "unsupported"]
    copied = [text for cls, text in j1.marks if cls == "copied"]
    assert "《合同法》第二百一十条" in unsupported and "60000" in unsupported and "六万" in unsupported
    assert not any("二百零六" in t for t in unsupported)  # the faithful summary's statute is not marked
    assert any("被告向原告借款" in t for t in copied)
    assert page.urls == [] and not re.search(r"url\(\s*['\"]?https?:", html)  # nothing fetched from a network
    assert "<svg" in html and "worst first" in html


def test_report_page_shows_an_edited_summary_with_its_deletions_struck_through_and_insertions_marked(tmp_path):
    refs, good, _ = documents(tmp_path)
    edits = [["keep", "原告"], ["delete", "张三"], ["insert", "与"], ["keep", "被告纠纷一案"], ["delete", "<如下>"]]
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(json.dumps(dict(r, edits=edits) if r["id"] == "j1" else r, ensure_ascii=False) + "\n"
                              for r in read_jsonl(good)), encoding="utf-8")
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "-p", f"editor={edited}", "--references", str(refs), "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    entry = html[html.index('id="doc-j1"'):html.index("<section", html.index('id="doc-j1"'))]
    assert '<p class="edits" title="the extract, edited">原告<del>张三</del><ins>与</ins>被告纠纷一案<del>&lt;如下&gt;</del></p>' \
        in entry
    other = html[html.index("<section", html.index('id="doc-j1"')):]
    assert 'class="edits"' not in other  # only the summaries that carry edits


def test_report_refuses_mismatched_ids(tmp_path):
    refs, good, _ = documents(tmp_path)
    short = tmp_path / "short.jsonl"
    short.write_text(good.read_text().splitlines()[0] + "\n")
    result = runner.invoke(app, ["report", "-p", str(short), "--references", str(refs), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 1 and "have no prediction" in result.stderr and not (tmp_path / "r.html").exists()


def test_report_systems_are_named_once_each():
    from spaces.errors import SpacesError
    from spaces.evaluate.report import parse_systems

    assert parse_systems(["a.jsonl", "gen=out/b.jsonl"]) == {"a": Path("a.jsonl"), "gen": Path("out/b.jsonl")}
    for bad, message in ((["=x.jsonl"], "the name and the file"), (["a="], "the name and the file"),
                         (["s=a.jsonl", "s=b.jsonl"], "two systems are named 's'"),
                         (["x/a.jsonl", "y/a.jsonl"], "two systems are named 'a'")):
        with pytest.raises(SpacesError, match=message):
            parse_systems(bad)
