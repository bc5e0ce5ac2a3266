"""``spaces report``: one self-contained HTML page to read a run as a person would.

On top: the metrics of every system side by side (ROUGE and faithfulness) and two plots (score
distribution per system; score against judgment length), drawn by matplotlib as inline SVG. Below,
one collapsed entry per judgment: its clauses with the extracted ones highlighted (probability and
section role on hover), each system's summary with copied spans ``<mark class="copied">`` and invented
numbers or statutes ``<mark class="unsupported">``, the reference, and the scores. The entries sort by
any system's score (worst first is one click) and are paged, so a thousand judgments stay usable.
No network: CSS, script and plots are inline.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

from spaces.config import DataConfig
from spaces.errors import SpacesError
from spaces.citations import unsupported_spans
from spaces.evaluate.faithfulness import KEYS as FAITHFULNESS, copied_spans
from spaces.evaluate.metrics import aggregate, read_predictions, read_references, score_document
from spaces.partial import check_target, write_atomic
from spaces.records import (ExtractedRecord, check_same_ids, display_name, input_paths, read_jsonl, read_records,
                            record_id)

PAGE_SIZE = 25
MEANING = {
    "unsupported_numbers": "lower is better: share of the summary's numbers that the judgment does not contain",
    "unsupported_citations": "lower is better: share of the summary's statute citations not in the judgment",
    "citation_recall": "higher is better: share of the reference's citations the summary reproduces",
    "novel_bigrams": "how abstractive: share of the summary's word bigrams absent from the judgment",
    "copy_rate": "how extractive: share of the summary's characters in 4+ character spans copied from the judgment",
    "degenerate": "lower is better: share of summaries repeating a unit four or more times in a row",
}


def mark_summary(summary: str, judgment: str | None) -> str:
    """The summary as HTML: copied spans and unsupported numbers/citations marked (unsupported wins)."""
    if not judgment:
        return html.escape(summary)
    kind = [""] * len(summary)
    for start, end in copied_spans(summary, judgment):
        kind[start:end] = ["copied"] * (end - start)
    for start, end in unsupported_spans(summary, judgment):
        kind[start:end] = ["unsupported"] * (end - start)
    out, i = [], 0
    while i < len(summary):
        j = i
        while j < len(summary) and kind[j] == kind[i]:
            j += 1
        text = html.escape(summary[i:j])
        if kind[i] == "unsupported":
            out.append(f'<mark class="unsupported" title="not in the judgment">{text}</mark>')
        elif kind[i] == "copied":
            out.append(f'<mark class="copied">{text}</mark>')
        else:
            out.append(text)
        i = j
    return "".join(out)


def read_edits(path: Path | str) -> dict[str, list]:
    """id -> the editor's marks, for the predictions that carry them (``Summary.edits``)."""
    return {record_id(obj["id"], "id"): obj["edits"] for _, obj in read_jsonl(path)
            if "id" in obj and isinstance(obj.get("edits"), list)}


def render_edits(marks: list) -> str:
    """The extract with the summary's edits in place: deletions struck through, insertions marked."""
    tags = {"delete": ("<del>", "</del>"), "insert": ("<ins>", "</ins>"), "keep": ("", "")}
    return "".join(tags[kind][0] + html.escape(text) + tags[kind][1] for kind, text in marks if kind in tags)


def render_clauses(record: ExtractedRecord) -> str:
    """The judgment's clauses, the extracted ones highlighted, a label where a section starts."""
    picked, out, previous = set(record.selected), [], None
    for i, clause in enumerate(record.sentences):
        role = record.roles[i] if record.roles else None
        if role and role != previous:
            out.append(f'<span class="role">{html.escape(role)}</span>')
        previous = role
        title = f"p = {record.scores[i]:.3f}" + (f" · {role}" if role else "")
        cls = "clause picked" if i in picked else "clause"
        out.append(f'<span class="{cls}" title="{html.escape(title)}">{html.escape(clause)}</span>')
    return "".join(out)


