"""What an audit observes of a population, computed once and on demand.

:class:`Evidence` wraps one population (the unlearned one, the oracle, the second
oracle, the original) and computes per split only what the metrics ask for: task
statistics as :class:`~expunge.tasks.Scores`, and where a metric needs them the
predictive distribution, penultimate features or every layer's activations. Full
outputs are never kept. :class:`AuditContext` holds everything shared by the methods of
one audit; :class:`Candidate` is what one metric measures.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from expunge.data.base import ArrayDataset
from expunge.errors import ExpungeError
from expunge.tasks import Scores, Task, get_task
from expunge.training.cost import Cost
from expunge.training.population import Population

SPLITS = ("forget", "retain", "retain_sample", "test")
MIN_MEMBERS = 2
MIN_FORGET = 10  # below this a P95 over forget examples or an eps histogram means little
MIN_SHADOWS = 8  # two folds, each with >= 2 "in" and 2 "out" models per example
ACTIVATION_EXAMPLES = 1000  # per split, for layer-wise metrics (all layers of all members are held at once)
# Views that exist only when each member is one network (an ensemble or a head on features has no such layers).
NETWORK_VIEWS = frozenset({"features", "activations"})


@dataclass
class AuditData:
    """The examples an audit looks at: positions into the training set, and the test set."""

    train: ArrayDataset
    test: ArrayDataset
    forget_positions: torch.Tensor
    retain_positions: torch.Tensor
    retain_sample: torch.Tensor  # a fixed sample of retain positions for per-example statistics
    # The split's side table of answer variants (fictitious_authors' AuthorsCorpus: paraphrased and perturbed
    # answers, the tokenizer), which the TOFU metrics read; None for data without one.
    corpus: Any = None
    _shared: dict = field(default_factory=dict, repr=False)  # data-only values every population reuses

    def shared(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key for this data (tokenized answer variants, question sets)."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    @classmethod
    def build(cls, train: ArrayDataset, test: ArrayDataset, forget_mask: torch.Tensor,
              retain_sample_size: int = 1000, seed: int = 0, corpus: Any = None) -> "AuditData":
        forget = torch.nonzero(forget_mask).flatten()
        retain = torch.nonzero(~forget_mask).flatten()
        if len(forget) < MIN_FORGET:
            raise ExpungeError(f"the forget set has {len(forget)} examples; the audit's per-example statistics "
                               f"(eps histogram, KLoM P95) need at least {MIN_FORGET}")
        g = torch.Generator().manual_seed(seed)
        sample = retain[torch.randperm(len(retain), generator=g)[:retain_sample_size]].sort().values
        return cls(train, test, forget, retain, sample, corpus)

    @property
    def task(self) -> Task:
        return get_task(self.train.task)

    def examples(self, split: str) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Inputs and targets of a split."""
        if split == "test":
            return self.test.inputs, self.test.y
        positions = {"forget": self.forget_positions, "retain": self.retain_positions,
                     "retain_sample": self.retain_sample}.get(split)
        if positions is None:
            raise ExpungeError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
        return self.train.inputs_at(positions), self.train.y[positions]

    def ids(self, split: str) -> np.ndarray:
        if split == "test":
            return self.test.ids.numpy()
        positions = {"forget": self.forget_positions, "retain": self.retain_positions,
                     "retain_sample": self.retain_sample}[split]
        return self.train.ids[positions].numpy()

    def retain_sample_index(self) -> np.ndarray:
        """Positions of the retain sample within the retain split."""
        return np.searchsorted(self.retain_positions.numpy(), self.retain_sample.numpy())


