"""Saving, loading and caching populations.

A population is stored as a safetensors file (stacked parameters and buffers) and a
JSON sidecar (architecture spec, seeds, info, cost). Files are written to a temporary
name and renamed into place, sidecar last, so a crashed run never leaves a partial
entry over a good one: an entry exists once its sidecar exists. Nothing is unpickled.

Trained members are cached one by one under a content hash of what defines them
(dataset fingerprint, split, the member's training subset, recipe, seed, engine
version): asking twice trains once, and asking for more members trains only the new ones.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from expunge.errors import ExpungeError
from expunge.files import atomic_write, json_text
from expunge.models.registry import ModelSpec, build_model
from expunge.data.base import ArrayDataset
from expunge.training.cost import Cost
from expunge.training.engine import train_population
from expunge.training.population import Population
from expunge.training.recipe import Recipe

FORMAT_VERSION = 1


def default_home() -> Path:
    """Where expunge keeps artifacts: ``$EXPUNGE_HOME``, else ``~/.cache/expunge``."""
    return Path(os.environ.get("EXPUNGE_HOME") or Path.home() / ".cache" / "expunge")


def population_tensors(population: Population) -> dict[str, torch.Tensor]:
    """A population's stacked parameters and buffers as flat, CPU, contiguous tensors (``params.*``, ``buffers.*``)."""
    tensors = {f"params.{k}": v.detach().cpu().contiguous() for k, v in population.params.items()}
    tensors |= {f"buffers.{k}": v.detach().cpu().contiguous() for k, v in population.buffers.items()}
    return tensors


def split_population_tensors(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                                          dict[str, torch.Tensor]]:
    """The inverse of :func:`population_tensors`: ``(params, buffers)``."""
    params = {k[len("params."):]: v for k, v in tensors.items() if k.startswith("params.")}
    buffers = {k[len("buffers."):]: v for k, v in tensors.items() if k.startswith("buffers.")}
    return params, buffers


