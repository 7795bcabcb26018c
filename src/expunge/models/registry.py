"""Architectures by name: the model registry.

Every built-in architecture is built from a :class:`ModelSpec` (name, input shape,
number of outputs, keyword arguments), which is JSON-serialisable so a saved
population can rebuild its template. Built-in models use no BatchNorm and no dropout:
members of a population must behave like independently trained models under ``vmap``,
and per-batch statistics or shared dropout streams would break that.

:data:`MODELS` is a :class:`~expunge.registry.Registry` of :class:`ModelEntry`: the
built-ins register themselves in :mod:`expunge.models.architectures` (imported the
first time the registry is read), other packages through the ``expunge.models``
entry-point group, naming a :class:`ModelEntry` or a module that uses
:func:`register_model`::

    [project.entry-points."expunge.models"]
    my_models = "my_package.models"
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from expunge.errors import ExpungeError
from expunge.registry import Registry, qualified_name

ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild an architecture: its registry name and arguments."""

    name: str
    input_shape: tuple[int, ...]
    num_outputs: int
    kwargs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape), "num_outputs": self.num_outputs,
                "kwargs": dict(self.kwargs)}

    @classmethod
    def from_json(cls, data: dict) -> "ModelSpec":
        return cls(data["name"], tuple(data["input_shape"]), int(data["num_outputs"]), dict(data["kwargs"]))


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: ``builder(input_shape=..., num_outputs=..., **kwargs) -> nn.Module``."""

    name: str
    builder: ModelBuilder
    description: str
    input_kinds: str  # which inputs it suits, shown by the CLI


def check_model_entry(entry: Any) -> None:
    """Registry check: a :class:`ModelEntry` whose builder takes ``input_shape`` and ``num_outputs``."""
    if not isinstance(entry, ModelEntry):
        raise ExpungeError(f"a model must be registered as an expunge.models.ModelEntry (see register_model), "
                           f"got {entry!r}")
    if not callable(entry.builder):
        raise ExpungeError(f"model {entry.name!r}: builder must be callable, got {entry.builder!r}")
    parameters = inspect.signature(entry.builder).parameters
    missing = [p for p in ("input_shape", "num_outputs") if p not in parameters]
    if missing:
        raise ExpungeError(f"model {entry.name!r}: its builder must take the keyword argument(s) {missing}")


MODELS: Registry[ModelEntry] = Registry("model", "expunge.models", ("expunge.models.architectures", "expunge.models.gpt"),
                                        check=check_model_entry, identity=lambda entry: qualified_name(entry.builder))


def register_model(name: str, description: str, input_kinds: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: register ``builder(input_shape, num_outputs, **kwargs) -> nn.Module`` as model ``name``."""
    def wrap(builder: ModelBuilder) -> ModelBuilder:
        MODELS.register(ModelEntry(name, builder, description, input_kinds))
        return builder

    return wrap


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the architecture named by ``spec`` (fresh, randomly initialised weights)."""
    builder = MODELS.get(spec.name).builder
    valid = set(inspect.signature(builder).parameters) - {"input_shape", "num_outputs"}
    bad = set(spec.kwargs) - valid
    if bad:
        raise ExpungeError(
            f"model {spec.name!r} has no argument(s) {sorted(bad)}; valid arguments: {sorted(valid)}"
        )
    return builder(input_shape=tuple(spec.input_shape), num_outputs=spec.num_outputs, **spec.kwargs)


def model_names() -> list[str]:
    return MODELS.names()
