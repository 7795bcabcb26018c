"""SCRUB: the max-steps on the forget set do the forgetting; the min-steps keep the retain set."""
import torch

from expunge import Recipe, train_population, unlearn_population
from expunge.data import class_forget
from expunge.training.engine import accuracy
from expunge.training.losses import kl_to

RECIPE = Recipe(model="mlp", model_kwargs={"hidden": [32]}, epochs=8, batch_size=64)
# A 600-example training set gives few steps per epoch: a larger rate and small forget batches.
SMALL = dict(lr=0.002, forget_batch_size=8)


def forget_divergence(original, student, train, forget):
    x = train.x[forget]
    return kl_to(student.predict(x), original.predict(x), temperature=4.0).mean(1)


def test_max_steps_push_the_forget_set_away_from_the_teacher(gaussians):
    train = gaussians.train
    original, _ = train_population(RECIPE, train, seeds=[0, 1])
    forget = class_forget(train, 2).forget_mask
    positions, retain = torch.nonzero(forget).flatten(), torch.nonzero(~forget).flatten()
    # max_steps=0: the same min-steps (distillation and fine-tuning on the retain set) alone.
    min_only, min_cost = unlearn_population(original, train, forget, ~forget, "scrub", RECIPE, seed=0,
                                            max_steps=0, **SMALL)
    scrubbed, cost = unlearn_population(original, train, forget, ~forget, "scrub", RECIPE, seed=0, **SMALL)
    assert bool((forget_divergence(original, scrubbed, train, forget)
                 > 5 * forget_divergence(original, min_only, train, forget)).all())
    assert bool((accuracy(scrubbed, train, positions) < 5).all())
    assert bool((accuracy(min_only, train, positions) > 5).any()), "the min-steps alone should not forget it all"
    assert bool((accuracy(scrubbed, train, retain) > accuracy(original, train, retain) - 5).all())
    # Gradients: one max pass (epoch 1; epoch 0's is skipped) plus one retain pass per epoch.
    assert min_cost.example_gradients == 3 * int((~forget).sum())
    assert cost.example_gradients == int(forget.sum()) + 3 * int((~forget).sum())


def test_the_first_max_pass_is_skipped_because_student_equals_teacher(gaussians):
    # At epoch 0 the student is the teacher: KL's gradient is exactly zero, so that pass is
    # skipped (in floating point Adam would amplify rounding noise into arbitrary steps).
    train = gaussians.train
    original, _ = train_population(RECIPE, train, seeds=[0])
    forget = class_forget(train, 0).forget_mask
    none, _ = unlearn_population(original, train, forget, ~forget, "scrub", RECIPE, seed=0, max_steps=0, epochs=2)
    first, _ = unlearn_population(original, train, forget, ~forget, "scrub", RECIPE, seed=0, max_steps=1, epochs=2)
    for name in none.params:
        assert torch.equal(none.params[name], first.params[name]), name
