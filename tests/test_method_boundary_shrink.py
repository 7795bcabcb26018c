"""Boundary Shrink: each forget example is relabelled to its nearest wrong class under the original."""
import torch

from expunge import Recipe, train_population, unlearn_population
from expunge.data import class_forget
from expunge.methods.base import UnlearningTask
from expunge.methods.boundary_shrink import nearest_wrong_labels
from expunge.training.engine import accuracy

RECIPE = Recipe(model="mlp", model_kwargs={"hidden": [32]}, epochs=8, batch_size=64)


def test_neighbour_labels_are_wrong_and_tiny_steps_give_the_runner_up(gaussians):
    train = gaussians.train
    original, _ = train_population(RECIPE, train, seeds=[0, 1])
    forget = class_forget(train, 1).forget_mask.expand(2, -1)
    task = UnlearningTask(original, train, forget, ~forget, RECIPE, seed=0)
    labels = nearest_wrong_labels(task, eps=0.5, steps=1, batch_size=64)
    assert bool((labels[forget] != 1).all()), "a neighbour label is never the true class"
    assert torch.equal(labels[~forget], train.y.expand(2, -1)[~forget])
    assert task.meter.cost.example_gradients == forget[0].sum()  # one input gradient per forget example
    # With a vanishing step the attack moves nothing: the label is the original's runner-up class.
    tiny = nearest_wrong_labels(task, eps=1e-9, steps=1, batch_size=64)
    logits = original.predict(train.x[forget[0]])
    logits[..., 1] = float("-inf")
    assert torch.equal(tiny[:, forget[0]], logits.argmax(-1))


def test_forgets_a_class_without_the_retain_set(gaussians):
    train = gaussians.train
    original, _ = train_population(RECIPE, train, seeds=[0, 1])
    forget = class_forget(train, 1).forget_mask
    unlearned, _ = unlearn_population(original, train, forget, None, "boundary_shrink", RECIPE, seed=0, lr=0.01)
    retain_positions = torch.nonzero(~forget).flatten()
    assert bool((accuracy(unlearned, train, torch.nonzero(forget).flatten()) < 5).all())
    assert bool((accuracy(unlearned, train, retain_positions) > accuracy(original, train, retain_positions) - 10).all())
