"""TOFU metrics on language models: each formula against a hand computation, and a real audit on a tiny corpus."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ks_2samp

from expunge.audit.model_utility import _harmonic_mean
from expunge.audit.tofu import answer_probability, per_member_ks, truth_ratio_score, truth_statistic


def test_truth_statistic_and_ratio_by_hand():
    # one member, two questions; losses are mean token cross-entropies
    losses = {"answer": np.array([[0.1, 2.0]]), "paraphrased": np.array([[0.5, 1.0]]),
              "perturbed": np.array([[[1.0, 2.0], [1.0, 1.0]]])}
    x = truth_statistic(losses)
    # x = exp(mean perturbed loss - paraphrased loss): exp(1.5 - 0.5) = e, exp(1 - 1) = 1
    np.testing.assert_allclose(x, [[math.e, 1.0]])
    # forget: mean min(x, 1/x) = (1/e + 1) / 2; retained: mean max(0, 1 - 1/x) = ((1 - 1/e) + 0) / 2
    np.testing.assert_allclose(truth_ratio_score(x, forget=True), [(1 / math.e + 1) / 2])
    np.testing.assert_allclose(truth_ratio_score(x, forget=False), [(1 - 1 / math.e) / 2])
    # a model preferring the wrong answers (x < 1) scores 0 on retained facts, not a negative number
    assert truth_ratio_score(np.array([[0.5]]), forget=False).tolist() == [0.0]


def test_answer_probability_by_hand():
    losses = {"answer": np.array([[0.0, math.log(2)]]), "perturbed": np.array([[[math.log(2)], [math.log(2)]]])}
    # raw: mean of exp(-loss) = (1 + 0.5) / 2
    np.testing.assert_allclose(answer_probability(losses, normalised=False), [0.75])
    # over the options: 1 / (1 + 0.5) and 0.5 / (0.5 + 0.5)
    np.testing.assert_allclose(answer_probability(losses, normalised=True), [(2 / 3 + 0.5) / 2])


def test_forget_quality_pairs_members_and_harmonic_mean_by_hand():
    rng = np.random.default_rng(0)
    mine, oracle = rng.normal(size=(3, 40)), rng.normal(size=(2, 40))
    p = per_member_ks(mine, oracle)
    assert p.shape == (2,)  # pairs: min(K, K')
    assert p[1] == pytest.approx(ks_2samp(mine[1], oracle[1]).pvalue)
    np.testing.assert_allclose(_harmonic_mean(np.array([[1.0, 0.5, 0.25], [1.0, 0.0, 1.0]])),
                               [3 / (1 + 2 + 4), 0.0])


@pytest.fixture(scope="module")
def tiny_lm_audit():
    from expunge.bench.audit import run_audit
    from expunge.training.recipe import default_recipe
    from expunge.training.scenario import Scenario

    recipe = default_recipe("fictitious_authors").with_(epochs=25, batch_size=16,
                                                        model_kwargs={"d_model": 32, "heads": 2})
    scenario = Scenario.build("fictitious_authors", "authors:0,1", recipe, num_authors=8, facts_per_author=8,
                              unseen_authors=2, world_facts=10)
    metrics = ["truth_ratio", "forget_quality", "model_utility", "rouge_l", "accuracy", "klom"]
    return run_audit(scenario, ["original", "grad_diff"], members=3, shadow_members=0, metrics=metrics)


def test_tofu_metrics_run_in_an_audit_with_their_references(tiny_lm_audit):
    report = tiny_lm_audit
    assert [m["status"] for m in report.data["methods"]] == ["ok", "ok"]
    original_fq = report.row("original", "forget_quality", "forget")
    assert original_fq.reference_kind == "noise_floor" and 0.0 <= original_fq.reference <= 1.0
    assert 0.0 <= original_fq.value <= 1.0
    # the original knows the forgotten authors: ROUGE-L on them far above the oracle's (which never saw them)
    rouge = report.row("original", "rouge_l", "forget")
    assert rouge.value > rouge.reference + 0.2
    for split in ("forget", "retain", "world"):
        assert 0.0 <= report.row("grad_diff", "truth_ratio", split).value <= 1.0
    utility = report.row("grad_diff", "model_utility", "retain")
    assert 0.0 <= utility.value <= 1.0 and utility.reference_kind == "oracle"
    assert {"world_probability", "retain_rouge_l"} <= set(utility.details)
    # the report shows forget questions answered before and after
    generations = report.data["generations"]
    assert generations and set(generations[0]["answers"]) == {"original", "grad_diff", "oracle"}
    # KLoM runs on answer log-likelihoods
    assert report.row("grad_diff", "klom_p95", "forget").definition.startswith("klom")
