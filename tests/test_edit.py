"""The editor: edit tags from an alignment, the phrase vocabulary, realization and its faithfulness, the model."""

import json

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import JUDGMENTS, document_text, edit_tiny, read_jsonl
from spaces.citations import citations
from spaces.cli import app
from spaces.config import EditConfig, EditDecodeConfig, load_generator_config
from spaces.generate.edit import (NOT_IN_PHRASES, PUNCTUATION, Style, alignment_tags, allowed_phrase, by_words,
                                  edit, edit_marks, mine_phrases, realize, unit_spans)
from spaces.numbers import numbers
from spaces.records import ExtractedRecord

runner = CliRunner()
CONFIG = "configs/edit.yaml"
PLAIN = "原告被告借款合同纠纷案件本院认为判决如下支付利息驳回其他诉讼请求向法院起诉称"  # no numeral: numbers stay whole


def chars(text):
    return unit_spans(text, list(range(len(text))))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=PLAIN, min_size=1, max_size=40), st.data())
def test_tags_from_an_alignment_reproduce_the_reference_when_its_insertions_are_in_the_vocabulary(text, data):
    """A reference made of the extract's text with deletions and insertions (ending, as a CAIL summary does, on
    the extract's final 。) is what its alignment's tags give back, character for character."""
    text += "。"
    keep = data.draw(st.lists(st.booleans(), min_size=len(text) - 1, max_size=len(text) - 1))
    added = data.draw(st.lists(st.text(alphabet="甲乙丙丁", max_size=3), min_size=len(text), max_size=len(text)))
    reference = "".join(a + (c if k else "") for a, c, k in zip(added, text, keep)) + "。"
    reference = reference.lstrip("。") or "甲。"
    spans = chars(text)
    tags = alignment_tags(text, spans, reference)
    assert realize(text, spans, tags.keep, tags.insert) == reference


def test_the_parties_joined_by_a_deletion_read_as_one():
    """With ``join_parties`` (decode.join_parties), 原告张三与被告李四 with the names and 与 deleted reads 原被告, its
    告 marked deleted; not where 原告 does not open the clause, where no connective ends what was deleted
    (原告张三向被告: "the parties borrowed" would be false), where a clause mark lies in it, or where a phrase
    stands at the join; and without it, 原告被告."""
    def summary(text, deleted, phrase="", join_parties=True):
        keep = [True] * len(text)
        for name in deleted:
            at = text.index(name)
            keep[at:at + len(name)] = [False] * len(name)
        insert = [""] * len(text)
        insert[text.index("被告")] = phrase
        style = Style(join_parties=join_parties)
        return realize(text, chars(text), keep, insert, style), edit_marks(text, chars(text), keep, insert, style)

    joined, marks = summary("原告张三与被告李四借款合同纠纷一案。", ["张三与", "李四"])
    assert joined == "原被告借款合同纠纷一案。"
    assert marks[:3] == [("keep", "原"), ("delete", "告张三与"), ("keep", "被告")]
    assert summary("本案中，原告张三诉被告李四。", ["张三诉", "李四"])[0] == "本案中，原被告。"
    assert summary("原告张三向被告李四借款。", ["张三向", "李四"])[0] == "原告被告借款。"
    assert summary("判令支付原告张三与被告李四。", ["张三与", "李四"])[0] == "判令支付原告被告。"
    assert summary("原告张三，与被告李四。", ["张三，与", "李四"])[0] == "原告被告。"
    assert summary("原告张三与被告李四。", ["张三与", "李四"], phrase="及")[0] == "原告及被告。"
    assert summary("原告张三与被告李四。", ["张三与", "李四"], join_parties=False)[0] == "原告被告。"


