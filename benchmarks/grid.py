"""A 2 x 3 x 4 benchmark grid run twice on one results store: the second run finds every cell cached.

2 datasets (wine, gaussians with 300 training examples) x 3 methods (finetune,
neggrad_plus, retrain) x 4 scenario seeds, N members per population (default 4), a
random 10% forget set, a short recipe (default 3 epochs). Run 1 computes all 24 cells
(oracle and original populations are trained once per scenario and shared by its three
methods through the population cache); run 2 reads them back from the store. Prints
cells per minute for each run. A fresh ``$EXPUNGE_HOME`` and store each time unless given.
``--executor ray`` runs the cells as Ray tasks (a local Ray instance, or ``--address``);
joining or starting Ray is timed apart from the runs.

    python benchmarks/grid.py [--members 4] [--epochs 3] [--store PATH] [--executor local|ray] [--address ADDR]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

GRID = """
name = "benchmark-2x3x4"
datasets = ["wine", {{ name = "gaussians", options = {{ n_train = 300, n_test = 100 }} }}]
forget = ["random:0.1"]
methods = ["finetune", "neggrad_plus", "retrain"]
seeds = 4
members = {members}
[recipe]
epochs = {epochs}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--store", type=Path, default=None, help="default: a new file in a temporary folder")
    parser.add_argument("--executor", default="local")
    parser.add_argument("--address", default=None, help="with --executor ray: a running cluster's host:port")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="expunge-grid-"))
    os.environ.setdefault("EXPUNGE_HOME", str(folder / "home"))

    from expunge.bench.grid import Grid
    from expunge.bench.grid_runner import cell_executor, run_grid
    from expunge.bench.machine import cpu_model
    from expunge.bench.store_results import ResultsStore

    grid = Grid.from_toml(GRID.format(members=args.members, epochs=args.epochs), name="benchmark")
    store_path = args.store or folder / "results.sqlite"
    print(f"grid {grid.name}: {len(grid.datasets)} datasets x {len(grid.methods)} methods x {len(grid.seeds)} seeds, "
          f"N = {args.members}, {args.epochs} epochs; executor {args.executor}; store {store_path}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), python {platform.python_version()}")
    executor = cell_executor(args.executor, **({"address": args.address} if args.address else {}))
    start = time.perf_counter()
    executor.start()
    if args.executor != "local":
        print(f"{args.executor}: ready in {time.perf_counter() - start:.2f}s")
    with ResultsStore(store_path) as store:
        for attempt in (1, 2):
            start = time.perf_counter()
            run = run_grid(grid, store, executor)
            wall = time.perf_counter() - start
            print(f"run {attempt}: {run.total} cells, {run.computed} computed ({run.failed} failed), {run.cached} "
                  f"cached in {wall:.2f}s = {run.total / wall * 60:.1f} cells per minute")
        rows = len(store.frame())
    print(f"store: {rows} result rows")


if __name__ == "__main__":
    main()
