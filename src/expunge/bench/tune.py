"""``expunge.tune``: leak-free hyperparameter tuning of an unlearning method with Optuna.

Tuning on the forget set the method is then evaluated on would fit the audit itself. So
tuning happens in a **validation world** that never contains the evaluation forget set
``S``: its training set is ``D \\ S``; its original population is trained on that; its
forget set ``V`` is drawn from ``D \\ S`` by the same rule as ``S`` (a random set of the same
size, the next class, another cluster of the class); its own oracle and second oracle
populations are retrained on ``D \\ S \\ V``. ``S``'s examples appear nowhere: not in a
training set, a mask, or a metric (tests prove it).

Objective (minimised), on the validation world at ``members`` models per population:

    ``KLoM forget P95 / its noise floor  +  max(0, RA_oracle - RA - 2)``

(distance from retraining on the forget set, plus every retain-accuracy point lost beyond
2 points); a trial whose per-request example gradients exceed ``budget`` x retraining's, or
whose members diverge, scores ``INFEASIBLE``. The method's defaults are always the first
trial, so the best trial is never worse than the defaults on the validation objective.
Studies live in an SQLite file (Optuna's RDB storage) under ``$EXPUNGE_HOME/tuning``,
named by a hash of what defines them; asking again resumes the study.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from expunge.audit.assess import Assessor
from expunge.audit.evidence import AuditContext, AuditData, Candidate, Evidence, RetrainCost
from expunge.bench.plan import TunedHyperparameters
from expunge.data.base import Split
from expunge.data.forget import class_forget, random_forget, subclass_forget
from expunge.errors import ExpungeError
from expunge.methods.base import SearchRange
from expunge.methods.registry import get_method, unlearn_population
from expunge.training.engine import ENGINE_VERSION
from expunge.training.scenario import Scenario
from expunge.training.store import content_key

INFEASIBLE = 1e6
RETAIN_TOLERANCE_POINTS = 2.0
ProgressFactory = Callable[[str], Callable[[int, int], None]]
log = logging.getLogger("expunge.tune")


@dataclass
class TuningResult:
    """The outcome of :func:`tune`: the best hyperparameters and how they compare with the defaults."""

    method: str
    hyperparameters: TunedHyperparameters
    best_value: float
    default_value: float
    trials: int
    study_name: str
    storage: str
    validation_rule: str
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "hyperparameters": dict(self.hyperparameters), "best_value": self.best_value,
                "default_value": self.default_value, "trials": self.trials, "study_name": self.study_name,
                "storage": self.storage, "validation_rule": self.validation_rule, "history": self.history}


def validation_scenario(scenario: Scenario, seed: int = 0) -> Scenario:
    """The validation world of ``scenario``: training set ``D \\ S``, forget set ``V`` by the same rule, from ``D \\ S``."""
    train, forget = scenario.split.train, scenario.forget
    if forget is None:
        raise ExpungeError("tuning needs a scenario with a forget set (the rule the validation set is drawn by)")
    kept = train.subset(forget.retain_positions)
    split = Split(f"{scenario.split.name}-validation", kept, scenario.split.test,
                  dict(scenario.split.info) | {"validation_of": forget.rule})
    kind = forget.rule.split(":", 1)[0]
    if kind == "class":
        classes = sorted(set(torch.unique(train.y[forget.forget_positions]).tolist()))
        remaining = sorted(set(torch.unique(kept.y).tolist()))
        nxt = [c for c in remaining if c > classes[-1]] + [c for c in remaining if c < classes[0]]
        if len(nxt) < len(classes):
            raise ExpungeError(f"no class is left to validate class-wise forgetting of {classes} on")
        validation = class_forget(kept, nxt[:len(classes)])
    elif kind == "subclass":
        parts = forget.rule.split("@", 1)[0].split(":")[1:]
        cls_, n_clusters = int(parts[0]), int(parts[2]) if len(parts) > 2 else 4
        validation = subclass_forget(kept, cls_, 0, n_clusters, seed=seed)
    else:  # random rules, explicit IDs, plugin rules: a random set of the same size
        validation = random_forget(kept, count=len(forget), seed=seed + 1)
    return Scenario(split, validation, scenario.recipe, scenario.cache, scenario.device, scenario.model)


def _suggest(trial: Any, name: str, space: SearchRange, default: Any) -> Any:
    if space.choices:
        return trial.suggest_categorical(name, list(space.choices))
    if isinstance(default, int) and not isinstance(default, bool):
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(name, float(space.low), float(space.high), log=space.log)


def study_name(scenario: Scenario, method: str, members: int, budget: float, seed: int,
               space: dict[str, SearchRange]) -> str:
    key = content_key({"data": scenario.split.fingerprint(), "forget": scenario.forget.fingerprint(),
                       "rule": scenario.forget.rule, "recipe": scenario.recipe.to_json(), "method": method,
                       "members": members, "budget": budget, "seed": seed, "engine": ENGINE_VERSION,
                       "space": {k: dataclasses.asdict(v) for k, v in space.items()}})
    return f"{method}-{key}"


def tune(scenario: Scenario, method: str, trials: int = 20, members: int = 16, budget: float = 0.1, seed: int = 0,
         search: dict[str, Any] | None = None, storage: str | Path | None = None,
         progress: ProgressFactory | None = None) -> TuningResult:
    """Tune ``method`` for ``scenario`` on its validation world; returns the best hyperparameters.

    ``trials``: the total the study should have (a resumed study runs only the missing
    ones). ``members``: models per validation population. ``budget``: the largest
    per-request cost allowed, in example gradients relative to retraining. ``search``:
    ranges that replace or extend the method's declared search space, e.g.
    ``{"lr": (1e-4, 1e-1, "log")}``. ``storage``: the SQLite file of studies (default
    ``$EXPUNGE_HOME/tuning/studies.db``).
    """
    import optuna

    progress = progress or (lambda description: (lambda done, total: None))
    cls = get_method(method)
    space = cls.search_space(search)
    if not space:
        raise ExpungeError(f"method {method!r} declares no search space: there is nothing to tune "
                           "(pass search={'name': (low, high)})")
    if trials < 1 or members < 2 or not budget > 0:
        raise ExpungeError(f"tuning needs trials >= 1, members >= 2 and budget > 0 (got {trials}, {members}, {budget})")
    defaults = {f.name: f.default for f in cls.hyperparameter_fields()}
    world = validation_scenario(scenario, seed)
    evaluation_ids = set(scenario.forget.forget_ids.tolist())
    if evaluation_ids & set(world.split.train.ids.tolist()):  # pragma: no cover - the construction forbids it
        raise ExpungeError("internal error: the validation world contains evaluation forget examples")

    original, _, _ = world.original(members, progress(f"validation original ({members})"))
    oracle, oracle_cost, _ = world.oracle(members, False, progress(f"validation oracle ({members})"))
    oracle2, _, _ = world.oracle(members, True, progress(f"validation second oracle ({members})"))
    data = AuditData.build(world.split.train, world.split.test, world.forget_mask, seed=seed)
    retrain = RetrainCost(oracle_cost.example_gradients, math.nan, None, "not timed (tuning)")
    context = AuditContext(data, Evidence("oracle", oracle, data), Evidence("second oracle", oracle2, data),
                           Evidence("original", original, data), retrain, seed)
    assessor = Assessor(context, ["klom", "accuracy"])

    def evaluate(hp: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        try:
            unlearned, cost = unlearn_population(original, world.split.train, world.forget_mask, world.retain_mask,
                                                 method, world.recipe, seed, store=world.cache, **hp)
        except ExpungeError as error:
            return INFEASIBLE, {"error": str(error)}
        ratio = cost.example_gradients / retrain.example_gradients
        if cost.diverged:
            return INFEASIBLE, {"cost": ratio, "error": "members diverged"}
        rows = {r.key: r for r in assessor.assess(Candidate(method, Evidence(method, unlearned, data), cost),
                                                  plots=False).rows}
        klom_f, retain = rows["klom_p95/forget"], rows["accuracy/retain"]
        lost = max(0.0, retain.reference - retain.value - RETAIN_TOLERANCE_POINTS)
        value = klom_f.value / klom_f.reference + lost
        facts = {"klom_forget_over_floor": klom_f.value / klom_f.reference, "retain_accuracy": retain.value,
                 "oracle_retain_accuracy": retain.reference, "cost": ratio}
        if ratio > budget:
            return INFEASIBLE + ratio, facts | {"error": f"cost {ratio:.3f} over the budget {budget}"}
        return value, facts

    def objective(trial: Any) -> float:
        hp = {name: _suggest(trial, name, rng, defaults[name]) for name, rng in space.items()}
        value, facts = evaluate(hp)
        for key, fact in facts.items():
            trial.set_user_attr(key, fact)
        return value

    storage_path = Path(storage) if storage is not None else scenario.cache.root.parent / "tuning" / "studies.db"
    storage_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{storage_path}"
    name = study_name(scenario, method, members, budget, seed, space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url, load_if_exists=True, direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:  # the defaults first: the best trial is never worse than them on this objective
        study.enqueue_trial({name_: defaults[name_] for name_ in space})
    remaining = max(0, trials - len(finished))
    bar = progress(f"tune {method} ({trials} trials)")
    bar(len(finished), trials)
    study.optimize(objective, n_trials=remaining,
                   callbacks=[lambda s, t: bar(len([x for x in s.trials if x.state.is_finished()]), trials)])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial
    default_trial = next((t for t in complete if all(t.params.get(k) == defaults[k] for k in space)), None)
    history = [{"number": t.number, "params": t.params, "value": t.value, **t.user_attrs} for t in complete]
    study_info = {"name": name, "storage": url, "trials": len(complete), "objective": "klom_forget/floor + retain loss",
                  "validation_rule": world.forget.rule, "members": members, "budget": budget}
    chosen = TunedHyperparameters({k: best.params[k] for k in space}, study_info)
    return TuningResult(method, chosen, float(best.value),
                        float(default_trial.value) if default_trial is not None else math.nan, len(complete), name,
                        url, world.forget.rule, history)


def describe(result: TuningResult) -> str:
    """A short text summary (for the CLI and logs)."""
    return json.dumps(result.to_json() | {"history": len(result.history)}, indent=1, default=str)