def test_a_short_deletion_inside_kept_text_is_not_made():
    """With ``short_gaps`` 2 (decode.keep_short_gaps), a cut of one or two characters between kept text is put
    back (被告孙某 stays whole, 如下 stays); not one of three, not one holding a mark, not one at either end."""
    def summary(text, deleted, short_gaps=2):
        keep = [True] * len(text)
        for part in deleted:
            at = text.index(part)
            keep[at:at + len(part)] = [False] * len(part)
        return realize(text, chars(text), keep, [""] * len(text), Style(short_gaps=short_gaps))

    assert summary("被告孙某偿还借款。", ["某"]) == "被告孙某偿还借款。"
    assert summary("判决如下：驳回。", ["如下"]) == "判决如下：驳回。"
    assert summary("判决如下：驳回。", ["如下"], short_gaps=0) == "判决：驳回。"
    assert summary("原告张三丰诉被告。", ["张三丰"]) == "原告诉被告。"
    assert summary("一案，原告诉称。", ["，原"]) == "一案告诉称。"
    assert summary("某某原告诉称。", ["某某"]) == "原告诉称。"
    assert summary("原告诉称某某", ["某某"]) == "原告诉称。"


def test_kept_text_that_opens_a_section_starts_a_sentence():
    """With ``section_breaks`` (decode.section_breaks), an 。 where kept text runs into a new section, in a kept
    piece or across a deletion, replacing the weaker mark there and marked as an insertion; none at a break
    before any kept text, and none without the rule."""
    text = "原告张三诉被告一案，原告诉请：支付借款；被告李四辩称：已还。"
    claims, defence = text.index("原告诉请"), text.index("被告李四")
    keep = [True] * len(text)
    style = Style(section_breaks=True)
    assert realize(text, chars(text), keep, [""] * len(text), style, [claims, defence]) == \
        "原告张三诉被告一案。原告诉请：支付借款。被告李四辩称：已还。"
    assert realize(text, chars(text), keep, [""] * len(text), Style(), [claims, defence]) == text
    keep[text.index("；"):defence + 4] = [False] * (defence + 4 - text.index("；"))  # 支付借款 | 辩称
    summary, marks = edit(text, chars(text), keep, [""] * len(text), style, [defence])
    assert summary == "原告张三诉被告一案，原告诉请：支付借款。辩称：已还。"
    assert ("insert", "。") in marks
    insert = [""] * len(text)
    insert[claims] = "。原告"
    assert edit(text, chars(text), [True] * len(text), insert, style, [claims])[1][1:3] == [("delete", "，"),
                                                                                         ("insert", "。原告")]
    later = [False] * 10 + [True] * (len(text) - 10)
    assert realize(text, chars(text), later, [""] * len(text), style, [3]) == text[10:]
    assert realize(text, chars(text), later, [""] * len(text), style, [3, claims]) == "原告诉请：支付借款；被告李四辩称：已还。"


def test_sections_start_where_the_clause_roles_change_except_at_the_judgment():
    from spaces.generate.editor import JUDGMENT, section_starts
    from spaces.records import ROLES

    assert JUDGMENT in ROLES

    clauses = ["原告诉被告一案，", "原告诉请：", "支付借款；", "被告辩称：", "已还。", "本院认为，", "依照规定，", "判决如下："]
    roles = ["procedure", "claims", "claims", "defence", "defence", "reasoning", "reasoning", "judgment"]
    selected = [0, 1, 2, 3, 5, 6, 7]
    extract = "".join(clauses[i] for i in selected)
    r = ExtractedRecord(id="a", sentences=clauses, scores=[1.0] * 8, selected=selected, extract=extract, roles=roles)
    assert [extract[b:b + 4] for b in section_starts(r)] == ["原告诉请", "被告辩称", "本院认为"]
    assert section_starts(r.model_copy(update={"roles": None})) == []
    assert section_starts(r.model_copy(update={"extract": extract[1:]})) == []


def test_tags_by_hand():
    text = "原告张三诉被告李四借款合同纠纷一案，判决如下：驳回原告诉讼请求。"
    reference = "原告与被告借款合同纠纷一案。判决：驳回原告诉讼请求。"
    tags = alignment_tags(text, chars(text), reference)
    assert "".join(c for c, k in zip(text, tags.keep) if not k) == "张三诉李四，如下"
    assert [p for p in tags.insert if p] == ["与", "。"]
    assert realize(text, chars(text), tags.keep, tags.insert) == reference


