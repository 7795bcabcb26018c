"""The metric contract, its closeness rule, and the metric registry.

A metric is one registered object: its name, METRICS.md definition id, unit, what it
is read against (the oracle population's value, a measured noise floor, or a
constant), the closeness rule the verdict applies, the statistics it needs, and
:meth:`Metric.measure`. The audit turns every measurement into typed
:class:`~expunge.audit.results.MetricResult` rows; reports and leaderboards render rows
and never know which metrics exist. Adding a metric is one module with a
``@METRICS.register`` class; other packages add theirs through the ``expunge.metrics``
entry-point group, and ``expunge.testing.check_metric`` holds them to the same suite.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from expunge.audit.results import REFERENCE_KINDS, Measurement, MetricResult, ReferenceKind
from expunge.errors import ExpungeError
from expunge.registry import Registry

if TYPE_CHECKING:
    from expunge.audit.evidence import AuditContext, Candidate

# Views of a population a metric may need besides task statistics.
VIEWS = ("features", "probabilities", "activations", "shadows", "cost", "random_init")

Rule = Literal["band", "at_least_fraction", "at_most_fraction", "within", "at_most", "at_least", "none"]


@dataclass(frozen=True)
class Closeness:
    """When a value counts as close to its reference; a distance of 1 is the edge of tolerance.

    - ``band``: ``|value - reference| <= max(minimum, tolerance x reference spread)``
      (FA, RA, TA: within 2 oracle standard deviations, never stricter than 1 point);
    - ``at_least_fraction``: ``value >= tolerance x reference`` (higher is better: F);
    - ``at_most_fraction``: ``value <= tolerance x reference`` (lower is better: KLoM);
    - ``within``: ``|value - reference| <= tolerance`` (U-LiRA AUC);
    - ``at_most`` / ``at_least``: ``value`` against the fixed ``tolerance``
      (Avg.Gap, ToW, cost ratio); no reference needed;
    - ``none``: not judged.
    """

    rule: Rule = "none"
    tolerance: float = 0.0
    minimum: float = 0.0

    def distance(self, value: float, reference: float | None, spread: float | None) -> float | None:
        """Deviation in units of the tolerance (<= 1 close); None where the rule cannot judge."""
        if self.rule == "none":
            return None
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.nan
        if self.rule == "at_most":
            return value / self.tolerance if self.tolerance > 0 else (0.0 if value <= 0 else math.inf)
        if self.rule == "at_least":
            return (1 - value) / (1 - self.tolerance) if self.tolerance < 1 else 0.0
        if reference is None or not math.isfinite(reference):
            return None
        if self.rule == "band":
            allowed = max(self.minimum, self.tolerance * (spread or 0.0))
            return abs(value - reference) / allowed if allowed > 0 else (0.0 if value == reference else math.inf)
        if self.rule == "within":
            return abs(value - reference) / self.tolerance
        if reference <= 0:
            return None
        if self.rule == "at_least_fraction":
            return (reference - value) / ((1 - self.tolerance) * reference)
        if self.rule == "at_most_fraction":
            return (value - reference) / ((self.tolerance - 1) * reference)
        raise ExpungeError(f"unknown closeness rule {self.rule!r}")

    def describe(self) -> str:
        """The rule in words, for the report."""
        return {
            "band": f"within {self.tolerance:g} reference standard deviations of the reference, never stricter "
                    f"than {self.minimum:g}",
            "at_least_fraction": f"at least {self.tolerance:.0%} of the reference (higher is better)",
            "at_most_fraction": f"at most {self.tolerance:.0%} of the reference (lower is better)",
            "within": f"within {self.tolerance:g} of the reference",
            "at_most": f"at most {self.tolerance:g}",
            "at_least": f"at least {self.tolerance:g}",
            "none": "not judged",
        }[self.rule]


NOT_JUDGED = Closeness()


@dataclass(frozen=True)
class Row:
    """One number a metric produces: its row name, split, label and how it is shown and judged.

    ``headline``: position among the leaderboard's columns (0 = not a headline number).
    ``verdict``: whether the row decides a method's verdict (else it only colours cells).
    """

    name: str
    split: str = "all"
    label: str = ""
    unit: str = ""
    headline: int = 0
    verdict: bool = False
    closeness: Closeness = NOT_JUDGED
    digits: int = 3
    chance: float | None = None  # overrides the metric's chance value (rows in other units)
    definition: str = ""  # overrides the metric's definition id (a second statistic of the same metric)

    @property
    def key(self) -> str:
        return self.name if self.split == "all" else f"{self.name}/{self.split}"


@dataclass(frozen=True)
class Plot:
    """Data for one figure in the report; ``kind`` names a drawing in ``expunge.report.plots``."""

    kind: str
    title: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "data": dict(self.data)}


class Metric(ABC):
    """Base class of audit metrics (see the module docstring). Subclasses set the class attributes and
    :meth:`measure`.

    ``reference_kind``: ``oracle`` (the reference is :meth:`measure` applied to the
    oracle population itself), ``noise_floor`` (applied to the second, independent
    oracle population as if it were the method), ``constant`` (``constant_reference``)
    or ``none``. ``needs``: task statistics (``phi``, ``margin``, ...) and views
    (:data:`VIEWS`) the metric reads; a metric whose needs the task cannot meet is
    reported as not applicable instead of failing. ``reference_per_method``: the
    reference depends on the method (U-LiRA's floor uses the method's shadow models).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    description: ClassVar[str]
    definition: ClassVar[str]
    reference_kind: ClassVar[ReferenceKind] = "none"
    constant_reference: ClassVar[float | None] = None
    chance: ClassVar[float | None] = None
    needs: ClassVar[frozenset[str]] = frozenset()
    rows: ClassVar[tuple[Row, ...]]
    reference_per_method: ClassVar[bool] = False
    # Definition ids the metric's rows or plots use besides its own, with their texts for the report.
    extra_definitions: ClassVar[dict[str, str]] = {}
    # Whether the original population must score worse than retraining (checked by the metric conformance
    # suite): False for metrics that do not measure forgetting (cost, retain-set utility).
    separates_original: ClassVar[bool] = True

    @abstractmethod
    def measure(self, candidate: "Candidate", context: "AuditContext") -> dict[str, Measurement]:
        """Measure ``candidate`` (a population and what the method spent) against ``context``'s oracle.

        Returns one :class:`Measurement` per row key of :attr:`rows` (a row may be
        missing when it cannot be computed; it is then reported as not measured).
        Detail keys starting with ``_`` are private (for :meth:`plots`) and never stored.
        """

    def plots(self, candidate: "Candidate", context: "AuditContext",
              measurements: dict[str, Measurement]) -> list[Plot]:
        """Figures for the report from the measurements (default: none)."""
        return []

    def applicable(self, statistics: tuple[str, ...], categorical: bool) -> str | None:
        """None if the metric can run on a task with these statistics; else the reason it cannot."""
        missing = [n for n in self.needs if n not in VIEWS and n not in statistics]
        if missing:
            return f"needs the {', '.join(missing)} statistic(s), which this task does not provide"
        if "probabilities" in self.needs and not categorical:
            return "needs a predictive distribution over classes, which this task does not have"
        return None

    def result(self, row: Row, method: str, measurement: Measurement,
               reference: Measurement | None) -> MetricResult:
        """The typed row for ``measurement`` read against ``reference``."""
        if self.reference_kind == "constant":
            ref_value, ref_spread = self.constant_reference, None
        elif reference is None:
            ref_value, ref_spread = None, None
        else:
            ref_value, ref_spread = reference.value, reference.spread
        return MetricResult(
            metric=row.name, split=row.split, method=method, value=float(measurement.value),
            definition=row.definition or self.definition, reference_kind=self.reference_kind if ref_value is not None else "none",
            reference=None if ref_value is None else float(ref_value), spread=measurement.spread,
            reference_spread=ref_spread, n_models=measurement.n_models, unit=row.unit, label=row.label or row.name,
            chance=row.chance if row.chance is not None else self.chance,
            details={k: v for k, v in measurement.details.items() if not k.startswith("_")},
            headline=row.headline,
            decides_verdict=row.verdict, digits=row.digits)


