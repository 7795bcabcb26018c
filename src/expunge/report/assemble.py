"""From the audit's report dict (format 2) to a plain view model of the page.

:func:`assemble` reads the report dict (``AuditReport.to_json()`` or ``report.json``)
and returns a :class:`ReportView`: header facts, the headline columns, per method its
headline cells, every result row, plots, cost facts and verdict, the noise floors, the
rules, the definitions used and the metrics that did not apply. Numbers arrive here as
:class:`~expunge.audit.results.MetricResult` rows and leave as display text; nothing is
judged here (the judgements are stored in the rows by :mod:`expunge.audit.verdict`) and
no metric is known by name, except the two cost rows drawn in the cost chart. No HTML.

Every field may be missing, null, NaN or of the wrong type: a report of a partly failed
audit is still worth filing, so gaps become "–" instead of errors.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from expunge.audit.results import MetricResult
from expunge.audit.verdict import NAMES as REFERENCE_NAMES
from expunge.errors import ExpungeError

FORMAT = 2
DASH = "–"
JUDGEMENTS = ("good", "warn", "bad", "na")
# Rows drawn in the cost chart: ratios to retraining the oracle with the recipe.
COST_GRADIENTS, COST_TIME = "cost_gradients", "cost_time"
# Details worth a place in the summary cell, with how to say them; all details appear in the details table.
SUMMARY_DETAILS = {"ceiling": "ceiling {}", "n_shadows": "{} shadows", "single_model_oracle": "single model {}"}
MIB = 2 ** 20


# ----------------------------------------------------------------------------- the view model
class Fact(NamedTuple):
    """A labelled line of text (header tables, cost facts)."""

    label: str
    text: str


@dataclass(frozen=True)
class Cell:
    """One result row as shown: value, reference, extras, definition and the stored judgement."""

    key: str  # metric, or metric/split
    label: str
    value: str  # "92.4 ± 1.6%"
    reference: str  # "oracle 60.8 ± 10.9", "floor 0.185", "target 1×" or ""
    reference_kind: str
    extras: tuple[str, ...]  # for the summary: N (floors depend on it), ceiling, shadow models
    chance: str  # "chance 0.5", or "" where a coin flip has no value
    details: tuple[str, ...]  # every detail of the row, "name value"
    n_models: str
    definition: str
    judgement: str  # good | warn | bad | na (a CSS class)
    reason: str


@dataclass(frozen=True)
class Column:
    """A headline column of the summary: one row key, its label and the definition ids behind it."""

    key: str
    label: str
    definitions: tuple[str, ...]


@dataclass(frozen=True)
class PlotView:
    kind: str
    title: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class MethodView:
    name: str
    kind: str
    paper: str
    hyperparameters: str
    ok: bool
    status: str
    error: str
    traceback: str | None
    verdict: str  # good | warn | bad | na
    verdict_text: str
    headline: tuple[Cell | None, ...]  # aligned with ReportView.columns
    rows: tuple[Cell, ...]
    plots: tuple[PlotView, ...]
    cost: tuple[Fact, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class FloorRow:
    """A noise floor: the statistic between two independent oracle populations."""

    label: str
    key: str
    split: str
    value: str  # one value, or "per method"
    per_method: tuple[Fact, ...]  # (method, value) where the floor differs per method
    resolution: str  # "N 8 · ceiling 2 · chance 0.5"
    definition: str


class CostBar(NamedTuple):
    method: str
    gradients: float | None
    time: float | None


class FrontierPoint(NamedTuple):
    """One method on the quality-vs-cost plane: per-request cost and forget KLoM relative to its floor."""

    method: str
    cost: float
    klom_over_floor: float


@dataclass(frozen=True)
class Generation:
    """One forget question: the true answer and each population's greedy answer (member 0)."""

    question: str
    truth: str
    answers: tuple[Fact, ...]  # (population, answer)


def _generations(report: Mapping[str, Any]) -> tuple[Generation, ...]:
    return tuple(Generation(_text(g.get("question")), _text(g.get("truth")),
                            tuple(Fact(_text(k), _text(v)) for k, v in _mapping(g.get("answers")).items()))
                 for g in _list(report.get("generations")) if isinstance(g, Mapping))