def test_units_of_several_characters_are_kept_by_the_majority_of_their_characters():
    text = "原告张三诉被告李四"
    tags = alignment_tags(text, unit_spans(text, [0, 2, 4, 5, 7]), "原告诉被告")  # 原告|张三|诉|被告|李四
    assert tags.keep == [True, False, True, True, False]


def test_the_phrase_vocabulary_holds_no_number_and_no_statute_and_only_repeated_insertions():
    from spaces.generate.edit import EditTags

    inserts = ["被告辩称", "被告辩称", "经查明", "经查明", "五万元", "五万元", "第三条", "第三条", "《合同法》",
               "《合同法》", "2019年", "2019年", "依照", "只一次"]
    vocab = dict(mine_phrases([EditTags([True] * len(inserts), inserts)], 10, 8))
    assert vocab == {"被告辩称": 2, "经查明": 2}
    assert all(not NOT_IN_PHRASES.intersection(p) for p in vocab)
    assert not allowed_phrase("两千", 8) and not allowed_phrase("〈民法典〉", 8) and allowed_phrase("依照", 8)


FRAGMENTS = ["被告于2019年6月1日借款50000元", "利率1.5%", "五万元", "依照《中华人民共和国合同法》第二百零六条、第二百零七条",
             "《民法典》第六百七十五条", "判决如下：", "被告偿还借款二万五千元，", "本院认为，", "第一项", "共计46,677.20元。",
             "第", "条", "一案", "、", "，", "。", "：", "元", "十", "3", "《", "》", "年"]
PHRASES = ["", "", "", "和", "、", "及", "，", "被告辩称", "元", "条", "年", "的", "以及"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=10), st.data())
@example(["共计46,677.20元。"], None)
def test_random_tags_on_random_extracts_never_invent_a_number_or_a_citation(fragments, data):
    """Whatever the model tags: every number (by value) and citation of the summary is one the extract holds; no
    leading or doubled punctuation at a join, and one final 。."""
    text = "".join(fragments)
    if data is None:
        cuts, keep, insert = list(range(len(text))), [i % 3 != 1 for i in range(len(text))], [""] * len(text)
    else:
        cuts = sorted(set(data.draw(st.lists(st.integers(0, len(text) - 1), min_size=1, max_size=len(text)))))
        keep = data.draw(st.lists(st.booleans(), min_size=len(cuts), max_size=len(cuts)))
        insert = data.draw(st.lists(st.sampled_from(PHRASES), min_size=len(cuts), max_size=len(cuts)))
    spans = unit_spans(text, cuts)
    breaks = [] if data is None else data.draw(st.lists(st.integers(0, len(text)), max_size=4))
    for style in (Style(), Style(join_parties=True, short_gaps=2, section_breaks=True)):
        summary, marks = edit(text, spans, keep, insert, style, breaks)
        assert "".join(t for k, t in marks if k != "insert") == text  # the marks read the extract
        assert "".join(t for k, t in marks if k != "delete") == summary  # and the summary, every edit shown
        assert set(numbers(summary)) <= set(numbers(text)), (summary, text)
        known = citations(text)
        assert all(c.found_in(known) for c in citations(summary)), (summary, text)
        if summary:
            assert summary[0] not in PUNCTUATION and summary.endswith("。") and summary[-2:-1] not in PUNCTUATION


def test_a_deletion_that_would_join_two_numbers_puts_the_text_between_back():
    text = "被告于2019年借款3万元。"
    spans = chars(text)
    keep = [c not in "年借款" for c in text]  # 2019 + 3万: would read 20193万
    summary = realize(text, spans, keep, [""] * len(spans))
    assert set(numbers(summary)) <= set(numbers(text)) and "2019" in summary
    # a number is kept or deleted whole: half of 2019 never stays
    keep = [i not in (6, 7) for i in range(len(text))]
    assert "20" not in realize(text, spans, keep, [""] * len(spans)).replace("2019", "")


