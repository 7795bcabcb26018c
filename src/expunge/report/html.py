"""The audit report as one self-contained HTML page, for a compliance reviewer.

:func:`render_html` turns the JSON-serialisable report dict of an audit (see
``expunge.bench.audit``) into a page with no external resources: inline CSS, no
JavaScript, plots embedded as base64 PNG drawn with matplotlib's Agg renderer. Every
number names its METRICS.md definition id and stands beside the oracle's value or the
retrain-vs-retrain noise floor. :func:`write_report` writes ``report.json`` and
``report.html`` atomically, so a failed run never replaces a good report.

Missing metrics, plots or header fields render as "–" instead of failing: a report
of a partly failed audit is still worth filing.
"""
from __future__ import annotations

import base64
import html
import io
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from expunge.audit.mia import DEFINITIONS as MIA_DEFINITIONS
from expunge.audit.scores import DEFINITIONS as SCORE_DEFINITIONS
from expunge.errors import ExpungeError
from expunge.files import atomic_write, json_text

DASH = "–"

# ----------------------------------------------------------------------------- the closeness rule
# One rule colours the table cells and makes the verdicts; the page prints it from these constants.
ORACLE_STDS = 2.0  # FA, RA, TA, MIA-Efficacy: within 2 oracle standard deviations of the oracle mean ...
ORACLE_MIN_PP = 1.0  # ... but never stricter than 1 percentage point
F_MIN_RATIO = 0.8  # F (higher is better) at least 80% of its noise floor
KLOM_MAX_RATIO = 1.25  # KLoM P95 (lower is better) at most 125% of its noise floor
ULIRA_MAX_EXCESS = 0.03  # U-LiRA AUC within 0.03 of its floor (0.5 = chance)
AVG_GAP_MAX_PP = 2.0  # Avg.Gap (colour only)
TOW_MAX_LOSS = 0.06  # 1 - ToW (colour only); 0.98 ** 3 ~ 0.94: three 2-pp gaps
COST_GOOD, COST_WARN = 0.25, 1.0  # cost ratio (colour only): at 1 the method costs as much as retraining
BORDERLINE = 2.0  # outside tolerance but within twice it: borderline (amber), beyond: red

GOOD, WARN, BAD, NA = "good", "warn", "bad", "na"
_RANK = {NA: -1, GOOD: 0, WARN: 1, BAD: 2}

# ----------------------------------------------------------------------------- definitions (METRICS.md)
# Keyed by full definition id, or by the family before "@" as a fallback for variants.
DEFINITION_TEXT: dict[str, str] = {
    "accuracy@forget": "FA: top-1 accuracy (%) on the forget set; mean ± std over the population's members.",
    "accuracy@retain": "RA: top-1 accuracy (%) on the retain set; mean ± std over the population's members.",
    "accuracy@test": "TA: top-1 accuracy (%) on the test set; mean ± std over the population's members.",
    "accuracy": "Top-1 accuracy in percent; for a population, mean ± std over members.",
    "ua": "UA (unlearning accuracy) = 100 − FA.",
    "avg_gap": "Avg.Gap: mean of |method − oracle| over UA, RA, TA and MIA-Efficacy, in percentage points "
               "(oracle = mean of the oracle population); 0 is perfect.",
    "tow": "ToW (tug of war): product over FA, RA, TA of (1 − |method − oracle| / 100); 1 is perfect.",
    "mia_efficacy": "MIA-Efficacy: % of forget examples that an RBF SVC (C = 3, gamma = 'auto') on the true-class "
                    "confidence, trained on retain members vs test non-members, calls non-member. "
                    "The target is the oracle's value, not 100.",
    "competition_f": "F: NeurIPS 2023 competition forgetting quality. Per forget example, eps = the best "
                     "(ε, δ = 1e-5) separation of phi under N unlearned vs N oracle models; bins of 0.5 score "
                     "2 / 2^n, eps at or above the ceiling ceil(ln(N − 1)) scores 0; F = mean. "
                     "Noise floor: F of a second, independent oracle population.",
    "competition_score": "Competition final score: F · (RA_unlearned / RA_oracle) · (TA_unlearned / TA_oracle), "
                         "population means.",
    "klom": "KLoM: per example, KL(P_unlearned || P_oracle) of margins over N models each (clipped to ±100, "
            "20 equal-width bins, oracle bins floored at 1e-5); reported as the 95th percentile over a split. "
            "Noise floor: the same statistic between two independent oracle populations.",
    "ulira": "U-LiRA: per-example likelihood-ratio attack; Gaussians fitted to phi under shadow models that "
             "trained on and then unlearned the example vs shadows that never saw it. AUC 0.5 and balanced "
             "accuracy 50% mean perfect unlearning.",
    "loss_threshold_auc": "Loss-threshold attack: AUC of telling forget from test examples by per-example loss; "
                          "compare with the oracle's value.",
    "loss_attack": "Loss-threshold attack: AUC of telling forget from test examples by per-example loss; "
                   "compare with the oracle's value.",
    "cka": "Linear CKA between penultimate-layer features of the unlearned model and the oracle (or the "
           "original), mean over members; 1 = the same representation up to rotation and scale.",
    "knn_probe": "k-NN probe (k = 5, cosine) on frozen penultimate features fitted on retain examples: "
                 "accuracy (%) on the forget set. Shows forgetting deeper than the last layer.",
    "cost@example-gradients/retrain": "Cost: example-gradient evaluations of the method ÷ those of retraining "
                                      "the oracle with the recipe (1 = as expensive as retraining).",
    "cost@wall-time/retrain": "Cost: wall time of the method ÷ wall time of retraining the oracle, "
                              "measured in the same run.",
    "cost": "Cost of the method as a ratio to retraining the oracle with the recipe.",
    "confidence_attack": "ROC of a threshold attack on the true-class confidence p_y(x) telling forget from "
                         "test examples, pooled over members; the oracle's curve is the target.",
    "margin": "Margin: z_y − logsumexp_{j≠y} z_j of the logits z (equals phi for softmax outputs).",
    "phi": "phi: log p_y(x) − log(Σ_{j≠y} p_j(x)), the logit-scaled confidence of LiRA.",
    "confidence": "True-class softmax confidence p_y(x).",
}
ROC_DEFINITION = MIA_DEFINITIONS["confidence_roc"]
MARGIN_DEFINITION = SCORE_DEFINITIONS["margin"]
EPS_DEFINITION = "competition_f@neurips2023"


