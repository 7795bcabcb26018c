"""``original``: do nothing. The lower reference every method should beat at forgetting."""
from __future__ import annotations

from typing import Any

from expunge.methods.base import Method, UnlearningTask
from expunge.methods.registry import register
from expunge.training.population import Population


@register
class Original(Method):
    """Return the original model unchanged (a copy).

    It is the reference point at zero cost: an audit shows how far the original is
    from the oracle, and so how much forgetting there is to do at all.

    Example:
        >>> unlearned, cost, check = expunge.unlearn(model, forget=forget, method="original")  # doctest: +SKIP
    """

    name = "original"
    demo = "quick"
    summary = "no change (lower reference)"
    paper = "-"
    kind = "reference"
    forgets = False
    needs_labels = False
    forget_sets = ("random", "class", "subclass")  # the reference point of every scenario
    tasks = ("classification", "regression", "causal_lm")

    def run(self, task: UnlearningTask, hp: Any) -> Population:
        return task.original.clone()
