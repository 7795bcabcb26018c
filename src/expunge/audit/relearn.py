"""Relearning attack: how fast forgotten knowledge comes back under a little fine-tuning.

A model that merely *hides* what it learned (its outputs on the forget set pushed
away, its weights still close to the original's) passes output-level tests, but a few
gradient steps on a handful of forget examples bring the rest back (Lynch et al. 2024,
"Eight methods to evaluate robust unlearning in LLMs"; Hu et al. 2024, "Jogging the
memory of unlearned LLMs through targeted relearning attacks"). An oracle also learns
from the examples it is fine-tuned on, so only recovery *beyond the oracle's under the
same attack* is evidence of hidden knowledge.

The attack, with its budget stated in every row's details:

1. a fixed subset of the forget set is drawn with a generator seeded by the audit seed:
   ``max(min_examples, ceil(fraction x n_forget))`` examples (default 10%, at least
   10), at most half the forget set; the other forget examples are *held out* and are
   where recovery is measured;
2. every member of the measured population is fine-tuned on the subset with Adam
   (learning rate: the recipe's, or 1e-3 where the audit has no recipe; batch 32; the
   task's loss) for ``steps`` steps (default 20); member k of every population draws
   the same minibatch order, so populations are compared under one attack;
3. after each checkpoint (default 0, 1, 2, 5, 10, 20 steps) it records forget accuracy
   (%) and mean phi (the task's loss where it has no phi) on the held-out examples.

Rows (relearning@excess-area-forget-subset): per checkpoint t, forget accuracy and mean
phi after t steps, mean ± std over members, with the oracle population's value under
the same attack beside it (accuracy judged by a band of 2 oracle std, never stricter
than 1 point). Headline, **excess recovery**: the area between the method's and the
oracle's forget-accuracy curves, ``(1/T) integral_0^T (acc_method(t) - acc_oracle(t)) dt``
(trapezoids over the checkpoints; percentage points, the mean gap over the budget),
per member against the oracle's mean curve, mean ± std over members, read against its
**noise floor**: the same area between the second oracle population and the oracle.
Also the same area for phi, and the **excess gain** ``(acc_m(T) - acc_m(0)) -
(acc_o(T) - acc_o(0))``, which ignores where the curves start (a method that drove
forget accuracy below the oracle's and jumps back shows here).

It trains, but little: 20 steps of 32 examples per member is 640 example gradients
(0.6% of retraining MNIST-1D's recipe per member), and on MNIST-1D at N = 8 the attack
takes about 0.24 s per population on one CPU thread, about 3% of an audit of three
methods (two oracles and each method's population are attacked; the oracle's curve is
computed once). So it runs in every audit by default; ``metrics=[...]`` without it
leaves it out.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from expunge.audit.metric import Closeness, Metric, Row, population_mean, register
from expunge.audit.results import Measurement, MetricResult
from expunge.errors import ExpungeError
from expunge.training.batches import MemberBatches
from expunge.training.optim import PopulationOptimizer
from expunge.training.seeds import derive_seed, generator

DEFINITION = "relearning@excess-area-forget-subset"
CHECKPOINTS = (0, 1, 2, 5, 10, 20)
DEFAULT_LR = 1e-3
ACCURACY_RULE = Closeness("band", 2.0, 1.0)  # as forget accuracy: 2 reference std, never stricter than 1 point
EXCESS_RULE = Closeness("band", 2.0, 1.0)


def excess_area(curves: np.ndarray, reference: np.ndarray, checkpoints: np.ndarray) -> np.ndarray:
    """Per-member mean gap ``(1/T) integral (curve - reference) dt`` by trapezoids over ``checkpoints``.

    ``curves`` ``[K, C]`` (one curve per member), ``reference`` ``[C]``, ``checkpoints``
    ``[C]`` increasing from 0 to T > 0. Returns ``[K]``, in the curves' unit.
    """
    gap = np.asarray(curves, dtype=float) - np.asarray(reference, dtype=float)[None, :]
    t = np.asarray(checkpoints, dtype=float)
    return ((gap[:, 1:] + gap[:, :-1]) / 2 * np.diff(t)[None, :]).sum(axis=1) / (t[-1] - t[0])


def relearning_rows(checkpoints: tuple[int, ...]) -> tuple[Row, ...]:
    """The rows for a set of checkpoints: the two headline areas, the gain, then the curves."""
    # Not a leaderboard column (headline 0): a stress test, shown with the other stress results, and the
    # terminal leaderboard stays readable at 160 columns.
    rows = [Row("relearn_excess", "forget", "relearning excess recovery", "pp", closeness=EXCESS_RULE, digits=1),
            Row("relearn_excess_gain", "forget", "relearning excess gain", "pp", closeness=EXCESS_RULE, digits=1),
            Row("relearn_excess_phi", "forget", "relearning excess phi")]
    rows += [Row(f"relearn_accuracy_{t}", "forget", f"forget accuracy after {t} relearning steps", "%",
                 closeness=ACCURACY_RULE, digits=1) for t in checkpoints]
    rows += [Row(f"relearn_phi_{t}", "forget", f"forget phi after {t} relearning steps") for t in checkpoints]
    return tuple(rows)


@register
class Relearning(Metric):
    """Relearning attack: excess recovery of forget accuracy over the oracle's, under the same fine-tuning.

    Options (``metric_options={"relearning": {...}}``): ``steps`` (budget, default 20),
    ``checkpoints`` (default those of 0, 1, 2, 5, 10, 20 within the budget, and the
    budget), ``lr`` (default the recipe's, else 1e-3), ``batch_size`` (32),
    ``fraction`` of the forget set to fine-tune on (0.1), ``min_examples`` (10).
    """

    name = "relearning"
    summary = "relearning attack: forget accuracy recovered by fine-tuning on a few forget examples, beyond the oracle's"
    description = ("Relearning attack: each member is fine-tuned with Adam (the recipe's learning rate, batch 32) for a "
                   "budget of steps on a seeded subset of the forget set (10%, at least 10 examples); forget accuracy "
                   "and mean phi on the other forget examples are recorded at checkpoints, beside the oracle "
                   "population's under the same attack. Excess recovery: the area between the method's and the "
                   "oracle's forget-accuracy curves divided by the budget (percentage points), per member against the "
                   "oracle's mean curve; noise floor: the same area for the second oracle population.")
    definition = DEFINITION
    reference_kind = "noise_floor"
    needs = frozenset({"correct", "loss"})
    rows = relearning_rows(CHECKPOINTS)

    def __init__(self, steps: int = 20, checkpoints: tuple[int, ...] | list[int] | None = None,
                 lr: float | None = None, batch_size: int = 32, fraction: float = 0.1, min_examples: int = 10):
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ExpungeError(f"the relearning budget must be at least 1 fine-tuning step; got {steps!r}")
        steps = int(steps)
        if checkpoints is None:
            checkpoints = sorted({t for t in CHECKPOINTS if t <= steps} | {0, steps})
        checkpoints = tuple(int(t) for t in checkpoints)
        if (list(checkpoints) != sorted(set(checkpoints)) or checkpoints[0] != 0 or checkpoints[-1] != steps):
            raise ExpungeError(f"relearning checkpoints must increase strictly from 0 to the budget ({steps}); "
                               f"got {list(checkpoints)}")
        if lr is not None and not lr > 0:
            raise ExpungeError(f"the relearning learning rate must be positive; got {lr!r}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ExpungeError(f"the relearning batch size must be a positive integer; got {batch_size!r}")
        if not 0 <= fraction < 1 or int(min_examples) != min_examples or min_examples < 0:
            raise ExpungeError(f"the relearning subset needs 0 <= fraction < 1 and min_examples >= 0; got "
                               f"fraction={fraction!r}, min_examples={min_examples!r}")
        if fraction == 0 and min_examples == 0:
            raise ExpungeError("the relearning subset is empty (fraction=0 and min_examples=0): the attack needs "
                               "forget examples to fine-tune on")
        self.steps, self.checkpoints, self.lr = steps, checkpoints, lr
        self.batch_size, self.fraction, self.min_examples = int(batch_size), float(fraction), int(min_examples)
        if checkpoints != CHECKPOINTS:
            self.rows = relearning_rows(checkpoints)

    # --------------------------------------------------------------------- the attack
    def subset(self, n_forget: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices into the forget split: ``(fine-tuned on, held out)``, drawn with a generator seeded by ``seed``."""
        size = max(self.min_examples, math.ceil(self.fraction * n_forget))
        size = min(size, n_forget // 2)  # at least as many held out as fine-tuned on
        if size < 1:
            raise ExpungeError(f"the relearning subset is empty: a forget set of {n_forget} example(s) leaves none "
                               "to fine-tune on with as many held out")
        order = torch.randperm(n_forget, generator=generator(seed, "relearning-subset")).numpy()
        return np.sort(order[:size]), np.sort(order[size:])

    def learning_rate(self, context) -> float:
        if self.lr is not None:
            return float(self.lr)
        recipe = getattr(context, "recipe", None)
        return float(recipe.lr) if recipe is not None else DEFAULT_LR

    def _key(self, context) -> tuple:
        return ("relearning", self.steps, self.checkpoints, self.learning_rate(context), self.batch_size,
                self.fraction, self.min_examples, context.seed)

    def curves(self, evidence, context) -> dict[str, Any] | None:
        """Forget accuracy (%) and mean phi (or loss) per member at each checkpoint, ``[K, C]`` each, computed once
        per population; None for members that are not networks with weights (nothing to fine-tune)."""
        return evidence.cached(self._key(context), lambda: self._attack(evidence, context))

    def _attack(self, evidence, context) -> dict[str, Any] | None:
        population = evidence.population
        if not evidence.has_networks or not hasattr(population, "params"):
            return None
        data, task = context.data, context.task
        train = data.train
        forget = data.forget_positions
        tuned, held = self.subset(len(forget), context.seed)
        device = population.device
        statistic = "phi" if "phi" in task.statistics_provided else "loss"
        mask = torch.zeros(len(train), dtype=torch.bool)
        mask[forget[torch.as_tensor(tuned)]] = True
        held_positions = forget[torch.as_tensor(held)]
        held_inputs = tuple(t.to(device) for t in train.inputs_at(held_positions))
        held_targets = train.y[held_positions].to(device)
        train = train.to(device)
        members = len(population)
        lr = self.learning_rate(context)
        params = {k: v.detach().clone().requires_grad_(True) for k, v in population.params.items()}
        optimizer = PopulationOptimizer(params, "adam", lr)
        seeds = [derive_seed(context.seed, "relearning-order", k) % (2 ** 31) for k in range(members)]
        batches = MemberBatches(mask, self.batch_size, seeds, purpose="relearning")
        accuracy, fit = [], []

        def record() -> None:
            with torch.no_grad():
                stats = task.statistics(population.forward(held_inputs, params), held_targets)
            accuracy.append(100.0 * stats["correct"].mean(dim=1).cpu().numpy())
            fit.append(stats[statistic].mean(dim=1).cpu().numpy())

        record()
        done = 0
        while done < self.steps:
            for batch in batches.epoch(device):
                outputs = population.forward(train.inputs_at(batch.index), params, per_member_input=True)
                optimizer.step(batch.mean(task.loss(outputs, train.y[batch.index])), batch.active)
                done += 1
                if done in self.checkpoints:
                    record()
                if done == self.steps:
                    break
        return {"accuracy": np.stack(accuracy, axis=1), "fit": np.stack(fit, axis=1), "statistic": statistic,
                "lr": lr, "tuned": len(tuned), "held_out": len(held),
                "diverged": int(optimizer.diverged.sum())}

    # --------------------------------------------------------------------- the metric
    def measure(self, candidate, context) -> dict[str, Measurement]:
        mine = self.curves(candidate.evidence, context)
        oracle = self.curves(context.oracle, context)
        if mine is None or oracle is None:
            return {}  # members that are not networks (an ensemble, a head on features): nothing to fine-tune
        t = np.asarray(self.checkpoints)
        budget = {"steps": self.steps, "checkpoints": list(self.checkpoints), "optimizer": "adam", "lr": mine["lr"],
                  "batch_size": self.batch_size, "fine_tuned_examples": mine["tuned"],
                  "held_out_examples": mine["held_out"], "statistic": mine["statistic"],
                  "diverged_members": mine["diverged"]}
        acc, oracle_acc = mine["accuracy"], oracle["accuracy"]
        oracle_mean = oracle_acc.mean(axis=0)
        gain = (acc[:, -1] - acc[:, 0]) - (oracle_mean[-1] - oracle_mean[0])
        result = {
            "relearn_excess/forget": population_mean(excess_area(acc, oracle_mean, t), **budget),
            "relearn_excess_gain/forget": population_mean(gain, **budget),
            "relearn_excess_phi/forget": population_mean(excess_area(mine["fit"], oracle["fit"].mean(axis=0), t),
                                                         **budget),
        }
        for name, values, reference in (("accuracy", acc, oracle_acc), ("phi", mine["fit"], oracle["fit"])):
            for i, step in enumerate(self.checkpoints):
                beside = population_mean(reference[:, i])
                result[f"relearn_{name}_{step}/forget"] = population_mean(
                    values[:, i], **budget, _oracle=(beside.value, beside.spread))
        return result

    def result(self, row: Row, method: str, measurement: Measurement,
               reference: Measurement | None) -> MetricResult:
        """Curve rows are read against the oracle's curve under the same attack; the areas against the floor."""
        row_result = super().result(row, method, measurement, reference)
        oracle = measurement.details.get("_oracle")
        if oracle is None:
            return row_result
        return dataclasses.replace(row_result, reference_kind="oracle", reference=float(oracle[0]),
                                   reference_spread=oracle[1])