@dataclass(frozen=True)
class Rule:
    label: str
    rule: str
    decides_verdict: bool


@dataclass(frozen=True)
class PopulationRow:
    role: str
    seeds: str
    loaded: str
    trained: str
    key: str


@dataclass(frozen=True)
class ReportView:
    title: str
    expunge_version: str
    resolution: str
    low_resolution: str  # the warning sentence for a quick audit, else ""
    scenario: tuple[Fact, ...]
    run: tuple[Fact, ...]
    populations: tuple[PopulationRow, ...]
    columns: tuple[Column, ...]
    methods: tuple[MethodView, ...]
    floors: tuple[FloorRow, ...]
    rules: tuple[Rule, ...]
    definitions: tuple[Fact, ...]  # (definition id, text)
    not_applicable: tuple[Fact, ...]  # (metric, reason)
    cost_bars: tuple[CostBar, ...]
    cost_definitions: tuple[str, ...]
    frontier: tuple[FrontierPoint, ...] = ()
    generations: tuple[Generation, ...] = ()  # language models: forget questions answered before and after


# ----------------------------------------------------------------------------- formatting
def number(value: Any) -> float | None:
    """A real number as float (NaN and ±inf kept); None, strings and bools as None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def fmt(value: Any, digits: int = 3) -> str:
    """``digits`` decimals (thousands separated from 1,000); NaN and infinities spelled out; None as "–"."""
    x = number(value)
    if x is None:
        return DASH if value is None or value == "" else str(value)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def fmt_plain(value: Any) -> str:
    """A number without a stated precision: integers as integers, else three significant digits."""
    x = number(value)
    if x is None or not math.isfinite(x) or abs(x) >= 1000:
        return fmt(value)
    if x == int(x):
        return f"{x:.0f}"
    return f"{x:.3g}"


def _with_unit(text: str, unit: str) -> str:
    if not unit or text in (DASH, "NaN", "∞", "−∞"):
        return text
    return f"{text}{unit}" if unit in ("%", "×") else f"{text} {unit}"


def _text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else []


def _int(value: Any, default: int) -> int:
    x = number(value)
    return int(x) if x is not None and math.isfinite(x) else default


def _inline(value: Any) -> str:
    """A mapping as ``k=v, ...`` (nested ones in braces), a list as ``a, b``, anything else as text."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_inline(v) if not isinstance(v, Mapping) else '{' + _inline(v) + '}'}"
                         for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, float):
        return fmt_plain(value)
    return _text(value, DASH)


def _mib(value: Any) -> str:
    x = number(value)
    return DASH if x is None else f"{fmt(x / MIB, 1)} MiB"


# ----------------------------------------------------------------------------- rows
def _row(data: Any) -> MetricResult | None:
    """A stored row as a :class:`MetricResult`, tolerating gaps and wrong types (null value = NaN)."""
    if not isinstance(data, Mapping):
        return None

    def optional(name: str) -> float | None:
        return number(data.get(name))

    value = number(data.get("value"))
    return MetricResult(
        metric=_text(data.get("metric"), "unnamed metric"), split=_text(data.get("split"), "all"),
        method=_text(data.get("method")), value=math.nan if value is None else value,
        definition=_text(data.get("definition")), reference_kind=_text(data.get("reference_kind"), "none"),
        reference=optional("reference"), spread=optional("spread"), reference_spread=optional("reference_spread"),
        n_models=_int(data.get("n_models"), 0), unit=_text(data.get("unit")), label=_text(data.get("label")),
        chance=optional("chance"), details=_mapping(data.get("details")), headline=_int(data.get("headline"), 0),
        decides_verdict=bool(data.get("decides_verdict")), digits=min(max(_int(data.get("digits"), 3), 0), 10),
        judgement=_text(data.get("judgement"), "na"), judgement_reason=_text(data.get("judgement_reason")))


def _value_text(value: float | None, spread: float | None, digits: int) -> str:
    text = fmt(value, digits)
    if spread is not None and text not in (DASH, "NaN") and not math.isnan(spread):
        text += f" ± {fmt(spread, digits)}"
    return text