def describe_definition(definition_id: str) -> str:
    """One-line explanation of a METRICS.md definition id (by exact id, else by its family)."""
    text = DEFINITION_TEXT.get(definition_id) or DEFINITION_TEXT.get(definition_id.split("@", 1)[0])
    return text or "No description in this version of expunge; see METRICS.md."


# ----------------------------------------------------------------------------- small helpers
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> float | None:
    """A real number as float (NaN and ±inf kept), anything else (None, strings, bools) as None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _fmt(value: Any, unit: str | None = None) -> str:
    x = _number(value)
    if x is None:
        return DASH if value is None or value == "" else str(value)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if unit in ("%", "pp"):
        return f"{x:.1f}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x == int(x) and abs(x) >= 1:
        return f"{x:.0f}"
    return f"{x:.3g}"


def _fmt_mean_std(value: Any, std: Any, unit: str | None) -> str:
    text = _fmt(value, unit)
    if _number(std) is not None and text != DASH:
        text += f" ± {_fmt(std, unit)}"
    return text


def _get(mapping: Any, *keys: str) -> Any:
    """``mapping[k1][k2]...`` or None where any level is missing or not a mapping."""
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _floats(values: Any) -> np.ndarray:
    """A list of numbers (JSON nulls allowed) as a float array of its finite entries."""
    if values is None:
        return np.zeros(0)
    array = np.asarray([np.nan if v is None else v for v in values], dtype=float).ravel()
    return array[np.isfinite(array)]


def _methods(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    methods = report.get("methods") or []
    if not isinstance(methods, Sequence) or isinstance(methods, (str, bytes)):
        raise ExpungeError(f"report['methods'] must be a list of method entries, got {type(methods).__name__}")
    return [m for m in methods if isinstance(m, Mapping)]


def _ok(entry: Mapping[str, Any]) -> bool:
    return entry.get("status", "ok") == "ok"


def _name(entry: Mapping[str, Any]) -> str:
    return str(entry.get("method") or "unnamed method")


# ----------------------------------------------------------------------------- the rule, applied
class Judgement(NamedTuple):
    """Closeness of one number to its reference: a colour class, a label for verdicts, a tooltip."""

    cls: str
    label: str = ""
    reason: str = ""


def _by_distance(distance: float, label: str, reason: str) -> Judgement:
    """``distance`` is the deviation in units of the tolerance: <= 1 good, <= BORDERLINE amber, else red."""
    if math.isnan(distance):
        return Judgement(BAD, label, "not a number: never close to retraining")
    cls = GOOD if distance <= 1.0 else WARN if distance <= BORDERLINE else BAD
    return Judgement(cls, label, reason)


def _floor(metric: Mapping[str, Any], report: Mapping[str, Any], *floor_keys: str) -> float | None:
    """The metric's own noise floor, else the report-level one."""
    own = _number(metric.get("noise_floor"))
    return own if own is not None else _number(_get(report.get("noise_floors"), *floor_keys))


