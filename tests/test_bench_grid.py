"""Benchmark grids and the results store: parsing, cell keys, exactly-once cells under SIGKILL, cached reruns,
two processes on one store, schema versions, the DataFrame / CSV row contract and the CLI."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from expunge.audit.results import MetricResult
from expunge.bench.grid import CellResult, Grid
from expunge.bench.grid_runner import run_grid
from expunge.bench.store_results import (
    CRASH_ENV,
    SCHEMA_VERSION,
    ResultsStore,
    StoreBusy,
)
from expunge.cli.main import app
from expunge.errors import ExpungeError

SRC = Path(__file__).resolve().parents[1] / "src"

# Four cells of a few seconds each: wine (142 training examples), 2 epochs, N = 2, no shadows.
TINY = """
name = "tiny"
datasets = ["wine"]
forget = ["random:0.1"]
methods = ["finetune", { name = "neggrad_plus", lr = 0.01 }]
seeds = 2
members = 2
metrics = ["accuracy", "klom", "cost_gradients", "cost_time"]
[recipe]
epochs = 2
"""
TIME_METRICS = {"cost_time"}  # wall-time ratios differ run to run; every other number must be identical


def _grid_dict(**changes):
    data = {"name": "g", "datasets": [{"name": "gaussians", "options": {"n_train": 300, "n_test": 100}}],
            "forget": ["random:0.1"], "methods": ["finetune"], "seeds": [0], "members": [2],
            "recipe": {"epochs": 2}}
    return data | changes


def _keys(data) -> list[str]:
    return [cell.key for cell in Grid.from_dict(data).cells()]


# ------------------------------------------------------------------ parsing
def test_grid_parses_toml_and_expands_to_cells(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(TINY)
    grid = Grid.load(path)
    cells = grid.cells()
    assert len(cells) == 1 * 1 * 2 * 2 * 1
    assert {c.method.label for c in cells} == {"finetune", "neggrad_plus[lr=0.01]"}
    assert {c.scenario_seed for c in cells} == {0, 1}
    assert all(c.recipe["epochs"] == 2 for c in cells)
    assert len({c.key for c in cells}) == len(cells)


@pytest.mark.parametrize("changes, message", [
    ({"epochz": 3}, "unknown key 'epochz'; valid keys: name, datasets"),
    ({"recipe": {"epochz": 3}}, "[recipe]: unknown key 'epochz'; valid keys: model"),
    ({"datasets": [{"name": "wine", "option": {}}]}, "unknown key 'option'"),
    ({"datasets": ["wnie"]}, "unknown dataset 'wnie'. Did you mean 'wine'"),
    ({"methods": ["fintune"]}, "unknown method 'fintune'. Did you mean 'finetune'"),
    ({"methods": [{"name": "finetune", "lrr": 0.1}]}, "has no hyperparameter(s) ['lrr']"),
    ({"methods": [{"name": "finetune", "tuned": True, "lr": 0.1}]}, "not both"),
    ({"methods": ["finetune", {"name": "finetune"}]}, "'finetune' appears twice"),
    ({"members": [1]}, "at least 2"),
    ({"forget": ["clas:1"]}, "unknown kind 'clas'"),
])
def test_bad_grids_fail_with_one_line(changes, message):
    data = _grid_dict(**changes)
    with pytest.raises(ExpungeError) as error:
        Grid.from_dict(data).cells()
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_datasets_and_invalid_toml(tmp_path):
    with pytest.raises(ExpungeError, match="'datasets' is missing"):
        Grid.from_dict({"methods": ["finetune"]})
    path = tmp_path / "bad.toml"
    path.write_text("datasets = [\n")
    with pytest.raises(ExpungeError, match="not valid TOML"):
        Grid.load(path)


# ------------------------------------------------------------------ cell keys
def test_cell_keys_are_stable_and_sensitive_to_every_field(monkeypatch):
    base = _keys(_grid_dict())
    assert base == _keys(_grid_dict())  # stable
    assert base == _keys(_grid_dict(name="another name"))  # the grid's name does not define a result
    variants = {
        "dataset options": _grid_dict(datasets=[{"name": "gaussians", "options": {"n_train": 310, "n_test": 100}}]),
        "dataset": _grid_dict(datasets=["wine"]),
        "forget rule": _grid_dict(forget=["random:0.2"]),
        "method": _grid_dict(methods=["neggrad_plus"]),
        "hyperparameters": _grid_dict(methods=[{"name": "finetune", "lr": 0.01}]),
        "seed": _grid_dict(seeds=[1]),
        "members": _grid_dict(members=[3]),
        "recipe": _grid_dict(recipe={"epochs": 3}),
        "dataset recipe": _grid_dict(datasets=[{"name": "gaussians", "options": {"n_train": 300, "n_test": 100},
                                                "recipe": {"lr": 0.01}}]),
        "metrics": _grid_dict(metrics=["accuracy"]),
        "shadows": _grid_dict(shadow_members=8),
        "retain sample": _grid_dict(retain_sample=50),
        "device": _grid_dict(device="cuda"),
    }
    keys = {name: _keys(data) for name, data in variants.items()}
    for name, changed in keys.items():
        assert changed != base, name
    assert len({tuple(k) for k in keys.values()}) == len(keys)  # and all differ from each other
    import expunge.bench.grid as grid_module

    monkeypatch.setattr(grid_module, "ENGINE_VERSION", "next-engine")
    assert _keys(_grid_dict()) != base
    monkeypatch.undo()
    monkeypatch.setattr(grid_module, "__version__", "9.9.9")
    assert _keys(_grid_dict()) != base


# ------------------------------------------------------------------ the store
def _fake_result(cell, value: float = 1.0) -> CellResult:
    rows = [MetricResult("accuracy", "forget", cell.method.name, value, "accuracy@v1", "oracle", 2.0, 0.1,
                         details={"note": "x"}).to_json(),
            MetricResult("klom_p95", "forget", cell.method.name, float("nan"), "klom@p95", "noise_floor").to_json()]
    return CellResult(cell.key, "ok", None, rows, {"example_gradients": 10.0}, {"lr": 0.1}, "t0", "t1", 0.5,
                      {"cpu": "test"}, "cpu")


def test_store_writes_a_cell_once_and_reads_it_back(tmp_path):
    cell = Grid.from_dict(_grid_dict()).cells()[0]
    with ResultsStore(tmp_path / "r.sqlite") as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.write(cell, _fake_result(cell)) is True
        assert store.write(cell, _fake_result(cell, value=2.0)) is False  # never replaced
        rows = store.rows(cell.key)
        assert [r.metric for r in rows] == ["accuracy", "klom_p95"]
        assert rows[0].value == 1.0 and rows[0].details == {"note": "x"} and np.isnan(rows[1].value)
        frame = store.frame()
        for column in ("dataset", "forget_rule", "method", "hyperparameters", "scenario_seed", "members", "metric",
                       "split", "value", "spread", "reference", "reference_kind", "reference_spread", "definition",
                       "n_models", "unit", "judgement", "details", "cell_hash", "code_version", "engine_version"):
            assert column in frame.columns, column
        assert len(frame) == 2 and frame.loc[0, "dataset"] == "gaussians" and frame.loc[0, "value"] == 1.0
        assert frame["value"].dtype == float and np.isnan(frame.loc[1, "value"])
        assert store.frame(metric="klom_p95").shape[0] == 1 and store.frame(method="salun").empty
        with pytest.raises(ExpungeError, match="cannot filter results by 'colour'"):
            store.frame(colour="red")
        csv = pd.read_csv(store.export_csv(tmp_path / "out" / "rows.csv", metric="accuracy"))
        assert len(csv) == 1 and csv.loc[0, "value"] == 1.0 and json.loads(csv.loc[0, "details"]) == {"note": "x"}
        assert store.cells()[0]["hyperparameters_used"] == {"lr": 0.1}


def test_schema_from_a_newer_expunge_is_refused_and_older_files_are_migrated(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultsStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(ExpungeError, match="written by a newer expunge .*upgrade expunge"):
        ResultsStore(path)
    old = tmp_path / "old.sqlite"  # a file at schema 0 (only its meta table) is migrated on open
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "expunge-results"), ("schema", "0")])
    db.commit()
    db.close()
    with ResultsStore(old) as store:
        assert store.schema_version == SCHEMA_VERSION and store.cells() == []
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE x (y)").connection.close()
    with pytest.raises(ExpungeError, match="not an expunge results store"):
        ResultsStore(other)


_WRITER = """
import sys
from expunge.bench.grid import Grid
from expunge.bench.store_results import ResultsStore
sys.path.insert(0, sys.argv[3])
from test_bench_grid import _fake_result, _grid_dict
cells = Grid.from_dict(_grid_dict(seeds=list(range(30)), methods=["finetune", "neggrad_plus"])).cells()
store = ResultsStore(sys.argv[1], timeout_s=60)
order = cells if sys.argv[2] == "forward" else cells[::-1]
print(sum(store.write(cell, _fake_result(cell)) for cell in order))
"""


def test_two_processes_writing_one_store_wait_and_never_duplicate(tmp_path):
    path = tmp_path / "r.sqlite"
    env = os.environ | {"PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    here = str(Path(__file__).parent)
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), way, here], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for way in ("forward", "backward")]
    outputs = [w.communicate(timeout=120) for w in writers]
    assert all(w.returncode == 0 for w in writers), outputs
    written = sum(int(out.strip()) for out, _ in outputs)
    assert written == 60  # every cell written by exactly one of the two
    with ResultsStore(path) as store:
        assert len(store.cells()) == 60 and len(store.frame()) == 120 and store.integrity() == "ok"


def test_a_second_bench_on_a_held_store_refuses_clearly(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(TINY)
    path = tmp_path / "r.sqlite"
    env = os.environ | {"PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with ResultsStore(path) as store, store.held():  # this process is a bench in progress
        with pytest.raises(StoreBusy):
            ResultsStore(path).acquire()
        done = subprocess.run([sys.executable, "-m", "expunge.cli.main", "bench", str(grid), "--store", str(path)],
                              env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "is in use by another expunge bench (pid" in done.stderr and "Traceback" not in done.stderr
    with ResultsStore(path) as store:
        assert store.cells() == []


# ------------------------------------------------------------------ exactly once under SIGKILL
def _bench(grid: Path, store: Path, home: Path, crash: str | None = None) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                        "EXPUNGE_HOME": str(home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop(CRASH_ENV, None)
    if crash:
        env[CRASH_ENV] = crash
    return subprocess.Popen([sys.executable, "-m", "expunge.cli.main", "bench", str(grid), "--store", str(store)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _snapshot(path: Path) -> dict[str, str]:
    """cell hash -> finished timestamp; checks that every stored cell is whole."""
    if not path.exists():
        return {}
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        cells = dict(db.execute("SELECT cell_hash, finished FROM cells").fetchall())
        counts = dict(db.execute("SELECT cell_hash, COUNT(*) FROM rows GROUP BY cell_hash").fetchall())
        positions = db.execute("SELECT cell_hash, MAX(position) FROM rows GROUP BY cell_hash").fetchall()
    finally:
        db.close()
    assert set(counts) == set(cells)  # no rows without their cell, no cell without its rows
    assert len(set(counts.values())) <= 1  # every cell of this grid has the same rows
    assert all(counts[h] == top + 1 for h, top in positions)
    return cells


def _values(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[~frame["metric"].isin(TIME_METRICS)]
    columns = ["cell_hash", "metric", "split", "value", "spread", "reference", "reference_spread", "judgement"]
    return frame[columns].sort_values(["cell_hash", "metric", "split"]).reset_index(drop=True)


def test_sigkill_at_any_moment_loses_no_cell_duplicates_none_and_recomputes_none(tmp_path, monkeypatch):
    grid_path = tmp_path / "tiny.toml"
    grid_path.write_text(TINY)
    grid = Grid.load(grid_path)
    expected = {cell.key for cell in grid.cells()}

    # The uninterrupted run, in this process, with its own population cache.
    monkeypatch.setenv("EXPUNGE_HOME", str(tmp_path / "home-reference"))
    with ResultsStore(tmp_path / "reference.sqlite") as reference:
        run = run_grid(grid, reference)
        assert run.computed == 4 and run.failed == 0
        wanted = _values(reference.frame())

    store, home = tmp_path / "s.sqlite", tmp_path / "home"
    seen: dict[str, str] = {}

    def check(process: subprocess.Popen) -> dict[str, str]:
        cells = _snapshot(store)
        for key, finished in seen.items():  # a finished cell is never lost, rewritten or recomputed
            assert cells.get(key) == finished, process.stderr.read() if process.stderr else ""
        assert set(cells) <= expected
        seen.update(cells)
        return cells

    # Killed right after the first cell committed: that cell stays.
    process = _bench(grid_path, store, home, "cell-after-commit")
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL
    assert len(check(process)) == 1
    # Killed inside the next cell's transaction, before its commit: nothing of it is written.
    process = _bench(grid_path, store, home, "cell-before-commit")
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL
    assert len(check(process)) == 1
    # Killed at timed moments (mid-cell: training, auditing, or writing).
    for delay in (4.0, 6.5):
        process = _bench(grid_path, store, home)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        check(process)
    # The rerun completes the grid and reports the finished cells as cached.
    cached = len(seen)
    process = _bench(grid_path, store, home)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    cells = check(process)
    assert set(cells) == expected
    assert f"{len(expected) - cached} computed (0 failed), {cached} cached" in out
    with ResultsStore(store) as final:
        got = _values(final.frame())
    pd.testing.assert_frame_equal(got, wanted, check_exact=False, rtol=1e-6)

    # A second uninterrupted rerun computes nothing: every cell cached, timestamps unchanged.
    process = _bench(grid_path, store, home)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "0 computed (0 failed), 4 cached" in out
    assert _snapshot(store) == cells

    # The CLI lists and exports what the store holds.
    result = CliRunner().invoke(app, ["results", "--store", str(store), "--method", "finetune", "--metric",
                                      "accuracy", "--csv", str(tmp_path / "rows.csv")])
    assert result.exit_code == 0, result.output
    assert "finetune" in result.output and "wrote" in result.output
    exported = pd.read_csv(tmp_path / "rows.csv")
    assert set(exported["method"]) == {"finetune"} and set(exported["metric"]) == {"accuracy"}
    assert len(exported) == 2 * 3  # two seeds x forget / retain / test

    # ... and ranks it: a leaderboard with intervals over the seeds, and the HTML grid report.
    result = CliRunner().invoke(app, ["results", "--store", str(store), "--leaderboard", "--html",
                                      str(tmp_path / "grid.html")])
    assert result.exit_code == 0, result.output
    assert "Grid leaderboard" in result.output and "KLoM" in result.output and "finetune" in result.output
    assert "interval" in result.output and (tmp_path / "grid.html").stat().st_size > 1000


# ------------------------------------------------------------------ user data and model; CLI
USER_MODULE = '''
import torch
from torch import nn

def load_split():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(160, 6, generator=generator)
    y = (x[:, 0] > 0).long()
    return (x[:120], y[:120]), (x[120:], y[120:])

class Net(nn.Sequential):
    def __init__(self, input_shape, num_outputs, hidden=16):
        super().__init__(nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, num_outputs))
'''


def test_user_data_and_model_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "grid_user_pkg.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = Grid.from_dict({"datasets": [{"name": "mine", "data": "grid_user_pkg:load_split",
                                         "model": "grid_user_pkg:Net", "model_kwargs": {"hidden": 8}}],
                           "methods": ["finetune"], "members": 2, "metrics": ["accuracy"],
                           "recipe": {"epochs": 2, "batch_size": 32}})
    with ResultsStore(tmp_path / "r.sqlite") as store:
        run = run_grid(grid, store)
        assert run.failed == 0, run.failures
        cell = store.cells()[0]
        assert cell["model"] == "grid_user_pkg:Net" and cell["recipe"]["model"] == "grid_user_pkg:Net"
        assert not store.frame(metric="accuracy").empty
    with pytest.raises(ExpungeError, match="module 'grid_user_pkg' has no 'Nett'"):
        Grid.from_dict({"datasets": [{"name": "m", "data": "grid_user_pkg:load_split", "model": "grid_user_pkg:Nett"}],
                        "methods": ["finetune"]}).cells()
    with pytest.raises(ExpungeError, match="cannot import 'no_such_pkg'"):
        Grid.from_dict({"datasets": [{"name": "m", "data": "no_such_pkg:load"}], "methods": ["finetune"]}).cells()


def test_cli_bench_bad_grid_and_audit_with_user_model_and_recipe(tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text('datasets = ["wine"]\nmethods = ["finetune"]\nseedz = 3\n')
    result = CliRunner().invoke(app, ["bench", str(bad), "--store", str(tmp_path / "r.sqlite")])
    assert result.exit_code == 2 and "unknown key 'seedz'" in result.output
    assert not (tmp_path / "r.sqlite").exists()
    good = tmp_path / "good.toml"
    good.write_text(TINY)
    result = CliRunner().invoke(app, ["bench", str(good), "--executor", "dask", "--store", str(tmp_path / "r.sqlite")])
    assert result.exit_code == 2 and "unknown executor 'dask'; valid: local, ray" in result.output

    (tmp_path / "grid_user_pkg2.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[recipe]\nepochs = 2\nlr = 0.003\nbatch_size = 32\n")
    out = tmp_path / "audit"
    result = CliRunner().invoke(app, ["audit", "--dataset", "wine", "--members", "2", "--shadows", "0",
                                      "--model", "grid_user_pkg2:Net", "--recipe", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["scenario"]["recipe"]["model"] == "grid_user_pkg2:Net"
    assert report["scenario"]["recipe"]["epochs"] == 2 and report["scenario"]["recipe"]["lr"] == 0.003
    result = CliRunner().invoke(app, ["audit", "--dataset", "wine", "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "--data-root is the CIFAR-10 folder" in result.output


def test_a_tuned_cell_runs_with_the_tuned_values_and_is_cached(tmp_path):
    """``tuned = true``: expunge.tune picks the values on the validation world, the cell audits with them,
    the store records what was asked ({"tuned": ...}) and what was used, and a rerun recomputes nothing."""
    from expunge.bench.grid import build_scenario
    from expunge.bench.tune import tune

    grid = Grid.from_dict({"name": "tuned", "datasets": ["wine"], "forget": ["random:0.1"], "seeds": [0],
                           "members": [2], "metrics": ["accuracy"], "recipe": {"epochs": 2},
                           "methods": [{"name": "finetune", "tuned": True, "trials": 2, "tune_members": 2,
                                        "budget": 0.5}]})
    cell, = grid.cells()
    assert cell.method.spec == {"tuned": {"trials": 2, "members": 2, "budget": 0.5}}
    with ResultsStore(tmp_path / "r.sqlite") as store:
        run = run_grid(grid, store)
        assert run.failed == 0, run.failures
        stored, = store.cells()
        assert stored["label"] == "finetune[tuned]" and stored["hyperparameters"] == cell.method.spec
        # the values used are the tuner's choice (its study is stored, so asking again gives the same answer)
        expected = tune(build_scenario(cell), "finetune", trials=2, members=2, budget=0.5, seed=0).hyperparameters
        used = stored["hyperparameters_used"]
        assert {k: used[k] for k in expected} == pytest.approx(dict(expected))
        again = run_grid(grid, store)
        assert again.cached == 1 and again.failed == 0 and len(store.cells()) == 1
