"""Cost of the audit metrics on synthetic populations (CPU).

Builds phi / margin arrays for N models and S forget examples (defaults: N = 64,
S = 400, as a small audit), times each metric as the median of several repeats with
``time.perf_counter`` and prints milliseconds per forget example (per model for
MIA-Efficacy, whose cost is dominated by fitting one SVC per model), plus the speedup
of the fast competition eps over the reference implementation, which is timed on a
subset and extrapolated per example.

Run: ``python benchmarks/metrics.py [--models 64] [--examples 400] [--repeats 5]``
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import numpy as np
import torch

from expunge.audit.competition import epsilons, epsilons_reference, forgetting_quality
from expunge.audit.klom import klom
from expunge.audit.lira import ulira_scores
from expunge.audit.mia import mia_efficacy
from expunge.audit.representation import knn_probe_accuracy, linear_cka
from expunge.bench.machine import cpu_model


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: first-call costs (imports, thread pools) are not the metric's
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=64, help="N, models per population")
    parser.add_argument("--examples", type=int, default=400, help="S, forget examples")
    parser.add_argument("--reference-examples", type=int, default=20, help="subset for the slow reference eps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n_models, n_examples, repeats = args.models, args.examples, args.repeats
    rng = np.random.default_rng(args.seed)

    # Per-example phi distributions: oracle N(mu, sigma); the unlearned population is
    # shifted and rescaled by example-specific amounts (some examples barely differ).
    mu = rng.normal(2.0, 2.0, n_examples)
    sigma = rng.uniform(0.3, 2.0, n_examples)
    phi_oracle = rng.normal(mu, sigma, (n_models, n_examples))
    phi_unlearned = rng.normal(mu + rng.exponential(0.5, n_examples), sigma * rng.uniform(0.5, 1.5, n_examples),
                               (n_models, n_examples))
    subset = slice(0, args.reference_examples)

    rows = []

    def record(name: str, seconds: float, per: int, unit: str = "forget example") -> float:
        ms = 1e3 * seconds / per
        rows.append((name, ms, unit))
        return ms

    fast_ms = record("competition eps, fast", median_seconds(lambda: epsilons(phi_oracle, phi_unlearned), repeats),
                     n_examples)
    reference_seconds = median_seconds(
        lambda: epsilons_reference(phi_oracle[:, subset], phi_unlearned[:, subset]), max(1, repeats // 2)
    )
    reference_ms = record(f"competition eps, reference ({args.reference_examples} ex.)", reference_seconds,
                          args.reference_examples)
    record("KLoM (20 bins)", median_seconds(lambda: klom(phi_unlearned, phi_oracle), repeats), n_examples)

    # U-LiRA: N shadow models, each example "in" for a random half of them.
    in_mask = rng.random((n_models, n_examples)) < 0.5
    in_mask[0], in_mask[1], in_mask[2], in_mask[3] = True, True, False, False  # >= 2 in and out everywhere
    phi_shadow = np.where(in_mask, phi_unlearned, phi_oracle)
    record("U-LiRA scores", median_seconds(lambda: ulira_scores(phi_unlearned[0], phi_shadow, in_mask, ~in_mask),
                                           repeats), n_examples)

    # MIA-Efficacy of one model: 5,000 retain, 1,000 test, S forget confidences.
    conf_retain, conf_test = rng.beta(20, 1, 5000), rng.beta(5, 2, 1000)
    conf_forget = rng.beta(8, 2, n_examples)
    record("MIA-Efficacy (1,000 test, per model)",
           median_seconds(lambda: mia_efficacy(conf_retain, conf_test, conf_forget), max(1, repeats // 2)), 1,
           unit="model")

    # Representations: 512-d penultimate features of S forget examples; k-NN probe
    # with 5,000 labelled training examples.
    features_a = rng.normal(size=(n_examples, 512))
    features_b = features_a @ np.linalg.qr(rng.normal(size=(512, 512)))[0] + 0.1 * rng.normal(size=(n_examples, 512))
    record("linear CKA (512-d)", median_seconds(lambda: linear_cka(features_a, features_b), repeats), n_examples)
    train_labels = rng.integers(0, 10, 5000)
    centres = rng.normal(size=(10, 512))
    train = centres[train_labels] + rng.normal(size=(5000, 512))
    query_labels = rng.integers(0, 10, n_examples)
    query = centres[query_labels] + rng.normal(size=(n_examples, 512))
    record("k-NN probe (k=5, 5,000 train, 512-d)",
           median_seconds(lambda: knn_probe_accuracy(train, train_labels, query, query_labels), repeats), n_examples)

    agree = np.array_equal(epsilons(phi_oracle[:, subset], phi_unlearned[:, subset]),
                           epsilons_reference(phi_oracle[:, subset], phi_unlearned[:, subset]))
    eps = epsilons(phi_oracle, phi_unlearned)
    floor = epsilons(phi_oracle, rng.normal(mu, sigma, (n_models, n_examples)))

    print(f"expunge audit metric benchmark  {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"CPU: {cpu_model()}  ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})")
    print(f"numpy {np.__version__}, torch {torch.__version__}, python {platform.python_version()}")
    print(f"N = {n_models} models per population, S = {n_examples} forget examples, median of {repeats} repeats")
    print()
    width = max(len(name) for name, _, _ in rows)
    print(f"{'metric':<{width}}  {'ms':>10}  per")
    for name, ms, unit in rows:
        print(f"{name:<{width}}  {ms:>10.3f}  {unit}")
    print()
    print(f"fast vs reference competition eps: {reference_ms / fast_ms:.0f}x faster; "
          f"identical eps on the {args.reference_examples}-example subset: {agree}")
    quality = forgetting_quality(eps, n_models)
    floor_quality = forgetting_quality(floor, n_models)
    print(f"synthetic F = {quality.F:.3f} (ceiling {quality.ceiling:g}); "
          f"noise floor (independent oracle draw) F = {floor_quality.F:.3f}")


if __name__ == "__main__":
    main()
