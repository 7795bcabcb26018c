"""``retrain``: train from scratch on the retain set with the original recipe (the oracle)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from expunge.methods.base import Method, UnlearningTask, hyperparameter
from expunge.methods.common import retrain_members
from expunge.methods.registry import register
from expunge.training.population import Population


@register
class Retrain(Method):
    """Exact unlearning by retraining every member on its retain set.

    Each member is re-initialised from a seed derived from the method seed and its own
    seed (so it is *not* the original's initialisation) and trained with the original
    recipe on its retain set. This is the gold standard the audit compares against, and
    its cost is the denominator of every cost ratio.

    Example:
        >>> unlearned, cost, check = expunge.unlearn(model, forget=f, retain=r, method="retrain")  # doctest: +SKIP
    """

    name = "retrain"
    demo = "quick"
    summary = "retrain from scratch on the retain set (the oracle)"
    paper = "-"
    kind = "reference"
    needs_retain = True
    forget_sets = ("random", "class", "subclass")  # exact for any forget set
    tasks = ("classification", "regression", "causal_lm")

    @dataclass(frozen=True)
    class Hyperparameters:
        epochs: int = hyperparameter(0, "training epochs; 0 means the original recipe's")

    def run(self, task: UnlearningTask, hp: Any) -> Population:
        retain = task.require_retain(self.name)
        recipe = task.recipe if hp.epochs <= 0 else task.recipe.with_(epochs=hp.epochs)
        population = retrain_members(task, retain, "retrain", recipe)
        population.seeds = list(task.original.seeds)
        return population
