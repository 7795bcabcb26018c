"""Bad teacher: the forget set is distilled from a random network of the same architecture, the rest from the original."""
import torch
from torch import nn

from expunge import Recipe, train_population, unlearn_population
from expunge.data import class_forget
from expunge.training.losses import kl_to
from expunge.training.population import Population
from expunge.training.seeds import derive_seed

RECIPE = Recipe(model="mlp", model_kwargs={"hidden": [32]}, epochs=8, batch_size=64)


def divergence(teacher, student, x):
    return kl_to(student.predict(x), teacher.predict(x)).mean(1)


def test_forget_outputs_move_to_the_incompetent_teacher_and_retain_outputs_stay(gaussians):
    train = gaussians.train
    # A small training set gives few steps per epoch: a larger rate than the default.
    # A user module (no named architecture): the incompetent teacher re-initialises it per member.
    module = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4))
    original, _ = train_population(RECIPE, train, seeds=[0, 1], model=module)
    assert original.spec is None
    forget = class_forget(train, 3).forget_mask
    unlearned, cost = unlearn_population(original, train, forget, ~forget, "bad_teacher", RECIPE, seed=2, epochs=3,
                                         lr=0.005)
    seeds = [derive_seed(2, s, "bad_teacher_init") for s in original.seeds]
    incompetent = Population.initialize(original.member(0), seeds)
    forget_x, retain_x = train.x[forget], train.x[~forget]
    before = divergence(incompetent, original, forget_x)
    after = divergence(incompetent, unlearned, forget_x)
    assert bool((after < 0.4 * before).all()), "the forget set should now look like the random network's"
    moved_forget, moved_retain = divergence(original, unlearned, forget_x), divergence(original, unlearned, retain_x)
    assert bool((moved_retain < 0.5 * moved_forget).all()), "retain outputs should stay nearer the original"
    # Each member has its own incompetent teacher: the two members' teachers differ.
    assert not torch.allclose(incompetent.predict(forget_x)[0], incompetent.predict(forget_x)[1])
    # Each epoch: the forget set plus 30% of the retain set.
    per_epoch = int(forget.sum()) + round(0.3 * int((~forget).sum()))
    assert cost.example_gradients == 3 * per_epoch
    assert cost.forward_examples >= 2 * cost.example_gradients  # both teachers see every example
