"""SCAR at its defaults: retain-free (runs without a retain set, ignores one if given) and forgets a whole class on
MNIST-1D with retain accuracy within a few points; a forget set that is not whole classes is said to be so."""
import pytest
import torch

from expunge import ExpungeError, Recipe, train_population, unlearn_population
from expunge.data import class_forget, random_forget
from expunge.training.engine import accuracy
from expunge.training.recipe import default_recipe

FORGET_CLASS = 3
# Retain accuracy may fall this many points (measured at the defaults: 4.9 and 6.1 for these two members; the
# benchmark's 4-member mean is 4.6).
RETAIN_TOLERANCE = 7.0


@pytest.fixture(scope="module")
def classwise(mnist1d):
    recipe = default_recipe("mnist1d")  # the recipe the defaults were measured on
    original, _ = train_population(recipe, mnist1d.train, seeds=[0, 1])
    return mnist1d.train, recipe, original


def test_defaults_forget_a_whole_class_without_reading_the_retain_set(classwise):
    train, recipe, original = classwise
    forget = class_forget(train, FORGET_CLASS).forget_mask
    forget_positions, retain_positions = torch.nonzero(forget).flatten(), torch.nonzero(~forget).flatten()
    alone, cost = unlearn_population(original, train, forget, None, "scar", recipe, seed=0)
    given, _ = unlearn_population(original, train, forget, ~forget, "scar", recipe, seed=0)
    for name in alone.params:
        assert torch.equal(alone.params[name], given.params[name]), name
    before, after = accuracy(original, train, forget_positions), accuracy(alone, train, forget_positions)
    assert bool((after < 0.5 * before).all()), (before, after)
    retain_before, retain_after = accuracy(original, train, retain_positions), accuracy(alone, train, retain_positions)
    assert bool((retain_after > retain_before - RETAIN_TOLERANCE).all()), (retain_before, retain_after)
    assert cost.forward_examples >= 2048  # the original on the surrogate pool
    # the paper's configuration (no whole-class removal, lr 5e-4) leaves the class: the defaults are what forget
    paper, _ = unlearn_population(original, train, forget, None, "scar", recipe, seed=0, whole_classes=False, lr=5e-4)
    assert bool((accuracy(paper, train, forget_positions) > 0.9 * before).all())


def test_a_forget_set_holding_every_class_is_not_taken_for_whole_classes(classwise):
    train, recipe, original = classwise
    forget = random_forget(train, fraction=0.05, seed=0).forget_mask
    unlearned, cost = unlearn_population(original, train, forget, None, "scar", recipe, seed=0, epochs=1)
    assert any("holds every class" in note and "members [0, 1]" in note for note in cost.notes), cost.notes
    plain, _ = unlearn_population(original, train, forget, None, "scar", recipe, seed=0, epochs=1, whole_classes=False)
    for name in unlearned.params:
        assert torch.equal(unlearned.params[name], plain.params[name]), name


def test_surrogate_kinds_and_bad_input(gaussians):
    train = gaussians.train
    recipe = Recipe(model="mlp", model_kwargs={"hidden": [32]}, epochs=8, batch_size=64)
    original, _ = train_population(recipe, train, seeds=[0])
    forget = class_forget(train, 0).forget_mask
    for kind in ("noise", "forget_shuffled"):
        unlearned, _ = unlearn_population(original, train, forget, None, "scar", recipe, epochs=1,
                                          surrogate_steps=1, surrogate=kind, surrogate_size=256)
        assert all(torch.isfinite(v).all() for v in unlearned.params.values())
    with pytest.raises(ExpungeError, match="surrogate='images' must be one of"):
        unlearn_population(original, train, forget, None, "scar", recipe, surrogate="images")
