"""Plans: the populations and unlearning jobs a request needs, each named by a content hash.

A plan says *what* must exist; an :class:`~expunge.bench.executor.Executor` makes it
(in process today, on a cluster later) and the store keeps what was made. Every job's
key hashes what defines it (data, split, forget set, recipe, seeds, keep-masks,
method, hyperparameters) and the engine version, so a finished job is recognised and a
job made by an older engine is not.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from expunge.bench.exact import EXACT
from expunge.errors import ExpungeError, unknown_name
from expunge.methods.registry import METHODS, get_method
from expunge.training.engine import ENGINE_VERSION
from expunge.training.scenario import Scenario
from expunge.training.store import content_key, mask_fingerprint


class TunedHyperparameters(dict):
    """Hyperparameters found by :func:`expunge.tune`; ``study`` says where (audits mark such methods as tuned)."""

    def __init__(self, values: dict[str, Any], study: dict[str, Any]):
        super().__init__(values)
        self.study = study


@dataclass(eq=False)
class PopulationJob:
    """A population to train (or load): its role, member seeds and keep-masks ``[K, N]`` (None = all)."""

    role: str
    seeds: list[int]
    keep_masks: torch.Tensor | None
    key: str

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "members": len(self.seeds), "first_seed": self.seeds[0], "key": self.key}


@dataclass(eq=False)
class UnlearningJob:
    """A method applied to one population of the plan (``target``: "original" or "shadow")."""

    method: str
    hyperparameters: dict[str, Any]
    target: str
    seed: int
    key: str

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "hyperparameters": self.hyperparameters, "target": self.target,
                "seed": self.seed, "key": self.key}


@dataclass
class AuditPlan:
    """Everything an audit of ``methods`` on ``scenario`` needs."""

    scenario: Scenario
    members: int
    shadow_members: int
    seed: int
    populations: dict[str, PopulationJob]
    unlearning: list[UnlearningJob]
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"engine_version": ENGINE_VERSION, "populations": {k: v.to_json() for k, v in self.populations.items()},
                "unlearning": [job.to_json() for job in self.unlearning]}


def scenario_parts(scenario: Scenario) -> dict[str, Any]:
    return {"data": scenario.split.fingerprint(), "split": scenario.split.name, "recipe": scenario.recipe.to_json(),
            "engine": ENGINE_VERSION} | scenario.model_parts


def population_job(scenario: Scenario, role: str, members: int) -> PopulationJob:
    seeds, keep_masks = scenario.role_seeds(role, members), scenario.keep_masks(role, members)
    masks = [] if keep_masks is None else [mask_fingerprint(m) for m in keep_masks]
    key = content_key(scenario_parts(scenario) | {"role": role, "seeds": seeds, "masks": masks})
    return PopulationJob(role, seeds, keep_masks, key)


def method_plan(method: str | list[str] | dict[str, dict], hyperparameters: dict) -> dict[str, dict[str, Any]]:
    """Normalise the ways of naming methods to ``{name: hyperparameters}``, validated before any work."""
    if isinstance(method, str):
        plan = {method: dict(hyperparameters)}
    elif hyperparameters:
        raise ExpungeError("pass hyperparameters per method as a dict {method: {name: value}} when auditing several")
    elif isinstance(method, dict):
        plan = {name: hp if isinstance(hp, TunedHyperparameters) else dict(hp) for name, hp in method.items()}
    else:
        plan = {name: {} for name in method}
    if not plan:
        raise ExpungeError("name at least one method to audit (see `expunge methods`)")
    for name, hp in plan.items():  # fail fast on names and hyperparameters, before any training
        if name in EXACT:
            EXACT.get(name).check_hyperparameters(hp)
        elif name in METHODS:
            get_method(name).make_hyperparameters(**hp)
        else:
            raise unknown_name("method", name, [*METHODS.names(), *EXACT.names()])
    return plan


def plan_audit(scenario: Scenario, methods: dict[str, dict[str, Any]], members: int, shadow_members: int,
               seed: int = 0) -> AuditPlan:
    """The populations (original, oracle, second oracle, shadows) and unlearning jobs of an audit."""
    roles = ["original", "oracle", "second_oracle"] + (["shadow"] if shadow_members else [])
    populations = {role: population_job(scenario, role, shadow_members if role == "shadow" else members)
                   for role in roles}
    jobs = []
    forget = mask_fingerprint(scenario.forget_mask)
    for name, hp in methods.items():
        if name in EXACT:
            continue  # an exact construction builds its own populations (expunge.bench.exact)
        for target, method_seed in (("original", seed), ("shadow", seed + 1)):
            if target not in populations:
                continue
            key = content_key({"method": name, "hyperparameters": dict(hp), "target": populations[target].key,
                               "forget": forget, "seed": method_seed, "engine": ENGINE_VERSION})
            jobs.append(UnlearningJob(name, dict(hp), target, method_seed, key))
    return AuditPlan(scenario, members, shadow_members, seed, populations, jobs, methods)
