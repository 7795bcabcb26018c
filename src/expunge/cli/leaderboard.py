"""The terminal leaderboard of an audit: one row per method, one column per headline result row.

Generic over metrics: the columns are the result rows that declare a headline position,
so a metric added by a plugin appears without editing this file.
"""
from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from expunge.audit.results import MetricResult

STYLES = {"good": "green", "warn": "yellow", "bad": "red", "na": ""}
KIND_WORDS = {"oracle": "the oracle's value", "noise_floor": "the retrain-vs-retrain noise floor",
              "constant": "the target (1 = retraining's cost)"}


def _number(value: float | None, digits: int, unit: str = "") -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else "inf"
    return f"{value:.{digits}f}{'×' if unit == '×' else ''}"


def cell(row: MetricResult) -> str:
    """``value (reference)``, coloured by the row's judgement."""
    text = _number(row.value, row.digits, row.unit)
    single = row.details.get("single_model_oracle")  # exact constructions: a single retrained model's value
    if row.reference is not None and row.reference_kind != "constant":
        beside = "" if single is None else f"; 1 model {_number(single, row.digits)}"
        text += f" ({_number(row.reference, row.digits)}{beside})"
    style = STYLES.get(row.judgement, "")
    return f"[{style}]{text}[/]" if style else text


def headline_columns(rows: list[MetricResult]) -> list[tuple[str, str]]:
    """``(row key, label)`` of every headline row present, in headline order."""
    seen: dict[str, tuple[int, str]] = {}
    for row in rows:
        if row.headline and row.key not in seen:
            seen[row.key] = (row.headline, row.label or row.key)
    return [(key, label) for key, (_, label) in sorted(seen.items(), key=lambda item: item[1][0])]


def leaderboard(report: Any) -> Table:
    """The leaderboard of an :class:`~expunge.bench.audit.AuditReport` (or its JSON dict)."""
    data = report.data if hasattr(report, "data") else report
    rows = report.rows if hasattr(report, "rows") else [MetricResult.from_json(r) for r in data.get("results", [])]
    scenario, populations = data["scenario"], data["populations"]
    low = data.get("resolution") == "quick"
    title = (f"{'[LOW RESOLUTION] ' if low else ''}{scenario['name']}: {scenario['n_forget']} forget examples, "
             f"N = {populations['members']} models per population, {populations['shadow_members']} shadows")
    kinds = {r.reference_kind for r in rows if r.headline and r.reference is not None} - {"constant"}
    chance = sorted({f"{r.label} {r.chance:g}" for r in rows if r.headline and r.chance is not None})
    caption = "(x) = " + " or ".join(KIND_WORDS[k] for k in sorted(kinds)) if kinds else ""
    if chance:
        caption += f"; chance: {', '.join(chance)}"
    caption += ". Green: within tolerance of the reference; red: distinguishable. Definitions: report.html"
    for entry in data["methods"]:
        if entry.get("kind") == "exact" and entry.get("oracle"):
            caption += (f"\n{entry['method']} (exact): (x) is its own oracle, {entry['oracle']}; "
                        "TA's '1 model': a single model retrained without the forget set")
    table = Table(title=title, caption=caption)
    columns = headline_columns(rows)
    table.add_column("method", no_wrap=True)
    for _, label in columns:
        table.add_column(label, justify="right", no_wrap=True)
    by_method: dict[str, dict[str, MetricResult]] = {}
    for row in rows:
        by_method.setdefault(row.method, {})[row.key] = row
    for entry in data["methods"]:
        name = entry["method"]
        shown = f"{name} (tuned)" if entry.get("tuned") else name
        if entry["status"] != "ok":
            table.add_row(shown, f"[red]{entry['status']}: {entry.get('error') or 'no reason recorded'}[/]",
                          *[""] * (len(columns) - 1))
            continue
        mine = by_method.get(name, {})
        table.add_row(shown, *[cell(mine[key]) if key in mine else "-" for key, _ in columns])
    return table
