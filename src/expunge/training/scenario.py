"""Scenarios: dataset + split + forget-set rule + recipe, and the populations they define.

A scenario builds (or loads from the cache) its original population (trained on the
whole training set), its oracle population (retrained on the retain set, independent
seeds) and shadow populations (trained on random halves, for membership attacks).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from expunge.data import ForgetSet, RuleContext, Split, load_dataset, parse_forget_rule
from expunge.errors import ExpungeError
from expunge.training.cost import Cost
from expunge.training.population import Population
from expunge.training.recipe import Recipe, default_recipe
from expunge.training.seeds import generator
from expunge.training.store import CacheReport, PopulationCache

# Seed offsets keep the roles' populations independent of each other.
ROLE_SEED_OFFSETS = {"original": 0, "oracle": 100_000, "second_oracle": 200_000, "shadow": 300_000,
                     "random_init": 600_000}  # untrained members (ZRF's incompetent teacher)

Progress = Callable[[int, int], None]


@dataclass
class Scenario:
    """A dataset split, a forget set and a recipe; see :meth:`build`.

    ``model``: a user ``nn.Module`` to train instead of the recipe's named architecture
    (its layers are re-initialised per member); its architecture is part of every cache key.
    """

    split: Split
    forget: ForgetSet | None
    recipe: Recipe
    cache: PopulationCache = field(default_factory=PopulationCache)
    device: str = "cpu"
    model: nn.Module | None = None

    @classmethod
    def build(cls, dataset: str = "mnist1d", forget: str | None = "random:0.1", recipe: Recipe | None = None,
              seed: int = 0, cache: PopulationCache | None = None, device: str = "cpu",
              model: nn.Module | None = None, **dataset_kwargs: object) -> "Scenario":
        """A built-in dataset with a forget rule (``None``: no forget set, for training originals only).

        Scored rules (``memorized:``, ``entangled:``, ``datamodel_pc:``) score examples
        with models of this recipe, from the same cache."""
        split = load_dataset(dataset, **dataset_kwargs)
        return cls.with_rule(split, forget, recipe or default_recipe(dataset), seed, cache or PopulationCache(),
                             device, model)

    @classmethod
    def with_rule(cls, split: Split, forget: str | None, recipe: Recipe, seed: int = 0,
                  cache: PopulationCache | None = None, device: str = "cpu",
                  model: nn.Module | None = None) -> "Scenario":
        """A scenario on ``split`` whose forget set is the rule ``forget``, parsed with this scenario's models."""
        scenario = cls(split, None, recipe, cache or PopulationCache(), device, model)
        if forget is not None:
            context = RuleContext(recipe, scenario.cache, device, model, scenario.role_parts("original"))
            scenario.forget = parse_forget_rule(forget, split.train, seed=seed, context=context)
        return scenario

    def role_parts(self, role: str) -> dict:
        """The cache parts of a role's population (every member's key hashes them)."""
        return {"role": role, "data": self.split.fingerprint(), "split": self.split.name,
                "recipe": self.recipe.to_json()} | self.model_parts

    @property
    def model_parts(self) -> dict[str, str]:
        """The user model's identity for cache keys (empty for a named architecture, so those keys do not change)."""
        return {} if self.model is None else {"model": module_fingerprint(self.model)}

    @property
    def name(self) -> str:
        rule = self.forget.rule if self.forget is not None else "no forget set"
        return f"{self.split.name}/{rule}/{self.recipe.model}"

    @property
    def forget_mask(self) -> torch.Tensor:
        if self.forget is None:
            raise ExpungeError("this scenario has no forget set: build it with forget='random:0.1' (or another rule)")
        return self.forget.forget_mask

    @property
    def retain_mask(self) -> torch.Tensor:
        return ~self.forget_mask

    def role_seeds(self, role: str, members: int) -> list[int]:
        """Member seeds of a role: ``recipe.seed + offset + i``; offsets keep the roles independent."""
        if role not in ROLE_SEED_OFFSETS:
            raise ExpungeError(f"unknown population role {role!r}; roles are {', '.join(ROLE_SEED_OFFSETS)}")
        return [self.recipe.seed + ROLE_SEED_OFFSETS[role] + i for i in range(members)]

    def keep_masks(self, role: str, members: int) -> torch.Tensor | None:
        """What each member of a role trains on ``[K, N]``: everything (None), the retain set, or shadow halves."""
        if role == "original":
            return None
        if role in ("oracle", "second_oracle"):
            return self.retain_mask.unsqueeze(0).expand(members, -1).contiguous()
        return self.shadow_masks(members)

    def population(self, role: str, members: int, progress: Progress | None = None
                   ) -> tuple[Population, Cost, CacheReport]:
        """The ``members`` first members of a role, from the cache or trained now (only the missing ones)."""
        seeds, keep_masks = self.role_seeds(role, members), self.keep_masks(role, members)
        return self.cache.trained(self.role_parts(role), self.recipe, self.split.train, seeds, keep_masks, model=self.model,
                                  device=self.device, progress=progress)

    def original(self, members: int, progress: Progress | None = None) -> tuple[Population, Cost, CacheReport]:
        """Members trained on the whole training set, seeds ``recipe.seed + i``."""
        return self.population("original", members, progress)

    def oracle(self, members: int, second: bool = False,
               progress: Progress | None = None) -> tuple[Population, Cost, CacheReport]:
        """Members retrained on the retain set; ``second=True`` gives an independent second oracle population."""
        return self.population("second_oracle" if second else "oracle", members, progress)

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
                ) -> tuple[Population, Cost, CacheReport, torch.Tensor]:
        """Shadow members trained on random halves; returns the population and its keep-masks."""
        population, cost, report = self.population("shadow", members, progress)
        return population, cost, report, self.shadow_masks(members)


def module_fingerprint(model: nn.Module) -> str:
    """A hash of a module's class, structure (its repr) and parameter names and shapes; not its weights,
    which every member re-initialises."""
    shapes = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    text = f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}\n{shapes}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
