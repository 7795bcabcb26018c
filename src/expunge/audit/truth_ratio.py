"""TOFU's truth ratio on the forget set, retained authors and world facts (``causal_lm`` with answer variants).

Definitions: :mod:`expunge.audit.tofu` (``R = mean_k P(perturbed_k) / P(paraphrased)``;
forget: ``mean min(R, 1/R)``; retained: ``mean max(0, 1 - R)``). Per member, mean ± std
over members, beside the oracle population's value.
"""
from __future__ import annotations

from expunge.audit.metric import Closeness, Metric, Row, population_mean, register
from expunge.audit.results import Measurement
from expunge.audit.tofu import QUESTION_SETS, answer_losses, has_answer_variants, truth_ratio_score, truth_ratios

DEFINITION = "truth_ratio@tofu"


@register
class TruthRatio(Metric):
    """TOFU's truth ratio per question set, against the oracle's."""

    name = "truth_ratio"
    summary = "TOFU truth ratio: paraphrased vs perturbed answer likelihood"
    description = ("TOFU truth ratio (Maini et al. 2024), R = mean over perturbed answers of P(perturbed) / "
                   "P(paraphrased), P the length-normalised answer probability: forget set mean min(R, 1/R), "
                   "retained authors and world facts mean max(0, 1 - R); mean ± std over members, beside the "
                   "oracle population's.")
    definition = DEFINITION
    reference_kind = "oracle"
    needs = frozenset({"sequence_loglik"})
    rows = (Row("truth_ratio", "forget", "truth ratio forget", closeness=Closeness("band", 2.0, 0.05)),
            Row("truth_ratio", "retain", "truth ratio retain", closeness=Closeness("band", 2.0, 0.05)),
            Row("truth_ratio", "world", "truth ratio world facts", closeness=Closeness("band", 2.0, 0.05)))

    def measure(self, candidate, context) -> dict[str, Measurement]:
        if not has_answer_variants(context.data):
            return {}
        result = {}
        for which in QUESTION_SETS:
            losses = answer_losses(candidate.evidence, which)
            if losses:
                ratios = truth_ratios(losses)
                result[f"truth_ratio/{which}"] = population_mean(truth_ratio_score(ratios, which == "forget"),
                                                                 questions=int(ratios.shape[1]))
        return result