def save_population(population: Population, path: str | Path, cost: Cost | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (``.safetensors``) and its sidecar ``path.json`` atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    tensors = population_tensors(population)
    sidecar = {
        "format": FORMAT_VERSION, "members": len(population), "seeds": population.seeds,
        "spec": population.spec.to_json() if population.spec is not None else None,
        "info": population.info, "cost": cost.to_json() if cost is not None else None, "extra": extra or {},
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": str(FORMAT_VERSION)}))
    atomic_write(_sidecar(path), lambda tmp: tmp.write_text(json_text(sidecar, indent=1)))
    return path


def load_population(path: str | Path, model: nn.Module | None = None,
                    device: str | torch.device = "cpu") -> tuple[Population, Cost | None, dict]:
    """Read a population saved by :func:`save_population` (safetensors only, never pickle).

    ``model``: the architecture, required when the population was made from a user
    module (no registry spec in the sidecar).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    sidecar_path = _sidecar(path)
    if not path.exists() or not sidecar_path.exists():
        raise ExpungeError(f"no saved population at {path} (need {path.name} and {sidecar_path.name})")
    sidecar = json.loads(sidecar_path.read_text())
    if sidecar.get("format") != FORMAT_VERSION:
        raise ExpungeError(f"{path} has format {sidecar.get('format')}; this expunge reads format {FORMAT_VERSION}")
    spec = ModelSpec.from_json(sidecar["spec"]) if sidecar["spec"] else None
    if model is None:
        if spec is None:
            raise ExpungeError(f"{path} holds a user model: pass model=<your nn.Module> to load it")
        model = build_model(spec)
    tensors = load_file(str(path), device=str(device))
    params, buffers = split_population_tensors(tensors)
    expected = {name for name, _ in model.named_parameters()}
    if set(params) != expected:
        raise ExpungeError(f"{path} does not match the model: parameters differ ({sorted(set(params) ^ expected)[:4]})")
    population = Population(model, params, buffers, sidecar["seeds"], spec, sidecar["info"])
    cost = Cost.from_json(sidecar["cost"]) if sidecar["cost"] else None
    return population, cost, sidecar["extra"]


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def content_key(parts: dict[str, Any]) -> str:
    """A stable hash of JSON-serialisable ``parts``."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def mask_fingerprint(masks: torch.Tensor | None) -> str:
    if masks is None:
        return "all"
    masks = masks.to(torch.bool).cpu().contiguous()
    return hashlib.sha256(str(tuple(masks.shape)).encode() + masks.numpy().tobytes()).hexdigest()[:16]


@dataclass
class CacheReport:
    """Which members of a requested population came from the cache and which were trained now."""

    loaded: list[int] = field(default_factory=list)  # member seeds
    trained: list[int] = field(default_factory=list)

    @property
    def hit(self) -> bool:
        """Every member came from the cache."""
        return not self.trained


def _groups(items: list[int], size: int) -> list[list[int]]:
    """``items`` in consecutive groups of at most ``size``, as even as possible (so none has one member unless
    there is only one item)."""
    if not items:
        return []
    count = -(-len(items) // size)
    bounds = [round(k * len(items) / count) for k in range(count + 1)]
    return [items[bounds[k]:bounds[k + 1]] for k in range(count)]


class PopulationCache:
    """Trained members on disk, one entry per member, keyed by content hash.

    A member's key hashes what defines it: the caller's ``parts`` (dataset
    fingerprint, split, recipe, role...), the member's seed and its own training subset,
    the store format and :data:`~expunge.training.engine.ENGINE_VERSION`. Asking for 32
    members after 8 loads the 8 and trains the other 24 as one population; an engine
    change never reuses members trained by the old engine.
    """

    # Missing members are trained in groups of at most this many, each group written before the next starts: a
    # crash loses one group's work, not hours of it, and memory stays bounded.
    CHUNK = 64

    def __init__(self, root: str | Path | None = None, chunk: int | None = None):
        self.root = Path(root) if root is not None else default_home() / "populations"
        self.chunk = max(2, int(chunk or self.CHUNK))

    def member_key(self, parts: dict[str, Any], seed: int, keep_mask: torch.Tensor | None) -> str:
        from expunge.training.engine import ENGINE_VERSION

        return content_key({"format": FORMAT_VERSION, "engine": ENGINE_VERSION, "seed": int(seed),
                            "subset": mask_fingerprint(keep_mask)} | parts)

    def path(self, key: str) -> Path:
        return self.root / "members" / f"{key}.safetensors"

    def _load(self, key: str, model: nn.Module | None, device: str | torch.device
              ) -> tuple[Population, Cost] | None:
        path = self.path(key)
        if not (path.exists() and _sidecar(path).exists()):
            return None
        try:
            population, cost, _ = load_population(path, model, device)
        except Exception:  # noqa: BLE001 - a damaged entry is retrained and replaced
            return None
        return population, cost or Cost()

    def get_or_train(self, parts: dict[str, Any], seeds: list[int], keep_masks: torch.Tensor | None,
                     train: Callable[..., tuple[Population, Cost]],
                     model: nn.Module | None = None, device: str | torch.device = "cpu",
                     progress: Callable[[int, int], None] | None = None) -> tuple[Population, Cost, CacheReport]:
        """The population of ``seeds`` (keep-masks ``[K, N]`` or None), training only the missing members.

        ``train(seeds, keep_masks)`` trains a population of the given members (with ``progress``
        given: ``train(seeds, keep_masks, progress)``, reporting that group's steps). Missing
        members are trained in groups of at most :attr:`chunk` (none of one member: a lone
        member would take the engine's unvectorised path), and each group's members are
        written to their own entries (weights, then sidecar, each atomically) before the next
        group starts. The returned cost is per member: the mean
        example gradients and the summed wall time of the members, wherever they were
        trained (``CacheReport`` says which were trained in this call).
        """
        masks = None if keep_masks is None else torch.as_tensor(keep_masks, dtype=torch.bool)
        keys = [self.member_key(parts, seed, None if masks is None else masks[i]) for i, seed in enumerate(seeds)]
        members: dict[int, tuple[Population, Cost]] = {}
        for i, key in enumerate(keys):
            loaded = self._load(key, model, device)
            if loaded is not None:
                members[i] = loaded
        missing = [i for i in range(len(seeds)) if i not in members]
        report = CacheReport(loaded=[seeds[i] for i in members], trained=[seeds[i] for i in missing])
        groups = _groups(missing, self.chunk)
        for g, group in enumerate(groups):
            group_seeds, group_masks = [seeds[i] for i in group], None if masks is None else masks[group]
            if progress is None:
                population, cost = train(group_seeds, group_masks)
            else:
                def overall(done: int, total: int, g: int = g) -> None:
                    progress(g * total + done, len(groups) * total)
                population, cost = train(group_seeds, group_masks, overall)
            share = Cost(example_gradients=cost.example_gradients, forward_examples=cost.forward_examples,
                         wall_time_s=cost.wall_time_per_member_s, members=1, peak_rss_bytes=cost.peak_rss_bytes,
                         peak_cuda_bytes=cost.peak_cuda_bytes, peak_memory_scope=cost.peak_memory_scope)
            for j, i in enumerate(group):
                member = population.select([j])
                member_cost = dataclasses.replace(share, diverged=[0] if j in cost.diverged else [])
                save_population(member, self.path(keys[i]), member_cost, {"key_parts": parts})
                members[i] = (member, member_cost)
        ordered = [members[i] for i in range(len(seeds))]
        first = ordered[0][0]
        params = {k: torch.cat([m.params[k].to(device) for m, _ in ordered]) for k in first.params}
        buffers = {k: torch.cat([m.buffers[k].to(device) for m, _ in ordered]) for k in first.buffers}
        population = Population(first.template, params, buffers, list(seeds), first.spec, first.info)
        costs = [c for _, c in ordered]
        total = Cost(example_gradients=sum(c.example_gradients for c in costs) / len(costs),
                     forward_examples=sum(c.forward_examples for c in costs) / len(costs),
                     wall_time_s=sum(c.wall_time_s for c in costs), members=len(costs),
                     diverged=[i for i, c in enumerate(costs) if c.diverged],
                     peak_rss_bytes=max((c.peak_rss_bytes or 0 for c in costs), default=0) or None)
        if report.loaded:
            total.notes.append(f"{len(report.loaded)} of {len(seeds)} members loaded from the cache "
                               f"({self.root}); their wall time was measured when they were trained")
        return population, total, report

    def trained(self, parts: dict[str, Any], recipe: Recipe, data: ArrayDataset, seeds: list[int],
                keep_masks: torch.Tensor | None, model: nn.Module | None = None, device: str | torch.device = "cpu",
                progress: Callable[[int, int], None] | None = None) -> tuple[Population, Cost, CacheReport]:
        """Members of ``recipe`` on ``data`` (seeds, keep-masks), loaded or trained now: :meth:`get_or_train`
        with the population engine; a full cache hit completes the progress bar."""

        def train(missing: list[int], masks: torch.Tensor | None,
                  group_progress: Callable[[int, int], None] | None = None) -> tuple[Population, Cost]:
            return train_population(recipe, data, seeds=missing, keep_masks=masks, model=model, device=device,
                                    progress=group_progress)

        population, cost, report = self.get_or_train(parts, seeds, keep_masks, train, model=model, device=device,
                                                     progress=progress)
        if report.hit and progress is not None:
            progress(1, 1)  # loaded from the cache: the work is done
        return population, cost, report
