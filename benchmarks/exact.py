"""Exact unlearning: what a deletion request costs under SISA, against retraining, and what sharding costs in accuracy.

For each S (shards) and R (slices), trains one SISA model on MNIST-1D with the dataset's
recipe (stage epochs = round(2E / (R + 1)), the paper's equal-work rule), then serves
single-ID requests (one after another on the same model) and batched requests (10 and
100 IDs, each on the freshly trained model). Prints per configuration:

- test accuracy (S = 1, R = 1 is a single model trained normally: the price of sharding
  is the drop from that row);
- deletion cost relative to full retraining, in example gradients (deterministic) and in
  wall time (noisy on a shared machine), and the speed-up (1 / ratio) for single IDs.

Bourtoule et al. report speed-ups of 4.63x (Purchase) and 2.45x (SVHN) for their settings.

    python benchmarks/exact.py [--shards 1 4 8 16] [--slices 1 4] [--singles 5] [--closed-form]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import expunge
from expunge.exact import ClosedFormModel, SisaModel
from expunge.training.engine import model_spec
from expunge.training.population import Population
from expunge.training.recipe import default_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist1d")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--slices", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--singles", type=int, default=5, help="single-ID requests per configuration")
    parser.add_argument("--batches", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    split = expunge.load_dataset(args.dataset)
    train, test = split.train, split.test
    recipe = default_recipe(args.dataset)
    if args.epochs:
        recipe = recipe.with_(epochs=args.epochs)
    g = torch.Generator().manual_seed(args.seed)
    order = train.ids[torch.randperm(len(train), generator=g)]
    singles = order[: args.singles]
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.dataset}: {len(train)} training examples, recipe "
          f"{recipe.model} {recipe.optimizer} lr {recipe.lr} {recipe.epochs} epochs")
    header = (f"{'S':>3} {'R':>2} {'epochs/stage':>12} {'test acc':>8} {'train s':>8} "
              f"{'1 ID: grads x full':>18} {'wall x full':>11} {'speed-up':>8} "
              + " ".join(f"{f'{b} IDs: grads x':>15}" for b in args.batches))
    print(header)
    for shards in args.shards:
        for slices in args.slices:
            began = time.perf_counter()
            model = SisaModel.train(train, shards, slices, recipe=recipe, seed=args.seed)
            train_s = time.perf_counter() - began
            full = model.full_cost()
            accuracy = float(model.accuracy(test)[0])
            ratios, walls = [], []
            current = model
            for i in singles.tolist():
                current, cost = current.forget(train, [i])
                ratios.append(cost.example_gradients / full)
                walls.append(cost.wall_time_s / train_s)
            batched = []
            for size in args.batches:
                _, cost = model.forget(train, order[args.singles: args.singles + size])
                batched.append(cost.example_gradients / full)
            single = statistics.mean(ratios)
            print(f"{shards:>3} {slices:>2} {model.stage_recipe.epochs:>12} {accuracy:>8.1f} {train_s:>8.1f} "
                  f"{single:>18.3f} {statistics.median(walls):>11.3f} {1 / single:>7.1f}x "
                  + " ".join(f"{b:>15.3f}" for b in batched))
    # the closed-form head: deletion has no gradients at all; the price is in accuracy (random features)
    spec = model_spec(recipe, train)
    head = ClosedFormModel.fit(Population.initialize(spec, [args.seed]), train)
    began = time.perf_counter()
    refit = ClosedFormModel.fit(head.backbone, train, ids=order[1:])
    refit_s = time.perf_counter() - began
    began = time.perf_counter()
    smaller = head.forget(order[:1])
    delete_s = time.perf_counter() - began
    print(f"closed-form head on random {recipe.model} features: test acc {head.accuracy(test):.1f}, delete 1 ID "
          f"{delete_s * 1000:.1f} ms ({smaller.head.update}) vs refit {refit_s * 1000:.1f} ms; no gradients; "
          f"max |w - w_refit| {float((smaller.head.weights - refit.head.weights).abs().max()):.1e}")


if __name__ == "__main__":
    main()
