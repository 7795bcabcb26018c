"""The population trainer: K members trained together as one vectorised computation.

:data:`ENGINE_VERSION` is part of every cached population's content hash: change it
whenever a change to the engine (batching, optimisers, initialisation, numerics) could
change what a trained member is, so that no cache silently serves members trained by
an older engine.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from expunge.data.base import ArrayDataset
from expunge.errors import ExpungeError
from expunge.models.registry import ModelSpec
from expunge.training.batches import MemberBatches
from expunge.training.cost import Cost
from expunge.tasks import Scores, get_task
from expunge.training.memory import PeakMemory
from expunge.training.optim import PopulationOptimizer
from expunge.training.population import Population
from expunge.training.recipe import Recipe

Progress = Callable[[int, int], None]  # (steps done, total steps)

# 2: the loss moved from the recipe to the task; models take several inputs; members are cached one by one.
ENGINE_VERSION = "2"


def model_spec(recipe: Recipe, data: ArrayDataset) -> ModelSpec:
    """The architecture a recipe builds for a dataset."""
    outputs = get_task(data.task).output_width(data.num_classes)
    return ModelSpec(recipe.model, data.input_shape, outputs, dict(recipe.model_kwargs))


def member_seeds(recipe: Recipe, members: int) -> list[int]:
    return [recipe.seed + i for i in range(members)]


def check_output_shape(population: Population, data: ArrayDataset) -> None:
    """Fail clearly when a model's output does not match the task (each task says what fits it)."""
    try:
        with torch.no_grad():
            out = population.forward(tuple(t[:2].to(population.device) for t in data.inputs))
    except (RuntimeError, IndexError) as error:  # IndexError: a token id beyond the model's vocabulary
        raise ExpungeError(f"the model cannot run on examples shaped {list(data.input_shape)}: {error}") from None
    get_task(data.task).check_outputs(out, data)


