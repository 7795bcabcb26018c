"""TOFU's forget quality, against populations, with the noise floor TOFU never shows.

TOFU: the KS two-sample test p-value between the forget-set truth statistics
(:func:`expunge.audit.tofu.truth_statistic`, one per forget question) of the unlearned
model and of one retained model. Here, per member pair ``k`` (unlearned member ``k``,
oracle member ``k``): ``p_k = KS(x_unlearned_k, x_oracle_k)``; the row is the median of
``p_k`` over pairs. Its noise floor is the same statistic between the second oracle
population and the oracle: how high the p-value is when nothing distinguishes the two
(two retrained populations), which is the value a method can hope for.
"""
from __future__ import annotations

import numpy as np

from expunge.audit.metric import Closeness, Metric, Row, register
from expunge.audit.results import Measurement
from expunge.audit.tofu import answer_losses, has_answer_variants, per_member_ks, truth_statistic

DEFINITION = "forget_quality@tofu-ks-per-member-median"


@register
class ForgetQuality(Metric):
    """Median over member pairs of the KS p-value of forget-set truth statistics, unlearned vs oracle."""

    name = "forget_quality"
    summary = "TOFU forget quality: KS p-value of truth ratios vs the oracle, with its noise floor"
    description = ("TOFU forget quality: per member pair, the KS two-sample p-value between the forget-set truth "
                   "statistics of the unlearned member and of the oracle member; median over pairs. Noise floor: "
                   "the same between two independent oracle populations (TOFU reports no floor).")
    definition = DEFINITION
    reference_kind = "noise_floor"
    needs = frozenset({"sequence_loglik"})
    rows = (Row("forget_quality", "forget", "forget quality (KS p)", headline=20,
                closeness=Closeness("at_least_fraction", 0.5)),)

    def measure(self, candidate, context) -> dict[str, Measurement]:
        if not has_answer_variants(context.data):
            return {}
        mine = truth_statistic(answer_losses(candidate.evidence, "forget"))
        oracle = truth_statistic(answer_losses(context.oracle, "forget"))
        p = per_member_ks(mine, oracle)
        return {"forget_quality/forget": Measurement(float(np.median(p)), float(np.std(p, ddof=1)) if len(p) > 1
                                                     else 0.0, len(p), {"per_member_p": [float(v) for v in p],
                                                                        "questions": int(mine.shape[1])})}
