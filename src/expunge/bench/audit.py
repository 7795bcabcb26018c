"""``expunge.audit``: run methods on a scenario and audit them against oracle populations.

Plan (the populations and unlearning jobs, each content-hashed) -> execute (an
:class:`~expunge.bench.executor.Executor`, local by default) -> assess (every
registered metric, through :mod:`expunge.audit`) -> an :class:`AuditReport` of typed
:class:`~expunge.audit.results.MetricResult` rows, which the JSON file, the HTML report
and the CLI leaderboard render.
"""
from __future__ import annotations

import datetime
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from expunge._version import __version__
from expunge.audit.assess import Assessor
from expunge.audit.metric import METRICS
from expunge.audit.evidence import (
    MIN_MEMBERS,
    MIN_SHADOWS,
    AuditContext,
    AuditData,
    Candidate,
    Evidence,
    ShadowEvidence,
)
from expunge.audit.results import MetricResult, find
from expunge.audit.verdict import verdict
from expunge.bench.exact import EXACT, audit_exact, exact_entry
from expunge.bench.executor import Executor, LocalExecutor, retrain_cost_from_method
from expunge.bench.machine import describe
from expunge.bench.plan import AuditPlan, method_plan, plan_audit
from expunge.errors import ExpungeError
from expunge.methods.registry import check_task, get_method
from expunge.training.engine import ENGINE_VERSION
from expunge.training.population import Population
from expunge.training.scenario import Scenario

log = logging.getLogger("expunge.audit")
ProgressFactory = Callable[[str], Callable[[int, int], None]]
REPORT_FORMAT = 2


def _silent(_description: str) -> Callable[[int, int], None]:
    return lambda done, total: None


