"""Exact constructions (SISA, closed-form heads) audited like methods, each against its own oracle."""
import pytest

from expunge import ExpungeError, audit
from expunge.bench.exact import EXACT, Sisa
from expunge.bench.plan import method_plan
from expunge.training.cost import Cost
from expunge.training.recipe import Recipe
from expunge.training.scenario import Scenario
from expunge.training.store import PopulationCache

EXACT_NAMES = ("sisa", "closed_form")


def small_scenario(cache_dir, seed: int = 0) -> Scenario:
    recipe = Recipe(model_kwargs={"hidden": [32]}, epochs=5, seed=seed)
    return Scenario.build("gaussians", "random:0.1", recipe=recipe, seed=seed, cache=PopulationCache(cache_dir),
                          n_train=600, n_test=200, dim=10, num_classes=4)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    scenario = small_scenario(tmp_path_factory.mktemp("exact-audit-cache"))
    return audit(scenario, ["retrain", "finetune", "sisa", "closed_form"], members=8, shadow_members=8)


def test_exact_constructions_get_rows_and_name_their_own_oracle(report):
    assert report.methods == ["retrain", "finetune", "sisa", "closed_form"]
    assert report["sisa"]["oracle"] == "SISA, 4 shards x 2 slices, mean aggregation, retrained without the forget set"
    assert report["closed_form"]["oracle"].startswith("ridge head (l2 = 1) on random features")
    for name in EXACT_NAMES:
        entry = report[name]
        assert entry["status"] == "ok" and entry["kind"] == "exact", entry.get("error")
        for key in ("accuracy/test", "competition_f/forget", "klom_p95/forget", "ulira_auc/forget", "cost_gradients"):
            assert report.row(name, *key.split("/")).method == name
        # The unlearned construction is read against the construction's own populations, not the single model's.
        assert report.row(name, "accuracy", "test").reference != report.row("retrain", "accuracy", "test").reference
        # Representation metrics need one network per member: not measured, said in a note, no failure.
        assert not [r for r in report.rows if r.method == name and r.metric.startswith(("cka", "knn", "activation"))]
        assert any("representation metrics need one network per member" in n for n in entry["notes"])
        assert not any("failed" in n for n in entry["notes"]), entry["notes"]
    assert report.data["plan"]["unlearning"] and all(j["method"] not in EXACT_NAMES
                                                     for j in report.data["plan"]["unlearning"])


def test_exact_constructions_sit_at_their_noise_floor(report):
    # F, KLoM and U-LiRA of an exact deletion compare two independent draws of the construction trained
    # without the forget set, exactly like the floor: equal up to sampling noise, as retraining is.
    # finetune (which keeps the forget set's trace) shows the same checks can fail here.
    finetune_gap = abs(report.metric("finetune", "competition_f") - report.row("finetune", "competition_f").reference)
    for name in ("retrain", *EXACT_NAMES):
        f = report.row(name, "competition_f")
        assert f.reference_kind == "noise_floor" and abs(f.value - f.reference) < 0.06, (name, f)
        assert abs(f.value - f.reference) < finetune_gap / 3, (name, f.value, f.reference, finetune_gap)
        klom = report.row(name, "klom_p95", "forget")
        assert klom.value <= 1.25 * klom.reference, (name, klom)
        ulira = report.row(name, "ulira_auc")
        assert abs(ulira.value - 0.5) < 0.06 and ulira.details["n_shadows"] == 8, (name, ulira)
        assert report[name]["verdict"]["class"] != "bad", (name, report[name]["verdict"])
    assert report["finetune"]["verdict"]["class"] == "bad"


def test_accuracy_price_is_shown_beside_a_single_model(report):
    single = report.row("retrain", "accuracy", "test").reference  # the scenario's oracle: single models
    for name in EXACT_NAMES:
        row = report.row(name, "accuracy", "test")
        assert row.details["single_model_oracle"] == pytest.approx(single)
        price = report[name]["accuracy_price"]
        assert price["test_accuracy"] == pytest.approx(row.value)
        assert price["oracle_test_accuracy"] == pytest.approx(row.reference)
        assert price["single_model_test_accuracy"] == pytest.approx(single)
        assert price["price_points"] == pytest.approx(single - row.reference)
        assert "accuracy price" in report[name]["notes"][0]
    assert "single_model_oracle" not in report.row("retrain", "accuracy", "test").details


