"""Methods by name (the registry), and the one function that runs any of them on a population.

Built-in methods are the modules of :mod:`expunge.methods`; other packages add theirs
through the ``expunge.methods`` entry-point group (see :mod:`expunge.registry`).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

from expunge.data.base import ArrayDataset
from expunge.errors import ExpungeError
from expunge.methods.base import Method, StopRule, UnlearningTask, check_method_class
from expunge.registry import Registry
from expunge.training.cost import Cost
from expunge.training.memory import PeakMemory
from expunge.training.population import Population
from expunge.training.recipe import Recipe
from expunge.training.store import PopulationCache

METHODS: Registry[type[Method]] = Registry("method", "expunge.methods", ("expunge.methods",),
                                           check=check_method_class)
logger = logging.getLogger("expunge.methods")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to the registry (and so to the conformance suite)."""
    return METHODS.register(cls)


def available_methods() -> dict[str, type[Method]]:
    return METHODS.as_dict()


def get_method(name: str) -> type[Method]:
    return METHODS.get(name)


# The settings a user can ask for (``expunge methods --filter``), each a test of a method class's metadata.
METHOD_FILTERS: dict[str, tuple[str, Any]] = {
    "retain-free": ("runs without the retain set (needs_retain=False)", lambda cls: not cls.needs_retain),
    "label-free": ("never reads labels (needs_labels=False)", lambda cls: not cls.needs_labels),
    "classification": ("supports classification", lambda cls: "classification" in cls.tasks),
    "regression": ("supports regression", lambda cls: "regression" in cls.tasks),
    "causal_lm": ("supports language models (causal_lm)", lambda cls: "causal_lm" in cls.tasks),
    "random": ("made for random forget sets", lambda cls: "random" in cls.forget_sets),
    "class": ("made for whole-class forget sets", lambda cls: "class" in cls.forget_sets),
    "subclass": ("made for sub-class forget sets", lambda cls: "subclass" in cls.forget_sets),
}


