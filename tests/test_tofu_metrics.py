"""TOFU metrics on language models: each formula against a hand computation, and a real audit on a tiny corpus."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ks_2samp

from expunge.audit.model_utility import _harmonic_mean
from expunge.audit.tofu import answer_probability, pooled_ks, truth_ratio_score, truth_ratios


def test_truth_ratio_by_hand():
    # one member, two questions; losses are mean token cross-entropies, P = exp(-loss)
    losses = {"answer": np.array([[0.1, 2.0]]), "paraphrased": np.array([[0.0, math.log(2)]]),
              "perturbed": np.array([[[math.log(2), math.log(4)], [math.log(2), math.log(2)]]])}
    ratios = truth_ratios(losses)
    # R = mean_k P(perturbed_k) / P(paraphrased): (1/2 + 1/4) / 2 / 1 = 0.375 and (1/2 + 1/2) / 2 / (1/2) = 1
    np.testing.assert_allclose(ratios, [[0.375, 1.0]])
    # forget: mean min(R, 1/R) = (0.375 + 1) / 2; retained: mean max(0, 1 - R) = (0.625 + 0) / 2
    np.testing.assert_allclose(truth_ratio_score(ratios, forget=True), [(0.375 + 1) / 2])
    np.testing.assert_allclose(truth_ratio_score(ratios, forget=False), [0.625 / 2])
    # a model preferring the wrong answers (R > 1) scores 0 on retained facts, not a negative number
    assert truth_ratio_score(np.array([[2.0]]), forget=False).tolist() == [0.0]
    # answer probability: mean of exp(-loss)
    np.testing.assert_allclose(answer_probability(losses), [(math.exp(-0.1) + math.exp(-2.0)) / 2])


def test_forget_quality_pools_members_and_harmonic_mean_by_hand():
    rng = np.random.default_rng(0)
    mine, oracle = rng.normal(size=(3, 40)), rng.normal(size=(2, 40))
    assert pooled_ks(mine, oracle) == pytest.approx(ks_2samp(mine.ravel(), oracle.ravel()).pvalue)
    assert pooled_ks(mine, mine + 5.0) < 1e-10  # shifted: distinguishable
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
