"""LAF at its defaults: never reads a label (shuffled labels give the same model) and forgets a whole class and a
sub-class on MNIST-1D with retain accuracy within a few points, where the authors' rates leave the class as it was."""
import pytest
import torch

from expunge import unlearn_population
from expunge.data import class_forget, parse_forget_rule
from expunge.data.base import ArrayDataset
from expunge.training.engine import accuracy
from expunge.training.recipe import default_recipe

FORGET_CLASS = 3
# Retain accuracy may fall this many points (measured at the defaults on class 3: 5.4 and 2.7 for these two members,
# on sub-class 3: 3.6 and 2.0; the benchmark's 4-member means are 4.4 and 2.5).
RETAIN_TOLERANCE = 7.0
AUTHORS = {"lr_extractor": 5e-5, "lr_alignment": 1e-4, "temperature": 20.0, "batch_size": 32}


@pytest.fixture(scope="module")
def classwise(mnist1d):
    from expunge import train_population

    recipe = default_recipe("mnist1d")  # the recipe the defaults were measured on
    original, _ = train_population(recipe, mnist1d.train, seeds=[0, 1])
    return mnist1d.train, recipe, original


def test_label_free_and_defaults_forget_a_whole_class(classwise):
    train, recipe, original = classwise
    forget = class_forget(train, FORGET_CLASS).forget_mask
    forget_positions, retain_positions = torch.nonzero(forget).flatten(), torch.nonzero(~forget).flatten()
    unlearned, cost = unlearn_population(original, train, forget, ~forget, "label_agnostic", recipe, seed=0)
    shuffled = train.y[torch.randperm(len(train), generator=torch.Generator().manual_seed(1))]
    relabelled = ArrayDataset(train.x, shuffled, train.ids, train.task, train.num_classes)
    again, _ = unlearn_population(original, relabelled, forget, ~forget, "label_agnostic", recipe, seed=0)
    for name in unlearned.params:
        assert torch.equal(unlearned.params[name], again.params[name]), name
    before, after = accuracy(original, train, forget_positions), accuracy(unlearned, train, forget_positions)
    # the class falls below half its accuracy on average (measured 24.4 and 52.5 from 99.7 and 100), each member
    # well below its own
    assert float(after.mean()) < 0.5 * float(before.mean()) and bool((after < 0.6 * before).all()), (before, after)
    retain_before = accuracy(original, train, retain_positions)
    retain_after = accuracy(unlearned, train, retain_positions)
    assert bool((retain_after > retain_before - RETAIN_TOLERANCE).all()), (retain_before, retain_after)
    assert cost.example_gradients > 0
    # the authors' rates leave the class: the defaults are what forget
    authors, _ = unlearn_population(original, train, forget, ~forget, "label_agnostic", recipe, seed=0, **AUTHORS)
    assert bool((accuracy(authors, train, forget_positions) > 0.9 * before).all())


def test_defaults_forget_a_subclass(classwise):
    train, recipe, original = classwise
    forget = parse_forget_rule("subclass:3", train, seed=0).forget_mask  # the benchmark's sub-class 3 (oracle 67%)
    forget_positions, retain_positions = torch.nonzero(forget).flatten(), torch.nonzero(~forget).flatten()
    unlearned, _ = unlearn_population(original, train, forget, ~forget, "label_agnostic", recipe, seed=0)
    before, after = accuracy(original, train, forget_positions), accuracy(unlearned, train, forget_positions)
    assert bool((after < 0.85 * before).all()), (before, after)  # measured 56.5 and 76.5 from 100
    retain_before = accuracy(original, train, retain_positions)
    retain_after = accuracy(unlearned, train, retain_positions)
    assert bool((retain_after > retain_before - RETAIN_TOLERANCE).all()), (retain_before, retain_after)
