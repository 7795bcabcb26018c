"""The grid's leaderboard as a terminal table and as a self-contained HTML report.

Numbers, intervals and ties come from :func:`expunge.bench.leaderboard.leaderboard`; this
module only draws them:

- :func:`grid_table`: a rich table, method rows, scenario x headline metric columns,
  ``mean [low, high] (reference)``, tied-best cells in bold;
- :func:`render_grid_html` / :func:`write_grid_report`: one HTML page (inline CSS,
  images as data URIs, no scripts) with the same table, a method x scenario heat map per
  headline metric coloured by the value relative to its floor or oracle, and the
  quality-vs-cost frontier of each scenario with its Pareto front, and a stress section
  where there is something to stress: the forget rules of one dataset and N side by side
  (forget accuracy, KLoM, relearning excess; :func:`stress_tables_html`) and each
  scenario's relearning curves beside the oracle's. Written atomically.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from expunge.bench.leaderboard import (
    CLOSEST,
    DIFFERENCE,
    HIGHER,
    LOWER,
    RATIO,
    TIE_RULE,
    leaderboard,
    metric_key,
    scenario_label,
)
from expunge.errors import ExpungeError
from expunge.files import atomic_write
from expunge.report.assemble import DASH
from expunge.report.plots import BLUE, GREY, ORANGE, RED, Drawing, png_data_uri
from expunge.report.render import CSS, esc

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COST",
    "QUALITY",
    "frontier_chart",
    "grid_table",
    "heatmap_chart",
    "pareto_front",
    "render_grid_html",
    "stress_board",
    "stress_tables_html",
    "write_grid_report",
]

QUALITY, COST = "klom_p95/forget", "cost_gradients"  # the frontier's axes by default
REFERENCE_WORDS = {"oracle": "oracle", "noise_floor": "floor"}


def _fmt(value: Any) -> str:
    """Three significant digits, NaN and infinities spelled out."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return DASH
    if math.isnan(x):
        return DASH
    if not math.isfinite(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def cell_text(row: Any) -> str:
    """``mean [low, high]``, or ``mean`` alone where there is no interval."""
    if not math.isfinite(row["ci_low"]) or not math.isfinite(row["ci_high"]):
        return _fmt(row["mean"])
    return f"{_fmt(row['mean'])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"


def relative_text(row: Any) -> str:
    """The value relative to its reference: ``1.18× floor``, ``−5.49 vs oracle``."""
    if row["relative_kind"] == RATIO:
        what = "floor" if row["reference_kind"] == "noise_floor" else "target"
        return f"{_fmt(row['relative'])}× {what}"
    if row["relative_kind"] == DIFFERENCE:
        value = row["relative"]
        sign = "+" if isinstance(value, float) and value > 0 else ""
        return f"{sign}{_fmt(value)} vs oracle"
    return ""


def _methods(board: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(board["method"]))


def _columns(board: pd.DataFrame) -> list[tuple[str, str, str]]:
    """``(scenario, metric key, label)`` per column, scenarios in order, metrics in headline order."""
    return list(dict.fromkeys(zip(board["scenario"], board["metric"], board["label"])))


def _notes(board: pd.DataFrame) -> list[str]:
    notes = []
    for text in dict.fromkeys(n for n in board["note"] if n):
        where = board[board["note"] == text]
        cells = len(where)
        notes.append(f"{text} ({cells} cell{'s' if cells > 1 else ''})")
    return notes


# ----------------------------------------------------------------------------- terminal
def grid_table(board: pd.DataFrame, title: str = "Grid leaderboard") -> Any:
    """A rich table of :func:`~expunge.bench.leaderboard.leaderboard`'s output; tied-best cells in bold."""
    from rich.table import Table

    caption = ("mean [95% interval over scenario seeds] (reference: mean over seeds). Bold: tied for best (intervals "
               "overlap the best method's).")
    notes = _notes(board)
    if notes:
        caption += " " + "; ".join(notes) + "."
    table = Table(title=title, caption=caption)
    table.add_column("method", no_wrap=True)
    columns = _columns(board)
    for scenario, _, label in columns:
        table.add_column(f"{scenario}\n{label}", justify="right")
    cells = {(r["method"], r["scenario"], r["metric"]): r for r in board.to_dict("records")}
    for method in _methods(board):
        shown = []
        for scenario, key, _ in columns:
            row = cells.get((method, scenario, key))
            if row is None:
                shown.append("-")
                continue
            text = cell_text(row)
            if row["reference_kind"] not in ("none", "constant") and math.isfinite(row["reference"]):
                text += f" ({_fmt(row['reference'])})"
            shown.append(f"[bold]{text}[/]" if row["tied_best"] else text)
        table.add_row(method, *shown)
    return table


# ----------------------------------------------------------------------------- figures
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _badness(row: dict[str, Any]) -> float:
    """How far a cell is from its reference in the bad direction (0 = at the reference; < 0 better than it)."""
    relative, kind, direction = row["relative"], row["relative_kind"], row["direction"]
    if not isinstance(relative, float) or not math.isfinite(relative):
        return math.nan
    if kind == RATIO:
        if relative <= 0:
            return math.nan
        relative = math.log2(relative)
    elif kind != DIFFERENCE:
        return math.nan
    if direction == LOWER:
        return relative
    if direction == HIGHER:
        return -relative
    if direction == CLOSEST:
        return abs(relative)
    return relative


def heatmap_chart(board: pd.DataFrame, key: str) -> Drawing | None:
    """Method x scenario heat map of one metric, coloured by its value relative to the reference."""
    rows = board[board["metric"] == key]
    if rows.empty:
        return None
    from matplotlib.colors import TwoSlopeNorm

    methods, scenarios = _methods(rows), list(dict.fromkeys(rows["scenario"]))
    records = {(r["method"], r["scenario"]): r for r in rows.to_dict("records")}
    badness = np.full((len(methods), len(scenarios)), np.nan)
    for i, method in enumerate(methods):
        for j, scenario in enumerate(scenarios):
            if (method, scenario) in records:
                badness[i, j] = _badness(records[(method, scenario)])
    first = rows.iloc[0]
    label, kind = first["label"], first["relative_kind"]
    figure = _figure(max(4.5, 1.9 * len(scenarios) + 2.2), 0.45 * len(methods) + 1.9)
    ax = figure.add_subplot()
    finite = badness[np.isfinite(badness)]
    limit = float(np.max(np.abs(finite))) if finite.size else 1.0
    limit = limit if limit > 0 else 1.0
    import matplotlib

    cmap = matplotlib.colormaps["RdYlGn_r"].with_extremes(bad="#eeeeee")
    image = ax.imshow(np.ma.masked_invalid(badness), cmap=cmap, aspect="auto",
                      norm=TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit))
    for i, method in enumerate(methods):
        for j, scenario in enumerate(scenarios):
            row = records.get((method, scenario))
            text = DASH if row is None else _fmt(row["relative" if kind in (RATIO, DIFFERENCE) else "mean"])
            if row is not None and kind == RATIO and text != DASH:
                text += "×"
            bold = row is not None and row["tied_best"]
            dark = math.isfinite(badness[i, j]) and abs(badness[i, j]) > 0.6 * limit
            ax.text(j, i, text + (" *" if bold else ""), ha="center", va="center", fontsize=8,
                    fontweight="bold" if bold else "normal", color="white" if dark else "black")
    ax.set_xticks(range(len(scenarios)), [s.replace(" / ", "\n") for s in scenarios], fontsize=7)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    scale = {RATIO: "log2(ratio to reference); red = worse", DIFFERENCE: "difference to oracle; red = worse"
             }.get(kind, "")
    if first["direction"] == CLOSEST:
        scale = scale.replace("; red = worse", ", either side; red = farther")
    bar = figure.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label(scale or "no reference: not coloured", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    what = {RATIO: "÷ its noise floor" if first["reference_kind"] == "noise_floor" else "÷ its target",
            DIFFERENCE: "− the oracle's value"}.get(kind, "(no reference)")
    ax.set_title(f"{label} {what}", fontsize=10)
    summary = "; ".join(f"{r['method']} on {r['scenario']}: {relative_text(r) or _fmt(r['mean'])}"
                        for r in rows.to_dict("records"))
    direction = {LOWER: "lower is better", HIGHER: "higher is better",
                 CLOSEST: "closest to the reference is best"}.get(first["direction"], "direction unknown")
    return Drawing(png_data_uri(figure),
                   f"Heat map of {label} relative to its reference, methods by scenarios; {summary}",
                   f"{label} ({key}) relative to its reference, mean over scenario seeds ({direction}). Green: at or "
                   "better than the reference; red: worse. * and bold: tied for best in that scenario.")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower cost and lower distance are better)."""
    front = []
    for i, (cost, quality) in enumerate(points):
        dominated = any(c <= cost and q <= quality and (c < cost or q < quality)
                        for j, (c, q) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def frontier_chart(board: pd.DataFrame, scenario: str, quality: str = QUALITY, cost: str = COST
                   ) -> Drawing | None:
    """One scenario's methods on the cost x quality-distance plane, Pareto front highlighted.

    x: the ``cost`` row's mean (a ratio to retraining, log scale); y: the ``quality`` row
    relative to its reference (``KLoM / floor`` by default; 1 = retraining). Whiskers are
    the 95% intervals over seeds.
    """
    rows = board[board["scenario"] == scenario]
    q = {r["method"]: r for r in rows[rows["metric"] == quality].to_dict("records")}
    c = {r["method"]: r for r in rows[rows["metric"] == cost].to_dict("records")}
    methods = [m for m in _methods(rows) if m in q and m in c]
    y_of = {m: q[m]["relative"] if q[m]["relative_kind"] != "value" else q[m]["mean"] for m in methods}
    usable = [m for m in methods if math.isfinite(c[m]["mean"]) and math.isfinite(y_of[m])]
    if not usable:
        return None
    relative = q[usable[0]]["relative_kind"] == RATIO
    positive = [c[m]["mean"] for m in usable if c[m]["mean"] > 0]
    left = min(min(positive) / 3 if positive else 1e-3, 0.3)
    xs = [max(c[m]["mean"], left) for m in usable]
    ys = [y_of[m] for m in usable]
    front = pareto_front(list(zip(xs, ys)))
    figure = _figure(6.0, 4.0)
    ax = figure.add_subplot()
    for index, method in enumerate(usable):
        on_front = index in front
        qr, cr = q[method], c[method]
        lo, hi = (qr["relative_low"], qr["relative_high"]) if relative else (qr["ci_low"], qr["ci_high"])
        y_err = [[max(ys[index] - lo, 0)], [max(hi - ys[index], 0)]] if math.isfinite(lo) and math.isfinite(hi) \
            else None
        x_err = [[max(xs[index] - max(cr["ci_low"], left), 0)], [max(cr["ci_high"] - xs[index], 0)]] \
            if math.isfinite(cr["ci_low"]) and math.isfinite(cr["ci_high"]) else None
        ax.errorbar(xs[index], ys[index], yerr=y_err, xerr=x_err, fmt="o", color=ORANGE if on_front else BLUE,
                    markersize=7 if on_front else 5, elinewidth=0.8, capsize=2, zorder=3)
        ax.annotate(method, (xs[index], ys[index]), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", color=ORANGE, linewidth=1.4,
            label="Pareto front (no method cheaper and closer)")
    if relative:
        ax.axhline(1.0, color=RED, linewidth=1.0, label="noise floor (retraining vs retraining)")
    ax.axvline(1.0, color=GREY, linestyle=":", linewidth=1, label="cost of retraining")
    ax.set_xscale("log")
    ax.set_xlabel("cost: example gradients ÷ retraining (log; 0 drawn at the left edge)", fontsize=8)
    label = q[usable[0]]["label"]
    ax.set_ylabel(f"{label} ÷ its noise floor" if relative else label, fontsize=8)
    ax.set_title(f"{scenario}: quality vs cost (lower left is better)", fontsize=9)
    figure.legend(loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    names = ", ".join(usable[i] for i in front)
    summary = "; ".join(f"{m}: cost {_fmt(c[m]['mean'])}×, {label} {_fmt(y_of[m])}{'×' if relative else ''}"
                        for m in usable)
    return Drawing(png_data_uri(figure),
                   f"Scatter plot for {scenario}: each method's cost against {label}"
                   f"{' relative to its noise floor' if relative else ''}; Pareto front: {names}. {summary}",
                   f"{scenario}: methods on the Pareto front (orange: {names}) are not beaten on both cost and "
                   f"{label} by another method. Whiskers: 95% intervals over scenario seeds.")


# ----------------------------------------------------------------------------- stress: relearning curves
RELEARN_PREFIX = "relearn_accuracy_"


def relearning_chart(frame: pd.DataFrame, scenario: str, columns: int = 5) -> Drawing | None:
    """One scenario's relearning attack, one small panel per method (``columns`` to a row, shared axes): the
    method's forget accuracy after t relearning steps (mean over seeds and members) with the oracle
    population's curve under the same attack (dashed) in every panel; only the excess over the oracle is
    evidence of hidden knowledge (METRICS: the ``relearning`` metric)."""
    rows = frame[frame["metric"].astype(str).str.startswith(RELEARN_PREFIX)]
    rows = rows[[scenario_label(d, f, m) == scenario for d, f, m in zip(rows["dataset"], rows["forget_rule"],
                                                                           rows["members"])]]
    if rows.empty:
        return None
    rows = rows.assign(step=rows["metric"].str[len(RELEARN_PREFIX):].astype(int))
    methods = list(dict.fromkeys(rows["method"]))
    oracle = rows.groupby("step")["reference"].mean()
    curves = {m: rows[rows["method"] == m].groupby("step")["value"].mean() for m in methods}
    ncols = min(columns, len(methods))
    nrows = math.ceil(len(methods) / ncols)
    figure = _figure(1.9 * ncols + 0.6, 1.55 * nrows + 0.7)
    axes = figure.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(methods):
            ax.set_axis_off()
            continue
        curve = curves[methods[i]]
        ax.plot(oracle.index, oracle.values, color="black", linestyle="--", linewidth=1.2)
        ax.plot(curve.index, curve.values, color=BLUE, marker="o", markersize=2.5, linewidth=1.3)
        ax.set_title(methods[i], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    figure.supxlabel("relearning steps on a subset of the forget set", fontsize=8)
    figure.supylabel("forget accuracy on the rest (%)", fontsize=8)
    figure.suptitle(f"{scenario}: relearning attack (dashed: the oracle under the same attack)", fontsize=9)
    last = int(oracle.index.max())
    summary = "; ".join(f"{m}: {_fmt(curves[m].get(last, float('nan')))}%" for m in methods)
    return Drawing(png_data_uri(figure),
                   f"Line charts for {scenario}, one per method: forget accuracy against relearning steps, with "
                   f"the oracle's (dashed). After {last} steps: {summary}; oracle {_fmt(float(oracle.loc[last]))}%.",
                   f"{scenario}: a curve above the dashed oracle's recovers what the oracle cannot: knowledge the "
                   f"method hid rather than removed.")


# ----------------------------------------------------------------------------- stress: forget rules side by side
STRESS_METRICS = ("accuracy/forget", "klom_p95/forget", "relearn_excess/forget")  # in this order, those present


def stress_board(frame: pd.DataFrame, confidence: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> pd.DataFrame | None:
    """The leaderboard rows of :data:`STRESS_METRICS` for the scenarios whose dataset and N have results for
    several forget rules (random vs memorized: vs hard:, ...), or None where no two rules share one."""
    import warnings

    keys = {metric_key(m, s) for m, s in zip(frame["metric"], frame["split"])}
    wanted = [k for k in STRESS_METRICS if k in keys]
    rules = frame.groupby(["dataset", "members"])["forget_rule"].nunique()
    if not wanted or not (rules > 1).any():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few seeds: already said once for the headline metrics
        board = leaderboard(frame, wanted, confidence, resamples, seed)
    shared = {key for key, n in rules.items() if n > 1}
    board = board[[(d, m) in shared for d, m in zip(board["dataset"], board["members"])]]
    order = {rule: i for i, rule in enumerate(dict.fromkeys(frame["forget_rule"]))}  # the results' order
    return board.iloc[np.argsort([order[r] for r in board["forget_rule"]], kind="stable")]


def _stress_cell(row: Any) -> str:
    reference = _fmt(row["reference"])
    if row["metric"].startswith("relearn_"):
        extra = f"floor {reference}"  # an area near 0: its ratio to the floor means nothing, its gap does
    else:
        extra = relative_text(row) or f"{REFERENCE_WORDS.get(row['reference_kind'], '')} {reference}".strip()
    return f'<td><span class="v">{esc(cell_text(row))}</span><span class="ref">{esc(extra)}</span></td>'


def stress_tables_html(board: pd.DataFrame) -> str:
    """One table per dataset and N: method rows, one column group per forget rule (same metrics in each)."""
    tables = []
    for (dataset, members), part in board.groupby(["dataset", "members"], sort=False):
        rules = list(dict.fromkeys(part["forget_rule"]))
        metrics = list(dict.fromkeys(zip(part["metric"], part["label"])))
        top = "".join(f'<th scope="colgroup" colspan="{len(metrics)}">{esc(rule)}</th>' for rule in rules)
        second = "".join(f'<th scope="col">{esc(label)}</th>' for _ in rules for _, label in metrics)
        cells = {(r["method"], r["forget_rule"], r["metric"]): r for r in part.to_dict("records")}
        body = []
        for method in _methods(part):
            row = [f'<th scope="row">{esc(method)}</th>']
            for rule in rules:
                for key, _ in metrics:
                    found = cells.get((method, rule, key))
                    row.append(_stress_cell(found) if found is not None else f'<td class="na">{DASH}</td>')
            body.append(f"<tr>{''.join(row)}</tr>")
        ident = f"stress-table-{_slug(f'{dataset}-{members}')}"
        tables.append(f'<div class="scroll"><table id="{esc(ident)}" class="stress-table"><caption>{esc(dataset)}, '
                      f'N={esc(members)}: forget rules side by side</caption><thead><tr><th scope="col" rowspan="2">'
                      f'Method</th>{top}</tr><tr>{second}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')
    return "".join(tables)


# ----------------------------------------------------------------------------- the page
def _html_table(board: pd.DataFrame) -> str:
    columns = _columns(board)
    scenarios = list(dict.fromkeys(s for s, _, _ in columns))
    spans = {scenario: sum(1 for s, _, _ in columns if s == scenario) for scenario in scenarios}
    top = "".join(f'<th scope="colgroup" colspan="{spans[scenario]}">{esc(scenario)}</th>' for scenario in scenarios)
    second = "".join(f'<th scope="col">{esc(label)}<span class="def">{esc(key)}</span></th>'
                     for _, key, label in columns)
    cells = {(r["method"], r["scenario"], r["metric"]): r for r in board.to_dict("records")}
    body = []
    for method in _methods(board):
        parts = [f'<th scope="row">{esc(method)}</th>']
        for scenario, key, _ in columns:
            row = cells.get((method, scenario, key))
            if row is None:
                parts.append(f'<td class="na">{DASH}</td>')
                continue
            extra = " · ".join(filter(None, [relative_text(row), row["note"]]))
            reference = _fmt(row["reference"]) if row["reference_kind"] not in ("none", "constant") else ""
            refline = f"{REFERENCE_WORDS.get(row['reference_kind'], '')} {reference}"
            cls = ' class="tied"' if row["tied_best"] else ""
            title = f"rank {row['rank']:.0f}, seeds {row['seeds']}" if math.isfinite(row["rank"]) else ""
            parts.append(f'<td{cls} title="{esc(title)}"><span class="v">{esc(cell_text(row))}</span>'
                         f'<span class="ref">{esc(refline.strip())}</span><span class="ref">{esc(extra)}</span></td>')
        body.append(f"<tr>{''.join(parts)}</tr>")
    return (f'<div class="scroll"><table id="grid-leaderboard"><thead><tr><th scope="col" rowspan="2">Method</th>{top}'
            f'</tr><tr>{second}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def _figure_html(drawing: Drawing, ident: str) -> str:
    return (f'<figure id="{esc(ident)}"><img class="plot" src="{esc(drawing.uri)}" alt="{esc(drawing.alt)}">'
            f"<figcaption>{esc(drawing.caption)}</figcaption></figure>")


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").lower()


GRID_CSS = """
#grid-leaderboard td, .stress-table td { text-align: right; white-space: nowrap; }
.stress-table caption { text-align: left; font-weight: 600; }
#grid-leaderboard td.tied { font-weight: 700; background: #e7f3e9; }
#grid-leaderboard td .v { font-weight: inherit; }
#grid-leaderboard td:not(.tied) .v { font-weight: normal; }
"""


def render_grid_html(frame: pd.DataFrame, metrics: Sequence[str] | None = None, confidence: float = 0.95,
                     resamples: int = 10_000, seed: int = 0, title: str = "Grid leaderboard",
                     quality: str = QUALITY, cost: str = COST) -> str:
    """The grid report page for the results ``frame`` (see :func:`expunge.bench.leaderboard.leaderboard`)."""
    import warnings

    board = leaderboard(frame, metrics, confidence, resamples, seed)
    keys = {metric_key(m, s) for m, s in zip(frame["metric"], frame["split"])}
    axes = [k for k in (quality, cost) if k in keys]
    frontier_board = board
    if len(axes) == 2 and not set(axes) <= set(board["metric"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # already said once for the headline metrics
            frontier_board = leaderboard(frame, axes, confidence, resamples, seed)
    heat = []
    for key, label in dict.fromkeys(zip(board["metric"], board["label"])):
        drawing = heatmap_chart(board, key)
        heat.append(_figure_html(drawing, f"heatmap-{_slug(key)}") if drawing
                    else f'<p class="noplot">{esc(label)}: {DASH} (no data)</p>')
    frontiers = []
    for scenario in dict.fromkeys(board["scenario"]):
        drawing = frontier_chart(frontier_board, scenario, quality, cost) if len(axes) == 2 else None
        frontiers.append(_figure_html(drawing, f"frontier-{_slug(scenario)}") if drawing
                         else f'<p class="noplot">{esc(scenario)}: {DASH} (no {esc(quality)} or {esc(cost)} rows)</p>')
    curves = []
    for scenario in dict.fromkeys(scenario_label(d, f, m) for d, f, m in
                                  zip(frame["dataset"], frame["forget_rule"], frame["members"])):
        drawing = relearning_chart(frame, scenario)
        if drawing:
            curves.append(_figure_html(drawing, f"relearning-{_slug(scenario)}"))
    side = stress_board(frame, confidence, resamples, seed)
    tables = stress_tables_html(side) if side is not None and not side.empty else ""
    side_by_side = (f'<h3>Forget rules side by side</h3><p class="hint">The same methods on random and worst-case '
                    f'forget sets (memorized:, hard:&lt;method&gt;:, ...): forget accuracy against the oracle\'s, KLoM '
                    f'against its noise floor, and the relearning attack\'s excess recovery (area between the '
                    f'method\'s and the oracle\'s curves, percentage points) beside its floor (second oracle).</p>'
                    f'{tables}') if tables else ""
    curve_html = (f'<h3>Relearning attack, per scenario</h3><p class="hint">Each method\'s forget accuracy while an '
                  f'attacker fine-tunes it on part of the forget set, against the oracle under the same attack '
                  f'(dashed).</p><div class="plots">{"".join(curves)}</div>') if curves else ""
    stress = (f'<section id="stress-section"><h2>Stress tests</h2>{side_by_side}{curve_html}</section>'
              if side_by_side or curve_html else "")
    seeds = frame.groupby(["dataset", "forget_rule", "members"])["scenario_seed"].nunique()
    facts = [("Scenarios", str(board["scenario"].nunique())), ("Methods", ", ".join(_methods(board)) or DASH),
             ("Seeds per scenario", ", ".join(str(int(n)) for n in sorted(set(seeds))) or DASH),
             ("Intervals", (f"{confidence:.0%} percentile bootstrap over scenario seeds, {resamples:,} resamples, "
                           f"seed {seed}"))]
    info = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in facts)
    notes = "".join(f"<li>{esc(n)}</li>" for n in _notes(board))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>expunge grid: {esc(title)}</title>
<style>{CSS}{GRID_CSS}</style>
</head>
<body>
<header><h1>{esc(title)}</h1><table id="grid-info" class="info"><tbody>{info}</tbody></table></header>
<main>
<section id="leaderboard-section"><h2>Leaderboard</h2>
<p class="hint">Each cell: mean over scenario seeds [95% interval], the reference (oracle or noise floor, mean over
seeds) and the value relative to it. Bold, green: tied for best.</p>
{_html_table(board)}
<div class="legend" id="tie-rule"><p><b>Ties.</b> {esc(TIE_RULE)}</p></div>
{f'<ul id="grid-notes">{notes}</ul>' if notes else ''}
</section>
<section id="heatmaps-section"><h2>Relative to the reference, per headline metric</h2>
<div class="plots">{"".join(heat)}</div></section>
<section id="frontier-section"><h2>Quality vs cost, per scenario</h2>
<div class="plots">{"".join(frontiers)}</div></section>
{stress}
</main>
<footer>Generated by expunge. This page is self-contained: it loads nothing from the network.</footer>
</body>
</html>
"""


def write_grid_report(frame: pd.DataFrame, path: str | os.PathLike, **options: Any) -> Path:
    """Render the grid report for ``frame`` and write it to ``path`` atomically; return the path.

    The page is rendered in memory, written to a temporary file beside ``path`` and renamed
    into place: a failure at any point leaves an existing report untouched and no partial
    file. ``options``: those of :func:`render_grid_html`.
    """
    path = Path(path)
    if path.is_dir():
        raise ExpungeError(f"{path} is a folder; give the grid report a file name, e.g. {path / 'grid.html'}")
    text = render_grid_html(frame, **options)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path
