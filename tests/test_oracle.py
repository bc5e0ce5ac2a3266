from spaces.extract.oracle import oracle_labels
from spaces.text import split_clauses
from tests.conftest import JUDGMENTS, document_text, read_jsonl
from spaces.reference import reference_oracle


def test_hand_checked_matching():
    clauses = ["甲乙丙，", "丁戊己。", "庚辛壬。"]
    # The longest summary clause matches clause 1; what precedes it in the summary may only match
    # clauses up to 1, what follows only clauses from 1 on, so "甲乙丙" cannot reach clause 0.
    assert oracle_labels(clauses, ["丁戊己。", "甲乙丙"]) == [1]
    assert oracle_labels(clauses, ["甲乙丙，", "丁戊己。"]) == [0, 1]
    assert oracle_labels(clauses, ["庚辛壬。", "丁戊"]) == [2]


def test_ties_keep_the_first_clause():
    assert oracle_labels(["甲乙，", "甲乙，", "丙丁。"], ["甲乙"]) == [0]
    assert oracle_labels(["子丑，", "寅卯，"], ["甲乙"]) == [0]  # nothing matches: scores tie at 0


def test_empty_inputs_give_no_labels():
    assert oracle_labels([], ["甲"]) == []
    assert oracle_labels(["甲"], []) == []


def test_equals_reference_on_fixtures():
    for record in read_jsonl(JUDGMENTS):
        clauses, summary = split_clauses(document_text(record), 256), split_clauses(record["summary"])
        labels = oracle_labels(clauses, summary)
        assert labels == reference_oracle(clauses, summary)
        assert labels == sorted(set(labels)) and labels


def test_equals_reference_on_all_real_records(cail_records):
    for record in cail_records:
        clauses, summary = split_clauses(document_text(record), 256), split_clauses(record["summary"])
        assert oracle_labels(clauses, summary) == reference_oracle(clauses, summary), record["id"]