def _reference_text(row: MetricResult) -> str:
    if row.reference_kind == "none":
        return ""
    name = REFERENCE_NAMES.get(row.reference_kind, row.reference_kind)
    if row.reference_kind == "constant":
        return f"{name} {_with_unit(fmt_plain(row.reference), row.unit)}"
    return f"{name} {_value_text(row.reference, row.reference_spread, row.digits)}"


def _detail_text(value: Any) -> str:
    text = fmt_plain(value) if number(value) is not None else _inline(value)
    return text if len(text) <= 160 else text[:157] + "…"


def _cell(row: MetricResult) -> Cell:
    details = dict(row.details)
    extras = [f"N {row.n_models}"] if row.reference_kind == "noise_floor" and row.n_models else []
    extras += [form.format(fmt_plain(details[name])) for name, form in SUMMARY_DETAILS.items() if name in details]
    judgement = row.judgement if row.judgement in JUDGEMENTS else "na"
    return Cell(key=row.key, label=row.label or row.key,
                value=_with_unit(_value_text(row.value, row.spread, row.digits), row.unit),
                reference=_reference_text(row), reference_kind=row.reference_kind, extras=tuple(extras),
                chance="" if row.chance is None else f"chance {fmt_plain(row.chance)}",
                details=tuple(f"{name} {_detail_text(v)}" for name, v in details.items()),
                n_models=str(row.n_models) if row.n_models else DASH, definition=row.definition,
                judgement=judgement, reason=row.judgement_reason)


def _same(values: list[float | None]) -> bool:
    first = values[0]
    for other in values[1:]:
        if first is None or other is None:
            if first is not other:
                return False
        elif not (math.isclose(first, other, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(first) and math.isnan(other))):
            return False
    return True


def _floors(rows: list[MetricResult]) -> tuple[FloorRow, ...]:
    """Noise floors by row key, in order of appearance; per method where they differ (U-LiRA's do)."""
    groups: dict[str, list[MetricResult]] = {}
    for row in rows:
        if row.reference_kind == "noise_floor":
            groups.setdefault(row.key, []).append(row)
    floors = []
    for key, group in groups.items():
        first = group[0]
        references = [r.reference for r in group]
        per_method: tuple[Fact, ...] = ()
        if _same(references):
            value = fmt(first.reference, first.digits)
        else:
            value = "per method"
            per_method = tuple(Fact(r.method, fmt(r.reference, r.digits)) for r in group)
        n_models = sorted({r.n_models for r in group if r.n_models})
        resolution = [f"N {', '.join(str(n) for n in n_models)}"] if n_models else []
        resolution += [form.format(fmt_plain(first.details[name])) for name, form in SUMMARY_DETAILS.items()
                       if name in first.details]
        if first.chance is not None:
            resolution.append(f"chance {fmt_plain(first.chance)}")
        definitions = sorted({r.definition for r in group if r.definition})
        floors.append(FloorRow(label=first.label or key, key=key, split=first.split, value=value,
                               per_method=per_method, resolution=" · ".join(resolution),
                               definition=", ".join(definitions)))
    return tuple(floors)


def _columns(rows: list[MetricResult]) -> tuple[Column, ...]:
    """Headline columns: row keys with ``headline > 0``, ordered by ``headline`` then first appearance."""
    position: dict[str, int] = {}
    labels: dict[str, str] = {}
    definitions: dict[str, set[str]] = {}
    for row in rows:
        if row.headline <= 0:
            continue
        position[row.key] = min(position.get(row.key, row.headline), row.headline)
        if not labels.get(row.key):
            labels[row.key] = row.label
        if row.definition:
            definitions.setdefault(row.key, set()).add(row.definition)
    order = sorted(position, key=lambda key: position[key])  # stable: ties keep first appearance
    return tuple(Column(key=key, label=labels.get(key) or key, definitions=tuple(sorted(definitions.get(key, ()))))
                 for key in order)


