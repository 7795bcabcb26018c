"""Saving, loading and caching populations.

A population is stored as a safetensors file (stacked parameters and buffers) and a
JSON sidecar (architecture spec, seeds, info, cost). Files are written to a temporary
name and renamed into place, sidecar last, so a crashed run never leaves a partial
entry over a good one: an entry exists once its sidecar exists. Nothing is unpickled.

Trained populations are cached under a content hash of what defines them (dataset
fingerprint, split, training subset, recipe, member seeds): asking twice trains once.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from expunge.errors import ExpungeError
from expunge.files import atomic_write, json_text
from expunge.models.registry import ModelSpec, build_model
from expunge.training.cost import Cost
from expunge.training.population import Population

FORMAT_VERSION = 1


def default_home() -> Path:
    """Where expunge keeps artifacts: ``$EXPUNGE_HOME``, else ``~/.cache/expunge``."""
    return Path(os.environ.get("EXPUNGE_HOME") or Path.home() / ".cache" / "expunge")


def save_population(population: Population, path: str | Path, cost: Cost | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (``.safetensors``) and its sidecar ``path.json`` atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    tensors = {f"params.{k}": v.detach().cpu().contiguous() for k, v in population.params.items()}
    tensors |= {f"buffers.{k}": v.detach().cpu().contiguous() for k, v in population.buffers.items()}
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
    params = {k[len("params."):]: v for k, v in tensors.items() if k.startswith("params.")}
    buffers = {k[len("buffers."):]: v for k, v in tensors.items() if k.startswith("buffers.")}
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


class PopulationCache:
    """Trained populations on disk, keyed by content hash."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_home() / "populations"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def get_or_train(self, parts: dict[str, Any], train: Callable[[], tuple[Population, Cost]],
                     model: nn.Module | None = None, device: str | torch.device = "cpu"
                     ) -> tuple[Population, Cost, bool]:
        """The cached population for ``parts``, training it (once) if absent. Returns ``(pop, cost, hit)``."""
        key = content_key({"format": FORMAT_VERSION} | parts)
        path = self.path(key)
        if path.exists() and _sidecar(path).exists():
            try:
                population, cost, _ = load_population(path, model, device)
                return population, cost or Cost(members=len(population)), True
            except Exception:  # noqa: BLE001 - a damaged entry is retrained and replaced
                pass
        population, cost = train()
        save_population(population, path, cost, {"key_parts": parts})
        return population, cost, False
