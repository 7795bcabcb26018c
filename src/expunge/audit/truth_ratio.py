"""TOFU's truth ratio on the forget set, retained authors and world facts (``causal_lm`` with answer variants).

Definitions: :mod:`expunge.audit.tofu` (forget: ``mean min(x, 1/x)``; retained:
``mean max(0, 1 - 1/x)``, ``x`` the paraphrase's normalised probability over the
perturbed answers' geometric mean). Per member, mean ± std over members, beside the
oracle population's value.
"""
from __future__ import annotations

from expunge.audit.metric import Closeness, Metric, Row, population_mean, register
from expunge.audit.results import Measurement
from expunge.audit.tofu import QUESTION_SETS, answer_losses, has_answer_variants, truth_ratio_score, truth_statistic

DEFINITION = "truth_ratio@tofu"


@register
class TruthRatio(Metric):
    """TOFU's truth ratio per question set, against the oracle's."""

    name = "truth_ratio"
    summary = "TOFU truth ratio: paraphrased vs perturbed answer likelihood"
    description = ("TOFU truth ratio (Maini et al. 2024), x = exp(mean perturbed-answer loss - paraphrased-answer "
                   "loss) per question: forget set mean min(x, 1/x), retained authors and world facts mean "
                   "max(0, 1 - 1/x); mean ± std over members, beside the oracle population's.")
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
                x = truth_statistic(losses)
                result[f"truth_ratio/{which}"] = population_mean(truth_ratio_score(x, which == "forget"),
                                                                 questions=int(x.shape[1]))
        return result
