"""Stress audits on MNIST-1D: methods on random, memorised and hard-for-a-method forget sets, with relearning.

For each forget rule (default ``random:0.1``, ``memorized:0.1``, ``hard:salun:0.1``) one
audit of the methods against the rule's own oracle populations (N members each, no
shadow models), with the metrics that tell the forget sets apart: forget accuracy against
the oracle's, KLoM on the forget set relative to its noise floor, and the relearning
attack's excess recovery (area between the method's and the oracle's recovery curves,
in points) beside its floor (second oracle vs oracle). The table has one row per method
and one column group per rule, so the same method can be read across forget sets. For a
``hard:<method>:`` rule it also prints the rule's own selection criterion (mean per-example
|margin gap| to the oracle) for that method and the original on every rule's forget set,
measured on the evaluation populations, which the selection never saw.

Every registered classification method runs by default. Left out, with a note: the
references (``original`` is the row every table starts with, ``retrain`` is the oracle),
``oracle_matching`` (it reads the oracle population at unlearning time), the exact
constructions (``sisa``, ``closed_form``: their own oracle, not the scenario's) and the
language-model methods (they do not support classification). Methods made only for
whole-class forget sets run too, outside their design, and are marked ``*``.

    OMP_NUM_THREADS=1 python benchmarks/stress.py --members 16   # the README's table

KLoM needs populations: on MNIST-1D at N = 4 every method's KLoM P95 sits at the saturation
value (1.00x its floor), at N = 8 barely below it; N = 16 separates the methods.
    OMP_NUM_THREADS=1 python benchmarks/stress.py --quick       # 3 methods, N = 8: a few minutes
    OMP_NUM_THREADS=1 python benchmarks/stress.py --members 4 --methods finetune salun --rules random:0.1 hard:salun:0.1
"""
from __future__ import annotations

import argparse
import datetime
import os
import time

import torch

from expunge.bench.audit import run_audit
from expunge.bench.exact import EXACT
from expunge.methods.registry import available_methods, get_method, methods_supporting
from expunge.report.grid import write_grid_report
from expunge.training.recipe import default_recipe
from expunge.training.scenario import Scenario

RULES = ("random:0.1", "memorized:0.1", "hard:salun:0.1")
METRICS = ["accuracy", "klom", "relearning", "cost_gradients"]
SKIP = {"original": "the first row of every table", "retrain": "the oracle itself",
        "oracle_matching": "reads the oracle population at unlearning time"}
QUICK_METHODS = ("finetune", "gradient_ascent", "salun")


def cells(report, method: str) -> list[str]:
    def value(metric: str, split: str, digits: int, relative: bool = False) -> str:
        try:
            row = report.row(method, metric, split)
        except Exception:  # noqa: BLE001 - a failed method or a missing row prints a dash
            return "-"
        if relative:
            return f"{row.value / row.reference:.2f}x" if row.reference else "-"
        reference = "" if row.reference is None else f" ({row.reference:.{digits}f})"
        return f"{row.value:.{digits}f}{reference}"

    return [value("accuracy", "forget", 1), value("klom_p95", "forget", 2, relative=True),
            value("relearn_excess", "forget", 1)]


def margin_gap(scenario: Scenario, method: str, members: int) -> tuple[float, float]:
    """The hard: rule's selection criterion on the scenario's own (evaluation) populations: the mean over the
    forget set of |mean margin after ``method`` - mean oracle margin|, and the same for the original."""
    import numpy as np

    from expunge.methods.registry import unlearn_population
    from expunge.training.engine import population_scores

    train, forget = scenario.split.train, scenario.forget_mask.numpy()
    original, _, _ = scenario.original(members)
    oracle, _, _ = scenario.oracle(members)
    unlearned, _ = unlearn_population(original, train, scenario.forget_mask, scenario.retain_mask, method,
                                      scenario.recipe, seed=0)

    def margins(population) -> np.ndarray:
        return np.asarray(population_scores(population, train)["margin"], dtype=np.float64).mean(0)

    target = margins(oracle)
    return (float(np.abs(margins(unlearned) - target)[forget].mean()),
            float(np.abs(margins(original) - target)[forget].mean()))


def frame(reports: dict, members: int):
    """The audits' result rows as a results frame (one scenario per forget rule), for the grid report."""
    import pandas as pd

    return pd.DataFrame([{"dataset": "mnist1d", "forget_rule": rule, "method": r.method, "hyperparameters": "{}",
                          "scenario_seed": 0, "members": members, "metric": r.metric, "split": r.split,
                          "value": r.value, "spread": r.spread, "reference": r.reference, "n_models": r.n_models,
                          "reference_kind": r.reference_kind, "label": r.label, "headline": r.headline,
                          "unit": r.unit, "definition": r.definition}
                         for rule, report in reports.items() for r in report.rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=None, help="N per population (default 8; --quick: 8)")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every classification method")
    parser.add_argument("--rules", nargs="+", default=list(RULES))
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_METHODS)}")
    parser.add_argument("--out", default="expunge-out/stress.html", help="the HTML report")
    args = parser.parse_args()
    members = args.members or 8
    if args.methods:
        methods = args.methods
    elif args.quick:
        methods = list(QUICK_METHODS)
    else:
        methods = [m for m in methods_supporting("classification") if m not in SKIP]
        skipped = [f"{name} ({why})" for name, why in SKIP.items()]
        skipped += [f"{name} (exact construction: its own oracle)" for name in EXACT.names()]
        others = sorted(set(available_methods()) - set(methods_supporting("classification")))
        skipped += [f"{', '.join(others)} (language models: no classification support)"] if others else []
        print("not run: " + "; ".join(skipped))
    print(f"expunge stress benchmark  {datetime.date.today()}  threads {torch.get_num_threads()}  "
          f"load (1 min) at start {os.getloadavg()[0]:.2f}; MNIST-1D, N = {members}, no shadows")
    reports, scenarios = {}, {}
    for rule in args.rules:
        start = time.perf_counter()
        scenario = scenarios[rule] = Scenario.build("mnist1d", rule, default_recipe("mnist1d"))
        reports[rule] = run_audit(scenario, ["original", *methods], members=members, shadow_members=0,
                                  metrics=METRICS)
        print(f"{rule}: {len(scenario.forget)} forget examples ({scenario.forget.rule}); audit "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    print("\nper rule: FA % (oracle) | KLoM forget / floor | relearning excess pp (floor: second oracle)")
    print("| method | " + " | ".join(f"{rule}: FA | KLoM | relearn" for rule in args.rules) + " |")
    print("|---" * (1 + 3 * len(args.rules)) + "|")
    for method in ["original", *methods]:
        mark = "" if method == "original" or "random" in get_method(method).forget_sets else "*"
        print(f"| {method}{mark} | " + " | ".join(" | ".join(cells(reports[rule], method)) for rule in args.rules)
              + " |")
    print("* made for whole-class forget sets only")
    for target in dict.fromkeys(rule.split(":")[1] for rule in args.rules if rule.startswith("hard:")):
        gaps = {rule: margin_gap(scenarios[rule], target, members) for rule in args.rules}
        print(f"hard:{target}: selection criterion on the evaluation populations, mean |margin gap| to the oracle "
              f"on the forget set, {target} (original): "
              + ", ".join(f"{rule} {mine:.2f} ({base:.2f})" for rule, (mine, base) in gaps.items()))
    path = write_grid_report(frame(reports, members), args.out, title="stress: MNIST-1D forget sets")
    print(f"report (leaderboard side by side, relearning curves with the oracle's): {path}")
    print(f"load (1 min) at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
