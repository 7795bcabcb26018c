"""The Ray executor: same numbers as the local executor on a local Ray cluster, a worker killed mid-cell is retried
and its cell stored once, a scenario's populations trained once, joining a cluster by address, and the bad inputs
(no ray installed, an address that does not answer) as one line with nothing written."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from expunge.bench.grid import CELL_CRASH_ENV, Grid
from expunge.bench.grid_runner import cell_executor, run_grid
from expunge.bench.ray_executor import INSTALL_HINT, RayCellExecutor, scenario_key
from expunge.bench.store_results import ResultsStore
from expunge.cli.main import app
from expunge.errors import ExpungeError

SRC = Path(__file__).resolve().parents[1] / "src"

# Four cells (2 methods x 2 scenario seeds), two scenarios: wine, N = 2, 2 epochs, no shadows.
TINY = """
name = "tiny-ray"
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


def _values(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[~frame["metric"].isin(TIME_METRICS)]
    columns = ["cell_hash", "metric", "split", "value", "spread", "reference", "reference_spread", "judgement"]
    return frame[columns].sort_values(["cell_hash", "metric", "split"]).reset_index(drop=True)


def _refused_address() -> str:
    """host:port where nothing listens (a port just released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


# ------------------------------------------------------------------ without a cluster
def test_without_ray_installed_one_line(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ExpungeError) as error:
        cell_executor("ray")
    assert str(error.value) == INSTALL_HINT and "pip install 'expunge[ray]'" in INSTALL_HINT
    grid = tmp_path / "g.toml"
    grid.write_text(TINY)
    result = CliRunner().invoke(app, ["bench", str(grid), "--executor", "ray", "--store", str(tmp_path / "r.sqlite")])
    assert result.exit_code == 2 and "pip install 'expunge[ray]'" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "r.sqlite").exists()


try:
    import ray
except ImportError:  # CI installs it with the test extra; elsewhere these tests skip and say why
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="the Ray executor's tests need ray: pip install 'expunge[ray]'")


@needs_ray
def test_an_address_that_does_not_answer_is_one_line_and_writes_nothing(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(TINY)
    store = tmp_path / "r.sqlite"
    address = _refused_address()
    result = CliRunner().invoke(app, ["bench", str(grid), "--executor", "ray", "--address", address,
                                      "--store", str(store)])
    assert result.exit_code == 2, result.output
    assert f"Ray address '{address}' does not answer" in result.output and "ray start --head" in result.output
    assert "Traceback" not in result.output
    assert not store.exists() and not (tmp_path / "r.sqlite-wal").exists()

    # Something answers but it is not Ray (it closes without a gRPC greeting).
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        def greet_wrongly() -> None:
            connection = server.accept()[0]
            connection.sendall(b"+OK not ray\r\n")
            connection.close()

        threading.Thread(target=greet_wrongly, daemon=True).start()
        with pytest.raises(ExpungeError, match="answers, but not as a Ray cluster"):
            RayCellExecutor(address=f"127.0.0.1:{port}").start()
    with pytest.raises(ExpungeError, match="must look like host:port"):
        RayCellExecutor(address="head-node").start()
    result = CliRunner().invoke(app, ["bench", str(grid), "--address", address, "--store", str(store)])
    assert result.exit_code == 2 and "needs --executor ray" in result.output and not store.exists()


@needs_ray
def test_resources_per_cell():
    cpu_cell, = Grid.from_toml(TINY.replace("seeds = 2", "seeds = 1").replace(
        'methods = ["finetune", { name = "neggrad_plus", lr = 0.01 }]', 'methods = ["finetune"]')).cells()
    cuda_cell = Grid.from_toml(TINY.replace("members = 2", 'members = 2\ndevice = "cuda"')).cells()[0]
    assert RayCellExecutor()._gpus(cpu_cell) == 0 and RayCellExecutor()._gpus(cuda_cell) == 1
    assert RayCellExecutor(gpus_per_cell=0.5)._gpus(cuda_cell) == 0.5
    with pytest.raises(ExpungeError, match="num_cpus sizes a Ray instance started here"):
        RayCellExecutor(address="auto", num_cpus=2)


# ------------------------------------------------------------------ on a local Ray cluster
@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for this module; its workers import expunge from this tree."""
    python_path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": python_path}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted local run of TINY: its grid and its stored values."""
    folder = tmp_path_factory.mktemp("local")
    grid = Grid.from_toml(TINY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXPUNGE_HOME", str(folder / "home"))
        with ResultsStore(folder / "local.sqlite") as store:
            run = run_grid(grid, store)
            assert run.computed == 4 and run.failed == 0, run.failures
            return grid, _values(store.frame())


@needs_ray
def test_ray_gives_the_local_numbers_and_trains_each_scenario_once(cluster, reference, tmp_path, monkeypatch):
    grid, wanted = reference
    monkeypatch.setenv("EXPUNGE_HOME", str(tmp_path / "home"))  # a cold cache: the workers train the populations
    with ResultsStore(tmp_path / "ray.sqlite") as store:
        run = run_grid(grid, store, executor="ray")
        assert run.computed == 4 and run.failed == 0, run.failures
        pd.testing.assert_frame_equal(_values(store.frame()), wanted, check_exact=False, rtol=1e-6)
        cells = store.cells()
        assert len(cells) == 4 and len({c["cell_hash"] for c in cells}) == 4
        # The shared cache is the driver's EXPUNGE_HOME, and each scenario's populations were trained by one cell.
        assert any((tmp_path / "home").iterdir())
        by_key = {cell.key: cell for cell in grid.cells()}
        trained: dict[str, int] = {}
        for stored in cells:
            cache = stored["timings"]["cache"]
            if any(role["trained"] for role in cache.values()):
                scenario = scenario_key(by_key[stored["cell_hash"]])
                trained[scenario] = trained.get(scenario, 0) + 1
        assert sorted(trained.values()) == [1, 1]  # two scenarios, one training cell each
        # A rerun finds every cell stored.
        assert run_grid(grid, store, executor="ray").cached == 4


@needs_ray
def test_a_worker_killed_mid_cell_is_retried_and_its_cell_stored_once(cluster, reference, tmp_path, monkeypatch):
    grid, wanted = reference
    cells = [cell for cell in grid.cells() if cell.scenario_seed == 0]  # one scenario: two cells
    marker = tmp_path / "crashed"
    monkeypatch.setenv("EXPUNGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(CELL_CRASH_ENV, str(marker))  # the first cell to finish its audit SIGKILLs its worker
    with ResultsStore(tmp_path / "ray.sqlite") as store:
        run = run_grid(grid, store, executor=RayCellExecutor(max_retries=2), cells=cells)
        assert marker.exists()  # a worker did die
        assert run.computed == 2 and run.failed == 0, run.failures
        assert sorted(c["cell_hash"] for c in store.cells()) == sorted(c.key for c in cells)
        assert store.integrity() == "ok"
        got = _values(store.frame())
    pd.testing.assert_frame_equal(got, wanted[wanted["cell_hash"].isin(got["cell_hash"])].reset_index(drop=True),
                                  check_exact=False, rtol=1e-6)

    # Without retries the dead worker's cell is stored as failed, with what happened.
    marker.unlink()
    with ResultsStore(tmp_path / "no-retry.sqlite") as store:
        run = run_grid(grid, store, executor=RayCellExecutor(max_retries=0), cells=cells[:1])
        assert run.failed == 1 and "the Ray task failed after 0 retries" in run.failures[0][1]
        assert [c["status"] for c in store.cells()] == ["failed"]


@needs_ray
def test_cli_joins_a_running_cluster_by_address(cluster, reference, tmp_path):
    grid_file = tmp_path / "g.toml"
    grid_file.write_text(TINY.replace("seeds = 2", "seeds = [1]"))
    store = tmp_path / "r.sqlite"
    env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p),
                        "EXPUNGE_HOME": str(tmp_path / "home")}
    env.pop(CELL_CRASH_ENV, None)
    done = subprocess.run([sys.executable, "-m", "expunge.cli.main", "bench", str(grid_file), "--store", str(store),
                           "--executor", "ray", "--address", cluster], env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 computed (0 failed), 0 cached" in done.stdout
    _, wanted = reference
    with ResultsStore(store) as opened:
        got = _values(opened.frame())
    assert len(got) and set(got["cell_hash"]) <= set(wanted["cell_hash"])
    pd.testing.assert_frame_equal(got, wanted[wanted["cell_hash"].isin(got["cell_hash"])].reset_index(drop=True),
                                  check_exact=False, rtol=1e-6)
    assert any((tmp_path / "home").iterdir())  # the workers wrote the driver's EXPUNGE_HOME
