"""``expunge bench GRID.toml`` and ``expunge results``: benchmark grids and the results store."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from expunge.cli.progress import console, error_console, friendly_errors

DEFAULT_STORE = Path("expunge-out/results.sqlite")


class _GridDisplay:
    """One bar over the grid's cells to compute (done, running, failed, cached; ETA) and one for the running cell."""

    def __init__(self, bars: Progress):
        self.bars = bars
        self.grid_task = bars.add_task("grid", total=None)
        self.cell_task = bars.add_task("", total=None, visible=False)
        self.done = self.failed = self.cached = self.running = 0
        self.total = 0

    def _describe(self) -> None:
        self.bars.update(self.grid_task, completed=self.done, total=self.total,
                         description=f"cells: {self.done} done, {self.running} running, {self.failed} failed, "
                                     f"{self.cached} cached")

    def planned(self, total: int, cached: int) -> None:
        self.total, self.cached = total - cached, cached
        self._describe()

    def cell_started(self, cell) -> None:
        self.running += 1
        self.bars.update(self.cell_task, description=f"  {cell.label}", completed=0, total=None, visible=True)
        self._describe()

    def cell_finished(self, cell, result, written: bool) -> None:
        self.running -= 1
        self.done += 1
        self.failed += result.status != "ok"
        if result.status != "ok":
            error_console.print(f"[bold red]{cell.label} failed:[/] {result.error}", highlight=False)
        self._describe()

    def progress(self, description: str):
        def update(done: int, total: int) -> None:
            self.bars.update(self.cell_task, description=f"  {description}", completed=done, total=total)

        return update


def bench(grid_file: Path = typer.Argument(..., help="the grid, a TOML file (format: expunge.bench.grid)"),
          store: Path = typer.Option(DEFAULT_STORE, help="the results store, one SQLite file"),
          executor: str = typer.Option("local", help="where cells run: local (in this process) or ray (Ray tasks; the "
                                                      "ray extra of expunge)"),
          address: Optional[str] = typer.Option(None, help="with --executor ray: the cluster's head, host:port as "
                                                           "printed by `ray start --head` (default: a Ray instance "
                                                           "started on this machine)"),
          retry_failed: bool = typer.Option(False, "--retry-failed", help="rerun cells stored as failed")) -> None:
    """Run a benchmark grid; each finished cell is written to the store once (a rerun computes only missing cells)."""
    from expunge.bench.grid import Grid
    from expunge.bench.grid_runner import cell_executor, run_grid
    from expunge.bench.store_results import ResultsStore
    from expunge.errors import ExpungeError

    grid = Grid.load(grid_file)
    if address is not None and executor != "ray":
        raise ExpungeError(f"--address names a Ray cluster; it needs --executor ray (got --executor {executor})")
    runner = cell_executor(executor, **({"address": address} if address is not None else {}))
    cells = grid.cells()  # loads the data and checks forget rules before anything is written
    runner.start()  # joins the cluster: an address that does not answer fails here, before the store exists
    with ResultsStore(store) as results:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console, transient=False) as bars:
            display = _GridDisplay(bars)
            run = run_grid(grid, results, runner, display, retry_failed=retry_failed, cells=cells)
            bars.update(display.cell_task, visible=False)
    console.print(f"grid {grid.name!r}: {run.total} cells, {run.computed} computed ({run.failed} failed), "
                  f"{run.cached} cached, in {run.wall_s:.1f}s ({run.cells_per_minute:.1f} cells per minute); "
                  f"store {store}")
    if run.failed:
        raise typer.Exit(1)


def _cell_text(value: object) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.4g}"
    return "-" if value is None else str(value)


def results(store: Path = typer.Option(DEFAULT_STORE, help="the results store"),
            method: list[str] = typer.Option([], help="only this method (repeatable)"),
            dataset: list[str] = typer.Option([], help="only this dataset (repeatable)"),
            metric: list[str] = typer.Option([], help="only this metric (repeatable), e.g. klom_p95"),
            forget: list[str] = typer.Option([], help="only this forget rule (repeatable)"),
            grid: Optional[str] = typer.Option(None, help="only cells first computed for this grid"),
            csv: Optional[Path] = typer.Option(None, "--csv", help="write the rows to this CSV file"),
            limit: int = typer.Option(200, help="rows to list (the CSV holds them all)"),
            board: bool = typer.Option(False, "--leaderboard", help="per method and scenario: means over scenario "
                                                                    "seeds with bootstrap 95% intervals, ties"),
            html: Optional[Path] = typer.Option(None, "--html", help="write the grid report (heat maps, "
                                                                     "quality-vs-cost frontiers) to this file")) -> None:
    """List, filter and export the result rows of a results store; its leaderboard with intervals."""
    from expunge.bench.store_results import ResultsStore
    from expunge.errors import ExpungeError

    if not store.is_file():
        raise ExpungeError(f"no results store at {store}: run `expunge bench GRID.toml --store {store}` first")
    filters = {"method": method or None, "dataset": dataset or None, "metric": metric or None,
               "forget_rule": forget or None, "grid": grid}
    with ResultsStore(store) as opened:
        frame = opened.frame(**filters)
        cells = opened.cells(**{k: v for k, v in filters.items() if k != "metric"})
        if csv is not None:
            opened.export_csv(csv, **filters)
    if board or html is not None:
        _leaderboard(frame, board, html)
        if not board:
            return
        if csv is not None:
            console.print(f"wrote {len(frame)} rows to {csv}")
        return
    table = Table(title=f"{store}: {len(cells)} cells, {len(frame)} rows" + (f" (first {limit})" if len(frame) > limit
                                                                              else ""))
    columns = ("dataset", "forget_rule", "label", "scenario_seed", "members", "metric", "split", "value", "spread",
               "reference", "reference_kind", "judgement")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right" if column in ("value", "spread", "reference",
                                                                                  "scenario_seed", "members") else "left")
    for record in frame.head(limit).itertuples(index=False):
        table.add_row(*(_cell_text(getattr(record, c)) for c in columns))
    console.print(table)
    failed = [c for c in cells if c["status"] != "ok"]
    for cell in failed:
        error_console.print(f"[bold red]failed:[/] {cell['dataset']}/{cell['forget_rule']}/{cell['label']}/seed "
                            f"{cell['scenario_seed']}: {cell['error']}", highlight=False)
    if csv is not None:
        console.print(f"wrote {len(frame)} rows to {csv}")


def _leaderboard(frame, show: bool, html: Optional[Path]) -> None:
    """The grid leaderboard of stored rows; methods are told apart by label (e.g. ``neggrad_plus[lr=0.01]``)."""
    import warnings

    from expunge.bench.leaderboard import leaderboard
    from expunge.errors import ExpungeError
    from expunge.report.grid import grid_table, write_grid_report

    frame = frame[frame["status"] == "ok"].copy()
    if frame.empty:
        raise ExpungeError("no finished cells match: nothing to rank")
    frame["method"], frame["label"] = frame["label"], frame["metric_label"]  # the leaderboard's contract
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ranked = leaderboard(frame)
    if show:
        console.print(grid_table(ranked))
        for warning in {str(w.message) for w in caught}:
            console.print(f"[yellow]note:[/] {warning}", highlight=False)
    if html is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the note above says it once
            write_grid_report(frame, html)
        console.print(f"wrote the grid report to {html}")


bench = friendly_errors(bench)
results = friendly_errors(results)
