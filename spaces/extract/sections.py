"""Section roles of a Chinese civil judgment, read from its cue phrases.

Every civil judgment has the same skeleton, and CAIL summaries follow it:

==========  ==========================================================  =====================
role        starts at a clause that ...                                  example
==========  ==========================================================  =====================
header      (the start)                                                  民事判决书, court, case number
parties     names a party or its agent: 原告： 被告： 法定代表人 代理人       原告：阳晓红，女，
procedure   tells how the case came: 纠纷一案 立案 适用…程序 到庭            …租赁合同纠纷一案，本院于…
claims      states the claims: 诉讼请求 诉称 诉请 事实和理由                  向本院提出诉讼请求：
defence     states the defence: 辩称 答辩 述称 未作答辩                       被告许绪发辩称：
facts       states the facts found: 经审理查明 本院查明 认定事实 另查明 证据    经审理查明：
reasoning   gives the court's view: 本院认为                                 本院认为，依法成立的合同…
judgment    holds the holding: 判决如下 裁定如下 判决：                        判决如下：一、…
closing     costs, appeal, signatures, date: 受理费 如不服 审判长 书记员 二〇…  案件受理费1858元，
appendix    quotes the statutes applied: 附…法律条文 本判决所依据               附相关法律条文：
==========  ==========================================================  =====================

A role lasts until the cue of another: the tagger walks the clauses once, and a cue only moves it to
a role that may follow the current one (a party named inside the reasoning does not reopen
"parties"). ``position_in_section`` gives each clause its place within its section.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from spaces.errors import SpacesError
from spaces.records import ROLES, Document
from spaces.text import kept_clauses, split_clauses


_PARTY = "(?:原告|被告|第三人|上诉人|被上诉人|申请人|被申请人|申请执行人|被执行人|原审原告|原审被告|反诉原告|反诉被告)"
CUES: dict[str, re.Pattern] = {
    "parties": re.compile(f"^(?:{_PARTY}[（(]?[^，。：:]{{0,20}}?[）)]?[：:，,]|{_PARTY}$|"
                          "(?:法定代表人|负责人|经营者|(?:共同)?委托(?:诉讼)?代理人|诉讼代表人|指定代理人|法定代理人)|"
                          r".{0,30}号\s*(?:原告|申请人|上诉人))"),
    "procedure": re.compile("纠纷一案|本院于.{0,20}(?:立案|受理)|立案后|依法适用|公开开庭|不公开开庭|到庭参加|"
                            "本案现已审理终结|缺席审理|缺席判决|经传票传唤"),
    "claims": re.compile("诉讼请求|诉请|诉称|起诉称|请求判令|事实和理由|事实与理由|上诉请求|申请事项"),
    "defence": re.compile("辩称|答辩|述称|未作答辩|未予答辩|未提交答辩"),
    "facts": re.compile("经审理查明|本院查明|审理查明|查明的事实|认定事实如下|认定如下事实|另查明|再查明|经审查|"
                        "本院经审理|围绕诉讼请求|提交了.{0,10}证据|举证|质证|本院确认|认定事实"),
    "reasoning": re.compile("^本院认为|本院认为[：:，,]"),
    "judgment": re.compile("判决如下|裁定如下|判决：|判决:|调解协议如下"),
    "closing": re.compile("受理费|诉讼费(?:用)?.{0,20}负担|如不服本|上诉于|^(?:代理)?审\\s*判\\s*[长员]|"
                          "^人民陪审员|^书\\s*记\\s*员|^[〇零一二三四五六七八九十]{4}年.{1,3}月.{1,3}日$|^法官助理"),
    "appendix": re.compile("^附[：:]?|^附[^，。]{0,12}(?:法律|法条|条文)|本判决所依据|相关法律条文|适用法律"),
}

# Which roles a cue may move the tagger to from each role (a judgment is read top to bottom).
_NEXT = {
    "header": {"parties", "procedure", "claims"},
    "parties": {"procedure", "claims", "defence", "facts", "reasoning"},
    "procedure": {"claims", "defence", "facts", "reasoning", "judgment"},
    "claims": {"defence", "facts", "reasoning", "judgment"},
    "defence": {"claims", "facts", "reasoning", "judgment"},
    "facts": {"reasoning", "judgment", "closing"},
    "reasoning": {"judgment", "closing"},
    "judgment": {"closing"},
    # a closing cue quoted early (诉讼费用由被告负担 in a mediation agreement the facts recite) must not hide
    # the reasoning and the holding: a real closing section holds neither 本院认为 nor 判决如下
    "closing": {"reasoning", "judgment", "appendix"},
    "appendix": set(),
}
# When several cues match a clause, the later section wins (a clause can cite the claims it rejects).
_ORDER = {role: i for i, role in enumerate(ROLES)}


def section_roles(clauses: Sequence[str]) -> list[str]:
    """One role from ``ROLES`` per clause."""
    role, out = "header", []
    for clause in clauses:
        text = clause.strip()
        hits = [r for r, cue in CUES.items() if r in _NEXT[role] and cue.search(text)]
        if role == "parties" and not hits and not CUES["parties"].search(text) and len(text) > 40:
            hits = ["procedure"]  # a long sentence after the party list is the case's procedural history
        if hits:
            role = max(hits, key=_ORDER.__getitem__)
        out.append(role)
    return out


def position_in_section(roles: Sequence[str]) -> list[tuple[int, int]]:
    """(index within its section run, length of that run) for each clause."""
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(roles) + 1):
        if i == len(roles) or roles[i] != roles[start]:
            n = i - start
            out.extend((k, n) for k in range(n))
            start = i
    return out


def document_clauses(doc: Document, max_clauses: int) -> tuple[list[str], list[str], int]:
    """(kept clauses, their section roles, clauses dropped from the start) of one document.

    Roles are read on the whole judgment, so a long one's kept end still knows its sections.
    """
    clauses = split_clauses(doc.text)
    if not clauses:
        raise SpacesError("the document has no text", doc.where)
    kept, dropped = kept_clauses(clauses, max_clauses)
    return kept, section_roles(clauses)[dropped:], dropped
