"""The audit end to end: sanity properties of the references, report contents, bad input."""
import json

import pytest

from expunge import ExpungeError, audit
from expunge.training.scenario import Scenario
from expunge.training.store import PopulationCache


@pytest.fixture(scope="module")
def mnist1d_report(tmp_path_factory):
    cache = PopulationCache(tmp_path_factory.mktemp("audit-cache"))
    scenario = Scenario.build("mnist1d", "random:0.1", cache=cache)
    return audit(scenario, ["original", "retrain"], members=16, shadow_members=16)


@pytest.mark.slow
def test_original_is_clearly_worse_than_retrain(mnist1d_report):
    r = mnist1d_report
    assert r.metric("original", "F") < r.metric("retrain", "F")
    assert r.metric("original", "KLoM_forget_p95") > r.metric("retrain", "KLoM_forget_p95")
    assert r.metric("original", "ULiRA_auc") > r.metric("retrain", "ULiRA_auc") + 0.03
    assert r.metric("original", "AvgGap") > 2 * r.metric("retrain", "AvgGap")


@pytest.mark.slow
def test_retrain_sits_at_the_noise_floors(mnist1d_report):
    floors = mnist1d_report.data["noise_floors"]
    metrics = mnist1d_report["retrain"]["metrics"]
    # F and KLoM of retraining vs the oracle are statistics of two independent retrained
    # populations, exactly like the floors: equal up to sampling noise.
    assert abs(metrics["F"]["value"] - floors["competition_F"]["value"]) < 0.08
    assert metrics["KLoM_forget_p95"]["value"] <= 1.25 * floors["klom_p95"]["forget"]
    assert abs(metrics["ULiRA_auc"]["value"] - 0.5) < 0.04


@pytest.mark.slow
def test_report_names_definitions_and_oracle_values(mnist1d_report, tmp_path):
    data = mnist1d_report.to_json()
    for entry in data["methods"]:
        assert entry["status"] == "ok"
        for name, metric in entry["metrics"].items():
            assert "@" in metric["definition"], name
        for name in ("FA", "RA", "TA", "MIA", "UA", "kNN_forget_accuracy", "loss_attack_auc"):
            assert "oracle" in entry["metrics"][name], name
        for name in ("F", "KLoM_forget_p95", "KLoM_retain_p95", "KLoM_test_p95", "ULiRA_auc"):
            assert "noise_floor" in entry["metrics"][name], name
        assert entry["metrics"]["F"]["n_models"] == 16 and entry["metrics"]["F"]["ceiling"] == 3.0
        assert entry["metrics"]["ULiRA_auc"]["n_shadows"] == 16
    json.dumps(data)  # serialisable as is
    assert data["populations"]["members"] == 16 and data["scenario"]["n_forget"] == 400


def test_too_few_members_is_explained(tmp_path):
    scenario = Scenario.build("gaussians", "random:0.1", cache=PopulationCache(tmp_path))
    with pytest.raises(ExpungeError, match="at least 2 members"):
        audit(scenario, "finetune", members=1)


def test_too_small_forget_set_is_explained(tmp_path):
    scenario = Scenario.build("gaussians", "random:3", cache=PopulationCache(tmp_path))
    with pytest.raises(ExpungeError, match="need at least 10"):
        audit(scenario, "finetune", members=2, shadow_members=0)


def test_too_few_shadows_is_explained(tmp_path):
    from expunge.training.recipe import Recipe

    recipe = Recipe(model_kwargs={"hidden": [16]}, epochs=2)
    scenario = Scenario.build("gaussians", "random:0.1", recipe=recipe, cache=PopulationCache(tmp_path))
    with pytest.raises(ExpungeError, match="at least 8 shadow models"):
        audit(scenario, "finetune", members=2, shadow_members=4, epochs=1)
    assert not any(tmp_path.iterdir()), "nothing should have been trained"


def test_diverged_method_is_reported_as_failed_and_the_rest_still_audited(tmp_path):
    from expunge.training.recipe import Recipe

    recipe = Recipe(model_kwargs={"hidden": [16]}, epochs=2)
    scenario = Scenario.build("gaussians", "random:0.1", recipe=recipe, cache=PopulationCache(tmp_path))
    report = audit(scenario, {"gradient_ascent": {"lr": 1e12, "epochs": 20, "stop_loss": 0.0}, "finetune": {"epochs": 1}},
                   members=2, shadow_members=0)
    assert report["gradient_ascent"]["status"] == "failed"
    assert "diverged" in report["gradient_ascent"]["error"]
    assert report["finetune"]["status"] == "ok" and "F" in report["finetune"]["metrics"]


def test_unknown_method_fails_before_training(tmp_path):
    scenario = Scenario.build("gaussians", "random:0.1", cache=PopulationCache(tmp_path))
    with pytest.raises(ExpungeError, match="Did you mean"):
        audit(scenario, "salunn", members=2)
    assert not any(tmp_path.iterdir()), "nothing should have been trained"