def judge(key: str, metric: Any, report: Mapping[str, Any]) -> Judgement:
    """Apply the documented closeness rule to metric ``key`` of a method (NA where no rule or reference)."""
    if not isinstance(metric, Mapping):
        return Judgement(NA)
    value = _number(metric.get("value"))
    if value is None:
        return Judgement(NA)
    if math.isnan(value) or (math.isinf(value) and key != "cost"):
        return Judgement(BAD, f"{LABELS.get(key, key)} {_fmt(value)}", "not finite: never close to retraining")
    shown = _fmt(value, metric.get("unit"))
    if key in ("FA", "RA", "TA", "MIA"):
        oracle = _number(metric.get("oracle"))
        if oracle is None:
            return Judgement(NA)
        tolerance = max(ORACLE_MIN_PP, ORACLE_STDS * (_number(metric.get("oracle_std")) or 0.0))
        gap = abs(value - oracle)
        oracle_text = _fmt_mean_std(oracle, metric.get("oracle_std"), "%")
        return _by_distance(gap / tolerance, f"{LABELS[key]} {shown} vs oracle {oracle_text}",
                            f"|method − oracle| = {gap:.1f} pp, tolerance {tolerance:.1f} pp")
    if key in ("F", "competition_score"):
        floor = _floor(metric, report, "competition_F", "value") if key == "F" else \
            _number(_get(report.get("noise_floors"), "competition_F", "value"))
        if floor is None or floor <= 0:
            return Judgement(NA)
        return _by_distance((floor - value) / ((1 - F_MIN_RATIO) * floor),
                            f"{LABELS[key]} {shown} vs floor {_fmt(floor)}",
                            f"{value / floor:.0%} of the noise floor {_fmt(floor)}; "
                            f"at least {F_MIN_RATIO:.0%} needed")
    if key.startswith("KLoM_"):
        split = key.split("_")[1]
        floor = _floor(metric, report, "klom_p95", split)
        if floor is None or floor <= 0:
            return Judgement(NA)
        return _by_distance((value - floor) / ((KLOM_MAX_RATIO - 1) * floor),
                            f"KLoM {split} P95 {shown} vs floor {_fmt(floor)}",
                            f"{value / floor:.0%} of the noise floor {_fmt(floor)}; "
                            f"at most {KLOM_MAX_RATIO:.0%} allowed")
    if key == "ULiRA_auc":
        floor = _floor(metric, report, "ulira_auc", "value")
        floor = 0.5 if floor is None else floor  # chance level: perfect unlearning
        return _by_distance(abs(value - floor) / ULIRA_MAX_EXCESS, f"U-LiRA AUC {shown} vs floor {_fmt(floor)}",
                            f"|AUC − floor| = {abs(value - floor):.3f}, tolerance {ULIRA_MAX_EXCESS}")
    if key == "AvgGap":
        return _by_distance(value / AVG_GAP_MAX_PP, "", f"tolerance {AVG_GAP_MAX_PP} pp")
    if key == "ToW":
        return _by_distance((1 - value) / TOW_MAX_LOSS, "", f"tolerance: ToW ≥ {1 - TOW_MAX_LOSS:.2f}")
    if key == "cost":
        cls = GOOD if value < COST_GOOD else WARN if value < COST_WARN else BAD
        return Judgement(cls, "", f"green below {COST_GOOD}, amber below {COST_WARN} (= retraining)")
    return Judgement(NA)


LABELS = {"FA": "FA", "RA": "RA", "TA": "TA", "MIA": "MIA-Efficacy", "F": "F", "competition_score": "score",
          "KLoM_forget_p95": "KLoM forget P95", "ULiRA_auc": "U-LiRA AUC"}
VERDICT_AUDITS = ("FA", "RA", "TA", "MIA", "F", "KLoM_forget_p95", "ULiRA_auc")


def verdict(entry: Mapping[str, Any], report: Mapping[str, Any]) -> tuple[str, str]:
    """``(class, plain-language sentence)`` for one method, from the closeness rule."""
    if not _ok(entry):
        return BAD, f"{entry.get('status', 'failed')}: {entry.get('error') or 'no reason recorded'}"
    metrics = entry.get("metrics") if isinstance(entry.get("metrics"), Mapping) else {}
    judged = {key: judge(key, metrics.get(key), report) for key in VERDICT_AUDITS}
    missing = [LABELS[k] for k, j in judged.items() if j.cls == NA]
    if len(missing) == len(judged):
        return NA, "not judged: none of the audits that decide the verdict were run"
    worst = max(_RANK[j.cls] for j in judged.values())
    if worst == _RANK[GOOD]:
        text = "close to retraining on all audits" if not missing else \
            f"close to retraining on every audit run (not judged: {', '.join(missing)})"
        return GOOD, text
    cls = BAD if worst == _RANK[BAD] else WARN
    outside = [j.label for j in judged.values() if j.cls in (WARN, BAD)]
    lead = "distinguishable from retraining" if cls == BAD else "borderline, just outside tolerance"
    text = f"{lead}: {'; '.join(outside)}"
    if missing:
        text += f" (not judged: {', '.join(missing)})"
    return cls, text


# ----------------------------------------------------------------------------- plots
def _figure(width: float, height: float):
    # The object-oriented API with the Agg canvas draws headless without touching the
    # process-wide pyplot backend (a notebook calling this keeps its own backend).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png_data_uri(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot_eps(name: str, eps: np.ndarray, ceiling: float | None, f_text: str):
    figure = _figure(5.2, 3.0)
    ax = figure.add_subplot()
    if ceiling is not None and ceiling > 0:
        edges = np.arange(0.0, ceiling + 0.5, 0.5)
        below = eps[eps < ceiling]
        ax.hist(below, bins=edges, color="#4c78a8", edgecolor="white", label="scored 2 / 2^n")
        above = int(np.sum(eps >= ceiling))
        ax.bar(ceiling + 0.25, above, width=0.5, color="#d62728", edgecolor="white", label="≥ ceiling: scores 0")
        ax.axvline(ceiling, color="#555555", linestyle=":", linewidth=1)
        ax.legend(fontsize=8, frameon=False)
    else:
        ax.hist(eps, bins=20, color="#4c78a8", edgecolor="white")
    ax.set_xlabel("eps per forget example (0 = indistinguishable from the oracle)")
    ax.set_ylabel("forget examples")
    ax.set_title(f"{name}: {f_text}", fontsize=10)
    return figure


