"""TOFU's model utility on retained authors and world facts, beside the oracle's.

METRICS.md ("Language models"): the harmonic mean of {answer probability, ROUGE-L recall,
``max(0, 1 - R)``} on the retain set and on world facts (six values; TOFU uses nine with a
real-authors set). Here per member, on the retained authors and the world facts (always
trained on), then mean ± std over members. A zero anywhere gives 0.
"""
from __future__ import annotations

import numpy as np

from expunge.audit.metric import Closeness, Metric, Row, population_mean, register
from expunge.audit.results import Measurement
from expunge.audit.tofu import (
    answer_losses,
    answer_probability,
    has_answer_variants,
    rouge_l_recall,
    truth_ratio_score,
    truth_ratios,
)

DEFINITION = "model_utility@tofu-hmean-retain-world"


def _harmonic_mean(parts: np.ndarray) -> np.ndarray:
    """Harmonic mean along the last axis; 0 where any part is 0."""
    with np.errstate(divide="ignore"):
        return np.where((parts > 0).all(-1), parts.shape[-1] / (1.0 / np.where(parts > 0, parts, 1.0)).sum(-1), 0.0)


@register
class ModelUtility(Metric):
    """Harmonic mean of answer probability, ROUGE-L and truth ratio on retained authors and world facts."""

    name = "model_utility"
    summary = "TOFU model utility on retained authors and world facts"
    description = ("TOFU model utility: per member, the harmonic mean of answer probability, ROUGE-L recall of the "
                   "greedy answer and truth ratio on retained authors and on world facts (six numbers); mean ± "
                   "std over members, beside the oracle population's.")
    definition = DEFINITION
    reference_kind = "oracle"
    needs = frozenset({"sequence_loglik"})
    separates_original = False  # utility, not forgetting
    rows = (Row("model_utility", "retain", "model utility", headline=21,
                closeness=Closeness("at_least_fraction", 0.9)),)

    def measure(self, candidate, context) -> dict[str, Measurement]:
        if not has_answer_variants(context.data):
            return {}
        evidence, parts, names = candidate.evidence, [], []
        for which in ("retain", "world"):
            losses = answer_losses(evidence, which)
            if not losses:
                continue
            parts += [answer_probability(losses), rouge_l_recall(evidence, which),
                      truth_ratio_score(truth_ratios(losses), forget=False)]
            names += [f"{which}_probability", f"{which}_rouge_l", f"{which}_truth_ratio"]
        if not parts:
            return {}
        stacked = np.stack(parts, axis=-1)  # [K, parts]
        return {"model_utility/retain": population_mean(_harmonic_mean(stacked),
                                                        **{n: float(v) for n, v in zip(names, stacked.mean(0))})}