def test_a_number_goes_with_its_unit_and_its_di():
    text = "被告支付原告3日的工资，依照第三条规定。"
    spans = chars(text)
    gone = realize(text, spans, [c not in "3三" for c in text[:6]] + [False] * 2 + [c not in "3三" for c in text[8:]],
                   [""] * len(spans))
    assert "原告的工资" in gone  # 3 and 日 go together, never 原告日的工资
    half = [c not in "三" for c in text]  # 第 and 条 kept, 三 deleted: the group of three is kept by its majority
    assert "第三条" in realize(text, spans, half, [""] * len(spans))
    first = [c not in "第三" for c in text]
    assert "依照规定" in realize(text, spans, first, [""] * len(spans))  # no 条 left behind


def test_a_date_a_range_and_a_list_number_are_kept_or_deleted_whole():
    """Deleting 2015年7月1日至2016年11月 and keeping 3日 would leave a number the source holds (3日) that means
    something else; keeping 1 without its 、 runs it into the claim (请求：1被告)."""
    text = "请求：1、被告支付原告2015年7月1日至2016年11月3日的工资；2、驳回。"
    spans = chars(text)
    cut = text.index("3日")
    keep = [not (text.index("2015") <= i < cut) for i in range(len(text))]
    summary = realize(text, spans, keep, [""] * len(spans))
    assert "原告的工资" in summary, summary  # the range goes whole: most of its characters were deleted
    mark = text.index("、")
    keep = [i != mark for i in range(len(text))]  # 1 kept, its 、 deleted: a tie of the pair keeps both
    assert "请求：1、被告" in realize(text, spans, keep, [""] * len(spans))
    # （1） goes whole by its majority: never a lone （ left open
    assert realize("请求：（1）被告。", chars("请求：（1）被告。"), [True] * 4 + [False] * 2 + [True] * 3, [""] * 9) == "请求：被告。"


def test_the_keep_decision_is_taken_per_word():
    """陈 likely kept and 述 likely deleted would leave 陈 alone; per word they share one p(keep), and a unit that
    straddles two words (原告的 as one unit) chains them."""
    text = "故原告的陈述自相矛盾。"
    spans = chars(text)
    keep = np.full(len(spans), 0.9)
    keep[text.index("述")] = 0.1
    smoothed = by_words(text, spans, keep)
    i = text.index("陈")
    assert smoothed[i] == smoothed[i + 1] == 0.5 and smoothed[0] == 0.9
    for threshold in (0.3, 0.7):
        summary = realize(text, spans, (smoothed > threshold).tolist(), [""] * len(spans))
        assert ("陈" in summary) == ("述" in summary), summary
    straddling = [(0, 1), (1, 4), (4, 6), (6, 11)]  # 故 | 原告的 | 陈述 | 自相矛盾。
    assert by_words(text, straddling, np.array([0.2, 0.4, 0.6, 0.8])).tolist() == [0.2, 0.4, 0.6, 0.8]
    glued = [(0, 2), (2, 11)]  # 故原 | 告的陈述…: 原告 is in both, so the two units are one decision
    assert by_words(text, glued, np.array([0.2, 0.8])).tolist() == [0.5, 0.5]


def test_edit_marks_show_every_deletion_and_insertion_in_place():
    text = "原告张三诉被告李四纠纷一案，"
    spans = chars(text)
    keep = [c not in "张三诉李四" for c in text]
    insert = [""] * len(text)
    insert[text.index("被")] = "与"
    marks = edit_marks(text, spans, keep, insert)
    assert marks == [("keep", "原告"), ("delete", "张三诉"), ("insert", "与"), ("keep", "被告"), ("delete", "李四"),
                     ("keep", "纠纷一案"), ("delete", "，"), ("insert", "。")]  # the tidied end shows too
    assert "".join(t for k, t in marks if k != "insert") == text
    assert edit(text, spans, keep, insert) == (realize(text, spans, keep, insert), marks) == ("原告与被告纠纷一案。", marks)
    assert edit_marks("原告诉称。", chars("原告诉称。"), [True] * 5, [""] * 5) == [("keep", "原告诉称。")]
    said = "原告诉称。被告辩称。"  # a phrase 。 meeting the extract's own: the extract's stays, nothing to show
    assert edit_marks(said, chars(said), [True] * 10, [""] * 4 + ["。"] + [""] * 5) == [("keep", said)]


