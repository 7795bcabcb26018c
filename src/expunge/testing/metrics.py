"""The metric conformance suite: one set of checks every audit metric must pass.

Like scikit-learn's ``check_estimator``, it is public, so a metric shipped by another
package (through the ``expunge.metrics`` entry-point group) is held to the same contract
as the built-in ones::

    from expunge.testing import check_metric
    check_metric(MyMetric)                       # every check, on the default scenario
    check_metric(MyMetric, checks=["rows"])      # one check

Each check raises :class:`~expunge.testing.ContractViolation` naming itself:

- ``registry``: the class passes the registry's static check
  (:func:`~expunge.audit.metric.check_metric_class`);
- ``instantiable``: the class can be built with its defaults (or ``options``), and the
  instance's definition id looks like ``family@variant``;
- ``needs``: every need is a known task statistic or view, and a metric that needs a
  predictive distribution says it is not applicable to a task without one;
- ``rows``: on an applicable task, :meth:`~expunge.audit.metric.Metric.measure` returns a
  :class:`~expunge.audit.results.Measurement` for every declared row and nothing else,
  and each becomes a typed, judged result row carrying the definition id;
- ``reference``: for ``oracle`` and ``noise_floor`` metrics the reference population's
  measurement exists for every row (a finite constant for ``constant`` ones);
- ``finite``: values (and spreads) are finite for an original and a retrained population;
- ``deterministic``: measuring again, on fresh views of the same populations (nothing
  memoised), gives exactly the same values;
- ``separates_original``: for metrics with ``separates_original = True``, the original
  population is farther from the reference than an independently retrained population
  is, by each row's own closeness rule, on every judged forget-split or split-less row.

The checks run on a small audit (:class:`MetricBench`): an original, an oracle and a
second oracle population, shadow models, randomly initialised members, and two
candidates, the original itself and an independent retrained population (the
``retrain`` method), each with its unlearned shadows. Benches are cached per process
(and their populations in the population cache). The default scenario
(:func:`separating_scenario`) makes the original memorise its forget set, so that the
separation check has something to separate, and still trains in seconds. Pass another
``scenario`` (a regression task, say) to check a metric where it claims to apply.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from expunge.audit.assess import Assessor
from expunge.audit.evidence import AuditContext, AuditData, Candidate, Evidence, ShadowEvidence
from expunge.audit.metric import VIEWS, Metric, check_metric_class
from expunge.audit.results import Measurement
from expunge.audit.verdict import judge
from expunge.errors import ExpungeError
from expunge.testing.contract import ContractViolation

CHECKS = ("registry", "instantiable", "needs", "rows", "reference", "finite", "deterministic", "separates_original")
FAST_CHECKS = CHECKS[:-1]  # all but the separation check, which needs a scenario with something to separate
BENCH_METHODS = {"original": {}, "retrain": {}}
_BENCHES: dict[tuple, "MetricBench"] = {}


# ----------------------------------------------------------------------------- scenarios and the bench
def separating_scenario():
    """A Gaussian mixture the original memorises, small enough to train a whole bench in seconds.

    300 training examples in 20 dimensions with overlapping classes (separation 2) and a
    64-unit MLP trained for 60 epochs: the original fits its training set, forget set
    included, to 100% while the oracle classifies the forget set as unseen data (about
    67% at 8 members). Every registered metric that measures forgetting tells the two
    apart here, as on the project's reference scenario (MNIST-1D with its default
    recipe), which takes about ten times longer to train. The bench trains in about
    5 s on one CPU thread.
    """
    from expunge.training.recipe import Recipe
    from expunge.training.scenario import Scenario

    recipe = Recipe(model="mlp", model_kwargs={"hidden": [64]}, optimizer="adam", lr=3e-3, epochs=60, batch_size=32)
    return Scenario.build("gaussians", "random:0.1", recipe=recipe, n_train=300, n_test=250, dim=20, separation=2.0)


@dataclass
class MetricBench:
    """A small audit to measure metrics on: its context and two candidates.

    ``original``: the original population as a candidate (method ``original``);
    ``retrained``: an independent population retrained without the forget set (method
    ``retrain``, seeds unlike the oracle's). Both carry their unlearned shadow models and
    what their method spent.
    """

    scenario: Any
    context: AuditContext
    original: Candidate
    retrained: Candidate
    _parts: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def candidates(self) -> tuple[Candidate, Candidate]:
        return self.original, self.retrained

    def fresh(self) -> "MetricBench":
        """The same populations behind new views: nothing computed or memoised is shared."""
        return _assemble(self.scenario, self._parts)


def metric_bench(scenario=None, *, members: int = 8, shadow_members: int = 8, seed: int = 0) -> MetricBench:
    """The bench of ``scenario`` (default :func:`separating_scenario`), trained once per process.

    Populations come from the scenario's cache (``EXPUNGE_HOME``), so a second process
    loads them instead of training.
    """
    from expunge.bench.plan import plan_audit

    scenario = scenario if scenario is not None else separating_scenario()
    plan = plan_audit(scenario, BENCH_METHODS, members, shadow_members, seed)
    key = (tuple(job.key for job in plan.populations.values()), tuple(job.key for job in plan.unlearning),
           scenario.device, seed)
    if key not in _BENCHES:
        _BENCHES[key] = _build(scenario, plan, seed)
    return _BENCHES[key]


def _build(scenario, plan, seed: int) -> MetricBench:
    from expunge.bench.executor import LocalExecutor, retrain_cost_from_method
    from expunge.training.population import Population
    from expunge.training.seeds import derive_seed

    executor = LocalExecutor()
    built = {role: executor.train(scenario, job)[0] for role, job in plan.populations.items()}
    forget = scenario.forget_mask
    unlearned, shadows = {}, {}
    for job in plan.unlearning:
        if job.target == "original":
            unlearned[job.method] = executor.unlearn(scenario, job, built["original"], forget, scenario.retain_mask)
        else:
            keep = plan.populations["shadow"].keep_masks
            population, _ = executor.unlearn(scenario, job, built["shadow"], keep & forget, keep & ~forget)
            shadows[job.method] = (population, keep & forget, ~keep & forget)
    template = built["original"]
    architecture = template.architecture()
    # Seeds of their own: a random network that shares the original's initialisation is not an incompetent
    # teacher to the original (or to methods that start from it).
    random_seeds = [derive_seed(scenario.recipe.seed, "metric-bench-random-init", i) % (2 ** 31)
                    for i in range(len(template))]
    parts = {
        "data": AuditData.build(scenario.split.train, scenario.split.test, forget, 1000, seed),
        "populations": built,
        "unlearned": unlearned,
        "shadows": shadows,
        "retrain_cost": retrain_cost_from_method(unlearned["retrain"][1], scenario),
        "random_init": lambda: Population.initialize(architecture, random_seeds).to(scenario.device),
        "seed": seed,
    }
    return _assemble(scenario, parts)


def _assemble(scenario, parts: dict[str, Any]) -> MetricBench:
    data, built = parts["data"], parts["populations"]
    positions = data.forget_positions

    def candidate(name: str) -> Candidate:
        population, cost = parts["unlearned"][name]
        shadow = None
        if name in parts["shadows"]:
            shadow_population, in_mask, out_mask = parts["shadows"][name]
            shadow = ShadowEvidence(Evidence(f"{name} shadows", shadow_population, data),
                                    np.asarray(in_mask[:, positions]), np.asarray(out_mask[:, positions]))
        return Candidate(name, Evidence(name, population, data), cost, shadow)

    context = AuditContext(data, Evidence("oracle", built["oracle"], data),
                           Evidence("second oracle", built["second_oracle"], data),
                           Evidence("original", built["original"], data), parts["retrain_cost"], parts["seed"],
                           lambda: Evidence("random init", parts["random_init"](), data), scenario.recipe)
    return MetricBench(scenario, context, candidate("original"), candidate("retrain"), parts)


# ----------------------------------------------------------------------------- the checks
def _fail(check: str, metric: Any, message: str) -> ContractViolation:
    name = getattr(metric, "name", None) or getattr(metric, "__name__", repr(metric))
    return ContractViolation(check, f"metric {name!r}: {message}")


def _instance(metric_class: Any, options: Mapping[str, Any]) -> Metric:
    try:
        metric = metric_class(**options)
    except Exception as error:  # noqa: BLE001 - any failure to construct is the violation
        raise _fail("instantiable", metric_class, f"cannot be built with {dict(options) or 'its defaults'}: "
                                                   f"{type(error).__name__}: {error}") from error
    definition = getattr(metric, "definition", None)
    if not isinstance(definition, str) or "@" not in definition:
        raise _fail("instantiable", metric, f"the instance's definition id {definition!r} must look like "
                                            "family@variant")
    return metric


def _measure(check: str, metric: Metric, candidate: Candidate, context: AuditContext) -> dict[str, Measurement]:
    try:
        measured = metric.measure(candidate, context)
    except Exception as error:  # noqa: BLE001 - the contract says measure returns rows on an applicable task
        raise _fail(check, metric, f"measure({candidate.name}) raised {type(error).__name__}: {error}") from error
    if not isinstance(measured, Mapping):
        raise _fail(check, metric, f"measure must return a dict of row key -> Measurement; got "
                                   f"{type(measured).__name__}")
    return dict(measured)


class _Measurements:
    """One metric's measurements on a bench, each taken once per check_metric call (the deterministic check
    measures again on fresh views)."""

    def __init__(self, metric: Metric, bench: MetricBench):
        self.metric, self.bench = metric, bench
        self._of: dict[tuple[str, str], dict[str, Measurement]] = {}

    def of(self, candidate: Candidate, check: str) -> dict[str, Measurement]:
        key = ("candidate", candidate.name)
        if key not in self._of:
            self._of[key] = _measure(check, self.metric, candidate, self.bench.context)
        return self._of[key]

    def reference(self, candidate: Candidate, check: str) -> dict[str, Measurement]:
        """What the assessor reads ``candidate``'s rows against (the assessor's own choice of reference population)."""
        subject = Assessor(self.bench.context, []).reference_candidate(self.metric, candidate)
        if subject is None:
            return {}
        key = ("reference", candidate.name if self.metric.reference_per_method else "")
        if key not in self._of:
            self._of[key] = _measure(check, self.metric, subject, self.bench.context)
        return self._of[key]


def _reference_value(metric: Metric, key: str,
                     reference: Mapping[str, Measurement]) -> tuple[float | None, float | None]:
    if metric.reference_kind == "constant":
        return metric.constant_reference, None
    found = reference.get(key)
    return (None, None) if found is None else (found.value, found.spread)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    a, b = float(a), float(b)
    return a == b or (math.isnan(a) and math.isnan(b))


def _check_needs(metric: Metric) -> None:
    from expunge.tasks import get_task
    from expunge.tasks.base import STATISTICS

    unknown = sorted(need for need in metric.needs if need not in VIEWS and need not in STATISTICS)
    if unknown:
        raise _fail("needs", metric, f"needs {unknown}, which are neither task statistics ({', '.join(STATISTICS)}) "
                                     f"nor views ({', '.join(VIEWS)}); such a metric would be skipped everywhere")
    for task_name in ("classification", "regression"):
        task = get_task(task_name)
        try:
            reason = metric.applicable(task.statistics_provided, task.categorical)
        except Exception as error:  # noqa: BLE001
            raise _fail("needs", metric, f"applicable() raised {type(error).__name__} for the {task_name} task: "
                                         f"{error}") from error
        if reason is not None and (not isinstance(reason, str) or not reason.strip()):
            raise _fail("needs", metric, f"applicable() must return None or a reason in words; got {reason!r}")
        if reason is None and "probabilities" in metric.needs and not task.categorical:
            raise _fail("needs", metric, f"needs a predictive distribution but claims to apply to the {task_name} "
                                         "task, which has none")


def _check_rows(metric: Metric, bench: MetricBench, measurements: _Measurements) -> None:
    declared = {row.key: row for row in metric.rows}
    for candidate in bench.candidates:
        measured = measurements.of(candidate, "rows")
        extra = sorted(set(measured) - set(declared))
        if extra:
            raise _fail("rows", metric, f"measure({candidate.name}) returned undeclared row(s) {extra}; declared: "
                                        f"{sorted(declared)}")
        missing = sorted(set(declared) - set(measured))
        if missing:
            raise _fail("rows", metric, f"measure({candidate.name}) did not produce the declared row(s) {missing} "
                                        "on a task it says it applies to (if it cannot, applicable() should say why)")
        for key, measurement in measured.items():
            if not isinstance(measurement, Measurement):
                raise _fail("rows", metric, f"row {key!r} must be a Measurement; got {type(measurement).__name__}")
            try:
                result = judge(metric.result(declared[key], candidate.name, measurement, None), declared[key].closeness)
            except Exception as error:  # noqa: BLE001
                raise _fail("rows", metric, f"row {key!r} of {candidate.name} cannot become a result row: "
                                            f"{type(error).__name__}: {error}") from error
            if result.definition != metric.definition or "@" not in result.definition:
                raise _fail("rows", metric, f"row {key!r} carries the definition id {result.definition!r}, not the "
                                            f"metric's {metric.definition!r}")


def _check_reference(metric: Metric, bench: MetricBench, measurements: _Measurements) -> None:
    kind = metric.reference_kind
    if kind == "none":
        return
    if kind == "constant":
        if not _finite(metric.constant_reference):
            raise _fail("reference", metric, f"constant reference {metric.constant_reference!r} is not a finite number")
        return
    for candidate in bench.candidates:
        measured = measurements.of(candidate, "reference")
        reference = measurements.reference(candidate, "reference")
        for key in measured:
            found = reference.get(key)
            if found is None:
                raise _fail("reference", metric, f"no {kind} reference for row {key!r} (measuring the reference "
                                                 f"population gave rows {sorted(reference)})")
            if not _finite(found.value):
                raise _fail("reference", metric, f"the {kind} reference of row {key!r} is {found.value!r}, not a "
                                                 "finite number")


def _check_finite(metric: Metric, bench: MetricBench, measurements: _Measurements) -> None:
    for candidate in bench.candidates:
        for key, measurement in measurements.of(candidate, "finite").items():
            if not _finite(measurement.value):
                raise _fail("finite", metric, f"row {key!r} of {candidate.name} is {measurement.value!r}")
            spread = measurement.spread
            if spread is not None and not (_finite(spread) and spread >= 0):
                raise _fail("finite", metric, f"row {key!r} of {candidate.name} has spread {spread!r}; a spread "
                                              "is a finite non-negative number or None")


def _check_deterministic(metric_class: Any, options: Mapping[str, Any], metric: Metric, bench: MetricBench,
                         measurements: _Measurements) -> None:
    again = bench.fresh()
    for first_candidate, second_candidate in zip(bench.candidates, again.candidates):
        first = measurements.of(first_candidate, "deterministic")
        second = _measure("deterministic", _instance(metric_class, options), second_candidate, again.context)
        for key in sorted(set(first) | set(second)):
            a, b = first.get(key), second.get(key)
            if a is None or b is None or not _same(a.value, b.value) or not _same(a.spread, b.spread):
                described = [None if m is None else (m.value, m.spread) for m in (a, b)]
                raise _fail("deterministic", metric, f"row {key!r} of {first_candidate.name} measured twice on the "
                                                     f"same populations: {described[0]} then {described[1]}")


def _check_separation(metric: Metric, bench: MetricBench, measurements: _Measurements) -> str | None:
    if not metric.separates_original:
        return f"{metric.name}: separates_original is False, separation not checked"
    rows = [row for row in metric.rows if row.closeness.rule != "none" and row.split in ("forget", "all")]
    if not rows:
        return f"{metric.name}: no judged forget-split or split-less row, separation not checked"
    distances: dict[str, dict[str, float | None]] = {}
    values: dict[str, dict[str, float]] = {}
    for candidate in bench.candidates:
        measured = measurements.of(candidate, "separates_original")
        reference = measurements.reference(candidate, "separates_original")
        for row in rows:
            if row.key not in measured:
                continue
            ref_value, ref_spread = _reference_value(metric, row.key, reference)
            value = measured[row.key].value
            distances.setdefault(row.key, {})[candidate.name] = row.closeness.distance(value, ref_value, ref_spread)
            values.setdefault(row.key, {})[candidate.name] = value
    compared = 0
    for key, by_candidate in distances.items():
        original, retrained = by_candidate.get("original"), by_candidate.get("retrain")
        if original is None or retrained is None:
            continue
        compared += 1
        original = math.inf if math.isnan(original) else original
        retrained = math.inf if math.isnan(retrained) else retrained
        if not original > retrained:
            raise _fail("separates_original", metric,
                        f"row {key!r}: the original ({values[key]['original']:.4g}, distance {original:.3g} from the "
                        f"reference) is not farther from it than an independently retrained population "
                        f"({values[key]['retrain']:.4g}, distance {retrained:.3g}); a metric that cannot tell the "
                        "original from retraining does not measure forgetting (else set separates_original = False)")
    if not compared:
        return f"{metric.name}: no row could be judged against a reference, separation not checked"
    return None


def check_metric(metric_class: Any, *, scenario=None, members: int = 8, shadow_members: int = 8,
                 options: Mapping[str, Any] | None = None, checks: Iterable[str] | None = None,
                 bench: MetricBench | None = None) -> list[str]:
    """Run the metric contract's checks on ``metric_class``; raise :class:`ContractViolation` on the first failure.

    Args:
        metric_class: a :class:`~expunge.audit.metric.Metric` subclass (registered or not).
        scenario: the audit to measure on (default :func:`separating_scenario`, which
            trains in seconds, once per process and then from the population cache).
        members, shadow_members: population sizes of the bench (8 and 8 by default).
        options: keyword arguments for the metric's constructor (as ``metric_options``
            of an audit).
        checks: names from :data:`CHECKS` to run (default all, in that order).
        bench: a ready :class:`MetricBench` (overrides ``scenario`` and the sizes).

    Returns:
        Notes on checks that did not apply (e.g. "separates_original is False"); empty
        when every check ran.
    """
    options = dict(options or {})
    selected = list(CHECKS if checks is None else checks)
    unknown = [name for name in selected if name not in CHECKS]
    if unknown:
        raise ExpungeError(f"unknown metric check(s) {unknown}; checks are {', '.join(CHECKS)}")
    notes: list[str] = []
    if "registry" in selected:
        try:
            check_metric_class(metric_class)
        except ExpungeError as error:
            raise _fail("registry", metric_class, str(error)) from error
    if selected == ["registry"]:
        return notes
    metric = _instance(metric_class, options)
    if "needs" in selected:
        _check_needs(metric)
    measuring = [name for name in selected if name not in ("registry", "instantiable", "needs")]
    if not measuring:
        return notes
    bench = bench or metric_bench(scenario, members=members, shadow_members=shadow_members)
    task = bench.context.task
    reason = metric.applicable(task.statistics_provided, task.categorical)
    if reason:
        return notes + [f"{metric.name}: not applicable to the {task.name} task ({reason}); measuring checks skipped"]
    if "shadows" in metric.needs and any(candidate.shadow is None for candidate in bench.candidates):
        return notes + [f"{metric.name}: needs shadow models and the bench has none (shadow_members=0); measuring "
                        "checks skipped"]
    measurements = _Measurements(metric, bench)
    for name in measuring:
        if name == "rows":
            _check_rows(metric, bench, measurements)
        elif name == "reference":
            _check_reference(metric, bench, measurements)
        elif name == "finite":
            _check_finite(metric, bench, measurements)
        elif name == "deterministic":
            _check_deterministic(metric_class, options, metric, bench, measurements)
        elif name == "separates_original":
            note = _check_separation(metric, bench, measurements)
            if note:
                notes.append(note)
    return notes
