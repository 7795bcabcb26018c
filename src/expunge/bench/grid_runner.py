"""Run a grid's missing cells on a cell executor and write each finished cell to the results store.

The seam for other executors: a :class:`CellExecutor` takes cells (plain, picklable
descriptions) and yields :class:`~expunge.bench.grid.CellResult` values (rows as dicts,
a cost dict, timings: never populations) as they finish, in any order. The driver,
:func:`run_grid`, writes each result to the store in its own transaction as soon as it
arrives, so a crash loses at most the cells still running. :class:`LocalCellExecutor`
runs cells one after another in this process; :class:`~expunge.bench.ray_executor.RayCellExecutor`
submits them as Ray tasks and yields results as they complete, with the driver unchanged.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from expunge.bench.grid import Cell, CellResult, Grid, run_cell
from expunge.bench.ray_executor import RayCellExecutor
from expunge.bench.store_results import ResultsStore
from expunge.errors import ExpungeError

ProgressFactory = Callable[[str], Callable[[int, int], None]]


class CellExecutor(Protocol):
    """Runs cells; yields each one's result as it finishes."""

    name: str

    def start(self) -> None:
        """Get ready (join a cluster); called before the store is touched, so a failure here writes nothing."""
        ...

    def run(self, cells: list[Cell], started: Callable[[Cell], None],
            progress: ProgressFactory | None = None) -> Iterator[CellResult]:
        """Run ``cells`` (calling ``started(cell)`` as each begins) and yield their results."""
        ...


class LocalCellExecutor:
    """Runs cells one at a time in this process (populations shared through the cache on disk)."""

    name = "local"

    def start(self) -> None:
        pass

    def run(self, cells: list[Cell], started: Callable[[Cell], None],
            progress: ProgressFactory | None = None) -> Iterator[CellResult]:
        for cell in cells:
            started(cell)
            yield run_cell(cell, progress)


EXECUTORS: dict[str, Callable[..., CellExecutor]] = {"local": LocalCellExecutor, "ray": RayCellExecutor}


def cell_executor(name: str, **options: Any) -> CellExecutor:
    """The executor registered as ``name``, made with ``options`` (the Ray executor's ``address=`` ...)."""
    if name not in EXECUTORS:
        raise ExpungeError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    return EXECUTORS[name](**options)


class GridEvents:
    """What a display hears from :func:`run_grid` (every method a no-op here)."""

    def planned(self, total: int, cached: int) -> None: ...

    def cell_started(self, cell: Cell) -> None: ...

    def cell_finished(self, cell: Cell, result: CellResult, written: bool) -> None: ...

    def progress(self, description: str) -> Callable[[int, int], None]:
        return lambda done, total: None


@dataclass
class GridRun:
    """What one :func:`run_grid` call did."""

    total: int
    cached: int
    computed: int = 0
    failed: int = 0
    wall_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (cell label, error)

    @property
    def cells_per_minute(self) -> float:
        return self.total / self.wall_s * 60 if self.wall_s > 0 else float("inf")


def run_grid(grid: Grid, store: ResultsStore, executor: CellExecutor | str | None = None,
             events: GridEvents | None = None, retry_failed: bool = False,
             cells: Iterable[Cell] | None = None) -> GridRun:
    """Compute the grid's cells that the store lacks; cells already there are reported cached, never recomputed.

    Holds the store's bench lock for the run (a second bench on the same store refuses).
    ``executor``: an executor or a registered name (``"local"``, the default; ``"ray"``).
    ``retry_failed``: rerun cells stored as failed (their new result replaces the old).
    """
    start = time.perf_counter()
    executor = cell_executor(executor) if isinstance(executor, str) else executor or LocalCellExecutor()
    events = events or GridEvents()
    cells = list(grid.cells() if cells is None else cells)
    executor.start()
    with store.held():
        def missing(cell: Cell) -> bool:
            status = store.status(cell.key)
            return status is None or (retry_failed and status == "failed")

        todo = [cell for cell in cells if missing(cell)]
        run = GridRun(total=len(cells), cached=len(cells) - len(todo))
        events.planned(len(cells), run.cached)
        by_key = {cell.key: cell for cell in todo}
        for result in executor.run(todo, events.cell_started, events.progress):
            cell = by_key[result.key]
            written = store.write(cell, result, replace_failed=retry_failed)
            run.computed += 1
            if result.status != "ok":
                run.failed += 1
                run.failures.append((cell.label, result.error or "failed"))
            events.cell_finished(cell, result, written)
    run.wall_s = time.perf_counter() - start
    return run
