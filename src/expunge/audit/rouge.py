"""ROUGE-L recall of greedy answers on the forget and retain sets, beside the oracle's (``causal_lm``).

Each member answers each question greedily (:func:`expunge.training.generate.greedy_answers`);
the row is the mean ROUGE-L recall (``rouge-score``, ``rougeL``, stemming off as METRICS.md says) of the
answers against the true answers, mean ± std over members. Forget: every forget
question; retain: up to 100 retained author questions (:mod:`expunge.audit.tofu`).
"""
from __future__ import annotations

from expunge.audit.metric import Closeness, Metric, Row, population_mean, register
from expunge.audit.results import Measurement
from expunge.audit.tofu import has_answer_variants, rouge_l_recall

DEFINITION = "rouge_l@recall-greedy-answer"


@register
class RougeL(Metric):
    """ROUGE-L recall of greedy answers."""

    name = "rouge_l"
    summary = "ROUGE-L recall of greedy answers vs the true answers"
    description = ("ROUGE-L recall (rouge-score, no stemming) of each member's greedy answer against the true answer, "
                   "mean over questions; mean ± std over members, beside the oracle population's.")
    definition = DEFINITION
    reference_kind = "oracle"
    needs = frozenset({"sequence_loglik"})
    rows = (Row("rouge_l", "forget", "ROUGE-L forget", closeness=Closeness("band", 2.0, 0.05)),
            Row("rouge_l", "retain", "ROUGE-L retain", closeness=Closeness("band", 2.0, 0.05)))

    def measure(self, candidate, context) -> dict[str, Measurement]:
        if not has_answer_variants(context.data):
            return {}
        return {f"rouge_l/{which}": population_mean(rouge_l_recall(candidate.evidence, which))
                for which in ("forget", "retain")}
