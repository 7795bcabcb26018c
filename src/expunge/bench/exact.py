"""Exact constructions in audits: SISA and closed-form heads, each against its own oracle.

An approximate method is compared with retraining a single model. An exact construction
changes the model itself (an ensemble of shard models, a ridge head on frozen features),
so its target is **the same construction trained without the forget set**: its original,
oracle and second oracle are built with the seeds of the scenario's ``original``,
``oracle`` and ``second_oracle`` roles, and its unlearned population is its original
after the construction's own exact deletion. F, KLoM and U-LiRA are then read against
the retrain-vs-retrain noise floor of the construction, which is where exact deletion
must land. What the construction costs in accuracy is shown beside a single model's
(the scenario's oracle population).

The registry :data:`EXACT` maps names to :class:`ExactConstruction` classes (entry-point
group ``expunge.exact_constructions``); :func:`expunge.bench.audit.run_audit` routes the
names it finds here to :func:`audit_exact`. Members reach the audit through
:class:`ExactPredictions`, which has ``__len__`` and ``predict`` like a population and
says it has no single network per member, so the metrics that read penultimate features
or layers (CKA, the k-NN probe, activation distance) are skipped with a note.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from expunge.audit.accuracy import member_accuracy
from expunge.audit.assess import Assessment, Assessor
from expunge.audit.evidence import AuditContext, Candidate, Evidence, ShadowEvidence
from expunge.errors import ExpungeError
from expunge.exact.closed_form import RidgeHead
from expunge.exact.sisa import SisaModel
from expunge.registry import Registry
from expunge.training.cost import Cost
from expunge.training.engine import model_spec
from expunge.training.population import Population
from expunge.training.scenario import Scenario

ProgressFactory = Callable[[str], Callable[[int, int], None]]


@dataclass
class ExactPredictions:
    """``members`` models of an exact construction, as the audit's :class:`Evidence` reads them.

    ``predict(inputs) -> [members, N, outputs]``: outputs the task turns into statistics
    like any model's logits. There is no single network per member, so representation
    metrics do not apply (:attr:`one_network_per_member`).
    """

    members: int
    predict: Callable[[Any], torch.Tensor]
    one_network_per_member: ClassVar[bool] = False

    def __len__(self) -> int:
        return self.members

    @classmethod
    def stacked(cls, parts: list[ExactPredictions]) -> ExactPredictions:
        """One population of every part's members, in order (shadow constructions are built one by one)."""
        return cls(sum(p.members for p in parts), lambda inputs: torch.cat([p.predict(inputs) for p in parts]))


class ExactConstruction(ABC):
    """A model construction whose deletions are exact, as the audit builds, deletes from and observes it.

    Subclasses set :attr:`name`, :attr:`paper`, :attr:`defaults` (every hyperparameter,
    with its default) and implement the four methods. Built with the audit's scenario and
    the user's hyperparameters; unknown hyperparameter names are an error.
    """

    name: ClassVar[str]
    paper: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]

    def __init__(self, scenario: Scenario, **hyperparameters: Any):
        self.scenario = scenario
        self.hyperparameters = self.check_hyperparameters(hyperparameters)

    @classmethod
    def check_hyperparameters(cls, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        """The defaults updated with ``hyperparameters`` (text from the CLI converted to the default's type);
        an unknown name or a value of the wrong type is an error."""
        unknown = sorted(set(hyperparameters) - set(cls.defaults))
        if unknown:
            raise ExpungeError(f"{cls.name} has no hyperparameter {', '.join(map(repr, unknown))}; "
                               f"it has {', '.join(cls.defaults)}")
        values = dict(cls.defaults)
        for key, value in hyperparameters.items():
            kind = type(cls.defaults[key])
            try:
                values[key] = kind(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) \
                    else value
            except ValueError:
                raise ExpungeError(f"hyperparameter {key!r} of {cls.name} must be {kind.__name__}, "
                                   f"got {value!r}") from None
            if kind is int and isinstance(value, float) and value != int(value):
                raise ExpungeError(f"hyperparameter {key!r} of {cls.name} must be a whole number, got {value!r}")
        return values

    @abstractmethod
    def describe(self) -> str:
        """The construction in words, e.g. ``"SISA, 4 shards x 2 slices"``."""

    @abstractmethod
    def train(self, role: str, members: int, exclude: torch.Tensor | None, first: int = 0,
              progress: Callable[[int, int], None] | None = None) -> Any:
        """``members`` independent models of the construction on the training set without ``exclude``
        (bool ``[N]``), seeded from the scenario's ``role`` starting at member ``first``."""

    @abstractmethod
    def forget(self, model: Any, forget: torch.Tensor) -> tuple[Any, Cost]:
        """``model`` after the exact deletion of the examples where ``forget`` (bool ``[N]``) holds,
        and what that cost per member."""

    @abstractmethod
    def predictions(self, model: Any) -> ExactPredictions:
        """``model``'s members as the audit reads them."""


def check_construction_class(cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, ExactConstruction)):
        raise ExpungeError(f"an exact construction must subclass expunge.bench.exact.ExactConstruction, got {cls!r}")
    for attribute in ("name", "paper", "defaults"):
        if getattr(cls, attribute, None) is None:
            raise ExpungeError(f"exact construction {cls.__name__} must set the class attribute {attribute!r}")


