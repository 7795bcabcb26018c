"""The report page as one self-contained HTML string, from the view model.

Only HTML is built here: numbers, references, judgements and definition texts arrive
ready in the :class:`~expunge.report.assemble.ReportView`, figures come from
:mod:`expunge.report.plots`. The page loads nothing: inline CSS, no JavaScript, images
as data URIs. Every string from the report is escaped.
"""
from __future__ import annotations

import html
from typing import Any

from expunge.audit.verdict import BORDERLINE
from expunge.report import plots
from expunge.report.assemble import DASH, Cell, Fact, MethodView, ReportView

JUDGEMENT_WORDS = {"good": "within tolerance", "warn": "borderline", "bad": "outside tolerance", "na": "not judged"}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _lines(*lines: str, cls: str = "ref") -> str:
    return "".join(f'<span class="{cls}">{esc(line)}</span>' for line in lines if line)


def _title(reason: str) -> str:
    return f' title="{esc(reason)}"' if reason else ""


# ----------------------------------------------------------------------------- header
def _info_table(table_id: str, facts: tuple[Fact, ...]) -> str:
    body = "".join(f'<tr><th scope="row">{esc(f.label)}</th><td>{esc(f.text or DASH)}</td></tr>' for f in facts)
    return f'<table id="{table_id}" class="info"><tbody>{body}</tbody></table>'


def _populations(view: ReportView) -> str:
    if not view.populations:
        return ""
    body = "".join(f'<tr><th scope="row">{esc(p.role)}</th><td>{esc(p.seeds)}</td><td class="num">{esc(p.loaded)}</td>'
                   f'<td class="num">{esc(p.trained)}</td><td><code>{esc(p.key)}</code></td></tr>'
                   for p in view.populations)
    return ('<table id="populations"><thead><tr><th scope="col">Population</th><th scope="col">Seeds</th>'
            '<th scope="col">Loaded from cache</th><th scope="col">Trained in this run</th>'
            f'<th scope="col">Cache key</th></tr></thead><tbody>{body}</tbody></table>')


def _header(view: ReportView) -> str:
    banner = ""
    if view.low_resolution:
        banner = (f'<div class="banner low" role="alert"><strong>LOW RESOLUTION</strong> '
                  f"{esc(view.low_resolution)}</div>")
    elif view.resolution == "full":
        banner = '<div class="banner full">Full resolution audit.</div>'
    return (f"<header><h1>Unlearning audit: {esc(view.title)}</h1>{banner}"
            f'<div class="infos">{_info_table("scenario-info", view.scenario)}{_info_table("run-info", view.run)}'
            f"{_populations(view)}</div></header>")


# ----------------------------------------------------------------------------- verdicts, summary, rules
def _verdicts(view: ReportView) -> str:
    items = [f'<li class="{esc(m.verdict)}"><span class="mname">{esc(m.name)}</span> '
             f'<span class="vtext">{esc(m.verdict_text)}</span></li>' for m in view.methods]
    if view.low_resolution:
        items.append('<li class="note">Low resolution: verdicts are provisional.</li>')
    return (f'<ul id="verdicts">{"".join(items) or f"<li>{DASH} (no methods in this report)</li>"}</ul>'
            '<p class="hint">How verdicts and colours are decided: <a href="#rule">the rules</a>, '
            "below the summary.</p>")


def _summary_cell(cell: Cell | None) -> str:
    if cell is None:
        return f'<td class="na">{DASH}</td>'
    return (f'<td class="{esc(cell.judgement)}"{_title(cell.reason)}><span class="v">{esc(cell.value)}</span>'
            f'{_lines(cell.reference, " · ".join(filter(None, [*cell.extras, cell.chance])))}</td>')


