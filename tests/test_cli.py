"""The command line: every command runs, bad input gets one clear line (exit 2), not a traceback."""
import json

import pytest
from typer.testing import CliRunner

from expunge.cli.main import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("datasets", "train", "methods", "unlearn", "audit", "demo"):
        assert command in result.output


def test_datasets_table_has_sizes_and_tasks():
    result = run("datasets")
    assert result.exit_code == 0
    assert "mnist1d" in result.output and "4000" in result.output and "regression" in result.output


def test_methods_table_lists_registry():
    result = run("methods")
    assert result.exit_code == 0
    for name in ("finetune", "gradient_ascent", "retrain", "original"):
        assert name in result.output


def test_train_prints_accuracy_table_and_caches():
    first = run("train", "--dataset", "gaussians", "--members", "2", "--epochs", "2")
    assert first.exit_code == 0, first.output
    assert "mean ± std" in first.output and "2 members trained now" in first.output
    second = run("train", "--dataset", "gaussians", "--members", "2", "--epochs", "2")
    assert "from cache" in second.output


def test_train_more_members_reuses_the_cached_ones():
    run("train", "--dataset", "gaussians", "--members", "2", "--epochs", "2", "--seed", "5")
    result = run("train", "--dataset", "gaussians", "--members", "3", "--epochs", "2", "--seed", "5")
    assert result.exit_code == 0, result.output
    assert "2 from cache" in result.output


def test_unlearn_prints_oracle_beside_method_and_cost():
    result = run("unlearn", "--dataset", "gaussians", "--forget", "class:1", "--method", "finetune",
                 "--members", "2", "--param", "epochs=1")
    assert result.exit_code == 0, result.output
    assert "oracle (retrain)" in result.output and "x retraining" in result.output
    assert "timed in this run" in result.output, "the time ratio must say where retraining was timed"


def test_accuracy_beside_oracle_reports_the_mean_squared_error_on_regression():
    """On a regression task the table holds each member's mean squared error (the task's loss), not accuracy."""
    import torch

    from expunge.bench.workflows import accuracy_beside_oracle, headline_statistic
    from expunge.training.recipe import default_recipe
    from expunge.training.scenario import Scenario

    scenario = Scenario.build("diabetes", "random:0.1", default_recipe("diabetes").with_(epochs=5))
    original, _, _ = scenario.original(2)
    oracle, _, _ = scenario.oracle(2)
    table = accuracy_beside_oracle(scenario, {"original": original, "oracle": oracle})
    assert headline_statistic("regression") == "mean loss" and headline_statistic("classification") == "accuracy %"
    train, test = scenario.split.train, scenario.split.test
    for name, population in (("original", original), ("oracle", oracle)):
        for split, data, positions in (("forget", train, scenario.forget.forget_positions),
                                       ("retain", train, scenario.forget.retain_positions), ("test", test, None)):
            x, y = (data.inputs, data.y) if positions is None else (data.inputs_at(positions), data.y[positions])
            mse = ((population.predict(x).squeeze(-1) - y.float()) ** 2).mean(1)
            assert table[name][split].shape == (2,) and bool((table[name][split] > 0).all())
            assert torch.allclose(table[name][split], mse.float(), rtol=1e-4), (name, split)


def test_unlearn_on_regression_labels_the_mean_loss():
    result = run("unlearn", "--dataset", "diabetes", "--forget", "random:0.1", "--method", "finetune",
                 "--members", "2", "--param", "epochs=1")
    assert result.exit_code == 0, result.output
    assert "mean loss" in result.output and "forget loss" in result.output and "acc" not in result.output


def test_demo_methods_come_from_the_registry():
    from expunge.cli.main import _demo_methods
    from expunge.methods.registry import METHODS

    full, quick = _demo_methods(False), _demo_methods(True)
    assert full[:2] == ["original", "retrain"] and set(quick) < set(full)
    assert set(full) == {name for name, cls in METHODS.items() if cls.demo != "none" and "classification" in cls.tasks}
    assert "npo" in _demo_methods(True, "causal_lm") and "npo" not in full  # the demo runs methods of its data's task
    assert "boundary_expand" in full, "no registered method may drift out of the demo"


