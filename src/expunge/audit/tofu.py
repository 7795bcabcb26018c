"""TOFU's statistics on a population of language models (shared by the TOFU metrics).

After TOFU (Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", 2024), as
METRICS.md ("Language models") defines them. Per question ``q`` with answer ``a``,
paraphrased answer ``a~`` and perturbed (wrong) answers ``a^_1..a^_P``, with
``P(s | q) = exp(-mean token NLL of s)`` (the ``causal_lm`` task's ``exp(-loss)``, a
geometric mean over the answer's tokens):

- **truth ratio** ``R(q) = mean_k P(a^_k | q) / P(a~ | q)`` (lower: the model prefers the
  truth);
- the ``truth_ratio`` rows: on retained facts ``mean_q max(0, 1 - R)`` (the term model
  utility uses); on the forget set TOFU's ``mean_q min(R, 1/R)`` (near 1: no preference
  between the truth and the wrong answers, what a model that never saw the facts shows);
- **answer probability** ``mean_q P(a | q)``;
- **ROUGE-L recall** of the greedy answer against ``a`` (``rouge-score``, ``rougeL``,
  stemming off), mean over questions.

Each is computed per member (``[K]``, or ``[K, n]`` per question); the metric modules
turn them into rows: ``truth_ratio``, ``forget_quality``, ``model_utility``, ``rouge_l``.

Question sets: ``forget`` (every forget example), ``retain`` (up to
:data:`RETAIN_QUESTIONS` of the audit's retain sample that belong to an author) and
``world`` (the world facts: retain examples of group ``-1``, always trained on).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from expunge.errors import ExpungeError

if TYPE_CHECKING:
    from expunge.audit.evidence import AuditData, Evidence

RETAIN_QUESTIONS = 100  # retained author questions per audit (TOFU's forget sets are 40-400 questions)
WORLD_GROUP = -1
QUESTION_SETS = ("forget", "retain", "world")


def has_answer_variants(data: "AuditData") -> bool:
    """Whether the audit's data carries paraphrased and perturbed answers (a corpus side table)."""
    return data.corpus is not None and hasattr(data.corpus, "variant")


def question_positions(data: "AuditData", which: str) -> torch.Tensor:
    """Training-set positions of a question set (see the module docstring)."""
    groups = data.train.groups
    if which == "forget":
        return data.forget_positions
    if groups is None:
        raise ExpungeError("the TOFU metrics need examples that name their author (ArrayDataset.groups)")
    if which == "retain":
        sample = data.retain_sample
        return sample[groups[sample] != WORLD_GROUP][:RETAIN_QUESTIONS]
    if which == "world":
        retain = data.retain_positions
        return retain[groups[retain] == WORLD_GROUP]
    raise ExpungeError(f"unknown question set {which!r}; use one of {', '.join(QUESTION_SETS)}")


def _losses(evidence: "Evidence", dataset) -> np.ndarray:
    """Per-member, per-question answer loss ``[K, n]`` (mean token cross-entropy over the answer)."""
    outputs = evidence.population.predict(dataset.inputs)
    return evidence.task.statistics(outputs, dataset.y.to(outputs.device))["loss"].cpu().numpy()


def answer_losses(evidence: "Evidence", which: str) -> dict[str, np.ndarray]:
    """Losses of the true, paraphrased and perturbed answers: ``answer`` and ``paraphrased`` ``[K, n]``,
    ``perturbed`` ``[K, n, P]``. Cached per population and question set."""
    def compute() -> dict[str, np.ndarray]:
        sets = answer_sets(evidence.data, which)
        if not sets:
            return {}
        return {"answer": _losses(evidence, sets["answer"]), "paraphrased": _losses(evidence, sets["paraphrased"]),
                "perturbed": np.stack([_losses(evidence, d) for d in sets["perturbed"]], axis=-1)}

    return evidence.cached(("tofu_losses", which), compute)


def answer_sets(data: "AuditData", which: str) -> dict:
    """The question set with its true, paraphrased and perturbed answers, tokenized once per audit."""
    def compute() -> dict:
        corpus = data.corpus
        questions = data.train.subset(question_positions(data, which))
        if len(questions) == 0:
            return {}
        count = min(len(corpus.fact(int(i)).perturbed) for i in questions.ids.tolist())
        return {"answer": questions, "paraphrased": corpus.variant(questions, "paraphrased"),
                "perturbed": [corpus.variant(questions, f"perturbed:{j}") for j in range(count)]}

    return data.shared(("tofu_answer_sets", which), compute)


def truth_ratios(losses: dict[str, np.ndarray]) -> np.ndarray:
    """``R = mean_k P(perturbed_k) / P(paraphrased)`` per member and question ``[K, n]``."""
    return np.exp(-losses["perturbed"]).mean(-1) / np.exp(-losses["paraphrased"])


def truth_ratio_score(ratios: np.ndarray, forget: bool) -> np.ndarray:
    """The reported truth ratio per member ``[K]``: forget ``mean min(R, 1/R)``, else ``mean max(0, 1 - R)``."""
    if forget:
        return np.minimum(ratios, 1.0 / ratios).mean(-1)
    return np.maximum(0.0, 1.0 - ratios).mean(-1)


def answer_probability(losses: dict[str, np.ndarray]) -> np.ndarray:
    """Mean answer probability ``P(a | q)`` per member ``[K]``."""
    return np.exp(-losses["answer"]).mean(-1)


def rouge_l_recall(evidence: "Evidence", which: str) -> np.ndarray:
    """Mean ROUGE-L recall of each member's greedy answers against the true answers ``[K]`` (cached)."""
    def compute() -> np.ndarray:
        from rouge_score import rouge_scorer

        from expunge.training.generate import greedy_answers

        data = evidence.data
        corpus = data.corpus
        questions = data.train.subset(question_positions(data, which))
        tokenizer = corpus.tokenizer
        answers = greedy_answers(evidence.population, questions, tokenizer.eos_id)
        truths = [corpus.fact(int(i)).answer for i in questions.ids.tolist()]
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        return np.array([np.mean([scorer.score(truth, tokenizer.decode(answer))["rougeL"].recall
                                  for truth, answer in zip(truths, member)]) for member in answers])

    return evidence.cached(("tofu_rouge", which), compute)


def pooled_ks(mine: np.ndarray, reference: np.ndarray) -> float:
    """Two-sample KS p-value between two populations' values, each pooled over members and questions."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(np.ravel(mine), np.ravel(reference)).pvalue)