EXACT: Registry[type[ExactConstruction]] = Registry("exact construction", "expunge.exact_constructions",
                                                    ("expunge.bench.exact",), check=check_construction_class)


# ----------------------------------------------------------------------------- the constructions
@EXACT.register
class Sisa(ExactConstruction):
    """SISA ensembles (:class:`expunge.exact.SisaModel`): member ``e`` of a population is ensemble ``e``.

    All ``N`` ensembles of a population are one :class:`SisaModel` with ``ensembles = N``
    (``N x shards`` shard models trained as one computation); ensemble ``e`` is seeded from
    the role's first seed ``+ e x shards`` (so the shadow built alone as member ``m`` gets
    the seeds it would have as ensemble ``m``). The forget set is deleted with
    :meth:`SisaModel.forget`, which equals training without it (bitwise, tested).
    Defaults: 4 shards x 2 slices (the README's table: about 7 points of accuracy for a
    3.8-6x cheaper deletion on MNIST-1D), mean aggregation.
    """

    name = "sisa"
    paper = "Bourtoule et al., Machine Unlearning, IEEE S&P 2021"
    defaults: ClassVar[dict[str, Any]] = {"shards": 4, "slices": 2, "aggregate": "mean"}

    def describe(self) -> str:
        hp = self.hyperparameters
        return f"SISA, {hp['shards']} shards x {hp['slices']} slices, {hp['aggregate']} aggregation"

    def train(self, role, members, exclude, first=0, progress=None) -> SisaModel:
        scenario, hp = self.scenario, self.hyperparameters
        train = scenario.split.train
        seed = scenario.role_seeds(role, 1)[0] + first * hp["shards"]
        excluded = None if exclude is None else train.ids[exclude.cpu()]
        return SisaModel.train(train, hp["shards"], hp["slices"], scenario.recipe, seed=seed,
                               aggregate=hp["aggregate"], ensembles=members, exclude_ids=excluded,
                               device=scenario.device, progress=progress)

    def forget(self, model: SisaModel, forget: torch.Tensor) -> tuple[SisaModel, Cost]:
        ids = self.scenario.split.train.ids[(forget & model.alive).cpu()]
        if ids.numel() == 0:
            return model, Cost(members=model.ensembles)
        after, spent = model.forget(self.scenario.split.train, ids, device=self.scenario.device)
        shard_models = model.ensembles * model.shards
        note = (f"retrained {spent.shards_retrained} of {shard_models} shard models, "
                f"{spent.ratio_to_full:.3f} of training the whole SISA model")
        return after, Cost(example_gradients=spent.example_gradients / model.ensembles,
                           wall_time_s=spent.wall_time_s, members=model.ensembles, notes=[note])

    def predictions(self, model: SisaModel) -> ExactPredictions:
        task = self.scenario.split.task
        return ExactPredictions(model.ensembles, lambda inputs: model.predict(inputs, task))


