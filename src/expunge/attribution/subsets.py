"""Populations trained on random subsets of the training set: the raw material of datamodels and LDS.

Member ``i`` of a subset design keeps exactly ``round(fraction x N)`` training examples,
drawn by a generator seeded from the design's seed, its purpose ("fit" or "lds") and
``i``; members are cached one by one (asking for more models trains only the new ones).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from expunge.attribution.base import SubsetDesign
from expunge.data.base import ArrayDataset
from expunge.training.cost import Cost
from expunge.training.engine import population_scores
from expunge.training.population import Population
from expunge.training.recipe import Recipe
from expunge.training.seeds import generator
from expunge.training.store import CacheReport, PopulationCache

# Seed offsets: independent of every scenario role (original 0, oracles 100k/200k, shadows 300k, random_init 600k).
# "memorisation": the 50% subset models of the memorized: forget rule (expunge.data.scored_rules).
SEED_OFFSETS = {"fit": 400_000, "lds": 450_000, "trak": 500_000, "memorisation": 700_000}
Progress = Callable[[int, int], None]


def subset_masks(n: int, design: SubsetDesign, purpose: str = "fit") -> torch.Tensor:
    """Keep-masks ``[models, n]``: each member keeps exactly ``round(fraction x n)`` random examples."""
    keep = round(design.fraction * n)
    masks = torch.zeros(design.models, n, dtype=torch.bool)
    for i in range(design.models):
        perm = torch.randperm(n, generator=generator(design.seed, "subset", purpose, design.fraction, i))
        masks[i, perm[:keep]] = True
    return masks


def subset_population(train: ArrayDataset, recipe: Recipe, design: SubsetDesign, purpose: str,
                      cache: PopulationCache, device: str | torch.device = "cpu",
                      model: torch.nn.Module | None = None, progress: Progress | None = None
                      ) -> tuple[Population, Cost, CacheReport, torch.Tensor]:
    """The design's members (cached), their cost and keep-masks."""
    masks = subset_masks(len(train), design, purpose)
    seeds = [recipe.seed + SEED_OFFSETS[purpose] + design.seed * 10_000 + i for i in range(design.models)]
    parts = {"role": f"subset:{purpose}:{design.fraction!r}", "data": train.fingerprint(),
             "recipe": recipe.to_json(), "model": None if model is None else type(model).__name__}
    population, cost, report = cache.trained(parts, recipe, train, seeds, masks, model, device, progress)
    return population, cost, report, masks


def target_margins(population: Population, train: ArrayDataset, test: ArrayDataset | None) -> np.ndarray:
    """Margins ``[models, T]`` on the targets: every training example, then every test example."""
    parts = [population_scores(population, train)["margin"]]
    if test is not None:
        parts.append(population_scores(population, test)["margin"])
    return np.concatenate(parts, axis=1)
