"""Tasks: what a model's outputs mean.

A task defines the per-example loss that training and unlearning minimise and the
per-example **statistics** every other layer consumes (loss, correct, phi, margin,
confidence, ...), computed from raw outputs in exactly one place. Methods and audits
receive :class:`Scores` (per split, ``[K, n]`` arrays per statistic), never logits.

Built in: ``classification`` (logits over classes), ``regression`` (one real output)
and ``causal_lm`` (next-token logits over a vocabulary, scored on answer tokens;
:mod:`expunge.tasks.causal_lm`). More register through the ``expunge.tasks``
entry-point group like every other registry.
"""
from expunge.registry import Registry
from expunge.tasks.base import STATISTICS, Scores, Task, check_task

TASKS: Registry[Task] = Registry("task", "expunge.tasks", ("expunge.tasks.builtin", "expunge.tasks.causal_lm"),
                                 check=check_task)


def get_task(name: str) -> Task:
    """The registered task called ``name`` (``classification``, ``regression``, ...)."""
    return TASKS.get(name)


__all__ = ["STATISTICS", "TASKS", "Scores", "Task", "get_task"]