def filter_methods(filters: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Names of the registered methods that match every one of ``filters`` (see :data:`METHOD_FILTERS`).

    >>> "retrain" in filter_methods(["regression", "class"])
    True
    """
    unknown = [f for f in filters if f not in METHOD_FILTERS]
    if unknown:
        raise ExpungeError(f"unknown method filter {unknown[0]!r}; valid filters: {', '.join(METHOD_FILTERS)}")
    return [name for name, cls in available_methods().items()
            if all(METHOD_FILTERS[f][1](cls) for f in filters)]


def methods_supporting(task: str) -> list[str]:
    """Names of the registered methods that declare ``task`` (e.g. ``"regression"``)."""
    return [name for name, cls in available_methods().items() if task in cls.tasks]


def method_table(filters: list[str] | tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per method (those matching every one of ``filters``): what the CLI's ``expunge methods`` shows."""
    rows = []
    wanted = set(filter_methods(filters))
    for name, cls in available_methods().items():
        if name not in wanted:
            continue
        rows.append({
            "name": name, "kind": cls.kind, "origin": METHODS.origin(name), "demo": cls.demo,
            "forget_sets": list(cls.forget_sets), "needs_retain": cls.needs_retain, "needs_labels": cls.needs_labels,
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


def check_task(method: str, task: str) -> None:
    """Refuse ``task`` data for a method that does not declare it, in one line naming the methods that do."""
    cls = get_method(method)
    if task in cls.tasks:
        return
    others = methods_supporting(task)
    raise ExpungeError(f"method {method!r} supports {', '.join(cls.tasks)} tasks, not {task}; methods that "
                       f"support {task}: {', '.join(others) or 'none'}")


def missing_retain_message(method: str, hp: Any, how: str = "retain=...") -> str:
    """The one-line refusal of a run that needs the retain set without one, naming the settings that need it."""
    changed = [f"{f.name}={getattr(hp, f.name)!r}" for f in dataclasses.fields(hp) if getattr(hp, f.name) != f.default]
    settings = f" ({', '.join(changed)})" if changed and not get_method(method).needs_retain else ""
    return f"method {method!r}{settings} needs the retain set: pass {how} (the examples to keep)"


def forget_examples_only(train: ArrayDataset, forget: torch.Tensor) -> tuple[ArrayDataset, torch.Tensor]:
    """The training set cut to the union of the members' forget sets, and the forget masks over that cut.

    Positions keep their order, so a member's minibatches (drawn from its own seed over its own positions) are
    the same as over the whole training set.
    """
    keep = torch.nonzero(forget.any(0).cpu()).flatten()
    return train.subset(keep), forget[:, keep.to(forget.device)]


def unlearn_population(original: Population, train: ArrayDataset, forget_masks: torch.Tensor,
                       retain_masks: torch.Tensor | None, method: str, recipe: Recipe, seed: int = 0,
                       progress: Any = None, store: PopulationCache | None = None, stop: StopRule | None = None,
                       **hyperparameters: Any) -> tuple[Population, Cost]:
    """Run ``method`` on every member of ``original``; returns a new population and its cost.

    ``forget_masks`` / ``retain_masks``: bool over training positions, ``[N]`` shared
    or ``[K, N]`` per member. ``retain_masks=None`` means the retain set is not
    available (methods that need it refuse with a clear message). ``store``: where a
    method caches what it trains once (attributions); default ``$EXPUNGE_HOME``.
    ``stop``: an optional target (:class:`~expunge.methods.base.StopRule`); members that
    reach it stop early (methods built on ``StackedTraining``; others ignore it).
    """
    cls = get_method(method)
    hp = cls.make_hyperparameters(**hyperparameters)
    check_task(method, train.task)
    members, n = len(original), len(train)
    forget = _as_member_masks(forget_masks, members, n, "forget")
    retain = _as_member_masks(retain_masks, members, n, "retain")
    assert forget is not None
    if bool((forget.sum(1) == 0).any()):
        raise ExpungeError("a member's forget set is empty: there is nothing to unlearn")
    if retain is not None and bool((retain & forget).any()):
        raise ExpungeError("the forget and retain sets overlap: an example cannot be both forgotten and retained")
    needs_retain = cls.needs_retain_with(hp)
    if needs_retain and retain is None:
        raise ExpungeError(missing_retain_message(method, hp))
    ignored = None
    if not needs_retain:
        # A retain-free method is given the forget examples alone: the retain set is not hidden from it but
        # absent, so it cannot read it by any route (mask, rows of the training set, statistics over them).
        ignored = None if retain is None else int(retain.sum(1).max())
        train, forget = forget_examples_only(train, forget)
        retain = None
    device = original.device
    task = UnlearningTask(original, train.to(device), forget.to(device),
                          None if retain is None else retain.to(device), recipe, seed, progress, store, stop,
                          retain_withheld=not needs_retain)
    if ignored:
        message = (f"{method} is retain-free: it ignored the retain set given ({ignored:,} examples); it never "
                   "reads one")
        task.meter.note(message)
        logger.info(message)
    with PeakMemory(device) as peak:
        result = cls().run(task, hp)
    if not isinstance(result, Population) or len(result) != len(original) or set(result.params) != set(original.params):
        raise ExpungeError(f"method {method!r} broke the method contract: run() must return a Population with "
                           f"{len(original)} members and the original's parameters, got {type(result).__name__}")
    if any(result.params[k].data_ptr() == original.params[k].data_ptr() for k in original.params):
        raise ExpungeError(f"method {method!r} broke the method contract: run() returned the original's own "
                           "tensors; return a new population (e.g. task.original.clone())")
    task.finish_progress()
    cost = task.meter.finish()
    if stop is not None:
        cost.notes.append(f"{int(task.stopped.sum())} of {len(original)} members reached the stopping target "
                          f"({stop.describe()})")
    cost.record_memory(peak)
    if cost.diverged:
        cost.notes.append(
            f"members {cost.diverged} diverged (non-finite loss); their last finite parameters were kept"
        )
    info = dict(original.info) | {"method": method, "hyperparameters": dataclasses.asdict(hp), "method_seed": seed}
    return Population(result.template, result.params, result.buffers, result.seeds, result.spec, info), cost
