"""Measure one candidate with every registered metric: judged rows, plots and notes.

Method-agnostic: it receives a :class:`~expunge.audit.evidence.Candidate` (a population
and, for a method, what it spent and its unlearned shadows) and the audit's
:class:`~expunge.audit.evidence.AuditContext`, and never knows which method made them.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from typing import Any

from expunge.audit.evidence import NETWORK_VIEWS, AuditContext, Candidate
from expunge.audit.metric import METRICS, Metric, Plot
from expunge.audit.results import Measurement, MetricResult
from expunge.audit.verdict import judge
from expunge.errors import ExpungeError

log = logging.getLogger("expunge.audit")


@dataclass
class Assessment:
    """Everything measured for one candidate."""

    rows: list[MetricResult] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Assessor:
    """Applies a set of metrics to candidates of one audit, computing each reference once."""

    def __init__(self, context: AuditContext, metrics: list[str] | None = None,
                 options: dict[str, dict[str, Any]] | None = None):
        """``metrics``: registered names (default all); ``options``: keyword arguments per metric name
        (e.g. ``{"klom": {"convention": "authors"}}``)."""
        self.context = context
        names = metrics if metrics is not None else METRICS.names()
        options = options or {}
        unknown = set(options) - set(names)
        if unknown:
            raise ExpungeError(f"options for metrics that are not audited: {sorted(unknown)}")
        self.metrics: list[Metric] = [METRICS.get(name)(**options.get(name, {})) for name in names]
        self._references: dict[str, dict[str, Measurement]] = {}
        task = context.task
        self.not_applicable = {m.name: reason for m in self.metrics
                               if (reason := m.applicable(task.statistics_provided, task.categorical))}

    def reference_candidate(self, metric: Metric, candidate: Candidate) -> Candidate | None:
        context = self.context
        if metric.reference_kind == "oracle":
            return Candidate("oracle", context.oracle, None, candidate.shadow)
        if metric.reference_kind == "noise_floor":
            return Candidate("second oracle", context.second_oracle, None, candidate.shadow)
        return None

    def _reference(self, metric: Metric, candidate: Candidate) -> dict[str, Measurement]:
        subject = self.reference_candidate(metric, candidate)
        if subject is None:
            return {}
        if metric.reference_per_method:
            return metric.measure(subject, self.context)
        if metric.name not in self._references:
            self._references[metric.name] = metric.measure(subject, self.context)
        return self._references[metric.name]

    def assess(self, candidate: Candidate, plots: bool = True) -> Assessment:
        """Every applicable metric of ``candidate``, each row judged against its reference."""
        result = Assessment()
        without_networks = []
        for metric in self.metrics:
            if metric.name in self.not_applicable:
                continue
            if "shadows" in metric.needs and candidate.shadow is None:
                continue  # U-LiRA without shadow models: skipped (shadow_members=0), said in the report header
            if metric.needs & NETWORK_VIEWS and not candidate.evidence.has_networks:
                without_networks.append(metric.name)
                continue
            try:
                measured = metric.measure(candidate, self.context)
                reference = self._reference(metric, candidate)
                for row in metric.rows:
                    if row.key not in measured:
                        continue
                    row_result = metric.result(row, candidate.name, measured[row.key], reference.get(row.key))
                    result.rows.append(judge(row_result, row.closeness))
                if plots:
                    result.plots += metric.plots(candidate, self.context, measured)
            except Exception as error:  # noqa: BLE001 - one broken metric must not lose the others
                log.error("metric %s failed on %s:\n%s", metric.name, candidate.name, traceback.format_exc())
                result.notes.append(f"metric {metric.name!r} failed: {type(error).__name__}: {error}")
        if without_networks:
            result.notes.append(f"not measured: {', '.join(without_networks)} (representation metrics need one "
                                "network per member; these members are not single networks)")
        return result

    def describe(self) -> dict[str, Any]:
        """Definitions, rules and applicability of the metrics, for the report."""
        return {
            "definitions": {m.definition: m.description for m in self.metrics}
            | {key: text for m in self.metrics for key, text in m.extra_definitions.items()},
            "rules": [{"label": row.label or row.key, "rule": row.closeness.describe(), "verdict": row.verdict}
                      for m in self.metrics for row in m.rows if row.closeness.rule != "none"],
            "not_applicable": dict(self.not_applicable),
        }