def population_mean(per_member: Any, **details: Any) -> Measurement:
    """A per-member statistic ``[K]`` as its mean with the standard deviation over members (ddof 1)."""
    import numpy as np

    values = np.asarray(per_member, dtype=float)
    spread = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return Measurement(float(np.mean(values)), spread, int(values.size), details)


def check_metric_class(cls: Any) -> None:
    """Registry check: the class attributes of the contract are present and well-formed."""
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise ExpungeError(f"a metric must be a subclass of expunge.audit.metric.Metric, got {cls!r}")
    for attribute in ("name", "summary", "description", "definition", "rows"):
        if not getattr(cls, attribute, None):
            raise ExpungeError(f"metric {cls.__name__} must set the class attribute {attribute!r}")
    if "@" not in cls.definition:
        raise ExpungeError(f"metric {cls.name!r}: definition id {cls.definition!r} must look like family@variant")
    if cls.reference_kind not in REFERENCE_KINDS:
        raise ExpungeError(f"metric {cls.name!r}: reference_kind {cls.reference_kind!r} must be one of "
                           f"{', '.join(REFERENCE_KINDS)}")
    if cls.reference_kind == "constant" and cls.constant_reference is None:
        raise ExpungeError(f"metric {cls.name!r} has a constant reference but no constant_reference value")
    keys = [row.key for row in cls.rows]
    if len(keys) != len(set(keys)):
        raise ExpungeError(f"metric {cls.name!r} declares a row twice: {keys}")


METRICS: Registry[type[Metric]] = Registry("metric", "expunge.metrics", ("expunge.audit",),
                                           check=check_metric_class)


def register(cls: type[Metric]) -> type[Metric]:
    """Class decorator: add a metric to the registry (and so to every audit and the metric suite)."""
    return METRICS.register(cls)
