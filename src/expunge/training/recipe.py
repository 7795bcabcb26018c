"""Recipes: everything that defines training."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import torch

from expunge.errors import ExpungeError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class Recipe:
    """Architecture, optimiser, learning rate and schedule, epochs, batch size and seed.

    The loss is the task's (:mod:`expunge.tasks`: cross-entropy for classification,
    squared error for regression), so a recipe works unchanged on any task.

    ``seed`` is the base seed; member ``i`` of a population uses seed ``seed + i`` unless
    seeds are given explicitly. ``schedule``: ``constant``; ``cosine`` (to zero over the
    run); ``step`` (x0.1 at 50% and 75% of the run). ``momentum`` applies to SGD,
    ``betas`` to Adam/AdamW. ``weight_decay`` is L2 for SGD/Adam, decoupled for AdamW.
    """

    model: str = "mlp"
    model_kwargs: dict = field(default_factory=dict)
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "step"] = "constant"
    epochs: int = 30
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ExpungeError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ExpungeError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1 or not (self.lr > 0):
            raise ExpungeError(
                f"epochs, batch_size and lr must be positive (got {self.epochs}, {self.batch_size}, {self.lr})"
            )

    def lr_factor(self, progress: torch.Tensor) -> torch.Tensor:
        """Multiplier of ``lr`` at ``progress`` in [0, 1) of the run, element-wise (one per member)."""
        if self.schedule == "cosine":
            return 0.5 * (1.0 + torch.cos(math.pi * progress))
        if self.schedule == "step":
            return torch.where(progress >= 0.75, 0.01, torch.where(progress >= 0.5, 0.1, 1.0))
        return torch.ones_like(progress)

    def to_json(self) -> dict:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Recipe":
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}  # e.g. the former "loss"
        data["betas"] = tuple(data.get("betas", (0.9, 0.999)))
        return cls(**data)

    def with_(self, **changes: object) -> "Recipe":
        valid = set(self.__dataclass_fields__)
        bad = set(changes) - valid
        if bad:
            raise ExpungeError(f"Recipe has no field(s) {sorted(bad)}; valid fields: {sorted(valid)}")
        return replace(self, **changes)  # type: ignore[arg-type]


DEFAULT_RECIPES: dict[str, Recipe] = {
    # The MNIST-1D paper's MLP (two hidden layers of 100) with Adam. lr 3e-3 makes it
    # memorise (train accuracy far above test accuracy; `expunge train --dataset mnist1d`
    # prints both): the forget set leaves a membership signal for unlearning to remove,
    # which is what an audit needs to resolve methods.
    "mnist1d": Recipe(model="mlp", model_kwargs={"hidden": [100, 100]}, optimizer="adam", lr=3e-3, epochs=30,
                      batch_size=128),
    "mnist5k": Recipe(model="cnn2d", optimizer="adam", lr=1e-3, epochs=15, batch_size=128),
    "digits": Recipe(model="mlp", optimizer="adam", lr=1e-3, epochs=40, batch_size=64),
    "breast_cancer": Recipe(model="mlp", model_kwargs={"hidden": [64]}, optimizer="adam", lr=1e-3, epochs=60, batch_size=32),
    "wine": Recipe(model="mlp", model_kwargs={"hidden": [64]}, optimizer="adam", lr=1e-3, epochs=80, batch_size=16),
    "diabetes": Recipe(model="mlp", model_kwargs={"hidden": [64]}, optimizer="adam", lr=1e-3, epochs=100, batch_size=32),
    "gaussians": Recipe(model="mlp", model_kwargs={"hidden": [128]}, optimizer="adam", lr=1e-3, epochs=20, batch_size=64),
    # gpt_tiny memorising question-answer facts (fictitious_authors): Adam at 3e-3 with enough epochs that
    # training answers are learned while unseen authors' are not (`python benchmarks/lm_learning.py` prints both).
    "fictitious_authors": Recipe(model="gpt_tiny", optimizer="adam", lr=3e-3, epochs=20, batch_size=32),
    "cifar10": Recipe(model="resnet", optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine", epochs=30, batch_size=128),
}


def default_recipe(dataset: str) -> Recipe:
    """The recipe expunge uses for a built-in dataset (an MLP with Adam when unknown)."""
    return DEFAULT_RECIPES.get(dataset, Recipe())
