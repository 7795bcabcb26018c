"""Run a grid's cells as Ray tasks, on this machine or across a cluster (``expunge bench --executor ray``).

Each cell is one Ray task running :func:`~expunge.bench.grid.run_cell` with a resource
request (``cpus_per_cell`` CPUs, ``gpus_per_cell`` GPUs) and ``max_retries`` retries: a
worker that dies mid-cell (killed, out of memory, node lost) is rerun by Ray, and the
driver still receives one result per cell, so the store writes each cell once. Workers
return a :class:`~expunge.bench.grid.CellResult` (metric rows as dicts, cost, timings),
never populations: populations travel through the artifact cache.

**The artifact cache is shared.** Workers use the driver's ``$EXPUNGE_HOME`` (passed to
every task in its ``runtime_env``, with the driver's other ``EXPUNGE_*`` variables). On a
cluster it must be a path every node sees at the same place (NFS, a shared volume);
otherwise each node trains its own populations and the cache gives no reuse. Every node
also needs expunge (the same version: it is part of each cell's key) and any package a
grid names by import path (user data, user models).

**Populations are trained once per scenario.** Cells of one scenario (same data, forget
rule, recipe, seed, N: everything but the method) need the same original and oracle
populations. The executor submits the first cell of each scenario and the scenario's
other cells only once it has finished, so they load its populations from the cache
instead of training them in parallel; different scenarios run side by side.

Example::

    from expunge.bench.grid import Grid
    from expunge.bench.grid_runner import run_grid
    from expunge.bench.ray_executor import RayCellExecutor
    from expunge.bench.store_results import ResultsStore

    with ResultsStore("results.sqlite") as store:
        run_grid(Grid.load("grid.toml"), store, RayCellExecutor(address="head-node:6379"))
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from expunge.bench.grid import Cell, CellResult, run_cell
from expunge.errors import ExpungeError
from expunge.training.store import content_key, default_home

INSTALL_HINT = "the Ray executor needs the ray package: pip install 'expunge[ray]'"
CONNECT_TIMEOUT_S = 5.0
# Ray's own wait for a cluster that accepts connections but does not answer as Ray (read by ray.init; its
# default retries for minutes).
_RAY_CONNECT_WAIT_ENV = "RAY_gcs_server_port_wait_time_s"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExpungeError(INSTALL_HINT) from None
    return ray


def scenario_key(cell: Cell) -> str:
    """What a cell shares with the other cells of its scenario (their populations): its key without the method."""
    return content_key({k: v for k, v in cell.parts.items() if k not in ("method", "hyperparameters")})


def check_address_answers(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise a one-line :class:`ExpungeError` unless something at ``address`` (``host:port`` or
    ``ray://host:port``) answers an HTTP/2 (gRPC) greeting within ``timeout_s``; Ray itself would retry for minutes.
    """
    parsed = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise ExpungeError(f"Ray address {address!r} must look like host:port (or ray://host:port, or auto)")
    hint = "is the cluster up (`ray start --head` on its head node) and is the port open?"
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            connection.settimeout(timeout_s)
            # The HTTP/2 client preface and an empty SETTINGS frame: a gRPC server answers with its SETTINGS frame.
            connection.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            answer = connection.recv(9)
    except OSError as error:
        reason = (f"no answer within {timeout_s:g}s" if isinstance(error, TimeoutError)
                  else (error.strerror or type(error).__name__).lower())
        raise ExpungeError(f"Ray address {address!r} does not answer ({reason}): {hint}") from None
    if len(answer) < 4 or answer[3] != 0x04:
        raise ExpungeError(f"Ray address {address!r} answers, but not as a Ray cluster (no gRPC greeting): {hint}")


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` for the block, unless the user set it already."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


class RayCellExecutor:
    """Runs cells as Ray remote tasks and yields each result as it completes.

    Args:
        address: the cluster to join (``host:port`` of its head node as printed by
            ``ray start --head``, ``ray://host:10001`` for Ray Client, or ``auto``). ``None``
            starts a Ray instance on this machine for the run (or uses the one this
            process already joined with ``ray.init``).
        num_cpus: CPUs of the Ray instance started here (``None``: all of them); only
            without ``address``.
        cpus_per_cell: CPUs each cell reserves; Ray sets the cell's thread count to it.
        gpus_per_cell: GPUs each cell reserves; ``None`` (default): 1 for cells whose grid
            device is CUDA (``device = "cuda"``), else 0, since a CPU cell would only hold a
            GPU idle.
        max_retries: how often Ray reruns a cell whose worker died; a cell that still fails
            is stored as failed (``expunge bench --retry-failed`` reruns it).
        connect_timeout_s: how long an address may take to answer.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, cpus_per_cell: float = 1,
                 gpus_per_cell: float | None = None, max_retries: int = 2,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S):
        if address is not None and num_cpus is not None:
            raise ExpungeError("num_cpus sizes a Ray instance started here; a cluster joined with --address has "
                               "its own CPUs (set them with `ray start --num-cpus`)")
        if cpus_per_cell <= 0 or (gpus_per_cell is not None and gpus_per_cell < 0) or max_retries < 0:
            raise ExpungeError(f"cpus_per_cell must be positive and gpus_per_cell, max_retries not negative; got "
                               f"{cpus_per_cell}, {gpus_per_cell}, {max_retries}")
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ExpungeError(INSTALL_HINT)
        self.address, self.num_cpus = address, num_cpus
        self.cpus_per_cell, self.gpus_per_cell, self.max_retries = cpus_per_cell, gpus_per_cell, max_retries
        self.connect_timeout_s = connect_timeout_s

    def start(self) -> None:
        """Join the cluster (or start a local Ray instance); a one-line error when the address does not answer.

        Called before anything is written; a process already joined (``ray.init`` earlier) is reused as it is.
        """
        ray = _import_ray()
        joins = self.address not in (None, "local")
        if joins and self.address != "auto":
            check_address_answers(self.address, self.connect_timeout_s)
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"log_to_driver": False}  # worker logs stay in Ray's session folder
        if not joins:
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, **options)
            return
        try:
            with _environ(_RAY_CONNECT_WAIT_ENV, str(max(1, round(self.connect_timeout_s)))):
                ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ExpungeError(f"cannot join the Ray cluster at {self.address!r}: {first_line}") from None

    def _gpus(self, cell: Cell) -> float:
        if self.gpus_per_cell is not None:
            return self.gpus_per_cell
        return 1 if cell.device.startswith("cuda") else 0

    def run(self, cells: list[Cell], started: Callable[[Cell], None],
            progress: Callable[[str], Callable[[int, int], None]] | None = None) -> Iterator[CellResult]:
        """Submit the cells (each scenario's first cell, then its others once it is done); yield results as they
        complete. ``progress`` is not forwarded: a remote cell reports only when it finishes."""
        if not cells:
            return
        ray = _import_ray()
        self.start()
        env_vars = {name: value for name, value in os.environ.items() if name.startswith("EXPUNGE_")}
        env_vars["EXPUNGE_HOME"] = str(default_home().expanduser().resolve())
        task = ray.remote(run_cell)
        options = {"num_cpus": self.cpus_per_cell, "max_retries": self.max_retries,
                   "runtime_env": {"env_vars": env_vars}}
        waiting: dict[str, list[Cell]] = {}  # scenario -> its cells still to submit
        for cell in cells:
            waiting.setdefault(scenario_key(cell), []).append(cell)
        pending: dict[Any, tuple[Cell, float]] = {}  # object ref -> (cell, submitted at)

        def submit(cell: Cell) -> None:
            started(cell)
            pending[task.options(**options, num_gpus=self._gpus(cell)).remote(cell)] = (cell, time.perf_counter())

        for scenario_cells in waiting.values():
            submit(scenario_cells.pop(0))
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    cell, submitted = pending.pop(ref)
                    for other in waiting.pop(scenario_key(cell), []):  # its populations are in the cache now
                        submit(other)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as error:
                        result = self._lost(cell, error, time.perf_counter() - submitted)
                    yield result
        finally:
            for ref in pending:  # the driver stopped early (an error, Ctrl-C): drop what is still queued or running
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)

    def _lost(self, cell: Cell, error: Exception, wall_s: float) -> CellResult:
        """A failed result for a cell whose task Ray gave up on (its worker died more than ``max_retries`` times)."""
        import datetime

        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        first_line = (str(error).strip().splitlines() or [""])[0]
        message = (f"the Ray task failed after {self.max_retries} retries: {type(error).__name__}"
                   + (f": {first_line}" if first_line else ""))
        return CellResult(cell.key, "failed", message, [], None, dict(cell.method.hyperparameters), now, now, wall_s,
                          {"executor": "ray"}, cell.device, traceback=str(error))