class Evidence:
    """One population's observable behaviour on the audit's splits, computed lazily and cached."""

    def __init__(self, role: str, population: Population, data: AuditData):
        if len(population) < MIN_MEMBERS:
            raise ExpungeError(f"population metrics need at least {MIN_MEMBERS} members "
                               f"(32 or more recommended); the {role} population has {len(population)}")
        self.role, self.population, self.data = role, population, data
        self.task = data.task
        self._scores: dict[str, Scores] = {}
        self._probabilities: dict[str, np.ndarray] = {}
        self._features: dict[str, np.ndarray] = {}
        self._activations: dict[str, dict[str, np.ndarray]] = {}
        self._memo: dict[Any, Any] = {}

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key for this population (statistics several metrics share)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def members(self) -> int:
        return len(self.population)

    @property
    def has_networks(self) -> bool:
        """Whether each member is one network, so :data:`NETWORK_VIEWS` exist.

        Anything with ``__len__`` and ``predict(inputs) -> [K, N, outputs]`` can stand in
        for a population; one that sets ``one_network_per_member = False`` (an ensemble, a
        head on features: :mod:`expunge.bench.exact`) has no penultimate features or layers.
        """
        return bool(getattr(self.population, "one_network_per_member", True))

    def scores(self, split: str) -> Scores:
        """Task statistics ``[K, n]`` on a split."""
        if split not in self._scores:
            if split == "retain_sample" and "retain" in self._scores:
                self._scores[split] = self._scores["retain"].columns(self.data.retain_sample_index())
            else:
                inputs, targets = self.data.examples(split)
                outputs = self.population.predict(inputs)
                stats = self.task.statistics(outputs, targets.to(outputs.device))
                self._scores[split] = Scores({k: v.cpu().numpy() for k, v in stats.items()}, self.task.name)
        return self._scores[split]

    def probabilities(self, split: str) -> np.ndarray:
        """The predictive distribution ``[K, n, C]`` on a split (categorical tasks)."""
        if split not in self._probabilities:
            inputs, _ = self.data.examples(split)
            self._probabilities[split] = self.task.probabilities(self.population.predict(inputs)).cpu().numpy()
        return self._probabilities[split]

    def features(self, split: str) -> np.ndarray:
        """Penultimate-layer features ``[K, n, d]`` on a split."""
        if split not in self._features:
            inputs, _ = self.data.examples(split)
            self._features[split] = self.population.features(inputs).cpu().numpy()
        return self._features[split]

    def activations(self, split: str, limit: int = ACTIVATION_EXAMPLES) -> dict[str, np.ndarray]:
        """Every parameterised layer's output ``name -> [K, n, d]`` on (at most ``limit`` examples of) a split.

        Every layer of every member is held at once, so large splits are cut to their
        first ``limit`` examples (the same ones for every population).
        """
        if split not in self._activations:
            inputs, _ = self.data.examples(split)
            inputs = tuple(t[:limit] for t in inputs)
            self._activations[split] = {name: value.cpu().numpy() for name, value in
                                        self.population.activations(inputs, layer_names(self.population)).items()}
        return self._activations[split]


def layer_names(population: Population) -> list[str]:
    """Submodules that own parameters directly (linear, convolution, normalisation layers), in order."""
    return [name for name, module in population.template.named_modules()
            if name and any(True for _ in module.parameters(recurse=False)) and not isinstance(module, nn.Embedding)]


@dataclass
class ShadowEvidence:
    """Shadow models unlearned by the method, for U-LiRA: their forget-set evidence and membership.

    ``in_mask`` ``[M, n_forget]``: the shadow trained on the example and then unlearned it;
    ``out_mask``: the shadow never saw it.
    """

    evidence: Evidence
    in_mask: np.ndarray
    out_mask: np.ndarray

    @property
    def members(self) -> int:
        return self.evidence.members


@dataclass
class RetrainCost:
    """What retraining costs per member, and where that figure was measured."""

    example_gradients: float
    wall_time_s: float
    peak_rss_bytes: int | None
    measured: str

    def ratios(self, cost: Cost) -> dict[str, float]:
        """``cost``'s figures per member divided by retraining's (:meth:`Cost.ratios`)."""
        return cost.ratios(Cost(example_gradients=self.example_gradients, wall_time_s=self.wall_time_s, members=1))

    def to_json(self) -> dict[str, Any]:
        return {"example_gradients": self.example_gradients, "wall_time_s": self.wall_time_s,
                "peak_rss_bytes": self.peak_rss_bytes, "measured": self.measured}


@dataclass
class Candidate:
    """What a metric measures: a population (and, for a method, what it spent and its unlearned shadows)."""

    name: str
    evidence: Evidence
    cost: Cost | None = None
    shadow: ShadowEvidence | None = None


@dataclass
class AuditContext:
    """Everything the methods of one audit are measured against."""

    data: AuditData
    oracle: Evidence
    second_oracle: Evidence
    original: Evidence
    retrain: RetrainCost
    seed: int = 0
    make_random: Callable[[], Evidence] | None = None  # untrained members of the architecture (ZRF)
    recipe: Any = None  # the scenario's training recipe, where metrics that train need it (relearning's lr)
    _random: Evidence | None = field(default=None, repr=False)

    @property
    def task(self) -> Task:
        return self.data.task

    def random_init(self) -> Evidence:
        """Randomly initialised members of the architecture (an "incompetent teacher"), built once."""
        if self._random is None:
            if self.make_random is None:
                raise ExpungeError("this audit has no randomly initialised reference population")
            self._random = self.make_random()
        return self._random

    def common_members(self, *evidence: Evidence) -> int:
        """N for comparisons between populations: the smallest population's size."""
        return min(e.members for e in (self.oracle, *evidence))