def _summary(view: ReportView) -> str:
    columns = view.columns
    head = ['<th scope="col">Method</th>']
    for column in columns:
        defs = "".join(f'<span class="def">{esc(d)}</span>' for d in column.definitions)
        head.append(f'<th scope="col">{esc(column.label)}{defs}</th>')
    if not columns:
        head.append('<th scope="col">Results</th>')
    width = max(1, len(columns))
    rows = []
    for method in view.methods:
        name = f'<th scope="row">{esc(method.name)}</th>'
        if not method.ok:
            rows.append(f'<tr class="failed-row">{name}<td class="failed" colspan="{width}">'
                        f"{esc(method.status)}: {esc(method.error)}</td></tr>")
            continue
        cells = "".join(_summary_cell(c) for c in method.headline) if columns else _summary_cell(None)
        rows.append(f"<tr>{name}{cells}</tr>")
    if not rows:
        rows.append(f'<tr><td colspan="{width + 1}">{DASH} (no methods in this report)</td></tr>')
    return (f'<div class="scroll"><table id="summary"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _rules(view: ReportView) -> str:
    def items(rules) -> str:
        return "".join(f"<li><b>{esc(r.label)}</b>: {esc(r.rule)}</li>" for r in rules) or f"<li>{DASH}</li>"

    deciding = [r for r in view.rules if r.decides_verdict]
    colour_only = [r for r in view.rules if not r.decides_verdict]
    return f"""<div class="legend" id="rule">
<p>Each number stands beside its target: the <b>oracle's</b> value (models retrained from scratch without the forget
set; mean ± std over the oracle population), the <b>noise floor</b> (the same audit between two independent oracle
populations: what perfect unlearning scores at this number of models) or a fixed <b>target</b>. Cells are coloured by
the rules below, as the audit applied them.</p>
<p>These decide a method's verdict (its worst colour over them):</p>
<ul class="rule" id="rules-verdict">{items(deciding)}</ul>
<p>These colour their cells only:</p>
<ul class="rule" id="rules-colour">{items(colour_only)}</ul>
<p><span class="chip good">green</span> within tolerance, <span class="chip warn">amber</span> borderline: outside it
but within {BORDERLINE:g}× the tolerance, <span class="chip bad">red</span> beyond that (or not a number),
<span class="chip na">grey</span> not judged (no rule or no reference). Hover a cell for the number, its target and
the rule.</p></div>"""


def _floors(view: ReportView) -> str:
    rows = []
    for floor in view.floors:
        value = esc(floor.value)
        if floor.per_method:
            value += "".join(f'<span class="ref">{esc(f.label)} {esc(f.text)}</span>' for f in floor.per_method)
        rows.append(f'<tr><th scope="row">{esc(floor.label)}</th><td>{esc(floor.split)}</td>'
                    f'<td class="num">{value}</td><td>{esc(floor.resolution or DASH)}</td>'
                    f"<td><code>{esc(floor.definition or DASH)}</code></td></tr>")
    body = "".join(rows) or f'<tr><td colspan="5">{DASH} (no noise floor in this report)</td></tr>'
    return ('<table id="noise-floors"><thead><tr><th scope="col">Audit</th><th scope="col">Split</th>'
            '<th scope="col">Noise floor</th><th scope="col">Resolution</th><th scope="col">Definition</th>'
            f"</tr></thead><tbody>{body}</tbody></table>")


# ----------------------------------------------------------------------------- plots
def _figure(drawing: plots.Drawing) -> str:
    return (f'<figure><img class="plot" src="{esc(drawing.uri)}" alt="{esc(drawing.alt)}">'
            f"<figcaption>{esc(drawing.caption)}</figcaption></figure>")


def _note(text: str) -> str:
    return f'<p class="noplot">{esc(text)}</p>'


def _method_plots(method: MethodView) -> str:
    parts = []
    for plot in method.plots:
        name = plot.title or f"{method.name}: {plot.kind}"
        draw = plots.DRAWINGS.get(plot.kind)
        if draw is None:
            parts.append(_note(f"{name}: plot kind '{plot.kind}' is not drawn by this version of expunge "
                               "(its data is in report.json)"))
            continue
        drawing = draw(method.name, plot.title, plot.data)
        parts.append(_figure(drawing) if drawing else _note(f"{name}: {DASH} (no data in this report)"))
    if not parts:
        parts.append(_note(f"{method.name}: no plots in this report"))
    return f'<h3>{esc(method.name)}</h3><div class="plots">{"".join(parts)}</div>'


def _plots(view: ReportView) -> str:
    cost = plots.cost_chart(view.cost_bars, view.cost_definitions)
    parts = [_figure(cost) if cost else _note(f"Cost vs retraining: {DASH} (no data in this report)")]
    frontier = plots.frontier_chart(view.frontier)
    parts.append(_figure(frontier) if frontier else _note(f"Quality vs cost: {DASH} (no KLoM or cost rows)"))
    parts += [_method_plots(m) for m in view.methods if m.ok or m.plots]
    return "".join(parts)


# ----------------------------------------------------------------------------- details per method
def _details_table(index: int, method: MethodView) -> str:
    rows = []
    for cell in method.rows:
        reference = cell.reference or f"{DASH} ({cell.reference_kind})"
        extras = " · ".join(filter(None, [*cell.details, cell.chance]))
        rows.append(f'<tr><th scope="row">{esc(cell.label)}<span class="def">{esc(cell.key)}</span></th>'
                    f'<td class="num {esc(cell.judgement)}"{_title(cell.reason)}>{esc(cell.value)}</td>'
                    f'<td class="{esc(cell.judgement)}">{esc(JUDGEMENT_WORDS.get(cell.judgement, cell.judgement))}</td>'
                    f"<td class=\"nowrap\">{esc(reference)}</td><td class=\"num\">{esc(cell.n_models)}</td>"
                    f"<td>{esc(extras or DASH)}</td><td><code>{esc(cell.definition or DASH)}</code></td>"
                    "</tr>")
    if not rows:
        return "<p>Results: – (none in this report)</p>"
    return (f'<table class="metrics" id="details-{index}"><thead><tr><th scope="col">Metric</th>'
            '<th scope="col">Value</th><th scope="col">Judgement</th><th scope="col">Reference</th>'
            '<th scope="col">N</th><th scope="col">Details</th><th scope="col">Definition</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _details(index: int, method: MethodView) -> str:
    about = [f"kind: {method.kind}" if method.kind else "", f"paper: {method.paper}" if method.paper else "",
             f"hyperparameters: {method.hyperparameters}"]
    parts = [f'<h3 id="method-{index}">{esc(method.name)}</h3>',
             f'<p class="hp">{esc("; ".join(a for a in about if a))}</p>']
    if not method.ok:
        parts.append(f'<p class="failed">{esc(method.status)}: {esc(method.error)}</p>')
        if method.traceback:
            parts.append(f'<details class="traceback"><summary>Traceback</summary><pre>{esc(method.traceback)}</pre>'
                         "</details>")
    if method.rows or method.ok:
        parts.append(_details_table(index, method))
    if method.cost:
        parts.append(f'<p class="cost">Cost: {esc("; ".join(f"{f.label}: {f.text}" for f in method.cost))}</p>')
    parts += [f'<p class="warnline">{esc(note)}</p>' for note in method.notes]
    return "".join(parts)


def _not_applicable(view: ReportView) -> str:
    if not view.not_applicable:
        return "<p>Every metric of this audit applied to the task.</p>"
    body = "".join(f'<tr><th scope="row"><code>{esc(f.label)}</code></th><td>{esc(f.text)}</td></tr>'
                   for f in view.not_applicable)
    return ('<table id="not-applicable"><thead><tr><th scope="col">Metric</th><th scope="col">Why not</th></tr>'
            f"</thead><tbody>{body}</tbody></table>")


def _generations(view: ReportView) -> str:
    if not view.generations:
        return ""
    names = list(dict.fromkeys(f.label for g in view.generations for f in g.answers))
    head = "".join(f'<th scope="col">{esc(n)}</th>' for n in names)
    body = ""
    for g in view.generations:
        answers = {f.label: f.text for f in g.answers}
        cells = "".join(f"<td>{esc(answers.get(n, DASH))}</td>" for n in names)
        body += f'<tr><th scope="row">{esc(g.question)}</th><td>{esc(g.truth)}</td>{cells}</tr>'
    return ('<section id="generations-section"><h2>Example generations (forget questions)</h2>'
            "<p>Greedy answers of member 0 of each population to the first forget questions: the original "
            "model knows them, the retrained oracle never saw them; an unlearned model should answer like the "
            "oracle (wrong, but fluent), not with the original's facts or with noise.</p>"
            f'<table id="generations"><thead><tr><th scope="col">Question</th><th scope="col">True answer</th>{head}'
            f"</tr></thead><tbody>{body}</tbody></table></section>")


def _definitions(view: ReportView) -> str:
    body = "".join(f'<tr><th scope="row"><code>{esc(f.label)}</code></th><td>{esc(f.text)}</td></tr>'
                   for f in view.definitions) or f'<tr><td colspan="2">{DASH}</td></tr>'
    return ('<table id="definitions"><thead><tr><th scope="col">Definition id</th><th scope="col">Meaning</th>'
            f"</tr></thead><tbody>{body}</tbody></table>"
            "<p>Full definitions: METRICS.md in the expunge documentation.</p>")


CSS = """
:root { --good:#d8f0dc; --warn:#fdf0c4; --bad:#f8d3cf; --na:#eeeeee; --ink:#1d2327; --muted:#5f6b73; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0 auto; padding: 1.2rem 1.6rem 3rem; max-width: 1500px; line-height: 1.4;
       background: #fff; }
h1 { font-size: 1.55rem; margin: 0 0 .6rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .6rem; border-bottom: 2px solid #d0d7de; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .3rem; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .85em; }
pre { white-space: pre-wrap; background: #f6f8fa; padding: .5rem; border: 1px solid #d0d7de; overflow-x: auto; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .35rem .55rem; vertical-align: top; text-align: left; }
thead th { background: #f3f5f7; }
table.info th { background: #f8f9fa; font-weight: 600; white-space: nowrap; }
#summary td { text-align: right; white-space: nowrap; padding: .3rem .45rem; }
#summary th[scope=row] { white-space: nowrap; }
#summary thead th { min-width: 5.5rem; max-width: 9rem; }
#summary .v { display: block; font-weight: 600; font-size: 1rem; }
.ref { display: block; color: var(--muted); font-size: .78rem; }
.def { display: block; font-weight: normal; color: var(--muted); font-size: .66rem; overflow-wrap: anywhere;
       font-family: ui-monospace, Menlo, Consolas, monospace; }
.scroll { overflow-x: auto; }
.infos { display: flex; flex-wrap: wrap; gap: 0 1.5rem; align-items: flex-start; }
td.num { text-align: right; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
.good { background: var(--good); } .warn { background: var(--warn); } .bad { background: var(--bad); }
.na { background: var(--na); }
#summary td.failed, p.failed { background: var(--bad); text-align: left; font-weight: 600; white-space: normal; }
p.failed { padding: .3rem .5rem; }
details.traceback { margin: .2rem 0 .6rem; }
.banner { padding: .7rem 1rem; border-radius: 6px; margin: .4rem 0 .8rem; }
.banner.low { background: #b42318; color: #fff; font-size: 1.05rem; border: 3px solid #7a1610; }
.banner.low strong { font-size: 1.25rem; letter-spacing: .04em; }
.banner.full { background: var(--good); display: inline-block; padding: .3rem .8rem; }
#verdicts { list-style: none; padding: 0; margin: .4rem 0; }
#verdicts li { padding: .45rem .7rem; margin: .25rem 0; border-radius: 5px; border-left: 6px solid #999; }
#verdicts li.good { border-left-color: #2e7d32; } #verdicts li.warn { border-left-color: #c28e00; }
#verdicts li.bad { border-left-color: #b42318; } #verdicts li.note { background: #fff4f2; }
.mname { font-weight: 700; margin-right: .5rem; }
.chip { padding: 0 .35rem; border-radius: 3px; border: 1px solid #c9ced3; }
p.hint { font-size: .85rem; color: var(--muted); margin: .2rem 0; }
ul.rule { margin: .2rem 0 .6rem; font-size: .9rem; }
.legend { font-size: .9rem; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
figure { margin: 0; max-width: 100%; }
img.plot { max-width: 100%; height: auto; border: 1px solid #e3e6e8; display: block; }
figcaption { font-size: .8rem; color: var(--muted); max-width: 560px; margin-top: .2rem; }
p.noplot { color: var(--muted); font-style: italic; }
p.hp, p.cost { font-size: .88rem; margin: .2rem 0; }
p.warnline { background: var(--warn); padding: .2rem .5rem; font-size: .88rem; margin: .2rem 0; }
footer { margin-top: 2.5rem; color: var(--muted); font-size: .8rem; }
@media print { body { max-width: none; padding: 0; } h2 { break-after: avoid; } figure, tr { break-inside: avoid; }
               details.traceback { display: block; } }
"""


def page(view: ReportView) -> str:
    """The whole page for ``view``."""
    version = view.expunge_version or DASH
    details = "".join(_details(i, m) for i, m in enumerate(view.methods, start=1)) or f"<p>{DASH}</p>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="expunge {esc(view.expunge_version)}">
<title>expunge audit: {esc(view.title)}</title>
<style>{CSS}</style>
</head>
<body>
{_header(view)}
<main>
<section id="verdict-section"><h2>Verdict</h2>{_verdicts(view)}</section>
<section id="summary-section"><h2>Summary</h2>{_summary(view)}{_rules(view)}</section>
<section id="floors-section"><h2>Noise floors (retraining vs retraining)</h2>{_floors(view)}</section>
<section id="plots-section"><h2>Plots</h2>{_plots(view)}</section>
{_generations(view)}
<section id="details-section"><h2>All results per method</h2>{details}</section>
<section id="not-applicable-section"><h2>Not applicable to this task</h2>{_not_applicable(view)}</section>
<section id="definitions-section"><h2>Definitions</h2>{_definitions(view)}</section>
</main>
<footer>Generated by expunge {esc(version)}. This page is self-contained: it loads nothing from the network. The same
data is in report.json beside it.</footer>
</body>
</html>
"""
