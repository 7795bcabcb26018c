"""Data containers shared by every layer.

A dataset is held in memory as tensors: small unlearning benchmarks fit, and the
population engine gathers a different minibatch for every member from the same
tensors, which a ``DataLoader`` cannot do cheaply.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from expunge.errors import ExpungeError

Task = str  # the name of a registered task (expunge.tasks): "classification", "regression", ...
Inputs = tuple[torch.Tensor, ...]


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Examples as tensors with stable integer IDs.

    ``x``: the model input ``[N, ...]`` (float32 features), or a tuple of tensors when
    the model takes several (e.g. token ids and an attention mask), each ``[N, ...]``;
    ``y``: int64 labels ``[N]`` (classification) or float32 targets ``[N]``
    (regression); ``ids``: int64 example IDs ``[N]``, unique, stable across runs
    (forget sets name examples by ID); ``task``: the registered task the labels belong
    to (:mod:`expunge.tasks`); ``groups``: optional int64 ``[N]``, the group each
    example belongs to (e.g. its author in ``fictitious_authors``), which group-wise
    forget rules (``authors:``) read. For ``causal_lm`` data ``num_classes`` is the
    vocabulary size.
    """

    x: torch.Tensor | Inputs
    y: torch.Tensor
    ids: torch.Tensor
    task: Task = "classification"
    num_classes: int | None = None
    groups: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if isinstance(self.x, list):
            object.__setattr__(self, "x", tuple(self.x))
        inputs = self.inputs
        if not inputs:
            raise ExpungeError("a dataset needs at least one input tensor")
        n = inputs[0].shape[0]
        if any(t.shape[0] != n for t in inputs) or self.y.shape[0] != n or self.ids.shape[0] != n:
            raise ExpungeError(
                f"inputs, labels and IDs disagree in length: {[t.shape[0] for t in inputs]}, "
                f"{self.y.shape[0]}, {self.ids.shape[0]}"
            )
        if self.task == "classification" and self.num_classes is None:
            raise ExpungeError("a classification dataset needs num_classes")
        if self.groups is not None and tuple(self.groups.shape) != (n,):
            raise ExpungeError(f"groups has shape {list(self.groups.shape)} but needs [{n}] (one per example)")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def inputs(self) -> Inputs:
        """The model inputs as a tuple (one tensor for most models)."""
        return self.x if isinstance(self.x, tuple) else (self.x,)

    def inputs_at(self, index: torch.Tensor) -> Inputs:
        """Every input tensor indexed by ``index`` (positions ``[B]`` or per-member ``[K, B]``)."""
        return tuple(t[index] for t in self.inputs)

    @property
    def single_input(self) -> bool:
        return not isinstance(self.x, tuple)

    def to(self, device: torch.device | str) -> "ArrayDataset":
        """The same examples with inputs and labels on ``device`` (IDs stay on the CPU)."""
        if all(t.device == torch.device(device) for t in self.inputs) and self.y.device == torch.device(device):
            return self
        x = tuple(t.to(device) for t in self.inputs)
        return ArrayDataset(x if not self.single_input else x[0], self.y.to(device), self.ids, self.task,
                            self.num_classes, self.groups)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example's (first) input."""
        return tuple(self.inputs[0].shape[1:])

    def positions(self, ids: torch.Tensor | list[int]) -> torch.Tensor:
        """Row positions of ``ids``; unknown or duplicated IDs are an error."""
        ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        if ids.numel() != torch.unique(ids).numel():
            values, counts = torch.unique(ids, return_counts=True)
            dup = values[counts > 1][:5].tolist()
            raise ExpungeError(f"duplicated example IDs {dup}: each ID may appear once")
        order = torch.argsort(self.ids)
        sorted_ids = self.ids[order]
        where = torch.searchsorted(sorted_ids, ids).clamp(max=len(self) - 1)
        found = sorted_ids[where] == ids
        if not bool(found.all()):
            missing = ids[~found][:5].tolist()
            raise ExpungeError(
                f"example IDs {missing} are not in this dataset "
                f"(IDs run from {int(self.ids.min())} to {int(self.ids.max())})"
            )
        return order[where]

    def subset(self, positions: torch.Tensor) -> "ArrayDataset":
        x = self.inputs_at(positions)
        groups = None if self.groups is None else self.groups[positions.to(self.groups.device)]
        return ArrayDataset(x[0] if self.single_input else x, self.y[positions], self.ids[positions], self.task,
                            self.num_classes, groups)

    def fingerprint(self) -> str:
        """Content hash of inputs, labels and IDs (part of every cache key)."""
        h = hashlib.sha256()
        grouping = () if self.groups is None else (self.groups,)  # without groups: the fingerprints of before
        for t in (*self.inputs, self.y, self.ids, *grouping):
            t = t.detach().cpu().contiguous()
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.numpy().tobytes())
        h.update(f"{self.task}:{self.num_classes}".encode())
        return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Split:
    """A named train/test split of one dataset."""

    name: str
    train: ArrayDataset
    test: ArrayDataset
    info: dict = field(default_factory=dict)

    @property
    def task(self) -> Task:
        return self.train.task

    @property
    def num_classes(self) -> int | None:
        return self.train.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape

    def fingerprint(self) -> str:
        return hashlib.sha256((self.train.fingerprint() + self.test.fingerprint()).encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class ForgetReason:
    """Why a scored forget rule chose its examples, for reports.

    ``score``: the score's name (``"memorisation"``); ``definition``: what it is, in one
    or two sentences; ``scores``: float ``[N]``, every training position's score;
    ``selection``: how the forget set was read off the scores (``"the 400 highest of
    4000"``); ``source``: how the scores were computed (models, cache key).
    """

    score: str
    definition: str
    scores: torch.Tensor
    selection: str
    source: dict = field(default_factory=dict)

    def summary(self, forget_mask: torch.Tensor | None = None) -> dict:
        """JSON-ready: the definition, the selection, and the score's range on the forget set and overall."""
        values = self.scores.double()
        result = {"score": self.score, "definition": self.definition, "selection": self.selection,
                  "source": dict(self.source), "all_mean": float(values.mean()), "all_min": float(values.min()),
                  "all_max": float(values.max())}
        if forget_mask is not None and bool(forget_mask.any()):
            chosen = values[forget_mask]
            result |= {"forget_mean": float(chosen.mean()), "forget_min": float(chosen.min()),
                       "forget_max": float(chosen.max())}
        return result


@dataclass(frozen=True, eq=False)
class ForgetSet:
    """The forget set ``S`` and retain set ``D \\ S`` of a training set, by ID and position.

    ``reason``: for scored rules (``memorized:``, ``entangled:``, ``datamodel_pc:``), the
    scores behind the choice (:class:`ForgetReason`); None for the others.
    """

    train: ArrayDataset
    forget_ids: torch.Tensor
    rule: str = "explicit"
    reason: ForgetReason | None = None

    def __post_init__(self) -> None:
        if self.forget_ids.numel() == 0:
            raise ExpungeError(f"the forget set from rule {self.rule!r} is empty: choose a rule that selects examples")
        pos = self.train.positions(self.forget_ids)  # validates unknown / duplicated IDs
        if pos.numel() >= len(self.train):
            raise ExpungeError(
                f"the forget set from rule {self.rule!r} is the whole training set ({len(self.train)} examples): "
                "nothing would be left to retain"
            )

    @property
    def forget_mask(self) -> torch.Tensor:
        """Boolean mask over training positions, True for forget examples."""
        mask = torch.zeros(len(self.train), dtype=torch.bool)
        mask[self.train.positions(self.forget_ids)] = True
        return mask

    @property
    def forget_positions(self) -> torch.Tensor:
        return torch.nonzero(self.forget_mask).flatten()

    @property
    def retain_positions(self) -> torch.Tensor:
        return torch.nonzero(~self.forget_mask).flatten()

    @property
    def retain_ids(self) -> torch.Tensor:
        return self.train.ids[self.retain_positions]

    def __len__(self) -> int:
        return int(self.forget_ids.numel())

    def fingerprint(self) -> str:
        ids = torch.sort(self.forget_ids).values.numpy().tobytes()
        return hashlib.sha256(ids).hexdigest()[:16]