def test_cost_is_the_deletion_relative_to_retraining_one_model(report):
    # A random 10% forget set touches every shard, so SISA retrains about all of it: about one model's
    # training spread over its shards. The closed-form head deletes without any gradient.
    assert 0.5 < report.metric("sisa", "cost_gradients") <= 1.05
    assert report.metric("closed_form", "cost_gradients") == 0.0
    assert any("shard models" in n for n in report["sisa"]["notes"])


def test_leaderboard_and_report_render_exact_rows(report, tmp_path):
    from rich.console import Console

    from expunge.cli.leaderboard import leaderboard

    console = Console(width=300, record=True)
    console.print(leaderboard(report))
    text = console.export_text()
    assert "sisa (exact): (x) is its own oracle, SISA, 4 shards x 2 slices" in text
    assert "1 model" in text
    _, html = report.write(tmp_path)
    assert "kind: exact" in html.read_text()


def test_a_construction_that_does_not_delete_is_caught(tmp_path):
    # The audit's power for exact rows: SISA whose "deletion" keeps the original is far from its floor.
    # It needs a model that memorises its training set (overlapping classes, 60 epochs) and one shard: the
    # small scenario above generalises so well that even its original leaves no measurable trace.
    @EXACT.register
    class KeepsEverything(Sisa):
        name = "sisa_keeps_everything"

        def forget(self, model, forget):
            return model, Cost(members=model.ensembles)

    try:
        recipe = Recipe(model_kwargs={"hidden": [128]}, epochs=60, lr=3e-3)
        scenario = Scenario.build("gaussians", "random:0.1", recipe=recipe, cache=PopulationCache(tmp_path),
                                  n_train=300, n_test=200, dim=20, num_classes=4, separation=1.0)
        result = audit(scenario, {"sisa_keeps_everything": {"shards": 1, "slices": 1}}, members=8, shadow_members=0)
    finally:
        EXACT.unregister("sisa_keeps_everything")
    f = result.row("sisa_keeps_everything", "competition_f")
    assert f.value < f.reference / 2, f
    assert result["sisa_keeps_everything"]["verdict"]["class"] == "bad"


def test_a_failed_construction_is_reported_and_the_audit_goes_on(tmp_path):
    result = audit(small_scenario(tmp_path), {"retrain": {}, "sisa": {"shards": 100_000},
                                              "closed_form": {"l2": 10.0}}, members=2, shadow_members=0)
    assert result["sisa"]["status"] == "failed" and "100000 shards for 600 training examples" in result["sisa"]["error"]
    assert result["sisa"]["traceback"] is None  # a clear input error, not a crash
    assert result["retrain"]["status"] == "ok" and result["closed_form"]["status"] == "ok"
    assert result["closed_form"]["hyperparameters"] == {"l2": 10.0}
    assert "l2 = 10" in result["closed_form"]["oracle"]
    assert not [r for r in result.rows if r.method == "sisa"]


def test_names_and_hyperparameters_fail_before_any_training():
    with pytest.raises(ExpungeError, match="Did you mean 'sisa'"):
        method_plan(["retrain", "sisaa"], {})
    with pytest.raises(ExpungeError, match="sisa has no hyperparameter 'shard'; it has shards, slices, aggregate"):
        method_plan({"sisa": {"shard": 8}}, {})
    with pytest.raises(ExpungeError, match="'shards' of sisa must be int"):
        method_plan({"sisa": {"shards": "many"}}, {})
    # The CLI passes --param values as text; they take the default's type.
    assert Sisa.check_hyperparameters({"shards": "8"}) == {"shards": 8, "slices": 2, "aggregate": "mean"}
    assert method_plan("closed_form", {"l2": "0.5"}) == {"closed_form": {"l2": "0.5"}}


def test_the_cli_audits_an_exact_construction_with_text_hyperparameters(tmp_path):
    import json

    from typer.testing import CliRunner

    from expunge.cli.main import app

    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["audit", "--dataset", "gaussians", "--method", "sisa", "--param", "shards=2",
                                      "--members", "2", "--shadows", "0", "--epochs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "report.json").read_text())["methods"][0]
    assert entry["kind"] == "exact" and entry["status"] == "ok" and entry["hyperparameters"]["shards"] == 2
    assert "SISA, 2 shards x 2 slices" in entry["oracle"]
