"""Random labels: forget examples get a wrong class, redrawn per epoch from each member's own generator."""
import torch

from expunge import Recipe, train_population, unlearn_population
from expunge.data import class_forget, random_forget
from expunge.methods.random_label import random_wrong_labels
from expunge.training.engine import accuracy

RECIPE = Recipe(model="mlp", model_kwargs={"hidden": [32]}, epochs=8, batch_size=64)


def test_forget_examples_get_wrong_labels_and_the_rest_keep_theirs(gaussians):
    labels = gaussians.train.y
    forget = torch.stack([random_forget(gaussians.train, fraction=0.2, seed=s).forget_mask for s in range(3)])
    generators = [torch.Generator().manual_seed(s) for s in (7, 8, 9)]
    table = random_wrong_labels(labels, forget, 4, generators)
    assert bool((table[forget] != labels.expand(3, -1)[forget]).all()), "a forget label must be wrong"
    assert torch.equal(table[~forget], labels.expand(3, -1)[~forget])
    assert set(table[forget].tolist()) == {0, 1, 2, 3}, "every wrong class can be drawn"
    # Redrawn every epoch: the next draw differs; member 2 alone draws what it drew beside the others.
    again = random_wrong_labels(labels, forget, 4, generators)
    assert not torch.equal(again[forget], table[forget])
    alone = random_wrong_labels(labels, forget[2:], 4, [torch.Generator().manual_seed(9)])
    assert torch.equal(alone[0], table[2])


def test_a_forgotten_class_is_unlearned_while_the_retain_set_is_kept(gaussians):
    train = gaussians.train
    original, _ = train_population(RECIPE, train, seeds=[0, 1])
    forget = class_forget(train, 1).forget_mask
    unlearned, _ = unlearn_population(original, train, forget, ~forget, "random_label", RECIPE, seed=0)
    forget_positions, retain_positions = torch.nonzero(forget).flatten(), torch.nonzero(~forget).flatten()
    assert bool((accuracy(unlearned, train, forget_positions) < 5).all())
    assert bool((accuracy(unlearned, train, retain_positions) > accuracy(original, train, retain_positions) - 2).all())