# ---- the model ----------------------------------------------------------------------------------------------


def record(doc_id, extract, reference, oracle=None):
    return ExtractedRecord(id=doc_id, sentences=[extract], scores=[1.0], selected=[0], extract=extract,
                           reference=reference, oracle_extract=oracle)


def fixture_records(n=3, chars_=150):
    return [record(r["id"], document_text(r).replace("\n", "")[:chars_], r["summary"][:60])
            for r in read_jsonl(JUDGMENTS)[:n]]


def edit_config(encoder, **model):
    return EditConfig.model_validate({"model": {"name_or_path": str(encoder), "layers": None, "max_length": 64,
                                                "freeze_embeddings": False, **model},
                                      "edit": {"phrases": 16}, "train": {"oracle_mix": 0.0}})


def test_a_long_extract_is_cut_into_windows_at_clause_boundaries_and_nothing_is_lost(tiny_bert):
    from spaces.generate.editor import EditRecipe

    text = "".join(document_text(r).replace("\n", "") for r in read_jsonl(JUDGMENTS))
    model = EditRecipe(edit_config(tiny_bert)).build([record("a", text[:200], "原告与被告纠纷一案。")])
    windows = model.windows(text)
    assert len(windows) > 3 and all(len(w.ids) <= 64 for w in windows)
    units = [u for w in windows for u in w.units]
    assert "".join(text[a:b] for a, b in units) == text  # the units tile the extract
    ends = {a for w in windows[1:] for a in [w.units[0][0]]}
    assert all(text[e - 1] in "。；：，" for e in ends)  # each window starts a clause


def test_a_records_tags_never_depend_on_the_records_beside_it(tiny_bert):
    """Each window is encoded alone: the same bytes whatever batch (or resume point) a record falls in."""
    from spaces.generate.editor import EditRecipe, tag_records

    short, *others = fixture_records(3, chars_=300)
    short = record("s", short.extract[:40], short.reference)
    torch.manual_seed(0)
    model = EditRecipe(edit_config(tiny_bert)).build([short, *others])
    alone, beside = tag_records(model, [short])[0], tag_records(model, [*others, short])[-1]
    assert alone.keep.tobytes() == beside.keep.tobytes() and alone.insert == beside.insert


def test_decode_mixed_precision_bf16_tags_under_autocast(tiny_bert, monkeypatch):
    """``decode.mixed_precision: bf16`` reaches the encoder pass: probabilities move by bf16's rounding only."""
    from spaces.generate import editor

    records = fixture_records()
    torch.manual_seed(0)
    model = editor.EditRecipe(edit_config(tiny_bert)).build(records)
    fp32, bf16 = editor.tag_records(model, records), editor.tag_records(model, records, bf16=True)
    assert any(a.keep.tobytes() != b.keep.tobytes() for a, b in zip(fp32, bf16))
    assert max(np.abs(a.keep - b.keep).max() for a, b in zip(fp32, bf16)) < 0.02
    asked = []
    monkeypatch.setattr(editor, "tag_records", lambda m, r, bf16=False: asked.append(bf16) or fp32)
    for precision in ("no", "bf16"):
        config = edit_config(tiny_bert).model_copy(update={"decode": EditDecodeConfig(mixed_precision=precision)})
        editor.edit_records(model, records, config)
    assert asked == [False, True]


