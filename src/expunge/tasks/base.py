"""The task contract and the typed per-example statistics it produces."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from expunge.errors import ExpungeError

if TYPE_CHECKING:
    from expunge.data.base import ArrayDataset

# Every statistic a task may produce, with the definition id reports name (METRICS.md).
STATISTICS: dict[str, str] = {
    "loss": "loss@task-per-example",
    "correct": "correct@top1",
    "confidence": "confidence@softmax-true-class",
    "phi": "phi@log-odds-true-class",
    "margin": "margin@logit-minus-logsumexp-others",
    "sequence_loglik": "sequence_loglik@sum-answer-token-logprob",
}


class Task(ABC):
    """What a model's outputs mean: the per-example loss and statistics.

    ``statistics``: the names :meth:`statistics` returns (a subset of
    :data:`STATISTICS`); metrics that need others are not applicable to this task.
    ``categorical``: outputs are logits of a distribution over classes, so
    :meth:`probabilities` is defined.
    """

    name: ClassVar[str]
    statistics_provided: ClassVar[tuple[str, ...]]
    categorical: ClassVar[bool] = False

    @abstractmethod
    def output_width(self, num_classes: int | None) -> int:
        """Outputs per example a model needs for this task."""

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-example training loss ``[K, B]`` from outputs ``[K, B, O]`` and targets ``[K, B]`` or ``[B]``."""

    @abstractmethod
    def statistics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example statistics ``name -> [K, B]`` (float64), one per name in ``statistics_provided``."""

    def output_shape(self, data: "ArrayDataset") -> tuple[int, ...]:
        """A model's outputs per example for ``data`` (one vector of :meth:`output_width` by default)."""
        return (self.output_width(data.num_classes),)

    def check_outputs(self, outputs: torch.Tensor, data: "ArrayDataset") -> None:
        """Fail clearly when a model's outputs ``[K, B, ...]`` on ``data`` do not fit this task."""
        expected = self.output_width(data.num_classes)
        if outputs.dim() != 3 or outputs.shape[-1] != expected:
            got = list(outputs.shape[2:]) if outputs.dim() >= 3 else list(outputs.shape[1:])
            raise ExpungeError(
                f"the model gives outputs of shape {got} per example but the {data.task} data needs {expected} "
                f"({'one per class' if data.task == 'classification' else 'one target'}): "
                f"change the model's last layer to {expected} outputs"
            )

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """The predictive distribution ``[K, B, C]`` (categorical tasks only)."""
        raise ExpungeError(f"the {self.name} task has no predictive distribution over classes")

    def chance_loss(self, num_classes: int | None) -> float:
        """The loss of an uninformed prediction (a uniform guess), or 0 where undefined."""
        return 0.0

    @staticmethod
    def _per_member(targets: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        return targets.unsqueeze(0).expand(outputs.shape[0], -1) if targets.dim() == 1 else targets


def check_task(task: object) -> None:
    """Registry check: a task instance with a name and the methods of the contract."""
    if not isinstance(task, Task):
        raise ExpungeError(f"a task must be an instance of expunge.tasks.Task, got {type(task).__name__}")
    unknown = set(task.statistics_provided) - set(STATISTICS)
    if unknown:
        raise ExpungeError(f"task {task.name!r} provides unknown statistics {sorted(unknown)}; "
                           f"known: {sorted(STATISTICS)}")


@dataclass(frozen=True)
class Scores:
    """Per-example statistics of a population on one set of examples.

    ``values``: statistic name -> float64 array ``[K members, n examples]``. ``task``:
    the task that produced them (so a missing statistic can be explained).
    """

    values: Mapping[str, np.ndarray]
    task: str

    def __post_init__(self) -> None:
        shapes = {v.shape for v in self.values.values()}
        if len(shapes) > 1:
            raise ExpungeError(f"statistics disagree in shape: {sorted(shapes)}")

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.values:
            raise ExpungeError(f"the {self.task} task provides no {name!r} statistic "
                               f"(it provides {', '.join(sorted(self.values))})")
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    @property
    def members(self) -> int:
        return next(iter(self.values.values())).shape[0]

    @property
    def examples(self) -> int:
        return next(iter(self.values.values())).shape[1]

    def columns(self, index: np.ndarray) -> "Scores":
        """A subset of the examples."""
        return Scores({k: v[:, index] for k, v in self.values.items()}, self.task)
