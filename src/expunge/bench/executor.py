"""Executors run a plan's jobs. :class:`LocalExecutor` runs them in this process.

The interface is what a cluster executor (Ray) implements too: every call takes the
scenario and one job and returns plain results, so jobs can run anywhere and the same
seeds give the same numbers.
"""
from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch

from expunge.audit.evidence import RetrainCost
from expunge.bench.plan import PopulationJob, UnlearningJob
from expunge.methods.registry import unlearn_population
from expunge.training.cost import Cost
from expunge.training.engine import train_population
from expunge.training.population import Population
from expunge.training.scenario import Scenario
from expunge.training.seeds import derive_seed
from expunge.training.store import CacheReport

Progress = Callable[[int, int], None]


class Executor(ABC):
    """Runs population and unlearning jobs."""

    name: ClassVar[str]

    @abstractmethod
    def train(self, scenario: Scenario, job: PopulationJob, progress: Progress | None = None
              ) -> tuple[Population, Cost, CacheReport]:
        """The job's population, from the store or trained (only its missing members)."""

    @abstractmethod
    def unlearn(self, scenario: Scenario, job: UnlearningJob, population: Population, forget_masks: torch.Tensor,
                retain_masks: torch.Tensor | None, progress: Progress | None = None) -> tuple[Population, Cost]:
        """The job's method applied to ``population`` with per-member forget / retain masks."""

    @abstractmethod
    def time_retraining(self, scenario: Scenario, members: int, progress: Progress | None = None) -> RetrainCost:
        """Retraining's cost per member, its wall time measured now (see :class:`LocalExecutor`)."""


class LocalExecutor(Executor):
    """Runs every job in this process, on the scenario's device."""

    name = "local"

    def train(self, scenario, job, progress=None):
        return scenario.population(job.role, len(job.seeds), progress)

    def unlearn(self, scenario, job, population, forget_masks, retain_masks, progress=None):
        return unlearn_population(population, scenario.split.train, forget_masks, retain_masks, job.method,
                                  scenario.recipe, job.seed, progress=progress, store=scenario.cache,
                                  **job.hyperparameters)

    def time_retraining(self, scenario: Scenario, members: int, progress: Progress | None = None) -> RetrainCost:
        """Time one epoch of retraining ``members`` fresh members on the retain set, scaled to the recipe's epochs.

        The same population size as the methods it is compared with, in the same
        process and run, so the wall-time ratio compares like with like. Example
        gradients are counted exactly: epochs x retain-set size per member.
        """
        recipe = scenario.recipe
        one_epoch = recipe.with_(epochs=1)
        seeds = [derive_seed(recipe.seed, "retrain-timing", i) % (2 ** 31) for i in range(members)]
        keep = scenario.retain_mask.unsqueeze(0).expand(members, -1).contiguous()
        start = time.perf_counter()
        _, cost = train_population(one_epoch, scenario.split.train, seeds=seeds, keep_masks=keep,
                                   model=scenario.model, device=scenario.device, progress=progress)
        elapsed = time.perf_counter() - start
        per_member = elapsed / members * recipe.epochs
        gradients = float(recipe.epochs * int(scenario.retain_mask.sum()))
        return RetrainCost(gradients, per_member, cost.peak_rss_bytes,
                           f"timed in this run: 1 of {recipe.epochs} epochs of {members} members, x {recipe.epochs}")


def retrain_cost_from_method(cost: Cost, scenario: Scenario) -> RetrainCost:
    """Retraining's cost per member from the ``retrain`` method's own run (same run, same population)."""
    gradients = cost.example_gradients if cost.example_gradients > 0 else \
        float(scenario.recipe.epochs * int(scenario.retain_mask.sum()))
    per_member = cost.wall_time_per_member_s if cost.wall_time_s > 0 else math.nan
    return RetrainCost(gradients, per_member, cost.peak_rss_bytes,
                       f"timed in this run: the retrain method on {cost.members} members")
