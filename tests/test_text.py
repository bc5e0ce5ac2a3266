from hypothesis import given
from hypothesis import strategies as st

from spaces.errors import SpacesError
from spaces.text import CLAUSE_SEPARATORS, split_clauses, words
from tests.conftest import USER_DICT, document_text


def test_clauses_cut_after_each_separator_run():
    assert split_clauses("甲，乙。丙") == ["甲，", "乙。", "丙"]
    assert split_clauses("甲，，。乙；：丙") == ["甲，，。", "乙；：", "丙"]


def test_clauses_leading_separators_and_lines():
    assert split_clauses("，甲\n乙：丙\n\n丁") == ["，", "甲", "乙：", "丙", "丁"]


def test_clauses_are_stripped_and_empties_dropped():
    assert split_clauses("  甲 ， 乙 \n   \n 。") == ["甲 ，", "乙", "。"]
    assert split_clauses("") == []
    assert split_clauses(" \n\t") == []


def test_long_documents_keep_the_last_clauses():
    text = "，".join(str(i) for i in range(10))
    assert split_clauses(text, max_clauses=3) == ["7，", "8，", "9"]
    assert len(split_clauses(text, max_clauses=100)) == 10


@given(st.text(alphabet="甲乙 \t。；：，\n", max_size=60))
def test_clauses_lose_nothing_but_whitespace(text):
    clauses = split_clauses(text)
    assert "".join("".join(clauses).split()) == "".join(text.split())
    for clause in clauses:
        assert clause and clause == clause.strip() and "\n" not in clause
        body = clause.rstrip(CLAUSE_SEPARATORS)
        assert not any(sep in body for sep in CLAUSE_SEPARATORS)  # separators only at the end


def test_real_clauses_end_at_separators(cail_records):
    for record in cail_records:
        text = document_text(record)
        per_line = [split_clauses(line) for line in text.split("\n")]
        assert split_clauses(text) == [c for clauses in per_line for c in clauses]
        for clauses in per_line:  # only a line's last clause may end without a separator
            assert all(c[-1] in CLAUSE_SEPARATORS for c in clauses[:-1])


def test_words_use_the_user_dictionary_and_no_hmm():
    text = "原告与被告民间借贷纠纷一案"
    assert "民间借贷纠纷" not in words(text)
    assert "民间借贷纠纷" in words(text, USER_DICT)
    # with HMM off an unknown name stays in single characters (HMM would join it)
    assert words("粟顺良指示") == ["粟", "顺", "良", "指示"]


def test_missing_user_dictionary_is_a_user_error(tmp_path):
    missing = tmp_path / "nope.txt"
    try:
        words("原告", missing)
    except SpacesError as e:
        assert "user dictionary not found" in str(e) and str(missing) in str(e)
    else:
        raise AssertionError("expected a SpacesError")


def test_a_line_without_clause_punctuation_is_cut_at_weaker_separators_then_at_the_limit():
    from spaces.text import MAX_CLAUSE_CHARS

    english = " ".join(["The plaintiff claims the defendant owes him money"] * 40)  # 2,039 characters
    clauses = split_clauses(english)
    assert len(clauses) > 6 and all(len(c) <= MAX_CLAUSE_CHARS for c in clauses)
    assert " ".join(clauses) == english  # cut at spaces only: nothing lost
    solid = "原" * (2 * MAX_CLAUSE_CHARS + 5)
    assert [len(c) for c in split_clauses(solid)] == [MAX_CLAUSE_CHARS, MAX_CLAUSE_CHARS, 5]
    short = "原告" * 100 + "。"  # 201 characters: a long clause, not cut
    assert split_clauses(short) == [short]
