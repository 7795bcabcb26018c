"""Architectures by name.

Every built-in architecture is built from a :class:`ModelSpec` (name, input shape,
number of outputs, keyword arguments), which is JSON-serialisable so a saved
population can rebuild its template. Built-in models use no BatchNorm and no dropout:
members of a population must behave like independently trained models under ``vmap``,
and per-batch statistics or shared dropout streams would break that.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from expunge.errors import ExpungeError, unknown_name

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
    name: str
    builder: ModelBuilder
    description: str
    input_kinds: str  # which inputs it suits, shown by the CLI


MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, description: str, input_kinds: str) -> Callable[[ModelBuilder], ModelBuilder]:
    def wrap(builder: ModelBuilder) -> ModelBuilder:
        MODELS[name] = ModelEntry(name, builder, description, input_kinds)
        return builder

    return wrap


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the architecture named by ``spec`` (fresh, randomly initialised weights)."""
    from expunge.models import architectures  # noqa: F401  (registers the built-ins)

    if spec.name not in MODELS:
        raise unknown_name("model", spec.name, MODELS)
    builder = MODELS[spec.name].builder
    valid = set(inspect.signature(builder).parameters) - {"input_shape", "num_outputs"}
    bad = set(spec.kwargs) - valid
    if bad:
        raise ExpungeError(
            f"model {spec.name!r} has no argument(s) {sorted(bad)}; valid arguments: {sorted(valid)}"
        )
    return builder(input_shape=tuple(spec.input_shape), num_outputs=spec.num_outputs, **spec.kwargs)


def model_names() -> list[str]:
    from expunge.models import architectures  # noqa: F401

    return sorted(MODELS)
