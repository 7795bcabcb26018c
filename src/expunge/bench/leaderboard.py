"""A leaderboard over a grid's results: means over scenario seeds, bootstrap intervals, ties.

Input: the results store's DataFrame, one row per metric result of one grid cell
(:data:`INPUT_COLUMNS`; the columns of :class:`~expunge.audit.results.MetricResult` plus
the grid cell's ``dataset``, ``forget_rule``, ``members``, ``scenario_seed`` and
``hyperparameters``). A **scenario** is ``(dataset, forget_rule, members)``; its seeds
are replicates. :func:`leaderboard` returns one row per method x scenario x headline
metric: the mean over seeds with a bootstrap interval over seeds (METRICS.md, "Relative
to the floor": 10,000 resamples of seeds, percentile method), the reference (mean over
seeds), the value relative to it, and whether the method is tied for best.

The value relative to its reference follows the audit's reading of each reference kind:
a **ratio** to a noise floor or a constant target (``F / F_floor``, ``KLoM / floor``,
cost in multiples of retraining), a **difference** to the oracle's value (accuracies,
MIA-Efficacy). It is computed per seed (each seed's run has its own oracle and floor,
measured with the same N) and then averaged.

Renderings (the terminal table and the HTML grid report) live in
:mod:`expunge.report.grid`; this module computes, the report draws.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from expunge.errors import ExpungeError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["INPUT_COLUMNS", "OUTPUT_COLUMNS", "SCENARIO", "TIE_RULE", "FewSeedsWarning", "directions",
           "leaderboard", "metric_key", "results_frame", "scenario_label"]

SCENARIO = ("dataset", "forget_rule", "members")
INPUT_COLUMNS = ("dataset", "forget_rule", "method", "hyperparameters", "scenario_seed", "members", "metric",
                 "split", "value", "spread", "reference", "reference_kind", "definition", "n_models", "unit",
                 "headline", "label")
OUTPUT_COLUMNS = ("dataset", "forget_rule", "members", "scenario", "method", "metric", "label", "unit", "headline",
                  "definition", "n_seeds", "seeds", "mean", "ci_low", "ci_high", "reference", "reference_kind",
                  "relative_kind", "relative", "relative_low", "relative_high", "direction", "ranked_on", "score",
                  "score_low", "score_high", "rank", "best", "tied_best", "note")

# How a metric is read (see directions()): a lower or a higher value is better, or the closest to its reference.
LOWER, HIGHER, CLOSEST, UNKNOWN = "lower", "higher", "closest", "unknown"
_RULE_DIRECTIONS = {"at_most": LOWER, "at_most_fraction": LOWER, "at_least": HIGHER, "at_least_fraction": HIGHER,
                    "band": CLOSEST, "within": CLOSEST}
RATIO, DIFFERENCE, VALUE = "ratio", "difference", "value"
_RELATIVE_KINDS = {"noise_floor": RATIO, "constant": RATIO, "oracle": DIFFERENCE}
WIDE_BELOW = 4  # 2 or 3 seeds: the interval exists but is wide

TIE_RULE = (
    "Within a scenario and a headline metric, the best method has the best mean ranking score over seeds (the lowest, "
    "or the highest where higher is better). Every method whose 95% bootstrap interval of that score overlaps the best "
    "method's interval (closed intervals: low_a <= high_b and low_b <= high_a) is tied for best, the best included. "
    "The ranking score is the value relative to its reference (ratio to a noise floor or constant, difference to the "
    "oracle) for metrics where lower or higher is better, and the distance |value - reference| for metrics judged by "
    "closeness to the reference (accuracies and MIA-Efficacy against the oracle, U-LiRA AUC against its floor); where "
    "a reference is unusable (zero, missing) in a scenario, its methods are ranked on the value itself. A method with "
    "one seed has no interval and is compared as the point [mean, mean]. Overlapping intervals are not a test: 'tied' "
    "means 'not shown to differ with these seeds'.")


class FewSeedsWarning(UserWarning):
    """Intervals from 2 or 3 scenario seeds: they exist but are wide (a percentile bootstrap of 2 values spans them)."""


def metric_key(metric: str, split: str) -> str:
    """``metric`` for split-less rows, else ``metric/split`` (as :attr:`MetricResult.key`)."""
    return metric if split in ("all", "", None) else f"{metric}/{split}"


def scenario_label(dataset: Any, forget_rule: Any, members: Any) -> str:
    """``dataset / forget rule / N=members``: how a scenario is named in tables and figures."""
    return f"{dataset} / {forget_rule} / N={members}"


def directions() -> dict[str, str]:
    """Row key -> ``lower`` | ``higher`` | ``closest``, from the closeness rules of the registered metrics."""
    from expunge.audit.metric import METRICS

    found: dict[str, str] = {}
    for metric in METRICS.as_dict().values():
        for row in metric.rows:
            direction = _RULE_DIRECTIONS.get(row.closeness.rule)
            if direction:
                found.setdefault(row.key, direction)
    return found


def results_frame(rows: Sequence[Any], dataset: str, forget_rule: str, members: int, scenario_seed: int,
                  hyperparameters: dict[str, Any] | None = None) -> pd.DataFrame:
    """One grid cell's :class:`~expunge.audit.results.MetricResult` rows as a results frame (:data:`INPUT_COLUMNS`).

    For notebooks and tests without a results store: concatenate the frames of several
    cells (``pandas.concat``) and pass them to :func:`leaderboard`. ``hyperparameters``:
    method name -> its hyperparameters (stored as JSON text).
    """
    import json

    pd = _pandas()
    hyperparameters = hyperparameters or {}
    records = [{"dataset": dataset, "forget_rule": forget_rule, "method": r.method,
                "hyperparameters": json.dumps(hyperparameters.get(r.method, {}), sort_keys=True, default=str),
                "scenario_seed": int(scenario_seed), "members": int(members), "metric": r.metric,
                "split": r.split, "value": float(r.value),
                "spread": math.nan if r.spread is None else float(r.spread),
                "reference": math.nan if r.reference is None else float(r.reference),
                "reference_kind": r.reference_kind, "definition": r.definition, "n_models": int(r.n_models),
                "unit": r.unit, "headline": int(r.headline), "label": r.label}
               for r in rows]
    return pd.DataFrame(records, columns=list(INPUT_COLUMNS))


def _pandas():
    try:
        import pandas
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ExpungeError("the grid leaderboard needs pandas: pip install pandas") from error
    return pandas


def _check(frame: pd.DataFrame) -> None:
    missing = [c for c in ("dataset", "forget_rule", "members", "method", "scenario_seed", "metric", "split", "value")
               if c not in frame.columns]
    if missing:
        raise ExpungeError(f"the results frame lacks the column(s) {', '.join(missing)}; a grid results frame has "
                           f"{', '.join(INPUT_COLUMNS)}")


def _direction(rows: pd.DataFrame, key: str, known: dict[str, str]) -> str:
    if "lower_is_better" in rows.columns:
        stated = [v for v in rows["lower_is_better"].tolist() if v is not None and not _isnan(v)]
        if stated:
            return LOWER if bool(stated[0]) else HIGHER
    if key in known:
        return known[key]
    return CLOSEST if "oracle" in set(rows.get("reference_kind", [])) else UNKNOWN


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _relative(value: float, reference: float, kind: str) -> float:
    if kind == DIFFERENCE:
        return value - reference
    if kind == RATIO:
        return value / reference if math.isfinite(reference) and reference != 0 else math.nan
    return value


def _intervals(samples: np.ndarray, confidence: float, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap intervals of the mean along the last axis, for a batch ``[cells, seeds]``.

    The resampled seed indices are drawn once per seed count from ``seed`` and shared by the
    batch, so a cell's interval does not depend on which other cells are in the frame.
    """
    from scipy import stats

    cells, n = samples.shape
    batch = max(1, min(resamples, 4_000_000 // max(1, cells * n)))
    keyword = "rng" if "rng" in stats.bootstrap.__code__.co_varnames else "random_state"
    result = stats.bootstrap((samples,), np.mean, axis=-1, vectorized=True, n_resamples=resamples, batch=batch,
                             confidence_level=confidence, method="percentile",
                             **{keyword: np.random.default_rng(seed)})
    low, high = np.asarray(result.confidence_interval.low, float), np.asarray(result.confidence_interval.high, float)
    # A cell whose seeds all agree has a zero-width interval (scipy may return NaN there).
    constant = np.all(samples == samples[:, :1], axis=1)
    low[constant], high[constant] = samples[constant, 0], samples[constant, 0]
    return low, high


def leaderboard(frame: pd.DataFrame, metrics: Sequence[str] | None = None, confidence: float = 0.95,
                resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """One row per method x scenario x headline metric: mean over scenario seeds, bootstrap interval, ties.

    ``frame``: the results store's rows (:data:`INPUT_COLUMNS`; ``lower_is_better`` optional,
    else the direction comes from the registered metric's closeness rule). ``metrics``: row
    keys (``"klom_p95/forget"``) or metric names (``"klom_p95"``) to rank; default: every
    headline row, in headline order. ``confidence``, ``resamples``, ``seed``: the bootstrap
    over seeds (``scipy.stats.bootstrap``, percentile method, seeded: same frame, same
    intervals).

    Columns (:data:`OUTPUT_COLUMNS`): ``mean``, ``ci_low``, ``ci_high`` of the value;
    ``reference`` (mean over seeds) and ``reference_kind``; ``relative`` (with its interval):
    per-seed ratio to a floor or constant, or difference to the oracle, averaged;
    ``direction`` (``lower``, ``higher``, ``closest`` to the reference, ``unknown``);
    ``score`` (with its interval): what methods are ranked on (``ranked_on`` says which);
    ``rank`` (1 = best), ``best``, ``tied_best`` (:data:`TIE_RULE`); ``note``: "1 seed: no
    interval", wide intervals from 2-3 seeds (also a :class:`FewSeedsWarning`), seeds
    dropped as not a number. Methods are told apart by ``method`` (a method run with
    two hyperparameter settings in one scenario is an error: give them distinct names).
    """
    pd = _pandas()
    _check(frame)
    if not 0 < confidence < 1:
        raise ExpungeError(f"confidence must be between 0 and 1 (e.g. 0.95); got {confidence}")
    if resamples < 100:
        raise ExpungeError(f"resamples must be at least 100 (METRICS.md uses 10,000); got {resamples}")
    data = frame.copy()
    data["key"] = [metric_key(m, s) for m, s in zip(data["metric"], data["split"])]
    headline = data["headline"].fillna(0).astype(int) if "headline" in data.columns else pd.Series(0, index=data.index)
    data["headline"] = headline
    if metrics is None:
        chosen = data[data["headline"] > 0]
        order = chosen.groupby("key")["headline"].min().sort_values(kind="stable")
        keys = list(order.index)
    else:
        available = set(data["key"])
        keys = []
        for name in metrics:
            matched = [name] if name in available else sorted(k for k in available if k.split("/")[0] == name)
            if not matched:
                raise ExpungeError(f"no results for metric {name!r} in the frame; present: "
                                   f"{', '.join(sorted(available))}")
            keys += [k for k in matched if k not in keys]
    data = data[data["key"].isin(keys)]
    duplicated = data.duplicated(["dataset", "forget_rule", "members", "scenario_seed", "method", "key"], keep=False)
    if duplicated.any():
        first = data[duplicated].iloc[0]
        raise ExpungeError(f"{first['method']!r} has several {first['key']} results for scenario "
                           f"{scenario_label(first['dataset'], first['forget_rule'], first['members'])} seed "
                           f"{first['scenario_seed']} (several hyperparameter settings?); give each setting its own "
                           "method name, or filter the frame to one")
    known = directions()

    cells: list[dict[str, Any]] = []
    for (dataset, rule, members, key), group in data.groupby(["dataset", "forget_rule", "members", "key"], sort=False):
        kinds = [k for k in group.get("reference_kind", pd.Series(dtype=object)).dropna().unique() if k != "none"]
        reference_kind = kinds[0] if kinds else "none"
        relative_kind = _RELATIVE_KINDS.get(reference_kind, VALUE)
        direction = _direction(group, key, known)
        for method, rows in group.groupby("method", sort=False):
            rows = rows.sort_values("scenario_seed")
            values = np.array([_float(v) for v in rows["value"]])
            references = np.array([_float(v) for v in rows["reference"]]) if "reference" in rows.columns \
                else np.full(len(rows), math.nan)
            finite = np.isfinite(values)
            first = rows.iloc[0]
            relatives = [_relative(v, r, relative_kind) for v, r in zip(values[finite], references[finite])]
            cells.append({
                "dataset": dataset, "forget_rule": rule, "members": members,
                "scenario": scenario_label(dataset, rule, members), "method": method, "metric": key,
                "label": str(first.get("label") or key), "unit": str(first.get("unit") or ""),
                "headline": int(first["headline"]), "definition": str(first.get("definition") or ""),
                "n_seeds": int(finite.sum()), "seeds": ",".join(str(s) for s in rows["scenario_seed"][finite]),
                "values": values[finite], "references": references[finite], "relatives": np.array(relatives),
                "reference_kind": reference_kind, "relative_kind": relative_kind, "direction": direction,
                "dropped": int((~finite).sum())})
    _rank(cells)
    _bootstrap(cells, confidence, resamples, seed)
    _ties(cells)
    wide = sum(1 for c in cells if 1 < c["n_seeds"] < WIDE_BELOW)
    if wide:
        warnings.warn(f"{wide} leaderboard cell(s) rest on 2-3 scenario seeds: their {confidence:.0%} intervals are "
                      "wide; add seeds to separate methods", FewSeedsWarning, stacklevel=2)
    out = pd.DataFrame([{c: cell.get(c) for c in OUTPUT_COLUMNS} for cell in cells], columns=list(OUTPUT_COLUMNS))
    position = {k: i for i, k in enumerate(keys)}
    out["_order"] = out["metric"].map(position)
    return out.sort_values(["dataset", "forget_rule", "members", "_order", "rank"], kind="stable",
                           na_position="last").drop(columns="_order").reset_index(drop=True)


def _rank(cells: list[dict[str, Any]]) -> None:
    """Choose each scenario x metric's ranking basis and per-seed scores (see :data:`TIE_RULE`)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["scenario"], cell["metric"]), []).append(cell)
    for group in groups.values():
        direction = group[0]["direction"]
        relatives_usable = all(np.all(np.isfinite(c["relatives"])) for c in group)
        for cell in group:
            if direction == CLOSEST:
                distance = np.abs(cell["values"] - cell["references"])
                if np.all(np.isfinite(distance)):
                    cell["ranked_on"], cell["scores"] = "|value - reference|", distance
                else:
                    cell["ranked_on"], cell["scores"] = "", None
            elif direction in (LOWER, HIGHER):
                if relatives_usable and cell["relative_kind"] != VALUE:
                    cell["ranked_on"], cell["scores"] = f"relative ({cell['relative_kind']})", cell["relatives"]
                else:
                    cell["ranked_on"], cell["scores"] = "value", cell["values"]
            else:
                cell["ranked_on"], cell["scores"] = "", None


def _bootstrap(cells: list[dict[str, Any]], confidence: float, resamples: int, seed: int) -> None:
    """Means and intervals of value, relative and score per cell; cells batched by their number of seeds."""
    by_count: dict[int, list[dict[str, Any]]] = {}
    for cell in cells:
        n = cell["n_seeds"]
        notes = []
        if cell["dropped"]:
            notes.append(f"{cell['dropped']} seed(s) not a number, left out")
        if n == 0:
            notes.append("no finite value")
        elif n == 1:
            notes.append("1 seed: no interval")
        elif n < WIDE_BELOW:
            notes.append(f"{n} seeds: wide interval")
        cell["note"] = "; ".join(notes)
        for name, samples in (("mean", cell["values"]), ("reference", cell["references"]),
                              ("relative", cell["relatives"]), ("score", cell["scores"])):
            cell[name] = float(np.mean(samples)) if samples is not None and len(samples) else math.nan
        for name in ("ci", "relative", "score"):
            cell[f"{name}_low"] = cell[f"{name}_high"] = math.nan
        if n >= 2:
            by_count.setdefault(n, []).append(cell)
    for n, group in by_count.items():
        stacked = [(cell, name, samples) for cell in group
                   for name, samples in (("ci", cell["values"]), ("relative", cell["relatives"]),
                                         ("score", cell["scores"]))
                   if samples is not None and np.all(np.isfinite(samples))]
        if not stacked:
            continue
        low, high = _intervals(np.stack([s for _, _, s in stacked]), confidence, resamples, seed)
        for (cell, name, _), lo, hi in zip(stacked, low, high):
            cell[f"{name}_low"], cell[f"{name}_high"] = float(lo), float(hi)


def _ties(cells: list[dict[str, Any]]) -> None:
    """Rank, best and tied-best per scenario x metric (:data:`TIE_RULE`)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for cell in cells:
        cell.update(rank=math.nan, best=False, tied_best=False)
        if math.isfinite(cell["score"]):
            groups.setdefault((cell["scenario"], cell["metric"]), []).append(cell)
    for group in groups.values():
        sign = -1.0 if group[0]["direction"] == HIGHER else 1.0
        group.sort(key=lambda c: sign * c["score"])
        for position, cell in enumerate(group, start=1):
            cell["rank"] = position
        best = group[0]
        best["best"] = True
        b_lo, b_hi = _bounds(best)
        for cell in group:
            lo, hi = _bounds(cell)
            cell["tied_best"] = bool(lo <= b_hi and b_lo <= hi)


def _bounds(cell: dict[str, Any]) -> tuple[float, float]:
    lo, hi = cell["score_low"], cell["score_high"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return cell["score"], cell["score"]
    return lo, hi