def _plot_worst(name: str, examples: list[Mapping[str, Any]]):
    columns = min(3, len(examples))
    rows = math.ceil(len(examples) / columns)
    figure = _figure(max(5.2, 3.0 * columns + 0.4), 2.3 * rows + 0.5)
    for index, example in enumerate(examples):
        ax = figure.add_subplot(rows, columns, index + 1)
        unlearned = np.clip(_floats(example.get("margins_unlearned")), -100, 100)
        oracle = np.clip(_floats(example.get("margins_oracle")), -100, 100)
        joint = np.concatenate([unlearned, oracle])
        if joint.size:
            low, high = float(joint.min()), float(joint.max())
            edges = np.linspace(low, high if high > low else low + 1.0, 21)  # 20 bins, as KLoM
            ax.hist(oracle, bins=edges, histtype="stepfilled", color="#4c78a8", alpha=0.55, label="oracle (retrained)")
            ax.hist(unlearned, bins=edges, histtype="stepfilled", color="#f58518", alpha=0.55, label="unlearned")
        ax.set_title(f"example {example.get('id', DASH)}, eps {_fmt(example.get('eps'))}", fontsize=9)
        ax.tick_params(labelsize=7)
        if index % columns == 0:
            ax.set_ylabel("models", fontsize=8)
        if index >= (rows - 1) * columns:
            ax.set_xlabel("margin", fontsize=8)
        if index == 0:
            ax.legend(fontsize=7, frameon=False)
    figure.suptitle(f"{name}: margins of the forget examples\nwith the largest eps", fontsize=10)
    return figure


def _plot_roc(name: str, roc: Mapping[str, Any]):
    figure = _figure(4.2, 4.0)
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="chance")
    for prefix, label, colour in (("oracle_", "oracle (retrained)", "#4c78a8"), ("", name, "#f58518")):
        fpr, tpr = _floats(roc.get(prefix + "fpr")), _floats(roc.get(prefix + "tpr"))
        if fpr.size and fpr.size == tpr.size:
            auc = _number(roc.get(prefix + "auc"))
            ax.plot(fpr, tpr, color=colour, linewidth=1.8,
                    label=label + (f" (AUC {_fmt(auc)})" if auc is not None else ""))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("false-positive rate (test called forget)")
    ax.set_ylabel("true-positive rate")
    ax.set_title(f"{name}: confidence attack, forget vs test", fontsize=10)
    ax.legend(fontsize=8, loc="lower right", frameon=False)
    return figure


