"""Population training vs sequential single-model runs (issue: foundation, item 7).

Trains K members of the default MNIST-1D MLP recipe once as one population and once as
K sequential single-model runs (the same engine with K = 1, i.e. ordinary training), in
the same process, and also K runs of a plain PyTorch loop (nn.Module + torch.optim.Adam)
as an outside reference. Prints the time per model of each, the achieved training
FLOP/s as a fraction of a large plain matmul's FLOP/s measured in the same run, and as
its last line ``speedup: <ratio>x`` (sequential engine runs / population, per model).

    python benchmarks/population.py                 # K = 64, the default recipe (30 epochs)
    python benchmarks/population.py --members 16 --epochs 5   # quicker look
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch
from torch import nn

from expunge.bench.machine import cpu_model
from expunge.data import load_dataset
from expunge.models import build_model
from expunge.training.engine import accuracy, model_spec, train_population
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    split = load_dataset("mnist1d")
    recipe = default_recipe("mnist1d")
    if args.epochs:
        recipe = recipe.with_(epochs=args.epochs)
    k = args.members
    print(f"expunge population benchmark  {datetime.date.today()}  CPU: {cpu_model()}  "
          f"threads: {torch.get_num_threads()}  torch {torch.__version__}")
    print(f"recipe: {recipe.model} {recipe.model_kwargs} {recipe.optimizer} lr={recipe.lr} "
          f"epochs={recipe.epochs} batch={recipe.batch_size}; MNIST-1D {len(split.train)} train examples; K = {k}")
    peak = matmul_flops()
    train_population(recipe.with_(epochs=1), split.train, members=2)  # warm-up

    start = time.perf_counter()
    population, cost = train_population(recipe, split.train, members=k)
    population_time = time.perf_counter() - start

    single_times = []
    for i in range(k):
        start = time.perf_counter()
        train_population(recipe, split.train, seeds=[recipe.seed + i])
        single_times.append(time.perf_counter() - start)
    plain_times = [plain_pytorch_run(recipe, split.train, i) for i in range(min(k, 16))]

    flops_per_model = training_flops(build_model(model_spec(recipe, split.train)), cost.example_gradients)
    per_model_population = population_time / k
    per_model_single = statistics.median(single_times)
    per_model_plain = statistics.median(plain_times)
    test = accuracy(population, split.test)
    print(f"population test accuracy: {float(test.mean()):.1f} ± {float(test.std()):.1f}%")
    print(f"large matmul (2048^2, median of 5): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'run':<44}{'s / model':>11}{'GFLOP/s':>10}{'of matmul':>11}")
    for name, seconds in [(f"population (K={k}, one vectorised run)", per_model_population),
                          ("sequential engine runs (K=1, median)", per_model_single),
                          (f"plain PyTorch loop (median of {len(plain_times)})", per_model_plain)]:
        achieved = flops_per_model / seconds
        print(f"{name:<44}{seconds:>11.3f}{achieved / 1e9:>10.2f}{achieved / peak:>10.1%}")
    print(f"speedup vs plain PyTorch loop: {per_model_plain / per_model_population:.1f}x")
    print(f"speedup: {per_model_single / per_model_population:.1f}x")


if __name__ == "__main__":
    main()
