"""TOFU's forget quality, against populations, with the noise floor TOFU never shows.

METRICS.md ("Language models"): the p-value of the two-sample Kolmogorov-Smirnov test
between the forget-set truth ratios (:func:`expunge.audit.tofu.truth_ratios`, one per
member and forget question) of the unlearned population and of the oracle population,
each pooled over its members. Its noise floor is the same test between the second oracle
population and the oracle: how high the p-value is when nothing distinguishes the two
(two retrained populations), the value a method can hope for. Pooling makes the test
sharper as N grows (N x questions values per side), so compare a method's p-value with the
floor beside it, never with TOFU's single-model values.
"""
from __future__ import annotations

from expunge.audit.metric import Closeness, Metric, Row, register
from expunge.audit.results import Measurement
from expunge.audit.tofu import answer_losses, has_answer_variants, pooled_ks, truth_ratios

DEFINITION = "forget_quality@tofu-ks-pooled"


@register
class ForgetQuality(Metric):
    """KS p-value of the forget-set truth ratios, unlearned vs oracle population (each pooled over members)."""

    name = "forget_quality"
    summary = "TOFU forget quality: KS p-value of truth ratios vs the oracle, with its noise floor"
    description = ("TOFU forget quality: the KS two-sample p-value between the forget-set truth ratios of the "
                   "unlearned population and of the oracle population, each pooled over members. Noise floor: the "
                   "same between two independent oracle populations (TOFU reports no floor).")
    definition = DEFINITION
    reference_kind = "noise_floor"
    needs = frozenset({"sequence_loglik"})
    rows = (Row("forget_quality", "forget", "forget quality (KS p)", headline=20,
                closeness=Closeness("at_least_fraction", 0.5)),)

    def measure(self, candidate, context) -> dict[str, Measurement]:
        if not has_answer_variants(context.data):
            return {}
        mine = truth_ratios(answer_losses(candidate.evidence, "forget"))
        oracle = truth_ratios(answer_losses(context.oracle, "forget"))
        return {"forget_quality/forget": Measurement(pooled_ks(mine, oracle), None, min(len(mine), len(oracle)),
                                                     {"questions": int(mine.shape[1]),
                                                      "values_per_side": [int(mine.size), int(oracle.size)]})}
