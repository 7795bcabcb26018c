"""``expunge.audit``: run methods on a scenario and audit them against oracle populations.

Builds (or loads from the cache) the scenario's original, oracle, second oracle and
shadow populations, unlearns every original member (and every shadow member, for
U-LiRA) with each method, and computes every METRICS.md metric with the oracle's value
or the retrain-vs-retrain noise floor beside it.
"""
from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from expunge._version import __version__
from expunge.audit.evaluate import (
    MIN_MEMBERS,
    MIN_SHADOWS,
    AuditData,
    Outputs,
    accuracy_family,
    audit_population,
    noise_floors,
    ulira,
)
from expunge.bench.machine import describe
from expunge.errors import ExpungeError
from expunge.methods.registry import get_method, unlearn_population
from expunge.training.scenario import Scenario

ProgressFactory = Callable[[str], Callable[[int, int], None]]


def _silent(_description: str) -> Callable[[int, int], None]:
    return lambda done, total: None


class AuditReport:
    """The result of an audit: a JSON-serialisable dict with helpers to read and write it."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def to_json(self) -> dict[str, Any]:
        return self.data

    @property
    def methods(self) -> list[str]:
        return [m["method"] for m in self.data["methods"]]

    def __getitem__(self, method: str) -> dict[str, Any]:
        for entry in self.data["methods"]:
            if entry["method"] == method:
                return entry
        raise ExpungeError(f"method {method!r} is not in this report; it has {', '.join(self.methods)}")

    def metric(self, method: str, name: str) -> float:
        return float(self[method]["metrics"][name]["value"])

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``report.json`` and the self-contained ``report.html`` into ``out_dir``."""
        from expunge.report import write_report

        return write_report(self.data, out_dir)


def _method_list(method: str | list[str] | dict[str, dict], hyperparameters: dict) -> dict[str, dict]:
    if isinstance(method, str):
        return {method: dict(hyperparameters)}
    if hyperparameters:
        raise ExpungeError("pass hyperparameters per method as a dict {method: {name: value}} when auditing several")
    if isinstance(method, dict):
        return {name: dict(hp) for name, hp in method.items()}
    return {name: {} for name in method}


def audit(scenario: Scenario, method: str | list[str] | dict[str, dict] = "finetune", members: int = 32,
          shadow_members: int | None = None, seed: int = 0, retain_sample: int = 1000,
          resolution: str = "full", progress: ProgressFactory | None = None,
          **hyperparameters: Any) -> AuditReport:
    """Audit one or several methods on ``scenario`` against its oracle population.

    ``method``: a name (with ``hyperparameters`` as keyword arguments), a list of names,
    or a dict ``{name: {hyperparameter: value}}``. ``members``: N, the size of the
    original, oracle and second-oracle populations (noise floors use the second).
    ``shadow_members``: shadow models for U-LiRA (default ``members``, at least 8; 0 skips U-LiRA).
    """
    progress = progress or _silent
    plan = _method_list(method, hyperparameters)
    for name, hp in plan.items():  # fail fast on names and hyperparameters, before any training
        get_method(name).make_hyperparameters(**hp)
    if members < MIN_MEMBERS:
        raise ExpungeError(f"an audit needs at least {MIN_MEMBERS} members per population (32 or more "
                           f"recommended); got {members}")
    shadow_members = max(members, MIN_SHADOWS) if shadow_members is None else shadow_members
    if 0 < shadow_members < MIN_SHADOWS:
        raise ExpungeError(f"U-LiRA needs at least {MIN_SHADOWS} shadow models (dozens recommended), or 0 to skip "
                           f"it; got {shadow_members}")
    data = AuditData.build(scenario.split.train, scenario.split.test, scenario.forget_mask, retain_sample, seed)

    original, _, _ = scenario.original(members, progress(f"original ({members})"))
    oracle, oracle_cost, _ = scenario.oracle(members, False, progress(f"oracle ({members})"))
    oracle2, _, _ = scenario.oracle(members, True, progress(f"second oracle ({members})"))
    shadow = None
    if shadow_members:
        shadow_pop, _, _, shadow_masks = scenario.shadows(shadow_members, progress(f"shadows ({shadow_members})"))
        forget = scenario.forget_mask
        shadow = (shadow_pop, shadow_masks & forget, shadow_masks & ~forget, ~shadow_masks & forget)

    outputs = {"original": Outputs.of(original, data), "oracle": Outputs.of(oracle, data),
               "oracle2": Outputs.of(oracle2, data)}
    floors = noise_floors(outputs["oracle"], outputs["oracle2"], data)
    oracle_family = accuracy_family(outputs["oracle"], data, seed)

    entries = []
    for name, hp in plan.items():
        entries.append(_audit_method(scenario, name, hp, original, oracle_cost, shadow, data, outputs, floors,
                                     oracle_family, seed, progress))
    return AuditReport({
        "expunge_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe(scenario.device),
        "resolution": resolution,
        "scenario": {"name": scenario.name, "dataset": scenario.split.name, "forget_rule": scenario.forget.rule,
                     "n_train": len(scenario.split.train), "n_test": len(scenario.split.test),
                     "n_forget": len(scenario.forget), "recipe": scenario.recipe.to_json()},
        "populations": {"members": members, "shadow_members": shadow_members, "original_seeds": original.seeds,
                        "oracle_seeds": oracle.seeds, "second_oracle_seeds": oracle2.seeds,
                        "retain_sample": int(len(data.retain_sample)),
                        "retrain_cost": oracle_cost.to_json()},
        "noise_floors": floors,
        "methods": entries,
    })


