"""Section roles: one clause per role, the transitions a judgment makes, and the ones it never makes."""

import pytest

from spaces.extract.sections import ROLES, position_in_section, section_roles

# One judgment's skeleton, a clause per role, in the order judgments are written.
SKELETON = [
    ("广东省深圳市福田区人民法院民事判决书", "header"),
    ("原告：阳晓红，女，", "parties"),
    ("原告阳晓红与被告许绪发民间借贷纠纷一案，本院于2019年3月1日立案后，", "procedure"),
    ("原告向本院提出诉讼请求：", "claims"),
    ("被告许绪发辩称：", "defence"),
    ("经审理查明：", "facts"),
    ("本院认为，", "reasoning"),
    ("判决如下：", "judgment"),
    ("案件受理费1858元，", "closing"),
    ("附相关法律条文：", "appendix"),
]


def test_every_role_has_a_clause_that_starts_it():
    clauses, roles = zip(*SKELETON)
    assert section_roles(clauses) == list(roles)
    assert sorted(set(roles)) == sorted(ROLES)


@pytest.mark.parametrize("k", range(1, len(SKELETON)))
def test_a_role_lasts_until_the_cue_of_the_next(k):
    """Each section's cue starts it right after the one before, and a plain clause stays in it."""
    (before, was), (cue, role) = SKELETON[k - 1], SKELETON[k]
    head = [c for c, _ in SKELETON[:k - 1]]
    assert section_roles([*head, before, "双方当事人均无异议。", cue, "双方当事人均无异议。"])[-4:] == [
        was, was, role, role]


@pytest.mark.parametrize("clause, role", [
    ("被告李某，男，", "parties"), ("委托诉讼代理人：王某，", "parties"), ("法定代表人：张某，", "parties"),
    ("本案依法适用简易程序，", "procedure"), ("公开开庭进行了审理。", "procedure"),
    ("事实和理由：", "claims"), ("请求判令被告偿还借款。", "claims"),
    ("被告未作答辩。", "defence"),
    ("本院经审理认定事实如下：", "facts"), ("另查明，", "facts"),
    ("本院认为：", "reasoning"),
    ("裁定如下：", "judgment"), ("判决：", "judgment"),
    ("如不服本判决，", "closing"), ("审判长王某", "closing"), ("二〇一九年五月十日", "closing"),
    ("本判决所依据的法律条文：", "appendix"),
])
def test_each_cue_phrase_reads_as_its_role(clause, role):
    before = {"parties": [], "procedure": [], "claims": [], "defence": ["诉讼请求："], "facts": ["诉讼请求："],
              "reasoning": ["经审理查明："], "judgment": ["本院认为，"], "closing": ["本院认为，", "判决如下："],
              "appendix": ["本院认为，", "判决如下：", "案件受理费50元，"]}[role]
    head = [] if role == "parties" else ["原告：张某，"]
    roles = section_roles([*head, *before, clause])
    assert roles[-1] == role and (role == "parties" or roles[-2] != role)


def test_a_cue_never_moves_back_to_an_earlier_section():
    """A party named, or a claim cited, inside the reasoning does not reopen parties or claims."""
    roles = section_roles(["原告：张某，", "经审理查明：", "本院认为，", "原告：张某主张的利息，", "原告的诉讼请求，",
                           "判决如下：", "本院认为，"])
    assert roles == ["parties", "facts", "reasoning", "reasoning", "reasoning", "judgment", "judgment"]


def test_the_later_section_wins_when_one_clause_holds_two_cues():
    assert section_roles(["原告：张某，", "经审理查明：", "本院认为，原告的诉讼请求于法有据，判决如下："])[-1] == "judgment"


def test_a_long_sentence_after_the_parties_is_the_procedure():
    long = "双方因房屋买卖产生争议，原告多次催告被告履行合同义务，被告均未履行，原告遂诉至法院请求依法处理此事。"
    assert len(long) > 40
    assert section_roles(["原告：张某，", long]) == ["parties", "procedure"]
    assert section_roles(["原告：张某，", "男，"]) == ["parties", "parties"]  # a short one is still the party list


def test_position_in_section_counts_within_each_run():
    assert position_in_section(["header", "parties", "parties", "facts", "parties"]) == [
        (0, 1), (0, 2), (1, 2), (0, 1), (0, 1)]
    assert position_in_section([]) == []


def test_a_closing_cue_quoted_in_the_facts_does_not_hide_the_reasoning_and_the_holding():
    roles = section_roles(["原告：张某，", "经审理查明：", "双方达成调解协议，", "诉讼费用由被告负担。", "本院认为，",
                           "被告应当还款。", "判决如下：", "驳回原告的诉讼请求。", "案件受理费50元，"])
    assert roles[3:] == ["closing", "reasoning", "reasoning", "judgment", "judgment", "closing"]
