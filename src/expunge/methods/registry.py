"""Methods by name, and the one function that runs any of them on a population."""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any

import torch

from expunge.data.base import ArrayDataset
from expunge.errors import ExpungeError, unknown_name
from expunge.methods.base import Method, UnlearningTask
from expunge.training.cost import Cost
from expunge.training.population import Population
from expunge.training.recipe import Recipe

METHODS: dict[str, type[Method]] = {}
_LOADED = False


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to the registry (and so to the conformance suite)."""
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ExpungeError(f"two methods are registered as {cls.name!r}")
    METHODS[cls.name] = cls
    return cls


def _load_builtin_methods() -> None:
    global _LOADED
    if not _LOADED:
        import expunge.methods as package

        for module in pkgutil.iter_modules(package.__path__):
            if module.name not in ("base", "registry", "common"):
                importlib.import_module(f"expunge.methods.{module.name}")
        _LOADED = True


def available_methods() -> dict[str, type[Method]]:
    _load_builtin_methods()
    return dict(sorted(METHODS.items()))


def get_method(name: str) -> type[Method]:
    methods = available_methods()
    if name not in methods:
        raise unknown_name("method", name, methods)
    return methods[name]


def method_table() -> list[dict[str, Any]]:
    """One row per method: what the CLI's ``expunge methods`` shows."""
    rows = []
    for name, cls in available_methods().items():
        rows.append({
            "name": name, "kind": cls.kind, "needs_retain": cls.needs_retain, "needs_labels": cls.needs_labels,
            "tasks": list(cls.tasks), "summary": cls.summary, "paper": cls.paper,
            "hyperparameters": {f.name: {"default": f.default, "help": f.metadata.get("help", "")}
                                for f in cls.hyperparameter_fields()},
        })
    return rows


def _as_member_masks(mask: torch.Tensor | None, members: int, n: int, what: str) -> torch.Tensor | None:
    if mask is None:
        return None
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if mask.dim() == 1:
        mask = mask.unsqueeze(0).expand(members, -1)
    if mask.shape != (members, n):
        raise ExpungeError(f"{what} mask has shape {list(mask.shape)}; it needs [{members} members, {n} examples] or [{n}]")
    return mask


def unlearn_population(original: Population, train: ArrayDataset, forget_masks: torch.Tensor,
                       retain_masks: torch.Tensor | None, method: str, recipe: Recipe, seed: int = 0,
                       progress: Any = None, **hyperparameters: Any) -> tuple[Population, Cost]:
    """Run ``method`` on every member of ``original``; returns a new population and its cost.

    ``forget_masks`` / ``retain_masks``: bool over training positions, ``[N]`` shared
    or ``[K, N]`` per member. ``retain_masks=None`` means the retain set is not
    available (methods that need it refuse with a clear message).
    """
    cls = get_method(method)
    hp = cls.make_hyperparameters(**hyperparameters)
    if train.task not in cls.tasks:
        raise ExpungeError(f"method {method!r} supports {', '.join(cls.tasks)} tasks, not {train.task}")
    members, n = len(original), len(train)
    forget = _as_member_masks(forget_masks, members, n, "forget")
    retain = _as_member_masks(retain_masks, members, n, "retain")
    assert forget is not None
    if bool((forget.sum(1) == 0).any()):
        raise ExpungeError("a member's forget set is empty: there is nothing to unlearn")
    if retain is not None and bool((retain & forget).any()):
        raise ExpungeError("the forget and retain sets overlap: an example cannot be both forgotten and retained")
    if cls.needs_retain and retain is None:
        raise ExpungeError(f"method {method!r} needs the retain set: pass retain=... (the examples to keep)")
    device = original.device
    task = UnlearningTask(original, _on(train, device), forget.to(device),
                          None if retain is None else retain.to(device), recipe, seed, progress)
    result = cls().run(task, hp)
    cost = task.meter.finish()
    if cost.diverged:
        cost.notes.append(
            f"members {cost.diverged} diverged (non-finite loss); their last finite parameters were kept"
        )
    info = dict(original.info) | {"method": method, "hyperparameters": dataclasses.asdict(hp), "method_seed": seed}
    return Population(result.template, result.params, result.buffers, result.seeds, result.spec, info), cost


def _on(data: ArrayDataset, device: torch.device) -> ArrayDataset:
    if data.x.device == device:
        return data
    return ArrayDataset(data.x.to(device), data.y.to(device), data.ids, data.task, data.num_classes)
