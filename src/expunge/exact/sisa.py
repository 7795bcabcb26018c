"""SISA: sharded, isolated, sliced, aggregated training, whose deletions are exact.

Bourtoule et al., "Machine Unlearning", IEEE S&P 2021. The training set is cut into
``S`` disjoint *shards*; one model is trained per shard and predictions aggregate the
shard models. Each shard is further cut into ``R`` *slices*, trained in sequence: stage
``r`` continues from stage ``r - 1``'s checkpoint on slices ``0..r``. Deleting examples
retrains only the shards that held them, each from the checkpoint taken before the first
slice that held one: everything before it never saw them.

Built on the population engine: the ``S`` shard models are ``S`` members with disjoint
keep-masks, trained as one vectorised computation. A *SISA population* holds ``E``
independent SISA ensembles (different seeds) as ``E x S`` members, which is what an
audit needs (``E`` models to compare with ``E`` oracles).

**Exactness.** After :meth:`SisaModel.forget`, the model's parameters equal those of a
SISA model trained from scratch on the data without the deleted examples (same seeds):
bitwise on CPU in our tests. Three things make that true:

- an example's shard and slice depend only on its ID and the assignment seed
  (:func:`assign`), never on which other examples exist, so the retained examples sit in
  the same shard and slice in both models;
- a shard's data order at stage ``r`` depends only on its seed, ``r`` and its examples
  (the engine's per-member generators);
- training runs ``composition_free`` (:func:`expunge.training.engine.train_population`):
  a shard's numbers do not depend on which other shards are trained beside it.

Defaults and their reasons: ``epochs_per_stage = max(1, round(2 E / (R + 1)))`` for a
recipe of ``E`` epochs, the paper's rule for keeping the total number of example
gradients of sliced training equal to unsliced training (stage ``r`` sees ``r + 1`` of
``R`` slices); the optimiser state restarts at each stage, so a checkpoint is only the
parameters; aggregation ``mean`` (average of the shard models' probabilities; ``vote``:
majority of their predicted classes, ties to the class with the higher mean
probability). A shard with no examples left takes no part in predictions.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from expunge.data.base import ArrayDataset, Inputs
from expunge.errors import ExpungeError
from expunge.files import atomic_write
from expunge.models.registry import ModelSpec
from expunge.training.engine import model_spec, train_population
from expunge.training.population import Population
from expunge.training.recipe import Recipe
from expunge.training.seeds import derive_seed

AGGREGATES = ("mean", "vote")
STATE_FORMAT = 1
Progress = Callable[[int, int], None]


def assign(ids: torch.Tensor, shards: int, slices: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shard and slice of every ID: a function of the ID and ``seed`` alone (a splitmix64 hash)."""
    x = ids.detach().cpu().numpy().astype(np.uint64) + np.uint64(derive_seed("sisa-assign", int(seed)))
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    shard = torch.from_numpy((x % np.uint64(shards)).astype(np.int64))
    slice_ = torch.from_numpy(((x // np.uint64(shards)) % np.uint64(slices)).astype(np.int64))
    return shard, slice_


def stage_epochs(epochs: int, slices: int) -> int:
    """Epochs per slice stage that keep the total example gradients of ``epochs`` unsliced epochs."""
    return max(1, round(2 * epochs / (slices + 1)))


@dataclass
class DeletionCost:
    """What one deletion spent: example gradients, shard stages retrained, and the ratios to retraining."""

    example_gradients: float = 0.0
    shards_retrained: int = 0
    stages_retrained: int = 0
    wall_time_s: float = 0.0
    full_example_gradients: float = 0.0  # retraining the whole SISA model (all shards, all stages)

    @property
    def ratio_to_full(self) -> float:
        return self.example_gradients / self.full_example_gradients if self.full_example_gradients else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {"example_gradients": self.example_gradients, "shards_retrained": self.shards_retrained,
                "stages_retrained": self.stages_retrained, "wall_time_s": self.wall_time_s,
                "full_example_gradients": self.full_example_gradients, "ratio_to_full": self.ratio_to_full}


@dataclass
class SisaModel:
    """``ensembles`` independent SISA models of ``shards`` shards and ``slices`` slices each.

    ``checkpoints[r]``: the population of all ``ensembles x shards`` shard models after
    stage ``r`` (member ``e * shards + s`` is shard ``s`` of ensemble ``e``); the last is
    the model. ``alive``: bool ``[N]`` over the training set's positions, ``False`` for
    deleted examples. Use :meth:`train` to build one.
    """

    recipe: Recipe
    shards: int
    slices: int
    ensembles: int
    seed: int
    aggregate: str
    train_ids: torch.Tensor  # int64 [N]: the training set's IDs, in its order
    alive: torch.Tensor  # bool [N]
    checkpoints: list[Population]
    stage_recipe: Recipe
    history: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------ construction
    @classmethod
    def train(cls, data: ArrayDataset, shards: int, slices: int = 1, recipe: Recipe | None = None, seed: int = 0,
              aggregate: str = "mean", ensembles: int = 1, exclude_ids: Sequence[int] | torch.Tensor | None = None,
              model: nn.Module | None = None, device: str | torch.device = "cpu",
              progress: Progress | None = None) -> SisaModel:
        """Train from scratch on ``data`` without ``exclude_ids`` (as if they had been deleted before training).

        ``seed``: ensemble ``e``'s shard ``s`` is initialised from ``seed + e * shards + s``;
        the assignment of examples to shards and slices uses ``seed`` too (the same for
        every ensemble, so ensembles differ by initialisation and data order, like the
        members of an ordinary population). ``model``: a user ``nn.Module`` architecture
        instead of the recipe's.
        """
        from expunge.training.recipe import default_recipe

        recipe = recipe or default_recipe("unknown")
        _check_config(len(data), shards, slices, aggregate, ensembles)
        alive = torch.ones(len(data), dtype=torch.bool)
        if exclude_ids is not None and len(exclude_ids):
            alive[data.positions(torch.as_tensor(exclude_ids))] = False
        seeds = [seed + i for i in range(ensembles * shards)]
        init = Population.initialize(model if model is not None else model_spec(recipe, data), seeds)
        sisa = cls(recipe, shards, slices, ensembles, seed, aggregate, data.ids.clone(), alive, [],
                   recipe.with_(epochs=stage_epochs(recipe.epochs, slices)))
        members = list(range(ensembles * shards))
        checkpoints, cost = sisa._run_stages(data, members, first_stage={m: 0 for m in members}, start=init,
                                             previous=None, device=device, progress=progress)
        sisa.checkpoints = checkpoints
        sisa.history.append({"event": "train", **cost.to_json()})
        return sisa

    # ------------------------------------------------------------------ structure
    @property
    def members(self) -> int:
        return self.ensembles * self.shards

    def member_shard(self) -> torch.Tensor:
        return torch.arange(self.members) % self.shards

    def member_seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.members)]

    def assignment(self) -> tuple[torch.Tensor, torch.Tensor]:
        return assign(self.train_ids, self.shards, self.slices, self.seed)

    def stage_masks(self, stage: int, alive: torch.Tensor | None = None) -> torch.Tensor:
        """Bool ``[members, N]``: what each shard model trains on at ``stage`` (slices ``0..stage``, alive only)."""
        shard, slice_ = self.assignment()
        alive = self.alive if alive is None else alive
        per_shard = (shard[None, :] == torch.arange(self.shards)[:, None]) & (slice_ <= stage)[None, :] & alive
        return per_shard.repeat(self.ensembles, 1)

    @property
    def model(self) -> Population:
        """The shard models after the last stage (``ensembles x shards`` members)."""
        return self.checkpoints[-1]

    def deleted_ids(self) -> torch.Tensor:
        return self.train_ids[~self.alive]

    # ------------------------------------------------------------------ training core
    def _stage_seeds(self, members: Sequence[int], stage: int) -> list[int]:
        seeds = self.member_seeds()
        return [derive_seed("sisa-stage", seeds[m], stage) for m in members]

    def _run_stages(self, data: ArrayDataset, members: list[int], first_stage: dict[int, int], start: Population,
                    previous: list[Population] | None, device: str | torch.device,
                    progress: Progress | None) -> tuple[list[Population], DeletionCost]:
        """Train ``members`` from their ``first_stage`` on; others keep ``previous``'s checkpoints.

        ``start``: the population (all members) whose parameters a member starting at
        stage 0 begins from (its initialisation).
        """
        import time

        began = time.perf_counter()
        cost = DeletionCost(full_example_gradients=self.full_cost())
        current = {m: start.select([m]) for m in members if first_stage[m] == 0}
        checkpoints: list[Population] = []
        done_steps, total_steps = 0, sum(self.slices - first_stage[m] for m in members)
        for stage in range(self.slices):
            masks = self.stage_masks(stage)
            for m in members:
                if first_stage[m] == stage and stage > 0:
                    current[m] = previous[stage - 1].select([m])  # type: ignore[index]
            training = [m for m in members if first_stage[m] <= stage and bool(masks[m].any())]
            if training:
                begin = _stack([current[m] for m in training])
                trained, spent = train_population(self.stage_recipe, data, seeds=self._stage_seeds(training, stage),
                                                  keep_masks=masks[training], device=device, start=begin,
                                                  composition_free=True)
                cost.example_gradients += spent.example_gradients * len(training)
                cost.stages_retrained += len(training)
                for i, m in enumerate(training):
                    current[m] = trained.select([i])
            if previous is None:
                checkpoints.append(_stack([current[m] for m in range(self.members)]))
            else:
                checkpoints.append(_replace_members(previous[stage], {m: current[m] for m in members
                                                                       if first_stage[m] <= stage}))
            done_steps += len([m for m in members if first_stage[m] <= stage])
            if progress is not None:
                progress(done_steps, total_steps)
        cost.shards_retrained = len(members)
        cost.wall_time_s = time.perf_counter() - began
        for checkpoint in checkpoints:
            checkpoint.seeds = self.member_seeds()
        return checkpoints, cost

    def full_cost(self) -> float:
        """Example gradients of training every shard model through every stage (with the current data)."""
        return float(sum(self.stage_masks(stage).sum() for stage in range(self.slices)) * self.stage_recipe.epochs)

    # ------------------------------------------------------------------ deletion
    def check_ids(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Positions of ``ids``; an error when one was never in the training set or is already deleted."""
        ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        if ids.numel() == 0:
            raise ExpungeError("the deletion request names no IDs")
        values, counts = torch.unique(ids, return_counts=True)
        if bool((counts > 1).any()):
            raise ExpungeError(f"IDs {values[counts > 1][:5].tolist()} appear more than once in the request")
        order = torch.argsort(self.train_ids)
        where = torch.searchsorted(self.train_ids[order], ids).clamp(max=len(self.train_ids) - 1)
        found = self.train_ids[order][where] == ids
        if not bool(found.all()):
            raise ExpungeError(f"IDs {ids[~found][:5].tolist()} were never in the training set")
        positions = order[where]
        gone = ~self.alive[positions]
        if bool(gone.any()):
            raise ExpungeError(f"IDs {ids[gone][:5].tolist()} were already deleted")
        return positions

    def forget(self, data: ArrayDataset, ids: Sequence[int] | torch.Tensor, device: str | torch.device = "cpu",
               progress: Progress | None = None) -> tuple[SisaModel, DeletionCost]:
        """Delete ``ids`` exactly: a new model (this one is untouched) and what it cost.

        ``data`` must be the training set the model was trained on (checked by IDs).
        """
        if data.ids.shape != self.train_ids.shape or not torch.equal(data.ids.cpu(), self.train_ids):
            raise ExpungeError("this is not the training set the SISA model was trained on (its IDs differ)")
        positions = self.check_ids(ids)
        shard, slice_ = self.assignment()
        first_stage: dict[int, int] = {}
        for e in range(self.ensembles):
            for s in range(self.shards):
                held = positions[shard[positions] == s]
                if held.numel():
                    first_stage[e * self.shards + s] = int(slice_[held].min())
        after = SisaModel(self.recipe, self.shards, self.slices, self.ensembles, self.seed, self.aggregate,
                          self.train_ids, self.alive.clone(), [], self.stage_recipe, list(self.history))
        after.alive[positions] = False
        members = sorted(first_stage)
        init = None
        if any(first_stage[m] == 0 for m in members):
            init = Population.initialize(self.model.architecture(), self.member_seeds())
        checkpoints, cost = after._run_stages(data, members, first_stage, init if init is not None else self.model,
                                              self.checkpoints, device, progress)
        after.checkpoints = checkpoints
        after.history.append({"event": "forget", "ids": int(positions.numel()), **cost.to_json()})
        return after, cost

    # ------------------------------------------------------------------ prediction
    def live_shards(self) -> torch.Tensor:
        """Bool ``[members]``: shard models that still have training examples."""
        return self.stage_masks(self.slices - 1).any(1)

    @torch.no_grad()
    def predict(self, inputs: Inputs | torch.Tensor, task: str = "classification") -> torch.Tensor:
        """Aggregated outputs ``[ensembles, N, C]``: log-probabilities for classification (``mean``:
        log of the mean probability; ``vote``: log of the vote shares), the mean prediction for
        regression."""
        outputs = self.model.predict(inputs)  # [E*S, N, C]
        live = self.live_shards().to(outputs.device)
        n, width = outputs.shape[1], outputs.shape[2]
        outputs = outputs.view(self.ensembles, self.shards, n, width)
        weight = live.view(self.ensembles, self.shards).to(outputs.dtype)[:, :, None, None]
        count = weight.sum(1).clamp(min=1)
        if task != "classification":
            return (outputs * weight).sum(1) / count
        probs = torch.softmax(outputs, -1)
        mean = (probs * weight).sum(1) / count
        if self.aggregate == "mean":
            return mean.clamp(min=1e-12).log()
        votes = torch.nn.functional.one_hot(outputs.argmax(-1), width).to(outputs.dtype)
        shares = (votes * weight).sum(1) / count
        shares = shares + 1e-6 * mean  # ties go to the class with the higher mean probability
        return shares.clamp(min=1e-12).log()

    def accuracy(self, data: ArrayDataset) -> torch.Tensor:
        """Per-ensemble accuracy in percent ``[ensembles]`` (classification)."""
        predicted = self.predict(data.inputs, data.task).argmax(-1).cpu()
        return (predicted == data.y[None, :].cpu()).float().mean(1) * 100.0

    # ------------------------------------------------------------------ files
    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"train_ids": self.train_ids.contiguous(), "alive": self.alive.to(torch.uint8).contiguous()}
        for r, checkpoint in enumerate(self.checkpoints):
            out |= {f"stage{r}.params.{k}": v.detach().cpu().contiguous() for k, v in checkpoint.params.items()}
            out |= {f"stage{r}.buffers.{k}": v.detach().cpu().contiguous() for k, v in checkpoint.buffers.items()}
        return out

    def config(self) -> dict[str, Any]:
        spec = self.model.spec
        return {"format": STATE_FORMAT, "kind": "sisa", "shards": self.shards, "slices": self.slices,
                "ensembles": self.ensembles, "seed": self.seed, "aggregate": self.aggregate,
                "recipe": self.recipe.to_json(), "spec": spec.to_json() if spec is not None else None}

    def save(self, path: str | Path) -> str:
        """Write one safetensors file (atomically); returns the sha256 of its bytes."""
        path = Path(path)
        meta = {"expunge": json.dumps(self.config(), sort_keys=True)}
        atomic_write(path, lambda tmp: save_file(self.tensors(), str(tmp), metadata=meta))
        return file_hash(path)

    @classmethod
    def load(cls, path: str | Path, template: nn.Module | None = None) -> SisaModel:
        """Read a file written by :meth:`save` (safetensors: nothing is unpickled)."""
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), "pt") as handle:
                meta = handle.metadata() or {}
            config = json.loads(meta["expunge"])
            tensors = load_file(str(path))
        except Exception as error:  # noqa: BLE001 - any unreadable file gets one line
            raise ExpungeError(f"{path} is not an expunge SISA model file ({type(error).__name__})") from None
        if config.get("kind") != "sisa" or config.get("format") != STATE_FORMAT:
            raise ExpungeError(f"{path} is not an expunge SISA model file (format {config.get('format')})")
        recipe = Recipe.from_json(config["recipe"])
        if config["spec"] is not None:
            architecture: ModelSpec | nn.Module = ModelSpec.from_json(config["spec"])
        elif template is not None:
            architecture = template
        else:
            raise ExpungeError("this SISA model uses a user nn.Module: pass it as template= to load it")
        members = config["ensembles"] * config["shards"]
        seeds = [config["seed"] + i for i in range(members)]
        skeleton = Population.initialize(architecture, seeds[:1])
        checkpoints = []
        for r in range(config["slices"]):
            params = {k: tensors[f"stage{r}.params.{k}"] for k in skeleton.params}
            buffers = {k: tensors[f"stage{r}.buffers.{k}"] for k in skeleton.buffers}
            checkpoints.append(Population(skeleton.template, params, buffers, seeds, skeleton.spec))
        return cls(recipe, config["shards"], config["slices"], config["ensembles"], config["seed"],
                   config["aggregate"], tensors["train_ids"], tensors["alive"].bool(), checkpoints,
                   recipe.with_(epochs=stage_epochs(recipe.epochs, config["slices"])))


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_config(n: int, shards: int, slices: int, aggregate: str, ensembles: int) -> None:
    if shards < 1 or slices < 1 or ensembles < 1:
        raise ExpungeError(f"shards, slices and ensembles must be at least 1 (got {shards}, {slices}, {ensembles})")
    if shards > n:
        raise ExpungeError(f"{shards} shards for {n} training examples: a shard needs at least one example")
    if shards * slices > n:
        raise ExpungeError(f"{shards} shards x {slices} slices for {n} training examples: use fewer slices")
    if aggregate not in AGGREGATES:
        raise ExpungeError(f"unknown aggregation {aggregate!r}; valid: {', '.join(AGGREGATES)}")


def _stack(parts: Sequence[Population]) -> Population:
    first = parts[0]
    params = {k: torch.cat([p.params[k] for p in parts]) for k in first.params}
    buffers = {k: torch.cat([p.buffers[k] for p in parts]) for k in first.buffers}
    return Population(first.template, params, buffers, [s for p in parts for s in p.seeds], first.spec, first.info)


def _replace_members(base: Population, replacements: dict[int, Population]) -> Population:
    out = base.clone()
    for m, one in replacements.items():
        for k in out.params:
            out.params[k][m] = one.params[k][0].to(out.params[k].device)
        for k in out.buffers:
            out.buffers[k][m] = one.buffers[k][0].to(out.buffers[k].device)
    return out