# ----------------------------------------------------------------------------- methods
def _cost_facts(cost: Mapping[str, Any]) -> tuple[Fact, ...]:
    if not cost:
        return ()
    facts = [Fact(label, fmt_plain(cost.get(name))) for name, label in
             (("example_gradients", "example gradients"), ("forward_examples", "forward examples"),
              ("wall_time_s", "wall time (s)"), ("members", "members"))]
    if any(name in cost for name in ("peak_rss_bytes", "peak_cuda_bytes")):
        memory = f"RSS {_mib(cost.get('peak_rss_bytes'))}"
        if cost.get("peak_cuda_bytes") is not None:
            memory += f", CUDA {_mib(cost.get('peak_cuda_bytes'))}"
        scope = _text(cost.get("peak_memory_scope"))
        facts.append(Fact("peak memory", memory + (f" (scope: {scope})" if scope else "")))
    diverged = _list(cost.get("diverged"))
    if diverged:
        facts.append(Fact("diverged members", f"{len(diverged)}: {', '.join(_text(d) for d in diverged)}"))
    return tuple(facts)


def _method(entry: Mapping[str, Any], rows: list[MetricResult], columns: tuple[Column, ...]) -> MethodView:
    name = _text(entry.get("method"), "unnamed method")
    status = _text(entry.get("status"), "ok")
    ok = status == "ok"
    mine = [r for r in rows if r.method == name]
    by_key: dict[str, MetricResult] = {}
    for row in mine:
        by_key.setdefault(row.key, row)
    verdict = _mapping(entry.get("verdict"))
    verdict_class = _text(verdict.get("class"), "na")
    verdict_text = _text(verdict.get("text")) or \
        (f"{status}: {_text(entry.get('error')) or 'no reason recorded'}" if not ok else "no verdict recorded")
    hyperparameters = entry.get("hyperparameters")
    plots = tuple(PlotView(_text(p.get("kind"), "unnamed"), _text(p.get("title")), _mapping(p.get("data")))
                  for p in _list(entry.get("plots")) if isinstance(p, Mapping))
    cost = _mapping(entry.get("cost"))
    notes = [_text(n) for n in _list(entry.get("notes")) + _list(cost.get("notes")) if n]
    shown = _inline(hyperparameters) if isinstance(hyperparameters, Mapping) and hyperparameters else "defaults"
    tuned = _mapping(entry.get("tuned"))
    if tuned:
        shown = (f"tuned ({_text(tuned.get('trials'))} trials on the validation forget set "
                 f"{_text(tuned.get('validation_rule'))}, study {_text(tuned.get('name'))}): {shown}")
    return MethodView(
        name=name, kind=_text(entry.get("kind")), paper=_text(entry.get("paper")),
        hyperparameters=shown,
        ok=ok, status=status, error=_text(entry.get("error")) or ("" if ok else "no reason recorded"),
        traceback=_text(entry.get("traceback")) or None,
        verdict=verdict_class if verdict_class in JUDGEMENTS else "na", verdict_text=verdict_text,
        headline=tuple(_cell(by_key[c.key]) if c.key in by_key else None for c in columns),
        rows=tuple(_cell(r) for r in mine), plots=plots, cost=_cost_facts(cost),
        notes=tuple(dict.fromkeys(notes)))


def _frontier(methods: tuple[MethodView, ...], rows: list[MetricResult]) -> tuple[FrontierPoint, ...]:
    points = []
    for method in methods:
        mine = {r.key: r for r in rows if r.method == method.name}
        cost, klom = mine.get(COST_GRADIENTS), mine.get("klom_p95/forget")
        if cost is None or klom is None or not klom.reference or not method.ok:
            continue
        if math.isfinite(cost.value) and math.isfinite(klom.value) and klom.reference > 0:
            points.append(FrontierPoint(method.name, cost.value, klom.value / klom.reference))
    return tuple(points)


def _cost_bars(methods: tuple[MethodView, ...], rows: list[MetricResult]) -> tuple[CostBar, ...]:
    bars = []
    for method in methods:
        found = {r.metric: r.value for r in rows if r.method == method.name and r.metric in (COST_GRADIENTS, COST_TIME)}
        if found:
            bars.append(CostBar(method.name, found.get(COST_GRADIENTS), found.get(COST_TIME)))
    return tuple(bars)


