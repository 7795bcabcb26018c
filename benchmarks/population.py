"""Population training against a plain PyTorch loop, interleaved so that machine load cannot fake a ratio.

In each round, in this order: one plain PyTorch training run (``nn.Module`` +
``torch.optim.Adam``, shuffled minibatches: what a user writes), the engine's K = 1 path
(what ``expunge.unlearn`` runs on a user's model), and one population of each size K.
Every ratio is taken within a round (plain time per model / population time per model),
and the figure printed is the median over rounds of those per-round ratios. Also printed:
the achieved training FLOP/s as a fraction of a large matmul's FLOP/s measured in the same
run (the MLP's matmuls are the work; everything else is overhead).

The last two lines are ``speedup vs plain loop: <x>x`` (K = 64, or the largest K asked
below it) and ``k1 overhead: <y>x`` (engine K = 1 time / plain loop time).

    python benchmarks/population.py                          # K = 1, 16, 64, 256; 3 rounds; 30 epochs
    python benchmarks/population.py --members 16 64 --epochs 5 --rounds 5   # quicker
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch
from torch import nn

from expunge.bench.machine import cpu_model
from expunge.data import load_dataset
from expunge.models import build_model
from expunge.training.engine import model_spec, train_population
from expunge.training.recipe import default_recipe


def matmul_flops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def training_flops(model: nn.Module, examples: float) -> float:
    """Forward multiply-adds x 2 (FLOPs) x 3 (forward + two backward products) per example."""
    macs = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    return 6.0 * macs * examples


def plain_pytorch_run(recipe, data, seed: int) -> float:
    """One model trained with an ordinary loop: nn.Module, torch.optim.Adam, shuffled batches."""
    torch.manual_seed(seed)
    model = build_model(model_spec(recipe, data))
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(data), generator=gen)
        for i in range(0, len(data), recipe.batch_size):
            idx = order[i:i + recipe.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(data.x[idx]), data.y[idx]).backward()
            optimizer.step()
    return time.perf_counter() - start


def engine_run(recipe, data, members: int, seed: int) -> float:
    """Seconds per model of one population of ``members`` trained as one vectorised run."""
    start = time.perf_counter()
    train_population(recipe, data, seeds=[seed + i for i in range(members)])
    return (time.perf_counter() - start) / members


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[16, 64, 256], help="population sizes K > 1")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    split = load_dataset("mnist1d")
    recipe = default_recipe("mnist1d")
    if args.epochs:
        recipe = recipe.with_(epochs=args.epochs)
    sizes = sorted(k for k in args.members if k > 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"expunge population benchmark  {datetime.date.today()}  CPU: {cpu_model()}  "
          f"threads: {torch.get_num_threads()}  torch {torch.__version__}  load (1 min) at start: {load:.2f}")
    print(f"recipe: {recipe.model} {recipe.model_kwargs} {recipe.optimizer} lr={recipe.lr} epochs={recipe.epochs} "
          f"batch={recipe.batch_size}; MNIST-1D {len(split.train)} train examples; {args.rounds} interleaved rounds")
    train_population(recipe.with_(epochs=1), split.train, members=2)  # warm-up (vmap, allocator)
    plain_pytorch_run(recipe.with_(epochs=1), split.train, 0)
    peak = matmul_flops()
    per_round: dict[str, list[float]] = {"plain": [], "k1": [], **{f"k{k}": [] for k in sizes}}
    for r in range(args.rounds):
        per_round["plain"].append(plain_pytorch_run(recipe, split.train, 1000 + r))
        per_round["k1"].append(engine_run(recipe, split.train, 1, 1000 + r))
        for k in sizes:
            per_round[f"k{k}"].append(engine_run(recipe, split.train, k, 2000 + 1000 * r))
        print(f"round {r + 1}: " + "  ".join(f"{name} {values[-1]:.3f}s" for name, values in per_round.items()),
              flush=True)
    flops = training_flops(build_model(model_spec(recipe, split.train)), len(split.train) * recipe.epochs)
    print(f"matmul (2048^2, median of 5): {peak / 1e9:.1f} GFLOP/s; load (1 min) at end: {os.getloadavg()[0]:.2f}")
    print(f"{'run':<34}{'s / model':>10}{'GFLOP/s':>9}{'of matmul':>10}{'plain / this (median of rounds)':>33}")
    plain = per_round["plain"]
    rows = [("plain PyTorch loop", "plain"), ("engine K=1 (user-model path)", "k1")]
    rows += [(f"population K={k}", f"k{k}") for k in sizes]
    ratios = {}
    for label, key in rows:
        seconds = statistics.median(per_round[key])
        ratios[key] = statistics.median(p / t for p, t in zip(plain, per_round[key]))
        achieved = flops / seconds
        print(f"{label:<34}{seconds:>10.3f}{achieved / 1e9:>9.2f}{achieved / peak:>10.1%}{ratios[key]:>32.2f}x")
    headline = max((k for k in sizes if k <= 64), default=sizes[0] if sizes else None)
    if headline is not None:
        print(f"speedup vs plain loop: {ratios[f'k{headline}']:.2f}x  (K = {headline})")
    print(f"k1 overhead: {1 / ratios['k1']:.2f}x")


if __name__ == "__main__":
    main()