def train_population(recipe: Recipe, data: ArrayDataset, members: int | None = None,
                     seeds: Sequence[int] | None = None, keep_masks: torch.Tensor | None = None,
                     model: torch.nn.Module | None = None, device: str | torch.device = "cpu",
                     progress: Progress | None = None, start: Population | None = None,
                     composition_free: bool = False) -> tuple[Population, Cost]:
    """Train a population with ``recipe`` on ``data``.

    ``members`` or ``seeds``: member ``i`` is initialised and shuffles its data from
    ``seeds[i]`` alone (default ``recipe.seed + i``). ``keep_masks``: bool ``[K, N]``,
    the training examples each member sees (shadow models); default all. ``model``: a
    user ``nn.Module`` to use instead of the recipe's named architecture (its layers are
    re-initialised per member). K = 1 is ordinary training through the same engine.
    ``start``: continue training these members (their parameters, one per seed) instead
    of fresh ones; ``seeds`` then only order the data.
    ``composition_free``: make member ``i``'s numbers independent of which other members
    are trained beside it, for exact unlearning, which retrains some members and must
    reproduce what training them among all the others gave: every optimiser step takes
    the per-member path (never the shared in-place fast path), and a population of one
    runs as two (a copy beside it, dropped after) so it takes the same vectorised
    kernels as a larger one. Slower; the default is off.

    What "member ``i`` is independent of the others" guarantees about the numbers:

    - **the same call gives the same numbers**: the same data, recipe, seeds and
      keep-masks on the same machine give bitwise-identical members;
    - **across paths, equality in distribution, not identity**: a population of K >= 2
      runs its members through vectorised (``vmap``) kernels, a population of one
      through single-model kernels; the two round floating point differently and
      training amplifies the last-bit differences. So member ``i`` trained inside a
      population and the same seed trained alone are two samples of the same
      distribution, not the same model: on MNIST-1D at the default recipe (30 epochs)
      they disagree on anywhere from none to a few hundred of the 4,000 training
      predictions, depending on the seed, while the distributions of test accuracy
      and loss over members agree (``tests/test_training.py`` tests this). Populations
      of different sizes K >= 2 share the vectorised path and have given identical
      members on CPU; that is an observation, not a promise for other devices. (A
      population of one skips ``vmap`` on purpose: ``vmap`` adds overhead to every step
      of a single model, which is what users unlearning their own model run;
      ``benchmarks/population.py`` prints both.)
    """
    if seeds is None:
        seeds = member_seeds(recipe, members or 1)
    seeds = list(seeds)
    n = len(data)
    if keep_masks is None:
        keep_masks = torch.ones(len(seeds), n, dtype=torch.bool)
    keep_masks = torch.as_tensor(keep_masks, dtype=torch.bool)
    if keep_masks.dim() == 1:
        keep_masks = keep_masks.unsqueeze(0).expand(len(seeds), -1)
    if keep_masks.shape != (len(seeds), n):
        raise ExpungeError(
            f"keep-mask has shape {list(keep_masks.shape)} but needs [{len(seeds)} members, {n} training examples]"
        )
    padded = composition_free and len(seeds) == 1
    if padded:  # the vectorised kernels, as for K >= 2; the copy is dropped at the end
        seeds, keep_masks = seeds * 2, keep_masks.expand(2, -1)
        if start is not None:
            start = Population(start.template, {k: v.expand(2, *v.shape[1:]).clone() for k, v in start.params.items()},
                               {k: v.expand(2, *v.shape[1:]).clone() for k, v in start.buffers.items()},
                               start.seeds * 2, start.spec, start.info)
    if start is not None:
        if len(start) != len(seeds):
            raise ExpungeError(f"{len(start)} starting members for {len(seeds)} seeds")
        population = start.clone().to(device)
    else:
        population = Population.initialize(model if model is not None else model_spec(recipe, data),
                                           seeds).to(device)
    check_output_shape(population, data)
    task = get_task(data.task)
    start = time.perf_counter()
    params = {k: v.clone().requires_grad_(True) for k, v in population.params.items()}
    optimizer = PopulationOptimizer(params, recipe.optimizer, recipe.lr, recipe.momentum, recipe.weight_decay,
                                    recipe.betas, shared_fast_path=not composition_free)
    batches = MemberBatches(keep_masks, recipe.batch_size, seeds)
    data = data.to(device)
    member_total = torch.tensor(batches.steps, device=device) * recipe.epochs
    per_epoch = float(sum(len(p) for p in batches.positions)) / len(seeds)
    single = population.bound(params)  # K = 1: the plain module, no per-step re-parametrisation
    total = batches.max_steps * recipe.epochs
    cost = Cost(members=len(seeds))
    done = 0
    with PeakMemory(device) as peak:
        for _epoch in range(recipe.epochs):
            cost.example_gradients += per_epoch  # every member sees each of its examples once per epoch
            for batch in batches.epoch(device):
                inputs = data.inputs_at(batch.index)
                outputs = single(tuple(t[0] for t in inputs)) if single else population.forward(
                    inputs, params, per_member_input=True)
                losses = batch.mean(task.loss(outputs, data.y[batch.index]))
                if recipe.schedule == "constant":
                    lr: float | torch.Tensor = recipe.lr
                else:
                    progress_k = (optimizer.steps.float() / member_total).clamp(max=1.0)
                    lr = recipe.lr * recipe.lr_factor(progress_k)
                optimizer.step(losses, batch.active, lr)
                done += 1
                if progress is not None:
                    progress(done, total)
    cost.wall_time_s = time.perf_counter() - start
    cost.record_memory(peak)
    cost.diverged = torch.nonzero(optimizer.diverged).flatten().tolist()
    info = {"recipe": recipe.to_json(), "trained_examples": keep_masks.sum(1).tolist(), "engine": ENGINE_VERSION}
    trained = population.with_params(params, info)
    if padded:
        trained = trained.select([0])
        cost.members = 1
        cost.diverged = [i for i in cost.diverged if i == 0]
    return trained, cost


# Outputs (floats) one scoring chunk may hold across all members: language models give [K, n, T, V].
SCORING_CHUNK_ELEMENTS = 1 << 24


@torch.no_grad()
def population_scores(population: Population, data: ArrayDataset, positions: torch.Tensor | None = None) -> Scores:
    """The task's per-example statistics ``[K, n]`` of every member on ``data`` (or the given positions)."""
    inputs, y = (data.inputs, data.y) if positions is None else (data.inputs_at(positions), data.y[positions])
    task = get_task(data.task)
    per_example = len(population) * math.prod(task.output_shape(data))
    chunk = max(1, min(4096, SCORING_CHUNK_ELEMENTS // max(1, per_example)))
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, max(1, y.shape[0]), chunk):
        outputs = population.predict(tuple(t[start:start + chunk] for t in inputs), chunk=chunk)
        for name, value in task.statistics(outputs, y[start:start + chunk].to(outputs.device)).items():
            parts.setdefault(name, []).append(value.cpu())
    return Scores({k: torch.cat(v, dim=1).numpy() for k, v in parts.items()}, task.name)


@torch.no_grad()
def accuracy(population: Population, data: ArrayDataset, positions: torch.Tensor | None = None) -> torch.Tensor:
    """Per-member accuracy in percent ``[K]``; for a task without accuracy (regression), minus the mean loss."""
    if positions is not None and len(positions) == 0:
        return torch.full((len(population),), float("nan"))
    scores = population_scores(population, data, positions)
    if "correct" in scores:
        return torch.from_numpy(scores["correct"].mean(1) * 100.0).float()
    return torch.from_numpy(-scores["loss"].mean(1)).float()