# ----------------------------------------------------------------------------- header
def _seeds(seeds: Any) -> str:
    seeds = _list(seeds)
    if not seeds:
        return DASH
    if len(seeds) <= 3:
        return ", ".join(_text(s) for s in seeds)
    return f"{len(seeds)}: {_text(seeds[0])} … {_text(seeds[-1])}"


def _populations(report: Mapping[str, Any]) -> tuple[PopulationRow, ...]:
    populations = _mapping(report.get("populations"))
    seeds, cache = _mapping(populations.get("seeds")), _mapping(populations.get("cache"))
    planned = _mapping(_mapping(report.get("plan")).get("populations"))
    roles = list(dict.fromkeys([*seeds, *cache, *planned]))
    return tuple(PopulationRow(role=_text(role), seeds=_seeds(seeds.get(role)),
                               loaded=fmt_plain(_mapping(cache.get(role)).get("loaded")),
                               trained=fmt_plain(_mapping(cache.get(role)).get("trained")),
                               key=_text(_mapping(planned.get(role)).get("key"), DASH))
                 for role in roles)


def _retrain_sentence(timings: Mapping[str, Any]) -> str:
    retrain = _mapping(timings.get("retrain"))
    if not retrain:
        return DASH
    facts = [f"{fmt_plain(retrain.get('example_gradients'))} example gradients",
             f"{fmt_plain(retrain.get('wall_time_s'))} s wall time per member"]
    if retrain.get("peak_rss_bytes") is not None:
        facts.append(f"peak RSS {_mib(retrain.get('peak_rss_bytes'))}")
    measured = _text(retrain.get("measured")) or "where retraining was timed is not recorded"
    return f"{measured}; {', '.join(facts)}"


def _header(report: Mapping[str, Any]) -> tuple[tuple[Fact, ...], tuple[Fact, ...]]:
    scenario = _mapping(report.get("scenario"))
    populations = _mapping(report.get("populations"))
    machine = report.get("machine")
    recipe = scenario.get("recipe")
    sizes = " / ".join(fmt_plain(scenario.get(k)) for k in ("n_train", "n_test", "n_forget"))
    scenario_facts = (
        Fact("Scenario", _text(scenario.get("name"), DASH)), Fact("Dataset", _text(scenario.get("dataset"), DASH)),
        Fact("Task", _text(scenario.get("task"), DASH)), Fact("Forget rule", _text(scenario.get("forget_rule"), DASH)),
        Fact("Train / test / forget examples", sizes),
        Fact("Recipe", _inline(recipe) if recipe is not None else DASH),
    )
    oracle_cost = _mapping(populations.get("oracle_cost"))
    oracle_text = DASH
    if oracle_cost:
        oracle_text = (f"{fmt_plain(oracle_cost.get('example_gradients'))} example gradients, "
                       f"{fmt_plain(oracle_cost.get('wall_time_s'))} s wall time")
        notes = [_text(n) for n in _list(oracle_cost.get("notes")) if n]
        if notes:
            oracle_text += "; " + "; ".join(notes)
    timings = _mapping(report.get("timings"))
    run_facts = (
        Fact("Date", _text(report.get("created"), DASH)),
        Fact("Machine", _inline(machine) if machine is not None else DASH),
        Fact("expunge version", _text(report.get("expunge_version"), DASH)),
        Fact("Engine version", _text(report.get("engine_version"), DASH)),
        Fact("Executor", _text(report.get("executor"), DASH)),
        Fact("Resolution", _text(report.get("resolution"), DASH)),
        Fact("N models per population", fmt_plain(populations.get("members"))),
        Fact("Shadow models (U-LiRA)", fmt_plain(populations.get("shadow_members"))),
        Fact("Retain sample", fmt_plain(populations.get("retain_sample"))),
        Fact("Retraining (the cost reference)", _retrain_sentence(timings)),
        Fact("Oracle population", oracle_text),
        Fact("Audit wall time (s)", fmt_plain(timings.get("audit_wall_time_s"))),
    )
    return scenario_facts, run_facts


