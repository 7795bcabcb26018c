"""Building blocks shared by gradient-based methods: stacked training and teacher outputs."""
from __future__ import annotations

from collections.abc import Iterator

import torch

from expunge.methods.base import UnlearningTask
from expunge.training.batches import Batch, MemberBatches
from expunge.training.losses import per_example_loss
from expunge.training.optim import PopulationOptimizer
from expunge.training.population import Params, Population


class StackedTraining:
    """A copy of a population's parameters being optimised, with cost accounting.

    Starts from ``start`` (default: the task's original) and never touches it. The
    optimiser freezes a member whose loss turns NaN/inf at its last finite parameters
    and the task's cost record lists it (see :class:`PopulationOptimizer`).
    """

    def __init__(self, task: UnlearningTask, optimizer: str = "sgd", lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0, update_masks: Params | None = None, start: Population | None = None):
        self.task = task
        self.population = start if start is not None else task.original
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in self.population.params.items()}
        self.optimizer = PopulationOptimizer(self.params, optimizer, lr, momentum, weight_decay,
                                             update_masks=update_masks)

    def outputs(self, index: torch.Tensor) -> torch.Tensor:
        """Outputs ``[K, B, C]`` of the current parameters on per-member batch positions ``[K, B]``."""
        return self.population.forward(self.task.x[index], self.params, per_member_input=True)

    def inputs_outputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs on per-member inputs ``[K, B, ...]`` (e.g. adversarially perturbed ones)."""
        return self.population.forward(inputs, self.params, per_member_input=True)

    def task_loss(self, batch: Batch, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Per-member mean loss ``[K]`` of the batch under the recipe's loss (labels default to the true ones)."""
        labels = self.task.y[batch.index] if labels is None else labels
        return batch.mean(per_example_loss(self.outputs(batch.index), labels, self.task.recipe.loss))

    def step(self, losses: torch.Tensor, active: torch.Tensor | None, examples: float,
             lr: float | torch.Tensor | None = None) -> torch.Tensor:
        """One optimiser step on per-member losses; ``examples`` gradient evaluations are counted."""
        self.task.meter.gradients(examples)
        return self.optimizer.step(losses, active, lr)

    def result(self) -> Population:
        diverged = torch.nonzero(self.optimizer.diverged).flatten().tolist()
        for m in diverged:
            if m not in self.task.meter.cost.diverged:
                self.task.meter.cost.diverged.append(m)
        return self.population.with_params(self.params)


@torch.no_grad()
def teacher_outputs(task: UnlearningTask, teacher: Population, batch: Batch) -> torch.Tensor:
    """Outputs of a fixed (teacher) population on a per-member batch, counted as forward passes."""
    task.meter.forwards(batch.examples)  # real examples, not padding
    return teacher.forward(task.x[batch.index], per_member_input=True)


def epochs_over(task: UnlearningTask, masks: torch.Tensor, batch_size: int, epochs: int, purpose: str):
    """Iterate ``epochs`` passes of per-member minibatches over ``masks``, reporting progress."""
    batches = task.batches(masks, batch_size, purpose)
    total, done = batches.max_steps * epochs, 0
    for _ in range(epochs):
        for batch in batches.epoch(task.device):
            yield batch
            done += 1
            task.report_progress(done, total)


class CycledBatches:
    """Endless per-member minibatches over ``masks``: ``itertools.cycle`` of a loader, per member.

    Each member has its own stream, seeded from its own seed for ``purpose``, that
    reshuffles whenever that member's pass over its examples ends. :meth:`next`
    advances only the members named active, so a member's sequence of batches is the
    same whether it is unlearned alone or beside members whose epochs are longer.
    """

    def __init__(self, task: UnlearningTask, masks: torch.Tensor, batch_size: int, purpose: str):
        seeds = task.member_seeds(purpose)
        self.device = task.device
        self.streams = [_endless(MemberBatches(masks[k:k + 1], batch_size, [seeds[k]]), self.device)
                        for k in range(task.members)]
        self.batch_size = int(batch_size)

    def next(self, active: torch.Tensor) -> Batch:
        """The next batch of every active member; inactive members get an all-padding batch."""
        idle_index = torch.zeros(1, self.batch_size, dtype=torch.long, device=self.device)
        idle_weight = torch.zeros(1, self.batch_size, device=self.device)
        indices, weights = [], []
        for stream, go in zip(self.streams, active.tolist()):
            if go:
                batch = next(stream)
                indices.append(batch.index)
                weights.append(batch.weight)
            else:
                indices.append(idle_index)
                weights.append(idle_weight)
        return Batch(torch.cat(indices), torch.cat(weights), active.to(self.device))


def _endless(batches: MemberBatches, device: torch.device) -> Iterator[Batch]:
    while True:
        yield from batches.epoch(device)