@pytest.mark.parametrize("args,message", [
    (("train", "--dataset", "imagenet"), "unknown dataset 'imagenet'"),
    (("train", "--model", "transformer", "--dataset", "gaussians"), "unknown model 'transformer'"),
    (("unlearn", "--method", "salunn"), "Did you mean"),
    (("unlearn", "--param", "lr"), "name=value"),
    (("unlearn", "--param", "lr=fast"), "must be float"),
    (("unlearn", "--dataset", "gaussians", "--forget", "class:9"), "class"),
    (("unlearn", "--dataset", "gaussians", "--forget", "sometimes"), "forget"),
    (("audit", "--dataset", "gaussians", "--members", "1"), "at least 2 members"),
    (("audit", "--out", "pyproject.toml"), "is a file"),
    (("demo", "--out", "README.md"), "is a file"),
    (("demo", "--task", "vision"), "unknown demo task 'vision'"),
    (("audit", "--dataset-option", "num_authors"), "name=value"),
    (("audit", "--dataset", "fictitious_authors", "--dataset-option", "num_authors=1"), "num_authors=1 must be"),
    (("audit", "--dataset", "fictitious_authors", "--dataset-option", "num_authors=4", "--method", "salun"),
     "grad_diff"),
])
def test_bad_input_gets_one_clear_line(args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_audit_writes_json_and_html(tmp_path):
    out = tmp_path / "report"
    result = run("audit", "--dataset", "gaussians", "--forget", "random:0.1", "--method", "finetune",
                 "--method", "original", "--members", "4", "--shadows", "8", "--epochs", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    assert [m["method"] for m in data["methods"]] == ["finetune", "original"]
    html = (out / "report.html").read_text()
    assert 'id="summary"' in html and "finetune" in html
    assert (out / "audit.log").exists()
    for label in ("FA", "KLoM forget P95", "U-LiRA AUC"):
        assert label in result.output, f"the leaderboard lacks its {label} column"


def test_a_method_that_raises_is_named_with_its_traceback_in_the_log(tmp_path, monkeypatch):
    from expunge.methods.finetune import Finetune

    def broken(self, task, hp):
        raise ZeroDivisionError("a bug inside the method")

    monkeypatch.setattr(Finetune, "run", broken)
    out = tmp_path / "report"
    result = run("audit", "--dataset", "gaussians", "--method", "finetune", "--method", "original",
                 "--members", "2", "--shadows", "0", "--epochs", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "finetune failed" in result.output and "ZeroDivisionError" in result.output
    log = (out / "audit.log").read_text()
    assert "Traceback" in log and "a bug inside the method" in log
    data = json.loads((out / "report.json").read_text())
    entry = next(m for m in data["methods"] if m["method"] == "finetune")
    assert entry["status"] == "failed" and "ZeroDivisionError" in entry["error"] and "Traceback" in entry["traceback"]
    assert next(m for m in data["methods"] if m["method"] == "original")["status"] == "ok"


def test_methods_shows_the_settings_each_supports():
    result = runner.invoke(app, ["methods"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for column in ("retain set", "labels", "tasks", "forget sets"):
        assert column in result.output
    line = next(row for row in result.output.splitlines() if "│ gradient_ascent " in row)
    assert "not used" in line and "regression" in line and "subclass" in line


def _names(output: str) -> set[str]:
    return {row.split("│")[1].strip() for row in output.splitlines() if row.startswith("│")} - {""}


@pytest.mark.parametrize("filters,present,absent", [
    (["retain-free"], {"gradient_ascent", "boundary_shrink", "original"}, {"finetune", "ssd", "retrain"}),
    (["label-free"], {"bad_teacher", "original"}, {"finetune"}),
    (["regression"], {"finetune", "gradient_ascent", "retrain"}, {"salun", "scrub"}),
    (["retain-free", "regression"], {"gradient_ascent", "original"}, {"boundary_shrink", "finetune"}),
    (["subclass", "class"], {"finetune", "ssd"}, {"datamodel_matching", "boundary_expand"}),
    (["random"], {"datamodel_matching"}, {"boundary_shrink"}),
])
def test_methods_filter_lists_the_matching_methods(filters, present, absent):
    from expunge.methods.registry import METHOD_FILTERS, available_methods

    args = ["methods"] + [part for f in filters for part in ("--filter", f)]
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    names = _names(result.output)
    assert present <= names and not (absent & names), names
    for name in names:  # every listed method matches every filter
        assert all(METHOD_FILTERS[f][1](available_methods()[name]) for f in filters), name


def test_methods_unknown_filter_gets_one_line_listing_the_valid_ones():
    result = run("methods", "--filter", "retainfree")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown method filter 'retainfree'" in lines[0]
    assert "retain-free, label-free, classification, regression, causal_lm, random, class, subclass" in lines[0]


def test_audit_of_a_language_model_from_the_command_line(tmp_path):
    """--dataset fictitious_authors with dataset options; idk gets the data's tokenizer without being told."""
    out = tmp_path / "lm"
    result = run("audit", "--dataset", "fictitious_authors", "--forget", "authors:0,1", "--method", "idk",
                 "--members", "2", "--shadows", "0", "--epochs", "3", "--out", str(out),
                 "--dataset-option", "num_authors=6", "--dataset-option", "facts_per_author=6",
                 "--dataset-option", "world_facts=6", "--dataset-option", "unseen_authors=2")
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    assert data["methods"][0]["status"] == "ok", data["methods"][0]["error"]
    assert data["scenario"]["task"] == "causal_lm" and data["generations"]
    assert "forget_quality" in {r["metric"] for r in data["results"]}
    assert "Example generations" in (out / "report.html").read_text()