def _audit_method(scenario: Scenario, name: str, hp: dict, original, oracle_cost, shadow, data: AuditData,
                  outputs: dict, floors: dict, oracle_family: dict, seed: int,
                  progress: ProgressFactory) -> dict[str, Any]:
    entry: dict[str, Any] = {"method": name, "hyperparameters": hp, "status": "ok", "error": None,
                             "metrics": {}, "cost": None, "plots": {}}
    start = time.perf_counter()
    try:
        bar = _Bar(progress(name))
        unlearned, cost = unlearn_population(original, scenario.split.train, scenario.forget_mask,
                                             scenario.retain_mask, name, scenario.recipe, seed,
                                             progress=bar, **hp)
        bar.finish()
        entry["hyperparameters"] = unlearned.info.get("hyperparameters", hp)
        entry["cost"] = cost.to_json()
        if cost.diverged:
            raise _Failed(f"{len(cost.diverged)} of {len(original)} members diverged (non-finite loss); "
                          "lower the learning rate or the number of epochs")
        reference = outputs["original"] if name == "original" else Outputs.of(unlearned, data)
        metrics, plots = audit_population(reference, outputs["oracle"], outputs["original"], data, floors,
                                          oracle_family, seed)
        ratios = cost.ratios(oracle_cost)
        metrics["cost_gradient_ratio"] = {"value": ratios["example_gradients"],
                                          "definition": "cost@example-gradients/retrain"}
        metrics["cost_time_ratio"] = {"value": ratios["wall_time"], "definition": "cost@wall-time/retrain"}
        if shadow is not None:
            shadow_pop, shadow_forget, shadow_retain, shadow_out = shadow
            shadow_bar = _Bar(progress(f"{name} on shadows"))
            shadow_unlearned, _ = unlearn_population(shadow_pop, scenario.split.train, shadow_forget, shadow_retain,
                                                     name, scenario.recipe, seed + 1, progress=shadow_bar, **hp)
            shadow_bar.finish()
            attack = ulira(shadow_unlearned, shadow_forget, shadow_out, data)
            definition = "ulira@gaussian"
            metrics["ULiRA_auc"] = {"value": attack["auc"], "noise_floor": 0.5, "definition": definition,
                                    "n_shadows": attack["n_shadows"]}
            metrics["ULiRA_balanced_accuracy"] = {"value": attack["balanced_accuracy"], "definition": definition,
                                                  "unit": "%"}
            metrics["ULiRA_tpr_at_1pct_fpr"] = {"value": attack["tpr_at_1pct_fpr"], "definition": definition,
                                                "unit": "%"}
            metrics["ULiRA_tpr_at_0.1pct_fpr"] = {"value": attack["tpr_at_0.1pct_fpr"], "definition": definition,
                                                  "unit": "%"}
        entry["metrics"], entry["plots"] = metrics, plots
    except (_Failed, ExpungeError, RuntimeError, FloatingPointError) as error:
        entry["status"] = "failed"
        entry["error"] = str(error)
    entry["audit_wall_time_s"] = time.perf_counter() - start
    return entry


class _Bar:
    """A progress callback that can be completed by hand (for methods that report no steps)."""

    def __init__(self, callback: Callable[[int, int], None]):
        self.callback, self.called = callback, False

    def __call__(self, done: int, total: int) -> None:
        self.called = True
        self.callback(done, total)

    def finish(self) -> None:
        if not self.called:
            self.callback(1, 1)


class _Failed(Exception):
    """A method ran but its result cannot be audited (e.g. it diverged)."""