class AuditReport:
    """The result of an audit: metadata, one entry per method and the typed result rows."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.rows = [r if isinstance(r, MetricResult) else MetricResult.from_json(r) for r in data.get("results", [])]

    def to_json(self) -> dict[str, Any]:
        return self.data | {"results": [r.to_json() for r in self.rows]}

    @property
    def methods(self) -> list[str]:
        return [m["method"] for m in self.data["methods"]]

    def __getitem__(self, method: str) -> dict[str, Any]:
        for entry in self.data["methods"]:
            if entry["method"] == method:
                return entry
        raise ExpungeError(f"method {method!r} is not in this report; it has {', '.join(self.methods)}")

    def row(self, method: str, metric: str, split: str | None = None) -> MetricResult:
        """The result row of ``method`` for ``metric`` (and ``split``)."""
        self[method]  # a clear error for an unknown method
        found = find(self.rows, method, metric, split)
        if found is None:
            names = sorted({r.key for r in self.rows if r.method == method})
            raise ExpungeError(f"no {metric!r}{'' if split is None else '/' + split} result for {method!r}; "
                               f"it has {', '.join(names) or 'none (the method failed)'}")
        return found

    def metric(self, method: str, metric: str, split: str | None = None) -> float:
        """The value of ``method``'s ``metric`` (e.g. ``"klom_p95", "forget"``)."""
        return self.row(method, metric, split).value

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``report.json`` and the self-contained ``report.html`` into ``out_dir``."""
        from expunge.report import write_report

        return write_report(self.to_json(), out_dir)


def _check_sizes(members: int, shadow_members: int) -> None:
    if members < MIN_MEMBERS:
        raise ExpungeError(f"an audit needs at least {MIN_MEMBERS} members per population (32 or more "
                           f"recommended); got {members}")
    if 0 < shadow_members < MIN_SHADOWS:
        raise ExpungeError(f"U-LiRA needs at least {MIN_SHADOWS} shadow models (dozens recommended), or 0 to skip "
                           f"it; got {shadow_members}")


def run_audit(scenario: Scenario, method: str | list[str] | dict[str, dict] = "finetune", members: int = 32,
              shadow_members: int | None = None, seed: int = 0, retain_sample: int = 1000,
              resolution: str = "full", progress: ProgressFactory | None = None, executor: Executor | None = None,
              metrics: list[str] | None = None, metric_options: dict[str, dict[str, Any]] | None = None,
              **hyperparameters: Any) -> AuditReport:
    """Audit one or several methods on ``scenario`` against its oracle population.

    ``method``: a name (with ``hyperparameters`` as keyword arguments), a list of names,
    or a dict ``{name: {hyperparameter: value}}``. ``members``: N, the size of the
    original, oracle and second-oracle populations (noise floors use the second).
    ``shadow_members``: shadow models for U-LiRA (default ``members``, at least 8; 0 skips
    U-LiRA). ``metrics``: registered metric names (default: all); ``metric_options``:
    keyword arguments per metric (``{"klom": {"convention": "authors"}}``). ``executor``:
    where jobs run (default: in this process).

    A method that raises is reported as failed, with its error in the report and its
    traceback in the log (logger ``expunge.audit``); the other methods are still audited.

    Exact constructions (``"sisa"``, ``"closed_form"``: :data:`expunge.bench.exact.EXACT`)
    are audited against their own oracle, the same construction trained without the
    forget set, with the single model's accuracy beside theirs (:func:`audit_exact`).
    """
    progress = progress or _silent
    executor = executor or LocalExecutor()
    methods = method_plan(method, hyperparameters)
    for name in metrics or []:
        METRICS.get(name)  # fail fast on unknown metric names, before any training
    for name in methods:  # a method that cannot handle the data fails now, before any population is trained
        if name not in EXACT:
            check_task(name, scenario.split.task)
    shadow_members = max(members, MIN_SHADOWS) if shadow_members is None else shadow_members
    _check_sizes(members, shadow_members)
    data = AuditData.build(scenario.split.train, scenario.split.test, scenario.forget_mask, retain_sample, seed,
                           scenario.split.info.get("corpus"))
    plan = plan_audit(scenario, methods, members, shadow_members, seed)
    start = time.perf_counter()

    built = {}
    for role, job in plan.populations.items():
        label = {"second_oracle": "second oracle", "shadow": "shadows"}.get(role, role)
        built[role] = executor.train(scenario, job, progress(f"{label} ({len(job.seeds)})"))
    shadow = None
    if "shadow" in built:
        masks = plan.populations["shadow"].keep_masks
        forget = scenario.forget_mask
        shadow = (built["shadow"][0], masks & forget, masks & ~forget, ~masks & forget)

    # Retraining is timed in this run: by the retrain method when it is audited (first), else one epoch of it.
    entries: dict[str, dict[str, Any]] = {}
    ordered = sorted((name for name in methods if name not in EXACT), key=lambda name: name != "retrain")
    unlearned: dict[str, tuple[Population, Any]] = {}
    retrain = None
    for name in ordered:
        entries[name], result = _unlearn(plan, executor, name, built["original"][0], progress)
        if result is not None:
            unlearned[name] = result
            if name == "retrain":
                retrain = retrain_cost_from_method(result[1], scenario)
    if retrain is None:
        retrain = executor.time_retraining(scenario, members, progress("retrain timing (1 epoch)"))
    oracle_cost = built["oracle"][1]

    def make_random() -> Evidence:
        random_init = Population.initialize(built["original"][0].architecture(),
                                            scenario.role_seeds("random_init", members))
        return Evidence("random init", random_init.to(scenario.device), data)

    context = AuditContext(data, Evidence("oracle", built["oracle"][0], data),
                           Evidence("second oracle", built["second_oracle"][0], data),
                           Evidence("original", built["original"][0], data), retrain, seed, make_random,
                           scenario.recipe)
    assessor = Assessor(context, metrics, metric_options)
    rows: list[MetricResult] = []
    for name in methods:
        if name in EXACT:
            entries[name] = exact_entry(name, methods[name])
            shadow_masks = plan.populations["shadow"].keep_masks if "shadow" in plan.populations else None
            try:
                assessment = audit_exact(entries[name], scenario, context, members, shadow_masks, metrics,
                                         metric_options, progress)
            except Exception as error:  # noqa: BLE001 - the report says which construction failed and why
                _fail(entries[name], error)
                continue
            rows += assessment.rows
            continue
        entry = entries[name]
        if name not in unlearned or entry["status"] != "ok":
            continue
        population, cost = unlearned[name]
        try:
            candidate = Candidate(name, Evidence(name, population, data), cost,
                                  _shadow_evidence(plan, executor, name, shadow, data, progress))
            assessment = assessor.assess(candidate)
        except Exception as error:  # noqa: BLE001 - the report says which method failed and why
            _fail(entry, error)
            continue
        rows += assessment.rows
        entry["plots"] = [p.to_json() for p in assessment.plots]
        entry["notes"] += assessment.notes
    generations = []
    if data.corpus is not None:  # a language model's audit: a few forget questions answered before and after
        from expunge.bench.generations import example_generations

        answering = {"original": built["original"][0]}
        answering |= {name: result[0] for name, result in unlearned.items() if name != "original"}
        generations = example_generations(data, answering | {"oracle": built["oracle"][0]})
    for name, entry in entries.items():
        cls, text = verdict([r for r in rows if r.method == name], entry["status"], entry.get("error"))
        entry["verdict"] = {"class": cls, "text": text}
    return AuditReport({
        "format": REPORT_FORMAT,
        "expunge_version": __version__,
        "engine_version": ENGINE_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe(scenario.device),
        "executor": executor.name,
        "resolution": resolution,
        "scenario": {"name": scenario.name, "dataset": scenario.split.name, "task": scenario.split.task,
                     "forget_rule": scenario.forget.rule, "n_train": len(scenario.split.train),
                     "n_test": len(scenario.split.test), "n_forget": len(scenario.forget),
                     "recipe": scenario.recipe.to_json()},
        "populations": {"members": members, "shadow_members": shadow_members,
                        "seeds": {role: job.seeds for role, job in plan.populations.items()},
                        "retain_sample": int(len(data.retain_sample)),
                        "cache": {role: {"loaded": len(r[2].loaded), "trained": len(r[2].trained)}
                                  for role, r in built.items()},
                        "oracle_cost": oracle_cost.to_json()},
        "timings": {"retrain": retrain.to_json(), "audit_wall_time_s": time.perf_counter() - start},
        "plan": plan.to_json(),
        "metrics": assessor.describe(),
        "methods": [entries[name] for name in methods],
        "results": rows,
    } | ({"generations": generations} if generations else {}))


def _unlearn(plan: AuditPlan, executor: Executor, name: str, original: Population,
             progress: ProgressFactory) -> tuple[dict[str, Any], tuple[Population, Any] | None]:
    job = next(j for j in plan.unlearning if j.method == name and j.target == "original")
    cls = get_method(name)
    entry: dict[str, Any] = {"method": name, "kind": cls.kind, "paper": cls.paper, "hyperparameters": job.hyperparameters,
                             "tuned": getattr(plan.methods.get(name), "study", None),
                             "status": "ok", "error": None, "traceback": None, "cost": None, "plots": [], "notes": []}
    scenario = plan.scenario
    try:
        population, cost = executor.unlearn(scenario, job, original, scenario.forget_mask, scenario.retain_mask,
                                            progress(name))
    except Exception as error:  # noqa: BLE001 - the report says which method failed and why
        _fail(entry, error)
        return entry, None
    entry["hyperparameters"] = population.info.get("hyperparameters", job.hyperparameters)
    entry["cost"] = cost.to_json()
    entry["notes"] += list(cost.notes)
    if cost.diverged:
        entry["status"] = "failed"
        entry["error"] = (f"{len(cost.diverged)} of {len(original)} members diverged (non-finite loss); "
                          "lower the learning rate or the number of epochs")
        return entry, None
    return entry, (population, cost)


def _shadow_evidence(plan: AuditPlan, executor: Executor, name: str, shadow, data: AuditData,
                     progress: ProgressFactory) -> ShadowEvidence | None:
    if shadow is None:
        return None
    population, shadow_forget, shadow_retain, shadow_out = shadow
    job = next(j for j in plan.unlearning if j.method == name and j.target == "shadow")
    unlearned, _ = executor.unlearn(plan.scenario, job, population, shadow_forget, shadow_retain,
                                    progress(f"{name} on shadows"))
    positions = data.forget_positions
    return ShadowEvidence(Evidence(f"{name} shadows", unlearned, data),
                          np.asarray(shadow_forget[:, positions]), np.asarray(shadow_out[:, positions]))


def _fail(entry: dict[str, Any], error: BaseException) -> None:
    entry["status"] = "failed"
    if isinstance(error, ExpungeError):
        entry["error"] = str(error)
        log.error("method %s failed: %s", entry["method"], error)
        return
    entry["error"] = f"{type(error).__name__}: {error}"
    entry["traceback"] = traceback.format_exc()
    log.error("method %s raised an exception:\n%s", entry["method"], entry["traceback"])
