"""The terminal leaderboard of an audit report (method vs oracle, with noise floors)."""
from __future__ import annotations

from typing import Any

from rich.table import Table


def _value(metric: dict | None, digits: int = 1) -> str:
    if not metric:
        return "-"
    return f"{metric['value']:.{digits}f}"


def _with(metric: dict | None, key: str, digits: int = 1) -> str:
    if not metric:
        return "-"
    other = metric.get(key)
    return _value(metric, digits) + ("" if other is None else f" ({other:.{digits}f})")


def leaderboard(report: dict[str, Any]) -> Table:
    """One row per method; the oracle's value or the noise floor in brackets."""
    scenario, populations = report["scenario"], report["populations"]
    low = report.get("resolution") == "quick"
    title = (f"{'[LOW RESOLUTION] ' if low else ''}{scenario['name']}: {scenario['n_forget']} forget examples, "
             f"N = {populations['members']} models per population, {populations['shadow_members']} shadows")
    table = Table(title=title, caption="(x) = oracle value, or retrain-vs-retrain noise floor for F and KLoM; "
                                       "U-LiRA AUC 0.5 is chance. Definitions: METRICS.md / report.html")
    columns = [("method", "left"), ("FA (oracle)", "right"), ("RA (oracle)", "right"), ("TA (oracle)", "right"),
               ("MIA-Eff. (oracle)", "right"), ("Avg.Gap", "right"), ("F (floor)", "right"),
               ("KLoM forget P95 (floor)", "right"), ("U-LiRA AUC", "right"), ("cost ratio", "right")]
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for entry in report["methods"]:
        if entry["status"] != "ok":
            table.add_row(entry["method"], f"[red]failed: {entry['error']}[/]", *[""] * (len(columns) - 2))
            continue
        m = entry["metrics"]
        table.add_row(entry["method"], _with(m.get("FA"), "oracle"), _with(m.get("RA"), "oracle"),
                      _with(m.get("TA"), "oracle"), _with(m.get("MIA"), "oracle"), _value(m.get("AvgGap"), 2),
                      _with(m.get("F"), "noise_floor", 3), _with(m.get("KLoM_forget_p95"), "noise_floor", 2),
                      _value(m.get("ULiRA_auc"), 3), _value(m.get("cost_gradient_ratio"), 3))
    return table