@dataclass
class RandomFeatureHeads:
    """Ridge heads on random features: member ``k`` is ``heads[k]`` on ``backbones`` member ``k``."""

    backbones: Population
    heads: list[RidgeHead]


@EXACT.register
class ClosedForm(ExactConstruction):
    """A ridge head (:class:`expunge.exact.RidgeHead`) on the recipe's architecture at random initialisation.

    The backbone of member ``k`` is the recipe's architecture initialised from the role's
    seed ``k`` and never trained: random features. That choice is what makes the guarantee
    cover the whole model. A backbone trained on the training set would still carry the
    forget set after the head's deletion, and the audit would then measure the backbone's
    leak, not the head's exactness. The head (``l2`` default 1.0, as
    ``expunge closed-form fit``) is fit on the backbone's penultimate features; deletion is
    the head's Woodbury down-date. Outputs are the head's scores, read by the task as
    logits (softmax for the probabilities): the same reading for the construction and
    its oracles, so F and KLoM compare like with like.
    """

    name = "closed_form"
    paper = "Guo et al., Certified Data Removal from Machine Learning Models, ICML 2020 (exact ridge case)"
    defaults: ClassVar[dict[str, Any]] = {"l2": 1.0}

    def describe(self) -> str:
        return f"ridge head (l2 = {self.hyperparameters['l2']:g}) on random features of the recipe's architecture"

    def train(self, role, members, exclude, first=0, progress=None) -> RandomFeatureHeads:
        scenario = self.scenario
        train = scenario.split.train
        seeds = scenario.role_seeds(role, first + members)[first:]
        backbones = Population.initialize(model_spec(scenario.recipe, train), seeds).to(scenario.device)
        features = backbones.features(train.inputs).cpu()
        keep = torch.ones(len(train), dtype=torch.bool) if exclude is None else ~exclude.cpu()
        heads = []
        for k in range(members):
            heads.append(RidgeHead.fit(features[k][keep], train.y[keep].cpu(), train.ids[keep], train.task,
                                       train.num_classes, self.hyperparameters["l2"]))
            if progress is not None:
                progress(k + 1, members)
        return RandomFeatureHeads(backbones, heads)

    def forget(self, model: RandomFeatureHeads, forget: torch.Tensor) -> tuple[RandomFeatureHeads, Cost]:
        ids = self.scenario.split.train.ids[forget.cpu()]
        start = time.perf_counter()
        # Each head deletes the forget examples it was fit on (a shadow head was fit on part of them only).
        heads = [head.delete(kept) if (kept := ids[torch.isin(ids, head.ids)]).numel() else head
                 for head in model.heads]
        elapsed = time.perf_counter() - start
        updates = sorted({head.update for head in heads})
        return RandomFeatureHeads(model.backbones, heads), Cost(
            wall_time_s=elapsed, members=len(heads),
            notes=[f"no gradients: each member's ridge head was updated in closed form ({', '.join(updates)})"])

    def predictions(self, model: RandomFeatureHeads) -> ExactPredictions:
        def predict(inputs: Any) -> torch.Tensor:
            features = model.backbones.features(inputs)
            return torch.stack([head.predict(features[k]) for k, head in enumerate(model.heads)])

        return ExactPredictions(len(model.heads), predict)


