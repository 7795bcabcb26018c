"""Building blocks shared by gradient-based methods: stacked training, gradient accumulation, teachers.

They count cost (example gradients, forward passes) and advance the progress bar
themselves, so a method only declares the steps it plans (``task.expect``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from expunge.methods.base import UnlearningTask
from expunge.training.batches import Batch, MemberBatches
from expunge.training.engine import train_population
from expunge.training.optim import PopulationOptimizer
from expunge.training.population import Params, Population
from expunge.training.recipe import Recipe


class StackedTraining:
    """A copy of a population's parameters being optimised, with cost and progress accounting.

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
        self._steps = 0
        self._single = self.population.bound(self.params)  # K = 1: a user's model, run without re-parametrising

    def outputs(self, index: torch.Tensor) -> torch.Tensor:
        """Outputs ``[K, B, C]`` of the current parameters on per-member batch positions ``[K, B]``."""
        inputs = self.task.inputs(index)
        if self._single is not None:
            return self._single(tuple(t[0] for t in inputs))
        return self.population.forward(inputs, self.params, per_member_input=True)

    def task_loss(self, batch: Batch, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Per-member mean task loss ``[K]`` of the batch (labels default to the true ones)."""
        labels = self.task.y[batch.index] if labels is None else labels
        return batch.mean(self.task.loss(self.outputs(batch.index), labels))

    def step(self, losses: torch.Tensor, active: torch.Tensor | None, examples: float,
             lr: float | torch.Tensor | None = None) -> torch.Tensor:
        """One optimiser step on per-member losses; counts ``examples`` gradients and one step of progress.

        Members that reached the task's stopping target (``task.stop``) take no step.
        """
        task = self.task
        task.meter.gradients(examples)
        go = ~task.stopped if active is None else active.to(task.stopped.device) & ~task.stopped
        updated = self.optimizer.step(losses, go, lr)
        task.advance()
        self._steps += 1
        rule = task.stop
        if rule is not None and self._steps % rule.every == 0:
            task.stopped |= self.reached(rule)
        return updated

    @torch.no_grad()
    def reached(self, rule) -> torch.Tensor:
        """Per member, whether its forget set meets the stopping target at the current parameters."""
        task = self.task
        union = torch.nonzero(task.forget_masks.any(0)).flatten()
        outputs = self.population.forward(task.inputs(union), self.params)  # [K, U, C]
        width = task.objective.output_width(task.train.num_classes)
        outputs = outputs[..., :width]  # a widened head (boundary_expand's shadow class) is pruned before use
        task.meter.forwards(len(union) * task.members)
        stats = task.objective.statistics(outputs, task.y[union])
        weight = task.forget_masks[:, union].to(torch.float64)
        name = "loss" if rule.statistic == "loss" else "correct"
        mean = (stats[name] * weight).sum(1) / weight.sum(1).clamp(min=1)
        if rule.statistic == "loss":
            return mean >= rule.threshold
        return 100.0 * mean <= rule.threshold

    def result(self) -> Population:
        diverged = torch.nonzero(self.optimizer.diverged).flatten().tolist()
        for m in diverged:
            if m not in self.task.meter.cost.diverged:
                self.task.meter.cost.diverged.append(m)
        return self.population.with_params(self.params)


def accumulate_gradients(task: UnlearningTask, batches: MemberBatches, purpose_loss: Callable[[torch.Tensor, Batch],
                         torch.Tensor], transform: Callable[[torch.Tensor], torch.Tensor] = lambda g: g,
                         population: Population | None = None) -> Params:
    """Per member, the sum over one epoch of ``batches`` of ``transform(gradient of purpose_loss)``.

    ``purpose_loss(outputs, batch)`` returns per-member losses ``[K]`` from the
    outputs ``[K, B, C]`` of the (fixed) population on the batch. Gradients are taken at
    ``population``'s parameters (default: the task's original), counted in the cost,
    and each batch advances the progress bar by one step.
    """
    population = population if population is not None else task.original
    params = {k: v.detach().clone().requires_grad_(True) for k, v in population.params.items()}
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    task.expect(batches.max_steps)
    for batch in batches.epoch(task.device):
        outputs = population.forward(task.inputs(batch.index), params, per_member_input=True)
        grads = torch.autograd.grad(purpose_loss(outputs, batch).sum(), list(params.values()), allow_unused=True)
        with torch.no_grad():
            for name, grad in zip(params, grads):
                if grad is not None:  # a member without a batch at this step has a zero gradient
                    total[name] += transform(grad)
        task.meter.gradients(batch.examples)
        task.advance()
    return total


def retrain_members(task: UnlearningTask, keep_masks: torch.Tensor, purpose: str,
                    recipe: Recipe | None = None) -> Population:
    """Fresh members trained with the recipe on ``keep_masks`` (seeds derived for ``purpose``), cost and progress counted.

    Members are re-initialised from seeds of the method's own (never the original's, and
    never an audit's oracle seeds), as a user module's layers or the registered architecture.
    """
    recipe = recipe or task.recipe
    batches = MemberBatches(keep_masks.cpu(), recipe.batch_size, task.member_seeds(purpose))
    task.expect(batches.max_steps * recipe.epochs)
    population, cost = train_population(recipe, task.train, seeds=task.member_seeds(purpose),
                                        keep_masks=keep_masks.cpu(), model=task.template(), device=task.device,
                                        progress=lambda done, total: task.advance())
    task.meter.gradients(cost.example_gradients * task.members)
    return population


@torch.no_grad()
def teacher_outputs(task: UnlearningTask, teacher: Population, batch: Batch) -> torch.Tensor:
    """Outputs of a fixed (teacher) population on a per-member batch, counted as forward passes."""
    task.meter.forwards(batch.examples)  # real examples, not padding
    return teacher.forward(task.inputs(batch.index), per_member_input=True)


MIN_STEPS_PER_PASS = 4  # a set smaller than a few batches still gets real updates
STOP_EXTENSION = 10  # with a stopping target, passes continue up to this many times the planned number


def epochs_over(task: UnlearningTask, masks: torch.Tensor, batch_size: int, epochs: int,
                purpose: str, numbered: bool = False) -> Iterator[Batch] | Iterator[tuple[int, Batch]]:
    """``epochs`` passes of per-member minibatches over ``masks``, each of at least :data:`MIN_STEPS_PER_PASS` steps.

    Declares their steps as planned work. With a stopping target (``task.stop``) the
    passes end as soon as every member has reached it, and otherwise continue past
    ``epochs``, up to ``STOP_EXTENSION x epochs``, until they do: a method stops when
    done rather than after a fixed count. ``numbered``: yield ``(epoch, batch)`` pairs
    (for per-epoch schedules).
    """
    batches = task.batches(masks, batch_size, purpose, min_steps=MIN_STEPS_PER_PASS)
    task.expect(batches.max_steps * epochs)
    limit = epochs if task.stop is None else epochs * STOP_EXTENSION
    for epoch in range(limit):
        if task.stop is not None and bool(task.stopped.all()):
            break
        if epoch >= epochs:
            task.expect(batches.max_steps)
        for batch in batches.epoch(task.device):
            yield (epoch, batch) if numbered else batch


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
