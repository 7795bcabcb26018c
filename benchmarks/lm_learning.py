"""Does gpt_tiny learn its training answers? And what does a population of K cost against one model?

Trains ``gpt_tiny`` with the ``fictitious_authors`` default recipe on a small corpus,
once as a single model (K = 1) and once as a population of K members, and prints, per
population and per set (training authors; held out: unseen authors and world facts):

- exact match: every answer token is the arg-max under teacher forcing (the task's
  ``correct``), mean over members, in %;
- ROUGE-L recall of the greedy answer (each member generates from the question alone)
  against the true answer (``rouge-score``, stemming off), mean over members;
- the answer's mean token loss.

Then the training time of K members against one (wall time, same machine, same run).

    python benchmarks/lm_learning.py                      # 20 authors x 20 facts, the recipe's 20 epochs, K = 8
    python benchmarks/lm_learning.py --authors 200 --members 4
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from expunge.data import load_dataset
from expunge.data.authors import authors_corpus
from expunge.training.engine import population_scores, train_population
from expunge.training.generate import greedy_answers
from expunge.training.recipe import default_recipe


def rouge_l_recall(references: list[str], predictions: list[str]) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return float(np.mean([scorer.score(r, p)["rougeL"].recall for r, p in zip(references, predictions)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", type=int, default=20)
    parser.add_argument("--facts", type=int, default=20)
    parser.add_argument("--unseen", type=int, default=5)
    parser.add_argument("--world", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    split = load_dataset("fictitious_authors", num_authors=args.authors, facts_per_author=args.facts,
                         unseen_authors=args.unseen, world_facts=args.world)
    corpus = authors_corpus(split)
    recipe = default_recipe("fictitious_authors")
    if args.epochs is not None:
        recipe = recipe.with_(epochs=args.epochs)
    groups = split.test.groups
    sets = {"train (seen authors)": split.train,
            "unseen authors": split.test.subset(torch.nonzero(groups >= 0).flatten()),
            "world facts": split.test.subset(torch.nonzero(groups < 0).flatten())}
    print(f"fictitious_authors: {len(split.train)} training facts ({args.authors} authors), vocabulary "
          f"{split.info['vocab_size']}, sequence length {split.info['sequence_length']}; recipe {recipe.model} "
          f"{recipe.optimizer} lr {recipe.lr} epochs {recipe.epochs} batch {recipe.batch_size}; "
          f"{torch.get_num_threads()} thread(s)")
    times = {}
    for members in (1, args.members):
        start = time.perf_counter()
        population, _cost = train_population(recipe, split.train, members=members)
        times[members] = time.perf_counter() - start
        print(f"\nK = {members}: trained in {times[members]:.1f} s")
        print(f"  {'set':<22} {'exact match %':>14} {'ROUGE-L recall':>15} {'answer loss':>12}")
        for name, data in sets.items():
            if len(data) == 0:
                continue
            scores = population_scores(population, data)
            answers = greedy_answers(population, data, corpus.tokenizer.eos_id)
            references = [corpus.fact(i).answer for i in data.ids.tolist()]
            rouge = np.mean([rouge_l_recall(references, [corpus.tokenizer.decode(a) for a in member])
                             for member in answers])
            print(f"  {name:<22} {100 * scores['correct'].mean():>14.1f} {rouge:>15.3f} "
                  f"{scores['loss'].mean():>12.3f}")
    k = args.members
    print(f"\ntraining time: K = {k} {times[k]:.1f} s, K = 1 {times[1]:.1f} s: {times[k] / times[1]:.2f}x one model "
          f"for {k} models ({times[1] * k / times[k]:.2f}x faster per model than one at a time)")


if __name__ == "__main__":
    main()
