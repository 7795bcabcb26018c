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
    assert "mean ± std" in first.output and "trained in" in first.output
    second = run("train", "--dataset", "gaussians", "--members", "2", "--epochs", "2")
    assert "from cache" in second.output


def test_unlearn_prints_oracle_beside_method_and_cost():
    result = run("unlearn", "--dataset", "gaussians", "--forget", "class:1", "--method", "finetune",
                 "--members", "2", "--param", "epochs=1")
    assert result.exit_code == 0, result.output
    assert "oracle (retrain)" in result.output and "x retraining" in result.output


@pytest.mark.parametrize("args,message", [
    (("train", "--dataset", "imagenet"), "unknown dataset 'imagenet'"),
    (("train", "--model", "transformer", "--dataset", "gaussians"), "unknown model 'transformer'"),
    (("unlearn", "--method", "salunn"), "Did you mean"),
    (("unlearn", "--param", "lr"), "name=value"),
    (("unlearn", "--param", "lr=fast"), "must be float"),
    (("unlearn", "--dataset", "gaussians", "--forget", "class:9"), "class"),
    (("unlearn", "--dataset", "gaussians", "--forget", "sometimes"), "forget"),
    (("audit", "--dataset", "gaussians", "--members", "1"), "at least 2 members"),
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