# ----------------------------------------------------------------------------- the audit of one construction
def exact_entry(name: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The report entry of construction ``name``, before it is audited."""
    return {"method": name, "kind": "exact", "paper": EXACT.get(name).paper, "hyperparameters": hyperparameters,
            "tuned": None, "status": "ok", "error": None, "traceback": None, "cost": None, "plots": [], "notes": []}


def audit_exact(entry: dict[str, Any], scenario: Scenario, context: AuditContext, members: int,
                shadow_masks: torch.Tensor | None, metrics: list[str] | None,
                metric_options: dict[str, dict[str, Any]] | None, progress: ProgressFactory) -> Assessment:
    """Audit the construction of ``entry`` (from :func:`exact_entry`) against its own oracle; fills ``entry``.

    Builds its original, oracle and second oracle (``members`` each) and, given the
    audit's shadow keep-masks, its shadows; deletes the forget set from the original.
    ``context`` is the audit's single-model context: its data, retraining cost, seed and
    random-init reference are shared, and its oracle is the single model beside which the
    construction's accuracy is shown. Raises what the construction raises (the caller
    reports the entry as failed).
    """
    name = entry["method"]
    construction = EXACT.get(name)(scenario, **entry["hyperparameters"])
    entry["hyperparameters"] = construction.hyperparameters
    entry["oracle"] = f"{construction.describe()}, retrained without the forget set"
    forget = scenario.forget_mask
    original = construction.train("original", members, None, progress=progress(f"{name} original ({members})"))
    oracle = construction.train("oracle", members, forget, progress=progress(f"{name} oracle ({members})"))
    second = construction.train("second_oracle", members, forget,
                                progress=progress(f"{name} second oracle ({members})"))
    unlearned, cost = construction.forget(original, forget)
    entry["cost"] = cost.to_json()
    entry["notes"] += list(cost.notes)
    data = context.data
    own = AuditContext(data, Evidence(f"{name} oracle", construction.predictions(oracle), data),
                       Evidence(f"{name} second oracle", construction.predictions(second), data),
                       Evidence(f"{name} original", construction.predictions(original), data),
                       context.retrain, context.seed, context.random_init)
    shadow = None if shadow_masks is None else _shadows(construction, shadow_masks, forget, data,
                                                        progress(f"{name} shadows ({len(shadow_masks)})"))
    candidate = Candidate(name, Evidence(name, construction.predictions(unlearned), data), cost, shadow)
    assessment = Assessor(own, metrics, metric_options).assess(candidate)
    assessment.rows = _beside_single_model(assessment.rows, context.oracle)
    price = _accuracy_price(candidate.evidence, own.oracle, context.oracle)
    entry["accuracy_price"] = price
    entry["notes"].insert(0, f"exact: compared with its own oracle ({entry['oracle']}); test accuracy "
                             f"{price['test_accuracy']:.1f}% (its oracle {price['oracle_test_accuracy']:.1f}%) vs "
                             f"{price['single_model_test_accuracy']:.1f}% for a single model retrained without the "
                             f"forget set: an accuracy price of {price['price_points']:.1f} points")
    entry["plots"] = [p.to_json() for p in assessment.plots]
    entry["notes"] += assessment.notes
    return assessment


def _shadows(construction: ExactConstruction, keep_masks: torch.Tensor, forget: torch.Tensor, data,
             progress: Callable[[int, int], None]) -> ShadowEvidence:
    """Shadow ``m``: the construction trained on what shadow ``m`` keeps, then its exact deletion of the
    forget examples it kept (U-LiRA's "trained on it, then unlearned it" models)."""
    parts = []
    for m, keep in enumerate(keep_masks):
        model = construction.train("shadow", 1, ~keep, first=m)
        model, _ = construction.forget(model, keep & forget)
        parts.append(construction.predictions(model))
        progress(m + 1, len(keep_masks))
    positions = data.forget_positions
    return ShadowEvidence(Evidence(f"{construction.name} shadows", ExactPredictions.stacked(parts), data),
                          np.asarray((keep_masks & forget)[:, positions]),
                          np.asarray((~keep_masks & forget)[:, positions]))


def _beside_single_model(rows: list, single_model_oracle: Evidence) -> list:
    """The test accuracy row with the single-model oracle's test accuracy in its details (the accuracy price)."""
    value = float(np.mean(member_accuracy(single_model_oracle, "test")))
    return [replace(row, details={**row.details, "single_model_oracle": value})
            if (row.metric, row.split) == ("accuracy", "test") else row for row in rows]


def _accuracy_price(unlearned: Evidence, oracle: Evidence, single_model_oracle: Evidence) -> dict[str, float]:
    """Test accuracy of the construction (unlearned and its oracle) and of a single retrained model."""
    values = {"test_accuracy": unlearned, "oracle_test_accuracy": oracle,
              "single_model_test_accuracy": single_model_oracle}
    price = {key: float(np.mean(member_accuracy(evidence, "test"))) for key, evidence in values.items()}
    price["price_points"] = price["single_model_test_accuracy"] - price["oracle_test_accuracy"]
    return price
