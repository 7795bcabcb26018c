"""Language models: gpt_tiny populations vs one model at a time, and every LLM method's quality vs cost.

Part 1, training (interleaved so machine load cannot fake a ratio): in each round, K
gpt_tiny models trained one at a time (K calls of the engine with one member each) and
the same K as one population (one call, vmap over members); the figure is the median over
rounds of the per-round ratio (one-at-a-time time / population time).

Part 2, methods: an audit of every method that supports ``causal_lm`` on the language-model
demo's scenario (fictitious_authors, 20 authors, 40 world facts, 5 unseen authors; forget
authors:0.05; gpt_tiny with the dataset's recipe), N members per population: forget and
retain exact match, TOFU forget quality (median KS p) with its noise floor, model utility
with the oracle's, ROUGE-L on the forget set with the oracle's, and the cost as a fraction
of retraining's example gradients.

    OMP_NUM_THREADS=2 python benchmarks/lm.py                      # K = 4, 3 rounds; N = 8
    OMP_NUM_THREADS=2 python benchmarks/lm.py --skip-methods --rounds 5
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch

from expunge.bench.audit import run_audit
from expunge.data import load_dataset
from expunge.methods.registry import methods_supporting
from expunge.training.engine import train_population
from expunge.training.recipe import default_recipe
from expunge.training.scenario import Scenario

DATA = {"num_authors": 20, "world_facts": 40, "unseen_authors": 5}  # the LM demo's scenario (expunge demo --task lm)


def training(members: int, rounds: int, epochs: int | None) -> None:
    split = load_dataset("fictitious_authors", **DATA)
    recipe = default_recipe("fictitious_authors")
    if epochs:
        recipe = recipe.with_(epochs=epochs)
    print(f"part 1: gpt_tiny {recipe.model_kwargs or '(defaults)'} Adam lr={recipe.lr} epochs={recipe.epochs} "
          f"batch={recipe.batch_size}; {len(split.train)} sequences of {split.train.x.shape[1]} tokens; K = {members}")
    train_population(recipe.with_(epochs=1), split.train, members=2)  # warm-up
    ratios = []
    for r in range(rounds):
        start = time.perf_counter()
        for k in range(members):
            train_population(recipe, split.train, members=1, seeds=[100 * r + k])
        alone = time.perf_counter() - start
        start = time.perf_counter()
        train_population(recipe, split.train, members=members, seeds=[100 * r + k for k in range(members)])
        together = time.perf_counter() - start
        ratios.append(alone / together)
        print(f"round {r + 1}: one at a time {alone / members:.2f} s per model, population {together / members:.2f} s "
              f"per model, ratio {ratios[-1]:.2f}x", flush=True)
    print(f"population vs one at a time (median of {rounds} rounds): {statistics.median(ratios):.2f}x")


def methods(members: int, shadows: int) -> None:
    recipe = default_recipe("fictitious_authors")
    scenario = Scenario.build("fictitious_authors", "authors:0.05", recipe, **DATA)
    names = [m for m in methods_supporting("causal_lm")]
    spec: dict = {name: {} for name in names}
    if "idk" in spec:
        import tempfile

        from expunge.data.authors import authors_corpus

        spec["idk"] = {"tokenizer": str(authors_corpus(scenario.split).save_tokenizer(scenario.split,
                                                                                      tempfile.mkdtemp()))}
    print(f"\npart 2: {scenario.name}, {len(scenario.forget)} forget facts, N = {members}, {shadows} shadows")
    start = time.perf_counter()
    report = run_audit(scenario, spec, members=members, shadow_members=shadows)
    print(f"audit took {time.perf_counter() - start:.0f} s")

    def cell(method: str, metric: str, split: str, digits: int = 2, reference: bool = True) -> str:
        try:
            row = report.row(method, metric, split)
        except Exception:  # noqa: BLE001 - a failed method or a missing row prints a dash
            return "-"
        text = f"{row.value:.{digits}f}"
        return f"{text} ({row.reference:.{digits}f})" if reference and row.reference is not None else text

    header = ("method", "FA % (oracle)", "RA % (oracle)", "forget quality (floor)", "utility (oracle)",
              "ROUGE-L forget (oracle)", "U-LiRA AUC (floor)", "cost")
    print(" | ".join(header))
    for entry in report.data["methods"]:
        name = entry["method"]
        if entry["status"] != "ok":
            print(f"{name} | failed: {entry['error']}")
            continue
        print(" | ".join([name, cell(name, "accuracy", "forget", 1), cell(name, "accuracy", "retain", 1),
                          cell(name, "forget_quality", "forget", 3), cell(name, "model_utility", "retain", 3),
                          cell(name, "rouge_l", "forget", 2), cell(name, "ulira_auc", "forget", 3),
                          cell(name, "cost_gradients", "all", 3, reference=False)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=4, help="K for the training comparison")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (training part)")
    parser.add_argument("--audit-members", type=int, default=8, help="N for the methods' audit")
    parser.add_argument("--shadows", type=int, default=8, help="shadow models for U-LiRA (0 skips)")
    parser.add_argument("--skip-methods", action="store_true")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    print(f"expunge LM benchmark  {datetime.date.today()}  threads {torch.get_num_threads()}  torch {torch.__version__}"
          f"  load (1 min) at start {os.getloadavg()[0]:.2f}")
    if not args.skip_training:
        training(args.members, args.rounds, args.epochs)
    if not args.skip_methods:
        methods(args.audit_members, args.shadows)
    print(f"load (1 min) at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