def test_predict_realizes_each_record_with_the_section_starts_of_its_own_roles(tiny_bert):
    """``edit_records`` ends a sentence where a record's clause roles open a section (the tags carry its
    section starts), and keeps the extract's mark with ``decode.section_breaks: false``."""
    from spaces.generate.editor import EditRecipe, edit_records, section_starts, tag_records

    clauses = ["原告张三诉被告一案，", "原告诉请还款。"]
    r = ExtractedRecord(id="a", sentences=clauses, scores=[1.0, 1.0], selected=[0, 1], extract="".join(clauses),
                        roles=["procedure", "claims"], reference="原告诉被告一案。原告诉请还款。")
    config = edit_config(tiny_bert)
    model = EditRecipe(config).build([r])
    assert tag_records(model, [r])[0].breaks == section_starts(r) == [len(clauses[0])]
    for breaks, summary in ((True, "原告张三诉被告一案。原告诉请还款。"), (False, "原告张三诉被告一案，原告诉请还款。")):
        decode = EditDecodeConfig(keep_threshold=1e-9, section_breaks=breaks)
        assert edit_records(model, [r], config.model_copy(update={"decode": decode}))[0][0] == summary


def test_a_tiny_editor_overfits_three_records_and_saves_and_loads_equal(tiny_bert, tmp_path):
    from spaces.generate.editor import EditRecipe, Editor, tag_records, window_tags

    records = fixture_records()
    recipe = EditRecipe(edit_config(tiny_bert))
    torch.manual_seed(0)
    model = recipe.build(records)
    examples = recipe.examples(model, records)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = recipe.collate(model, examples, torch.Generator().manual_seed(0))
    model.train()
    for _ in range(300):
        loss = recipe.loss(model, model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    for r, tagged in zip(records, tag_records(model, records)):
        windows = model.windows(r.extract)
        tags = [t for w in window_tags(windows, r.extract, r.reference) for t in zip(w.keep, w.insert)]
        # the references as closely as the tags and phrases can reach them, deciding per word: where the
        # alignment keeps half a word (诉讼 → 诉), the model's own probabilities break the tie
        oracle = by_words(r.extract, tagged.units, np.array([float(k) for k, _ in tags]))
        keep = np.where(oracle == 0.5, tagged.keep > 0.5, oracle > 0.5)
        best = realize(r.extract, tagged.units, keep.tolist(), [p if p in model.phrases else "" for _, p in tags])
        assert tagged.summary(0.5, Style()) == best
    model.save(tmp_path / "editor")
    loaded = Editor.load(tmp_path / "editor")
    ids, mask = batch[0], batch[1]
    with torch.no_grad():
        for a, b in zip(model(ids, mask), loaded(ids, mask)):
            assert torch.equal(a, b)
    assert loaded.phrases == model.phrases and float(loaded.keep_threshold) == float(model.keep_threshold)


def extracted_file(path, n=4):
    with open(path, "w", encoding="utf-8") as f:
        for r in read_jsonl(JUDGMENTS)[:n]:
            text = document_text(r).replace("\n", "")
            rec = ExtractedRecord(id=r["id"], sentences=[text[:150], text[-150:]], scores=[0.9, 0.1], selected=[0],
                                  extract=text[:150], labels=[1], oracle_extract=text[-150:],
                                  reference=r["summary"][:80])
            f.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
    return path


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_training_sets_the_configured_attention_dropout_and_leaves_the_hidden_states(rate, tiny_bert, tmp_path):
    from spaces.generate.train import prepare, recipe_for

    config = edit_config(tiny_bert, attention_dropout=rate)
    run = prepare(recipe_for(config), config, extracted_file(tmp_path / "x.jsonl"), tmp_path / "editor")
    modules = list(run.trainer.unwrapped.encoder.modules())
    assert {m.dropout.p for m in modules if type(m).__name__ == "BertSelfAttention"} == {rate}
    assert {m.dropout.p for m in modules if type(m).__name__ in ("BertSelfOutput", "BertOutput")} == {0.1}


def test_the_editor_trains_and_predicts_through_the_generate_commands(tiny_bert, tmp_path):
    data = extracted_file(tmp_path / "x.jsonl")
    out = tmp_path / "editor"
    result = runner.invoke(app, ["generate", "train", "--config", CONFIG, "-i", str(data), "-o", str(out),
                                 *edit_tiny(tiny_bert)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model-best" / "card.json").read_text())
    assert card["kind"] == "spaces-generator" and card["model"]["kind"] == "edit"
    assert set(card["validation"]) == {"generator", "extract", "generator_beats_extract"}
    assert card["best"]["keep_threshold"] in (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
    assert {"size", "top", "coverage"} <= set(card["phrases"]) and 0 <= card["phrases"]["coverage"] <= 1
    assert isinstance(load_generator_config(out / "model-best" / "config.yaml"), EditConfig)
    summaries = tmp_path / "s.jsonl"
    result = runner.invoke(app, ["generate", "predict", "-m", str(out / "model-best"), "-i", str(data),
                                 "-o", str(summaries)])
    assert result.exit_code == 0, result.output
    rows = read_jsonl(summaries)
    extracts = {r["id"]: r["extract"] for r in read_jsonl(data)}
    assert len(rows) == 4 and all(r["source"] == "generator" and r["edits"] for r in rows)
    for r in rows:  # the marks are the extract, edited: its deletions and the phrases put in
        assert "".join(t for k, t in r["edits"] if k != "insert") == extracts[r["id"]]
    result = runner.invoke(app, ["generate", "predict", "-m", str(out / "model-best"), "-i", str(data),
                                 "-o", str(tmp_path / "t.jsonl"), "--decode.keep_threshold", "0.99"])
    assert result.exit_code == 0, result.output
    assert sum(len(r["summary"]) for r in read_jsonl(tmp_path / "t.jsonl")) < sum(len(r["summary"]) for r in rows)


@pytest.mark.parametrize("keep", ["last", "best"])
def test_keep_epoch_last_keeps_the_last_epochs_ema_weights_whatever_validation_says(keep, tiny_bert, tmp_path,
                                                                                     monkeypatch):
    """The editor's default: validation on a handful of records reports and calibrates the threshold, and chooses
    no epoch (here it scores epoch 1 best, EMA above raw, and ``best`` keeps that epoch)."""
    from safetensors.torch import load_file

    from spaces.generate.editor import EditRecipe

    scores = iter([0.9, 0.1, 0.8, 0.2])  # epoch 1: ema, raw; epoch 2: ema, raw
    monkeypatch.setattr(EditRecipe, "validate", lambda self, model, records, rank, size: (
        next(scores), {"keep_threshold": float(model.keep_threshold)}))
    out = tmp_path / "editor"
    result = runner.invoke(app, ["generate", "train", "--config", CONFIG, "-i", str(extracted_file(tmp_path / "x.jsonl")),
                                 "-o", str(out), *edit_tiny(tiny_bert), "--train.keep_epoch", keep])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert {k: card["best"][k] for k in ("epoch", "weights", "val_score")} == (
        {"epoch": 2, "weights": "ema", "val_score": 0.8} if keep == "last" else
        {"epoch": 1, "weights": "ema", "val_score": 0.9})
    assert card["validation"]["generator"] == card["best"]["val_score"]
    best, last = (load_file(str(out / d / "model.safetensors")) for d in ("model-best", "model-last"))
    assert all(torch.equal(best[k], last[k]) for k in best) == (keep == "last")


@pytest.mark.parametrize("fixed", [0.15, None])
def test_validation_scores_at_the_configured_keep_threshold_and_calibrates_only_when_it_is_null(fixed, monkeypatch):
    """The names and 诉 are the only deletions the reference makes, at p(keep) 0.3: at the default 0.15 they
    stay, and validation scores what predict will print (原被告 and the 。 before the claims included: the
    decode. realization rules, with the record's section starts); with ``decode.keep_threshold: null`` it
    calibrates (0.3, the lowest threshold that deletes them) and the model keeps that."""
    from types import SimpleNamespace

    import spaces.generate.editor as editor_module
    from spaces.generate.editor import EditRecipe, Tagged, realization, section_starts
    from spaces.rouge import score_texts

    clauses = ["原告张三丰诉被告李四光借款合同纠纷一案，", "原告诉请还款。"]
    text, reference = "".join(clauses), "原被告借款合同纠纷一案。原告诉请还款。"
    spans = chars(text)
    keep = np.array([0.3 if c in "张三丰诉李四光" else 0.9 for c in text])
    record = ExtractedRecord(id="a", sentences=clauses, scores=[1.0, 1.0], selected=[0, 1], extract=text,
                             roles=["procedure", "claims"], reference=reference)
    monkeypatch.setattr(editor_module, "tag_records", lambda model, records: [
        Tagged(text, spans, keep, [""] * len(spans), section_starts(r)) for r in records])
    model = SimpleNamespace(keep_threshold=torch.tensor(0.5))
    config = EditConfig.model_validate({"decode": {"keep_threshold": fixed}})
    score, info = EditRecipe(config).validate(model, [record], 0, 1)
    threshold = 0.15 if fixed else 0.3
    assert info == {"keep_threshold": threshold} and float(model.keep_threshold) == pytest.approx(threshold)
    kept = realize(text, spans, (keep > threshold).tolist(), [""] * len(spans), realization(config.decode),
                   section_starts(record))
    assert kept == (text.replace("，", "。") if fixed else reference)
    assert score == score_texts(kept, reference, "word")["main"]


def test_an_editor_config_error_names_every_key_at_once(tmp_path):
    result = runner.invoke(app, ["generate", "train", "--config", CONFIG, "-i", str(tmp_path / "x.jsonl"), "-o",
                                 str(tmp_path / "o"), "--edit.phrases", "-1", "--model.layers", "x",
                                 "--decode.num_beams", "3"])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "3 config errors" in line and "--edit.phrases" in line and "--model.layers" in line
    assert "--decode.num_beams: unknown config key" in line


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_a_keep_threshold_outside_0_1_is_refused(threshold):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="keep_threshold"):
        EditConfig.model_validate({"decode": {"keep_threshold": threshold}})


def test_summarize_and_the_api_print_the_editors_summary_as_the_stages_do_and_auto_follows_its_card(tiny_bert,
                                                                                                      tmp_path):
    from tests.conftest import JUDGMENTS, USER_DICT

    from spaces import Summarizer

    extractor, editor = tmp_path / "extractor", tmp_path / "editor"
    result = runner.invoke(app, ["extract", "train", "-i", str(JUDGMENTS), "-o", str(extractor),
                                 "--model.name_or_path", str(tiny_bert), "--train.folds", "2", "--train.epochs", "1",
                                 "--data.user_dict", str(USER_DICT)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["generate", "train", "--config", CONFIG, "-i", str(extractor / "oof.jsonl"), "-o",
                                 str(editor), *edit_tiny(tiny_bert), "--train.epochs", "1"])
    assert result.exit_code == 0, result.output
    best = editor / "model-best"
    summaries = tmp_path / "summarized.jsonl"
    result = runner.invoke(app, ["summarize", "--extractor", str(extractor), "--generator", str(best),
                                 "--use-generator", "always", "--input", str(JUDGMENTS), "--output", str(summaries)])
    assert result.exit_code == 0, result.output
    extracted, edited = tmp_path / "extracted.jsonl", tmp_path / "edited.jsonl"
    assert runner.invoke(app, ["extract", "predict", "-m", str(extractor), "-i", str(JUDGMENTS), "-o",
                               str(extracted)]).exit_code == 0
    assert runner.invoke(app, ["generate", "predict", "-m", str(best), "-i", str(extracted), "-o",
                               str(edited)]).exit_code == 0
    by_stages = {r["id"]: (r["summary"], r["edits"]) for r in read_jsonl(edited)}
    assert {r["id"]: (r["summary"], r["edits"]) for r in read_jsonl(summaries)} == by_stages
    first = read_jsonl(JUDGMENTS)[0]
    assert Summarizer.load(extractor, best, use_generator="always")(document_text(first)) == by_stages[first["id"]][0]
    card = json.loads((best / "card.json").read_text())
    auto = Summarizer.load(extractor, best)
    assert auto.use_generator == card["validation"]["generator_beats_extract"] and "validation CAIL" in auto.reason