def _plots(names: list[str], rows: dict[str, list[dict]], lengths: list[int]) -> str:
    """Two inline SVG plots: CAIL score distribution per system, and CAIL score against judgment length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    data = [[r["main"] for r in rows[name]] for name in names]
    left.boxplot(data, orientation="horizontal", widths=0.6)
    left.set_yticks(range(1, len(names) + 1), [f"S{k + 1}" for k in range(len(names))])
    left.set_xlabel("CAIL score per judgment")
    left.set_title("Score distribution by system")
    left.invert_yaxis()
    for k, name in enumerate(names):
        right.scatter(lengths, [r["main"] for r in rows[name]], s=14, alpha=0.7, label=f"S{k + 1}")
    right.set_xlabel("judgment length (characters)")
    right.set_ylabel("CAIL score")
    right.set_title("Score against judgment length")
    right.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def parse_systems(specs: list[str]) -> dict[str, Path]:
    """``NAME=FILE`` (or ``FILE``, named by its stem) for each system, in order; names unique and non-empty."""
    systems: dict[str, Path] = {}
    for spec in specs:
        name, eq, path = spec.partition("=")
        name, path = (name.strip(), path) if eq else (Path(spec).stem, spec)
        if not name or not path:
            raise SpacesError("a system is NAME=FILE (or FILE alone): the name and the file are both needed",
                              f"-p {spec}")
        if name in systems:
            raise SpacesError(f"two systems are named {name!r} ({systems[name]} and {path}): name each one "
                              "(-p NAME=FILE)", f"-p {spec}")
        systems[name] = Path(path)
    return systems


def write_report(systems: dict[str, Path], references: Path | str | list[str], output: Path, data: DataConfig,
                 extracted: Path | None = None, title: str = "spaces report") -> int:
    """Write the page; returns the number of judgments on it."""
    if not systems:
        raise SpacesError("give at least one --predictions file")
    check_target(output)
    ref_name = ", ".join(display_name(p) for p in input_paths(references))
    refs = list(read_references(references, data, need_text=True))
    if not refs:
        raise SpacesError("no references", ref_name)
    ids = [r.id for r in refs]
    names = list(systems)
    preds = {}
    edits = {}
    for name, path in systems.items():
        preds[name] = read_predictions(path)
        check_same_ids(preds[name], ids, display_name(path), ref_name)
        edits[name] = read_edits(path)
    records: dict[str, ExtractedRecord] = {}
    if extracted is not None:
        records = {r.id: r for r in read_records(extracted, ExtractedRecord)}
        check_same_ids(records, ids, display_name(extracted), ref_name)
    rows = {name: [score_document(preds[name][r.id][0], r, "word", data.user_dict) for r in refs] for name in names}
    metrics = {name: aggregate(rows[name]) for name in names}
    lengths = [len(r.text) for r in refs]

    head = "".join(f'<th title="{html.escape(str(systems[n]))}">S{k + 1}: {html.escape(n)}</th>'
                   for k, n in enumerate(names))
    table = [f"<tr><th>metric</th>{head}</tr>"]
    for key, label in [("main", "CAIL (main)"), ("rouge-1", "ROUGE-1"), ("rouge-2", "ROUGE-2"), ("rouge-l", "ROUGE-L")]:
        table.append(f"<tr><td>{label}</td>" + "".join(f"<td>{metrics[n][key]:.4f}</td>" for n in names) + "</tr>")
    for key in FAITHFULNESS:
        cells = "".join(f"<td>{_fmt((metrics[n].get('faithfulness') or {}).get(key))}</td>" for n in names)
        table.append(f'<tr class="faith"><td title="{html.escape(MEANING[key])}">{key.replace("_", " ")} '
                     f'<small>{MEANING[key].split(":")[0]}</small></td>{cells}</tr>')

    docs = []
    for i, ref in enumerate(refs):
        scores = {n: rows[n][i] for n in names}
        attrs = " ".join(f'data-s{k}="{scores[n]["main"]:.6f}"' for k, n in enumerate(names))
        badges = " ".join(f'<span class="badge">S{k + 1} {scores[n]["main"]:.3f}</span>' for k, n in enumerate(names))
        record = records.get(ref.id)
        body = render_clauses(record) if record else html.escape(ref.text)
        parts = [f'<div class="judgment"><h4>Judgment{" (extracted clauses highlighted)" if record else ""}</h4>'
                 f'<p class="text">{body}</p></div>']
        for k, n in enumerate(names):
            row = scores[n]
            figures = " · ".join(f"{key.replace('_', ' ')} {_fmt(row.get(key))}" for key in FAITHFULNESS)
            parts.append(f'<div class="summary"><h4>S{k + 1}: {html.escape(n)} <small>CAIL {row["main"]:.4f} · '
                         f'R1 {row["rouge-1"]:.3f} R2 {row["rouge-2"]:.3f} RL {row["rouge-l"]:.3f}</small></h4>'
                         f'<p>{mark_summary(preds[n][ref.id][0], ref.text)}</p><p class="figures">{figures}</p>'
                         + (f'<p class="edits" title="the extract, edited">{render_edits(edits[n][ref.id])}</p>'
                            if ref.id in edits[n] else "") + '</div>')
        parts.append(f'<div class="reference"><h4>Reference</h4><p>{mark_summary(ref.summary, ref.text)}</p></div>')
        docs.append(f'<section class="doc" id="doc-{html.escape(ref.id)}" data-len="{len(ref.text)}" {attrs}>'
                    f'<details><summary><code>{html.escape(ref.id)}</code> <span class="len">{len(ref.text)} chars'
                    f'</span> {badges}</summary>{"".join(parts)}</details></section>')

    options = "".join(f'<option value="{k}"{" selected" if k == len(names) - 1 else ""}>S{k + 1}: {html.escape(n)}'
                      "</option>" for k, n in enumerate(names))  # the last system (the one under review) sorts
    page = PAGE.format(
        title=html.escape(title), style=STYLE, script=SCRIPT.replace("PAGE_SIZE", str(PAGE_SIZE)),
        n=len(refs), systems=len(names), table="".join(table), plots=_plots(names, rows, lengths),
        options=options, docs="".join(docs), sources=html.escape(json.dumps(
            {n: str(p) for n, p in systems.items()} | {"references": ref_name}, ensure_ascii=False)))
    write_atomic(output, page)
    return len(refs)


STYLE = """
body{font-family:system-ui,-apple-system,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:0 auto;
max-width:1180px;padding:1rem 1.5rem;color:#1d2327;line-height:1.6}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.4rem 0 .5rem;border-bottom:1px solid #ddd}
h4{margin:.6rem 0 .2rem;font-size:.95rem}small{color:#666;font-weight:normal}
table.metrics{border-collapse:collapse;font-variant-numeric:tabular-nums}
table.metrics td,table.metrics th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
table.metrics td:first-child,table.metrics th:first-child{text-align:left}
table.metrics tr.faith td{background:#fafafa}.plots svg{max-width:100%;height:auto}
.controls{position:sticky;top:0;background:#fff;padding:.5rem 0;border-bottom:1px solid #ddd;z-index:1}
.controls label{margin-right:1rem}.doc{border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.3rem .7rem}
.doc summary{cursor:pointer}.badge{display:inline-block;background:#eef2f7;border-radius:4px;padding:0 .4rem;
margin-left:.3rem;font-size:.85rem;font-variant-numeric:tabular-nums}.len{color:#666;font-size:.85rem}
.judgment .text{max-height:22rem;overflow:auto;background:#fbfbf8;padding:.5rem;border:1px solid #eee}
.clause.picked{background:#fff1a8;border-bottom:2px solid #e0b400}
.role{display:inline-block;font-size:.7rem;color:#fff;background:#6a7b8c;border-radius:3px;padding:0 .3rem;
margin:0 .3rem}mark.copied{background:#d8f0d8}mark.unsupported{background:#f7c6c6;border-bottom:2px solid #c00}
.figures{color:#555;font-size:.85rem}.legend mark{padding:0 .3rem}
.edits{background:#fbfbf8;border-left:3px solid #8aa;padding:.3rem .6rem}
del{color:#a33;background:#fdeaea;text-decoration:line-through}ins{background:#d8f0d8;text-decoration:none;
border-bottom:2px solid #2a2}
"""

SCRIPT = """
const docs=[...document.querySelectorAll('.doc')];let page=0;const size=PAGE_SIZE;
function order(){const s=document.getElementById('sys').value,dir=document.getElementById('dir').value;
 const key=s==='len'?'len':'s'+s;let sorted=docs.slice();
 if(dir!=='file')sorted.sort((a,b)=>(parseFloat(a.dataset[key])-parseFloat(b.dataset[key]))*(dir==='asc'?1:-1));
 const q=document.getElementById('find').value.trim();
 if(q)sorted=sorted.filter(d=>d.id.includes(q));return sorted}
function show(){const list=order(),box=document.getElementById('docs');const pages=Math.max(1,Math.ceil(list.length/size));
 page=Math.min(page,pages-1);docs.forEach(d=>d.hidden=true);
 list.forEach(d=>box.appendChild(d));list.slice(page*size,(page+1)*size).forEach(d=>d.hidden=false);
 document.getElementById('where').textContent=`page ${page+1} of ${pages} (${list.length} judgments)`}
function go(step){page=Math.max(0,page+step);show()}
function worst(){document.getElementById('dir').value='asc';page=0;show()}
document.addEventListener('DOMContentLoaded',()=>{if(location.hash==='#worst'){worst();
 const first=order()[0];if(first){first.querySelector('details').open=true}}else show()});
"""

PAGE = """<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title><style>{style}</style></head>
<body>
<h1>{title}</h1>
<p>{n} judgments, {systems} system(s). CAIL = 0.2·ROUGE-1 + 0.4·ROUGE-2 + 0.4·ROUGE-L (F, word level).
<span class="legend">In summaries, <mark class="copied">copied from the judgment</mark> (4+ characters) and
<mark class="unsupported">a number or statute the judgment does not contain</mark>; under an edited
summary, its extract with <del>what was deleted</del> and <ins>what was inserted</ins>.</span></p>
<h2 id="metrics">Metrics</h2>
<table class="metrics">{table}</table>
<h2 id="plots">Plots</h2>
<div class="plots">{plots}</div>
<h2 id="documents">Judgments</h2>
<div class="controls">
<label>sort by <select id="sys" onchange="page=0;show()">{options}<option value="len">judgment length</option></select></label>
<label><select id="dir" onchange="page=0;show()"><option value="file">file order</option><option value="asc">lowest first</option>
<option value="desc">highest first</option></select></label>
<button onclick="worst()">worst first</button>
<label>id <input id="find" size="12" oninput="page=0;show()"></label>
<button onclick="go(-1)">&larr; previous</button> <span id="where"></span> <button onclick="go(1)">next &rarr;</button>
</div>
<div id="docs">{docs}</div>
<script type="application/json" id="sources">{sources}</script>
<script>{script}</script>
</body></html>
"""
