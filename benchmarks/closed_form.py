"""Closed-form exact heads: time of a Woodbury deletion vs a refit (issue 10, item 2).

Trains the default MNIST-1D MLP (hidden [100, 100]) once, fits a ridge head on its
penultimate features (d = 100, N = 4,000 training examples), then in each of ``--rounds``
rounds alternates: refit without 1 ID, delete 1 ID, refit without 100 IDs, delete 100
IDs (interleaved so that drift in the machine's load hits every timing alike). The
refit is ``RidgeHead.fit`` on the remaining rows (forming X^T X and inverting); the
deletion is ``RidgeHead.delete`` (down-date, guards and bookkeeping included). Prints
medians, which path each deletion took, and the largest weight difference to the refit.

    python benchmarks/closed_form.py
    python benchmarks/closed_form.py --rounds 9 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from expunge.bench.machine import cpu_model
from expunge.data import load_dataset
from expunge.exact.closed_form import RidgeHead
from expunge.training.engine import train_population
from expunge.training.recipe import default_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    split = load_dataset("mnist1d")
    train = split.train
    population, _ = train_population(default_recipe("mnist1d"), train, seeds=[0])
    features = population.features(train.x)[0]
    head = RidgeHead.fit(features, train.y, train.ids, num_classes=10, l2=1.0)
    print(f"machine: {cpu_model()}, torch {torch.__version__}, {args.threads} thread(s)")
    print(f"features: N = {features.shape[0]}, d = {features.shape[1]} (penultimate layer of the MNIST-1D MLP)")

    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {"refit 1": [], "delete 1": [], "refit 100": [], "delete 100": []}
    paths, errors = set(), []
    for _ in range(args.rounds):
        for size in (1, 100):
            forget = torch.randperm(len(train), generator=generator)[:size]
            keep = ~torch.isin(train.ids, forget)
            start = time.perf_counter()
            refit = RidgeHead.fit(features[keep], train.y[keep], train.ids[keep], num_classes=10, l2=1.0)
            times[f"refit {size}"].append(time.perf_counter() - start)
            start = time.perf_counter()
            deleted = head.delete(forget)
            times[f"delete {size}"].append(time.perf_counter() - start)
            paths.add(deleted.update)
            errors.append(float((deleted.weights - refit.weights).abs().max()))

    print(f"median of {args.rounds} interleaved rounds:")
    for size in (1, 100):
        refit, delete = statistics.median(times[f"refit {size}"]), statistics.median(times[f"delete {size}"])
        print(f"  {size:>3} ID(s): refit {refit * 1e3:8.2f} ms   delete {delete * 1e3:8.2f} ms   "
              f"speed-up {refit / delete:6.1f}x")
    print(f"deletion paths: {sorted(paths)}; largest |weights - refit weights|: {max(errors):.1e}")


if __name__ == "__main__":
    main()