def _plot_cost(rows: list[tuple[str, float | None, float | None]]):
    from matplotlib.ticker import FuncFormatter

    figure = _figure(6.5, 0.6 * len(rows) + 1.6)
    ax = figure.add_subplot()
    shown = [v for row in rows for v in row[1:] if v is not None and v > 0 and math.isfinite(v)]
    left, right = min(min(shown), 1.0) / 3, max(max(shown), 1.0) * 3
    positions = np.arange(len(rows))
    height = 0.38
    for offset, index, label, colour in ((-height / 2, 1, "example gradients ÷ retraining", "#4c78a8"),
                                         (height / 2, 2, "wall time ÷ retraining", "#72b7b2")):
        bars = [(p + offset, row[index]) for p, row in zip(positions, rows)
                if row[index] is not None and row[index] > 0 and math.isfinite(row[index])]
        if bars:
            # On a log axis a bar must start at the axis' left end, not at 0.
            ax.barh([p for p, _ in bars], [v - left for _, v in bars], left=left, height=height,
                    color=colour, label=label)
            for p, v in bars:
                ax.text(v * 1.08, p, f"{v:.3g}×", va="center", fontsize=8)
    ax.axvline(1.0, color="#d62728", linewidth=1.2, label="retraining (= 1×)")
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}×"))
    ax.set_yticks(positions, [row[0] for row in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("cost relative to retraining the oracle (log scale)")
    ax.set_title("Cost vs retraining", fontsize=10)
    figure.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return figure


def _img(uri: str, alt: str, caption: str) -> str:
    return (f'<figure><img class="plot" src="{uri}" alt="{_esc(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _no_plot(what: str) -> str:
    return f'<p class="noplot">{_esc(what)}: {DASH} (no data in this report)</p>'


def _draw(figure, alt: str, caption: str) -> str:
    return _img(_png_data_uri(figure), alt, caption)


def _ceiling(entry: Mapping[str, Any], report: Mapping[str, Any]) -> float | None:
    ceiling = _number(_get(entry, "metrics", "F", "ceiling"))
    if ceiling is None:
        ceiling = _number(_get(report, "noise_floors", "competition_F", "ceiling"))
    n = _number(_get(entry, "metrics", "F", "n_models"))
    if ceiling is None and n is not None and n > 2:
        ceiling = float(math.ceil(math.log(n - 1)))
    return ceiling


def _method_plots(entry: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    name = _name(entry)
    plots = entry.get("plots") if isinstance(entry.get("plots"), Mapping) else {}
    parts = []

    eps = _floats(plots.get("eps"))
    if eps.size:
        ceiling = _ceiling(entry, report)
        f_metric = _get(entry, "metrics", "F") or {}
        floor = _floor(f_metric, report, "competition_F", "value")
        f_text = f"F {_fmt(f_metric.get('value'))} (noise floor {_fmt(floor)})"
        parts.append(_draw(
            _plot_eps(name, eps, ceiling, f_text),
            f"Histogram of eps for {eps.size} forget examples of {name}; {f_text}; ceiling {_fmt(ceiling)}.",
            f"Per-example eps of <code>{_esc(EPS_DEFINITION)}</code>: how well N unlearned models can be told from "
            f"N oracle models on each forget example. {_esc(f_text)}; eps at or above the ceiling "
            f"{_esc(_fmt(ceiling))} scores 0."))
    else:
        parts.append(_no_plot(f"{name}: eps histogram"))

    roc = plots.get("mia_roc")
    if isinstance(roc, Mapping) and (_floats(roc.get("fpr")).size or _floats(roc.get("oracle_fpr")).size):
        definition = roc.get("definition") or ROC_DEFINITION
        parts.append(_draw(
            _plot_roc(name, roc),
            f"ROC curves of the confidence membership attack for {name} and for the oracle, with the diagonal.",
            f"<code>{_esc(definition)}</code>: the method's curve should lie on the oracle's (blue), "
            "not on the diagonal."))
    else:
        parts.append(_no_plot(f"{name}: MIA ROC"))

    worst = [w for w in plots.get("worst_examples") or [] if isinstance(w, Mapping)]
    if worst:
        parts.append(_draw(
            _plot_worst(name, worst),
            f"Margin distributions under unlearned and oracle models for the {len(worst)} forget examples of "
            f"{name} with the largest eps.",
            f"Margins (<code>{_esc(MARGIN_DEFINITION)}</code>) of the worst forget examples under the unlearned "
            "population (orange) and the oracle population (blue); overlapping histograms mean retraining-like."))
    else:
        parts.append(_no_plot(f"{name}: worst-example margins"))
    return f'<div class="plots">{"".join(parts)}</div>'


# ----------------------------------------------------------------------------- page sections
SUMMARY_COLUMNS: list[tuple[str, str, str]] = [
    # (metric key, header, reference kind)
    ("FA", "FA", "oracle"), ("RA", "RA", "oracle"), ("TA", "TA", "oracle"), ("MIA", "MIA-Efficacy", "oracle"),
    ("AvgGap", "Avg.Gap", ""), ("ToW", "ToW", ""), ("F", "F", "floor"),
    ("competition_score", "Score", "floor"), ("KLoM_forget_p95", "KLoM forget P95", "floor"),
    ("ULiRA_auc", "U-LiRA AUC", "floor"), ("cost_gradient_ratio", "Cost ratio (retrain = 1×)", "cost"),
]


def _summary_cell(key: str, kind: str, metrics: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    metric = metrics.get(key)
    if not isinstance(metric, Mapping):
        return f'<td class="{NA}">{DASH}</td>'
    unit = metric.get("unit")
    judgement = judge("cost" if kind == "cost" else key, metric, report)
    lines = [f'<span class="v">{_esc(_fmt_mean_std(metric.get("value"), metric.get("std"), unit))}'
             f'{"×" if kind == "cost" and _number(metric.get("value")) is not None else ""}</span>']
    if kind == "oracle":
        oracle = _fmt_mean_std(metric.get("oracle"), metric.get("oracle_std"), unit)
        lines.append(f'<span class="ref">oracle {_esc(oracle)}</span>')
    elif key == "F":
        lines.append(f'<span class="ref">floor {_esc(_fmt(_floor(metric, report, "competition_F", "value")))}</span>')
        lines.append(f'<span class="ref">N {_esc(_fmt(metric.get("n_models")))} · ceiling '
                     f'{_esc(_fmt(metric.get("ceiling")))}</span>')
    elif key == "competition_score":
        floor = _get(report.get("noise_floors"), "competition_F", "value")
        lines.append(f'<span class="ref">F floor {_esc(_fmt(floor))}</span>')
    elif key == "KLoM_forget_p95":
        lines.append(f'<span class="ref">floor {_esc(_fmt(_floor(metric, report, "klom_p95", "forget")))}</span>')
    elif key == "ULiRA_auc":
        floor = _floor(metric, report, "ulira_auc", "value")
        lines.append(f'<span class="ref">floor {_esc(_fmt(floor if floor is not None else 0.5))}</span>')
        lines.append(f'<span class="ref">{_esc(_fmt(metric.get("n_shadows")))} shadows</span>')
    elif kind == "cost":
        time_ratio = _get(metrics, "cost_time_ratio", "value")
        lines.append(f'<span class="ref">time {_esc(_fmt(time_ratio))}{"×" if _number(time_ratio) is not None else ""}'
                     "</span>")
    title = f' title="{_esc(judgement.reason)}"' if judgement.reason else ""
    return f'<td class="{judgement.cls}"{title}>{"".join(lines)}</td>'


def _summary_table(report: Mapping[str, Any], methods: list[Mapping[str, Any]]) -> str:
    head = ['<th scope="col">Method</th>']
    for key, header, _ in SUMMARY_COLUMNS:
        ids = sorted({str(_get(m, "metrics", key, "definition")) for m in methods
                      if _get(m, "metrics", key, "definition")})
        if key == "cost_gradient_ratio":
            ids += sorted({str(_get(m, "metrics", "cost_time_ratio", "definition")) for m in methods
                           if _get(m, "metrics", "cost_time_ratio", "definition")})
        defs = "".join(f'<span class="def">{_esc(i)}</span>' for i in ids) or f'<span class="def">{DASH}</span>'
        head.append(f'<th scope="col">{_esc(header)}{defs}</th>')
    rows = []
    for entry in methods:
        name = f'<th scope="row">{_esc(_name(entry))}</th>'
        if not _ok(entry):
            reason = entry.get("error") or "no reason recorded"
            rows.append(f'<tr class="failed-row">{name}<td class="failed" colspan="{len(SUMMARY_COLUMNS)}">'
                        f'{_esc(entry.get("status", "failed"))}: {_esc(reason)}</td></tr>')
            continue
        metrics = entry.get("metrics") if isinstance(entry.get("metrics"), Mapping) else {}
        cells = "".join(_summary_cell(key, kind, metrics, report) for key, _, kind in SUMMARY_COLUMNS)
        rows.append(f"<tr>{name}{cells}</tr>")
    if not rows:
        rows.append(f'<tr><td colspan="{len(SUMMARY_COLUMNS) + 1}">{DASH} (no methods in this report)</td></tr>')
    return (f'<div class="scroll"><table id="summary"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _rule_text() -> str:
    return f"""
<p>Each number stands beside its target: the <b>oracle's</b> value (models retrained from scratch without the forget
set; mean ± std over the oracle population) or the <b>noise floor</b> (the same audit between two independent oracle
populations: what perfect unlearning scores at this number of models). Cells are coloured by one rule:</p>
<ul class="rule">
<li>FA, RA, TA, MIA-Efficacy: within {ORACLE_STDS:g} oracle standard deviations of the oracle mean, and never
stricter than {ORACLE_MIN_PP:g} percentage point.</li>
<li>F (higher is better): at least {F_MIN_RATIO:.0%} of its noise floor. Score: compared with F's floor the same way
(a retrained population's score is about its F).</li>
<li>KLoM P95 (lower is better): at most {KLOM_MAX_RATIO:.0%} of its noise floor.</li>
<li>U-LiRA AUC: within {ULIRA_MAX_EXCESS:g} of its floor (0.5 = chance = perfect unlearning).</li>
<li>Avg.Gap at most {AVG_GAP_MAX_PP:g} pp; ToW at least {1 - TOW_MAX_LOSS:.2f} (colour only).</li>
<li>Cost ratio: green below {COST_GOOD:g}, amber below {COST_WARN:g} (as expensive as retraining), red above
(colour only).</li>
</ul>
<p><span class="chip {GOOD}">green</span> within tolerance, <span class="chip {WARN}">amber</span> outside it but
within {BORDERLINE:g}× the tolerance, <span class="chip {BAD}">red</span> beyond that (or not a number),
<span class="chip {NA}">grey</span> not judged (no reference). A method's <b>verdict</b> is its worst colour over
FA, RA, TA, MIA-Efficacy, F, KLoM forget P95 and U-LiRA AUC: all green reads "close to retraining on all audits";
any red reads "distinguishable from retraining" and names the numbers outside tolerance. Hover a cell for its
distance to the target.</p>"""


def _header(report: Mapping[str, Any]) -> str:
    scenario = report.get("scenario") if isinstance(report.get("scenario"), Mapping) else {}
    populations = report.get("populations") if isinstance(report.get("populations"), Mapping) else {}
    machine = report.get("machine")
    if isinstance(machine, Mapping):
        machine_text = ", ".join(f"{k} {v}" for k, v in machine.items())
    else:
        machine_text = DASH if machine is None else str(machine)
    recipe = scenario.get("recipe")
    recipe_text = ", ".join(f"{k}={v}" for k, v in recipe.items()) if isinstance(recipe, Mapping) else \
        (DASH if recipe is None else str(recipe))
    sizes = " / ".join(_fmt(scenario.get(k)) for k in ("n_train", "n_test", "n_forget"))
    resolution = report.get("resolution")
    scenario_rows = [
        ("Scenario", scenario.get("name")), ("Dataset", scenario.get("dataset")),
        ("Forget rule", scenario.get("forget_rule")), ("Train / test / forget examples", sizes),
        ("Recipe", recipe_text),
    ]
    run_rows = [
        ("Date", report.get("created")), ("Machine", machine_text),
        ("N models per population", _fmt(populations.get("members"))),
        ("Shadow models (U-LiRA)", _fmt(populations.get("shadow_members"))),
        ("Resolution", resolution), ("expunge version", report.get("expunge_version")),
    ]

    def info_table(table_id: str, rows: list[tuple[str, Any]]) -> str:
        body = "".join(f'<tr><th scope="row">{_esc(k)}</th><td>{_esc(DASH if v is None or v == "" else v)}</td></tr>'
                       for k, v in rows)
        return f'<table id="{table_id}" class="info"><tbody>{body}</tbody></table>'

    banner = ""
    if resolution == "quick":
        ceiling = _get(report.get("noise_floors"), "competition_F", "ceiling")
        banner = (f'<div class="banner low" role="alert"><strong>LOW RESOLUTION</strong> (quick audit): only '
                  f'{_esc(_fmt(populations.get("members")))} models per population and '
                  f'{_esc(_fmt(populations.get("shadow_members")))} shadow models. Noise floors are wide, eps above '
                  f'{_esc(_fmt(ceiling))} cannot be resolved and small differences from retraining go undetected. '
                  "Use for development; rerun at full resolution before filing this as evidence.</div>")
    elif resolution == "full":
        banner = '<div class="banner full">Full resolution audit.</div>'
    title = scenario.get("name") or DASH
    return (f"<header><h1>Unlearning audit: {_esc(title)}</h1>{banner}"
            f'<div class="infos">{info_table("scenario-info", scenario_rows)}{info_table("run-info", run_rows)}</div>'
            "</header>")


def _verdicts(report: Mapping[str, Any], methods: list[Mapping[str, Any]]) -> str:
    items = []
    for entry in methods:
        cls, text = verdict(entry, report)
        items.append(f'<li class="{cls}"><span class="mname">{_esc(_name(entry))}</span> '
                     f'<span class="vtext">{_esc(text)}</span></li>')
    if report.get("resolution") == "quick":
        items.append('<li class="note">Low resolution: verdicts are provisional.</li>')
    return (f'<ul id="verdicts">{"".join(items) or f"<li>{DASH}</li>"}</ul>'
            '<p class="hint">How verdicts and colours are decided: <a href="#rule">the rule</a>, '
            "below the summary.</p>")


def _noise_floor_table(report: Mapping[str, Any]) -> str:
    floors = report.get("noise_floors") if isinstance(report.get("noise_floors"), Mapping) else {}
    f, k, u = (floors.get(n) if isinstance(floors.get(n), Mapping) else {}
               for n in ("competition_F", "klom_p95", "ulira_auc"))
    rows = [
        ("F (retrain vs retrain)", _fmt(f.get("value")),
         f"N {_fmt(f.get('n_models'))} · ceiling {_fmt(f.get('ceiling'))}", f.get("definition")),
        *[(f"KLoM {split} P95 (retrain vs retrain)", _fmt(k.get(split)), "", k.get("definition"))
          for split in ("forget", "retain", "test")],
        ("U-LiRA AUC", _fmt(u.get("value")), u.get("note") or "0.5 = chance", u.get("definition")),
    ]
    body = "".join(f'<tr><th scope="row">{_esc(a)}</th><td class="num">{_esc(b)}</td><td>{_esc(c)}</td>'
                   f"<td><code>{_esc(d or DASH)}</code></td></tr>" for a, b, c, d in rows)
    return ('<table id="noise-floors"><thead><tr><th scope="col">Audit</th><th scope="col">Noise floor</th>'
            f'<th scope="col">Resolution</th><th scope="col">Definition</th></tr></thead><tbody>{body}</tbody></table>')


def _details(entry: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    """Every metric of one method, with its reference and definition id, plus hyperparameters and cost."""
    name = _name(entry)
    hyper = entry.get("hyperparameters")
    hyper_text = ", ".join(f"{k}={v}" for k, v in hyper.items()) if isinstance(hyper, Mapping) and hyper else "defaults"
    parts = [f'<h3>{_esc(name)}</h3><p class="hp">Hyperparameters: {_esc(hyper_text)}</p>']
    if not _ok(entry):
        parts.append(f'<p class="failed">{_esc(entry.get("status", "failed"))}: '
                     f'{_esc(entry.get("error") or "no reason recorded")}</p>')
        return "".join(parts)
    metrics = entry.get("metrics") if isinstance(entry.get("metrics"), Mapping) else {}
    rows = []
    for key, metric in metrics.items():
        if not isinstance(metric, Mapping):
            continue
        unit = metric.get("unit")
        if metric.get("oracle") is not None:
            reference = f"oracle {_fmt_mean_std(metric.get('oracle'), metric.get('oracle_std'), unit)}"
        elif metric.get("noise_floor") is not None:
            reference = f"floor {_fmt(metric.get('noise_floor'))}"
        else:
            reference = DASH
        extra = [f"{label} {_fmt(metric[field])}" for field, label in
                 (("n_models", "N"), ("ceiling", "ceiling"), ("n_shadows", "shadows")) if field in metric]
        judgement = judge("cost" if key == "cost_gradient_ratio" else key, metric, report)
        value = _fmt_mean_std(metric.get("value"), metric.get("std"), unit) + (f" {unit}" if unit else "")
        rows.append(f'<tr><th scope="row">{_esc(key)}</th><td class="num {judgement.cls}">{_esc(value)}</td>'
                    f'<td>{_esc(reference)}</td><td>{_esc(" · ".join(extra))}</td>'
                    f'<td><code>{_esc(metric.get("definition") or DASH)}</code></td></tr>')
    if rows:
        parts.append('<table class="metrics"><thead><tr><th scope="col">Metric</th><th scope="col">Value</th>'
                     '<th scope="col">Oracle / floor</th><th scope="col">Models</th><th scope="col">Definition</th>'
                     f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    else:
        parts.append(f"<p>Metrics: {DASH}</p>")
    cost = entry.get("cost")
    if isinstance(cost, Mapping):
        facts = [f"{label}: {_fmt(cost.get(field))}" for field, label in
                 (("example_gradients", "example gradients"), ("forward_examples", "forward examples"),
                  ("wall_time_s", "wall time (s)"), ("members", "members"))]
        parts.append(f'<p class="cost">Cost: {_esc("; ".join(facts))}</p>')
        diverged = cost.get("diverged") or []
        if diverged:
            parts.append(f'<p class="warnline">{_esc(len(diverged))} member(s) diverged: '
                         f'{_esc(", ".join(str(d) for d in diverged))}</p>')
        for note in cost.get("notes") or []:
            parts.append(f'<p class="warnline">{_esc(note)}</p>')
    return "".join(parts)


def _definition_ids(report: Mapping[str, Any], methods: list[Mapping[str, Any]]) -> list[str]:
    ids: set[str] = set()
    floors = report.get("noise_floors")
    if isinstance(floors, Mapping):
        ids |= {str(v["definition"]) for v in floors.values() if isinstance(v, Mapping) and v.get("definition")}
    for entry in methods:
        for metric in (entry.get("metrics") or {}).values() if isinstance(entry.get("metrics"), Mapping) else ():
            if isinstance(metric, Mapping) and metric.get("definition"):
                ids.add(str(metric["definition"]))
        plots = entry.get("plots") if isinstance(entry.get("plots"), Mapping) else {}
        if plots.get("eps"):
            ids.add(EPS_DEFINITION)
        if plots.get("worst_examples"):
            ids.add(MARGIN_DEFINITION)
        if isinstance(plots.get("mia_roc"), Mapping):
            ids.add(str(plots["mia_roc"].get("definition") or ROC_DEFINITION))
    return sorted(ids)


def _definitions(ids: list[str]) -> str:
    body = "".join(f'<tr><th scope="row"><code>{_esc(i)}</code></th><td>{_esc(describe_definition(i))}</td></tr>'
                   for i in ids) or f"<tr><td colspan=2>{DASH}</td></tr>"
    return ('<table id="definitions"><thead><tr><th scope="col">Definition id</th><th scope="col">Meaning</th>'
            f"</tr></thead><tbody>{body}</tbody></table>"
            "<p>Full definitions: METRICS.md in the expunge documentation.</p>")


def _cost_plot(methods: list[Mapping[str, Any]]) -> str:
    rows = [(_name(m), _number(_get(m, "metrics", "cost_gradient_ratio", "value")),
             _number(_get(m, "metrics", "cost_time_ratio", "value"))) for m in methods if _ok(m)]
    rows = [r for r in rows if any(v is not None and v > 0 and math.isfinite(v) for v in r[1:])]
    if not rows:
        return _no_plot("Cost vs retraining")
    ids = sorted({str(d) for m in methods for d in (_get(m, "metrics", "cost_gradient_ratio", "definition"),
                                                     _get(m, "metrics", "cost_time_ratio", "definition")) if d})
    return _draw(_plot_cost(rows),
                 "Bar chart, log scale: cost of each method relative to retraining the oracle (1 = as expensive "
                 "as retraining); " + "; ".join(f"{n}: {_fmt(g)} gradients, {_fmt(t)} time" for n, g, t in rows),
                 "Cost relative to retraining (" + ", ".join(f"<code>{_esc(i)}</code>" for i in ids) +
                 "); the red line is retraining itself.")


CSS = """
:root { --good:#d8f0dc; --warn:#fdf0c4; --bad:#f8d3cf; --na:#eeeeee; --ink:#1d2327; --muted:#5f6b73; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0 auto; padding: 1.2rem 1.6rem 3rem; max-width: 1500px; line-height: 1.4;
       background: #fff; }
h1 { font-size: 1.55rem; margin: 0 0 .6rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .6rem; border-bottom: 2px solid #d0d7de; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .3rem; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .85em; }
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
.good { background: var(--good); } .warn { background: var(--warn); } .bad { background: var(--bad); }
.na { background: var(--na); }
#summary td.failed, p.failed { background: var(--bad); text-align: left; font-weight: 600; white-space: normal; }
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
@media print { body { max-width: none; padding: 0; } h2 { break-after: avoid; } figure, tr { break-inside: avoid; } }
"""


def render_html(report: Mapping[str, Any]) -> str:
    """The audit ``report`` dict as one self-contained HTML page (inline CSS and images, no scripts)."""
    if not isinstance(report, Mapping):
        raise ExpungeError("render_html needs the audit report dict (AuditReport.to_json()), "
                           f"got {type(report).__name__}")
    methods = _methods(report)
    scenario_name = _get(report, "scenario", "name") or "audit"
    plot_sections = "".join(f'<h3>{_esc(_name(m))}</h3>{_method_plots(m, report)}' for m in methods if _ok(m))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="expunge {_esc(report.get('expunge_version') or '')}">
<title>expunge audit: {_esc(scenario_name)}</title>
<style>{CSS}</style>
</head>
<body>
{_header(report)}
<main>
<section id="verdict-section"><h2>Verdict</h2>{_verdicts(report, methods)}</section>
<section id="summary-section"><h2>Summary</h2>{_summary_table(report, methods)}
<div class="legend" id="rule">{_rule_text()}</div></section>
<section id="floors-section"><h2>Noise floors (retraining vs retraining)</h2>{_noise_floor_table(report)}</section>
<section id="plots-section"><h2>Plots</h2>{_cost_plot(methods)}{plot_sections}</section>
<section id="details-section"><h2>All metrics per method</h2>{"".join(_details(m, report) for m in methods)}</section>
<section id="definitions-section"><h2>Definitions</h2>{_definitions(_definition_ids(report, methods))}</section>
</main>
<footer>Generated by expunge {_esc(report.get('expunge_version') or DASH)}. This page is self-contained: it loads
nothing from the network. The same data is in report.json beside it.</footer>
</body>
</html>
"""


def write_report(report: Mapping[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir``; return their paths.

    Both are rendered in memory first and each file is written to a temporary name in
    ``out_dir`` and renamed into place, so if rendering fails (or the disk fills) an
    existing good report is left untouched and no partial file remains.
    """
    out_dir = Path(out_dir)
    report_json = json_text(report, indent=1)
    html_text = render_html(report)

    def writer(text: str) -> Callable[[Path], None]:
        return lambda tmp: tmp.write_text(text, encoding="utf-8")

    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    atomic_write(json_path, writer(report_json))
    atomic_write(html_path, writer(html_text))
    return json_path, html_path