def _low_resolution(report: Mapping[str, Any], rows: list[MetricResult]) -> str:
    if report.get("resolution") != "quick":
        return ""
    populations = _mapping(report.get("populations"))
    ceilings = sorted({fmt_plain(r.details["ceiling"]) for r in rows if "ceiling" in r.details})
    eps = f", eps above the ceiling {' / '.join(ceilings)} cannot be resolved" if ceilings else ""
    return (f"(quick audit): only {fmt_plain(populations.get('members'))} models per population and "
            f"{fmt_plain(populations.get('shadow_members'))} shadow models. Noise floors are wide{eps} and small "
            "differences from retraining go undetected. Use for development; rerun at full resolution before "
            "filing this as evidence.")


# ----------------------------------------------------------------------------- the whole report
def _check_format(report: Any) -> None:
    if not isinstance(report, Mapping):
        raise ExpungeError("render_html needs the audit report dict (AuditReport.to_json() or report.json), "
                           f"got {type(report).__name__}")
    version = report.get("format")
    if version is not None and version != FORMAT:
        raise ExpungeError(f"report format {version!r} cannot be rendered by this version of expunge (it renders "
                           f"format {FORMAT}); re-run the audit to get a current report")
    for name in ("methods", "results"):
        value = report.get(name)
        if value is not None and not isinstance(value, list):
            raise ExpungeError(f"report[{name!r}] must be a list, got {type(value).__name__}")
    if version is None and any(isinstance(m, Mapping) and "metrics" in m for m in report.get("methods") or []):
        raise ExpungeError("this report predates format 2 (its methods carry 'metrics' dicts, not result rows); "
                           "re-run the audit to get a current report")


def assemble(report: Mapping[str, Any]) -> ReportView:
    """The view model of ``report`` (a format-2 report dict); raises ExpungeError for what is not one."""
    _check_format(report)
    rows = [r for r in (_row(d) for d in report.get("results") or []) if r is not None]
    columns = _columns(rows)
    entries = [m for m in report.get("methods") or [] if isinstance(m, Mapping)]
    named = {_text(m.get("method"), "unnamed method") for m in entries}
    # Rows of a method without an entry still get shown.
    for orphan in dict.fromkeys(r.method for r in rows if r.method not in named):
        entries.append({"method": orphan, "status": "ok",
                        "verdict": {"class": "na", "text": "no method entry in this report"}})
    methods = tuple(_method(m, rows, columns) for m in entries)
    metrics = _mapping(report.get("metrics"))
    texts = _mapping(metrics.get("definitions"))
    used = {r.definition for r in rows if r.definition}
    used |= {_text(p.data["definition"]) for m in methods for p in m.plots if p.data.get("definition")}
    definitions = tuple(Fact(i, _text(texts.get(i)) or "No description stored in this report; see METRICS.md.")
                        for i in sorted(used))
    rules = tuple(Rule(_text(r.get("label"), DASH), _text(r.get("rule"), DASH), bool(r.get("verdict")))
                  for r in _list(metrics.get("rules")) if isinstance(r, Mapping))
    not_applicable = tuple(Fact(_text(k), _text(v, DASH)) for k, v in _mapping(metrics.get("not_applicable")).items())
    scenario, run = _header(report)
    cost_definitions = tuple(sorted({r.definition for r in rows if r.metric in (COST_GRADIENTS, COST_TIME)
                                     and r.definition}))
    return ReportView(
        title=_text(_mapping(report.get("scenario")).get("name")) or "audit",
        expunge_version=_text(report.get("expunge_version")), resolution=_text(report.get("resolution")),
        low_resolution=_low_resolution(report, rows), scenario=scenario, run=run,
        populations=_populations(report), columns=columns, methods=methods, floors=_floors(rows), rules=rules,
        definitions=definitions, not_applicable=not_applicable, cost_bars=_cost_bars(methods, rows), frontier=_frontier(methods, rows),
        cost_definitions=cost_definitions, generations=_generations(report))
