"""Scenarios: dataset + split + forget-set rule + recipe, and the populations they define.

A scenario builds (or loads from the cache) its original population (trained on the
whole training set), its oracle population (retrained on the retain set, independent
seeds) and shadow populations (trained on random halves, for membership attacks).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from expunge.data import ForgetSet, Split, load_dataset, parse_forget_rule
from expunge.training.cost import Cost
from expunge.training.engine import train_population
from expunge.training.population import Population
from expunge.training.recipe import Recipe, default_recipe
from expunge.training.seeds import generator
from expunge.training.store import PopulationCache, mask_fingerprint

# Seed offsets keep the roles' populations independent of each other.
ORACLE_SEED_OFFSET = 100_000
SECOND_ORACLE_SEED_OFFSET = 200_000
SHADOW_SEED_OFFSET = 300_000

Progress = Callable[[int, int], None]


@dataclass
class Scenario:
    """A dataset split, a forget set and a recipe; see :meth:`build`."""

    split: Split
    forget: ForgetSet
    recipe: Recipe
    cache: PopulationCache = field(default_factory=PopulationCache)
    device: str = "cpu"

    @classmethod
    def build(cls, dataset: str = "mnist1d", forget: str = "random:0.1", recipe: Recipe | None = None,
              seed: int = 0, cache: PopulationCache | None = None, device: str = "cpu",
              **dataset_kwargs: object) -> "Scenario":
        split = load_dataset(dataset, **dataset_kwargs)
        return cls(split, parse_forget_rule(forget, split.train, seed=seed), recipe or default_recipe(dataset),
                   cache or PopulationCache(), device)

    @property
    def name(self) -> str:
        return f"{self.split.name}/{self.forget.rule}/{self.recipe.model}"

    @property
    def forget_mask(self) -> torch.Tensor:
        return self.forget.forget_mask

    @property
    def retain_mask(self) -> torch.Tensor:
        return ~self.forget.forget_mask

    def _population(self, role: str, seeds: list[int], keep_masks: torch.Tensor | None,
                    progress: Progress | None) -> tuple[Population, Cost, bool]:
        parts = {"role": role, "data": self.split.fingerprint(), "split": self.split.name,
                 "subset": mask_fingerprint(keep_masks), "recipe": self.recipe.to_json(), "seeds": seeds}
        population, cost, hit = self.cache.get_or_train(
            parts, lambda: train_population(self.recipe, self.split.train, seeds=seeds, keep_masks=keep_masks,
                                            device=self.device, progress=progress),
            device=self.device)
        if hit and progress is not None:
            progress(1, 1)  # loaded from the cache: the work is done
        return population, cost, hit

    def original(self, members: int, progress: Progress | None = None) -> tuple[Population, Cost, bool]:
        """Members trained on the whole training set, seeds ``recipe.seed + i``."""
        seeds = [self.recipe.seed + i for i in range(members)]
        return self._population("original", seeds, None, progress)

    def oracle(self, members: int, second: bool = False,
               progress: Progress | None = None) -> tuple[Population, Cost, bool]:
        """Members retrained on the retain set; ``second=True`` gives an independent second oracle population."""
        offset = SECOND_ORACLE_SEED_OFFSET if second else ORACLE_SEED_OFFSET
        seeds = [self.recipe.seed + offset + i for i in range(members)]
        keep = self.retain_mask.unsqueeze(0).expand(members, -1).contiguous()
        return self._population("oracle", seeds, keep, progress)

    def shadow_masks(self, members: int) -> torch.Tensor:
        """Keep-masks of shadow members: each keeps a random half of the training set.

        Masks come in complementary pairs (member 2j keeps what 2j+1 leaves out), so every
        example is "in" for exactly half of the shadows, as LiRA's offline design prescribes.
        """
        n = len(self.split.train)
        masks = torch.zeros(members, n, dtype=torch.bool)
        for pair in range((members + 1) // 2):
            perm = torch.randperm(n, generator=generator(self.recipe.seed, "shadow-pair", pair))
            half = torch.zeros(n, dtype=torch.bool)
            half[perm[: n // 2]] = True
            masks[2 * pair] = half
            if 2 * pair + 1 < members:
                masks[2 * pair + 1] = ~half
        return masks

    def shadows(self, members: int, progress: Progress | None = None
                ) -> tuple[Population, Cost, bool, torch.Tensor]:
        """Shadow members trained on random halves; returns the population and its keep-masks."""
        masks = self.shadow_masks(members)
        seeds = [self.recipe.seed + SHADOW_SEED_OFFSET + i for i in range(members)]
        population, cost, hit = self._population("shadow", seeds, masks, progress)
        return population, cost, hit, masks
