"""Every registered method on its scenarios: the headline statistic beside the oracle's, cost, population speed-up.

Scenarios are ``dataset/rule`` (a plain ``rule`` means MNIST-1D): by default random 10%,
class 3 and sub-class 3 on MNIST-1D, and random 10% on ``diabetes`` (regression). A
method runs on a scenario only if it claims it: the rule's kind is in its
``forget_sets`` and the dataset's task is in its ``tasks``; the others are listed once
per scenario ("not claimed: ...").

For each method, prints forget/retain/test accuracy (mean over members; on regression
the mean squared error, the task's loss) beside the oracle's, its cost ratio to
retraining (example gradients), and the wall time per member when unlearning a
population of K at once vs a single model (median of 3 single-model runs).

    python benchmarks/methods.py                  # K = 32, all four scenarios
    python benchmarks/methods.py --members 8 --scenarios random:0.1 diabetes/random:0.1
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch

from expunge.bench.machine import cpu_model
from expunge.bench.workflows import accuracy_beside_oracle, headline_statistic
from expunge.methods.registry import available_methods, get_method, unlearn_population
from expunge.training.scenario import Scenario

DEFAULT_SCENARIOS = ["random:0.1", "class:3", "subclass:3", "diabetes/random:0.1"]
# How the mean of a task's loss reads in words, where the statistic is not accuracy.
LOSS_NAMES = {"regression": "mean squared error"}


def parse_scenario(item: str) -> tuple[str, str]:
    """``dataset/rule`` -> (dataset, rule); a plain ``rule`` (no ``/`` before its first ``:``) means MNIST-1D."""
    head, slash, rule = item.partition("/")
    if slash and ":" not in head:
        return head.strip(), rule.strip()
    return "mnist1d", item


# Scored rules pick individual examples across classes: the methods made for random forget sets claim them.
EXAMPLE_LEVEL_KINDS = ("memorized", "entangled", "datamodel_pc")


def rule_kind(rule: str) -> str:
    kind = rule.partition(":")[0].strip().lower()
    return "random" if kind in EXAMPLE_LEVEL_KINDS else kind


def claims(method: str, kind: str, task: str) -> bool:
    cls = get_method(method)
    return kind in cls.forget_sets and task in cls.tasks


def headline(scenario: Scenario, population) -> tuple[float, float, float]:
    """Forget / retain / test headline statistic (accuracy %, or mean loss), mean over members."""
    table = accuracy_beside_oracle(scenario, {"population": population})["population"]
    return tuple(float(table[split].mean()) for split in ("forget", "retain", "test"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--scenarios", nargs="+", default=DEFAULT_SCENARIOS,
                        help="dataset/rule items (a plain rule means mnist1d)")
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods or list(available_methods())
    print(f"expunge methods benchmark  {datetime.date.today()}  CPU: {cpu_model()}  "
          f"threads: {torch.get_num_threads()}  K = {args.members}")
    for item in args.scenarios:
        dataset, rule = parse_scenario(item)
        scenario = Scenario.build(dataset, rule)
        task, kind = scenario.split.task, rule_kind(rule)
        claimed = [name for name in methods if claims(name, kind, task)]
        skipped = [name for name in methods if name not in claimed]
        original, _, _ = scenario.original(args.members)
        oracle, retrain_cost, _ = scenario.oracle(args.members)
        fa, ra, ta = headline(scenario, oracle)
        retraining = f"retraining = {retrain_cost.example_gradients:,.0f} example gradients per member"
        if headline_statistic(task) == "accuracy %":
            labels, digits = ("FA", "RA", "TA"), 1
            print(f"\n{scenario.name}: {len(scenario.forget)} forget examples; oracle FA {fa:.1f}  RA {ra:.1f}  "
                  f"TA {ta:.1f}; {retraining}")
        else:
            loss = LOSS_NAMES.get(task, f"mean {task} loss")
            labels, digits = ("F-MSE", "R-MSE", "T-MSE") if task == "regression" else ("F-loss", "R-loss", "T-loss"), 3
            print(f"\n{scenario.name}: {len(scenario.forget)} forget examples; figures are {loss} (the {task} "
                  f"task's loss, mean over members; lower is better)\n  oracle {labels[0]} {fa:.3f}  "
                  f"{labels[1]} {ra:.3f}  {labels[2]} {ta:.3f}; {retraining}")
        if skipped:
            print(f"not claimed: {', '.join(skipped)}  (forget_sets lack {kind!r} or tasks lack {task!r})")
        if not claimed:
            continue
        header = (f"{'method':<17}{labels[0]:>7}{labels[1]:>7}{labels[2]:>7}{'grad ratio':>12}{'time ratio':>12}"
                  f"{'s/member K=' + str(args.members):>16}{'s/member K=1':>14}{'speedup':>9}")
        print(header)
        rows = []
        for name in claimed:
            start = time.perf_counter()
            unlearned, cost = unlearn_population(original, scenario.split.train, scenario.forget_mask,
                                                 scenario.retain_mask, name, scenario.recipe)
            per_member = (time.perf_counter() - start) / args.members
            singles = []
            for i in range(3):
                start = time.perf_counter()
                unlearn_population(original.select([i % args.members]), scenario.split.train, scenario.forget_mask,
                                   scenario.retain_mask, name, scenario.recipe)
                singles.append(time.perf_counter() - start)
            single = statistics.median(singles)
            rows.append((name, headline(scenario, unlearned), cost, per_member, single))
        # Wall-time ratios against retraining timed in this same run: the `retrain` method when
        # benchmarked, else one epoch of retraining K members (never a cached oracle's old timing).
        retrain_time = next((r[3] for r in rows if r[0] == "retrain"), None)
        if retrain_time is None:
            from expunge.bench.executor import LocalExecutor

            retrain_time = LocalExecutor().time_retraining(scenario, args.members).wall_time_s
        for name, (fa, ra, ta), cost, per_member, single in rows:
            gradient_ratio = cost.ratios(retrain_cost)["example_gradients"]
            speedup = single / per_member if per_member > 0 else float("nan")
            if digits == 1:  # accuracy: the existing format
                figures = f"{fa:>7.1f}{ra:>7.1f}{ta:>7.1f}"
            else:  # a loss has no upper bound: a blown-up one must not run into its neighbours
                figures = "".join(f" {v:>6.3f}" if abs(v) < 100 else f" {v:>6.0f}" if abs(v) < 1e5 else f" {v:>6.0e}"
                                  for v in (fa, ra, ta))
            print(f"{name:<17}{figures}{gradient_ratio:>12.3f}"
                  f"{per_member / retrain_time:>12.3f}{per_member:>16.4f}{single:>14.4f}{speedup:>8.1f}x"
                  + ("  [diverged members: %s]" % cost.diverged if cost.diverged else ""))


if __name__ == "__main__":
    main()
