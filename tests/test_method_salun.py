"""SalUn: only the weights salient to the forget set move, and saliency is thresholded per member."""
import torch

from expunge import Recipe, train_population, unlearn_population
from expunge.data import class_forget
from expunge.methods.base import UnlearningTask
from expunge.methods.salun import forget_gradients, saliency_masks
from expunge.training.engine import accuracy

RECIPE = Recipe(model="mlp", model_kwargs={"hidden": [32]}, epochs=8, batch_size=64)


def test_only_salient_weights_move_and_each_member_keeps_its_own_top_fraction(gaussians):
    train = gaussians.train
    original, _ = train_population(RECIPE, train, seeds=[0, 1, 2])
    # Members forget different classes, so their saliency maps (and thresholds) differ.
    forget = torch.stack([class_forget(train, c).forget_mask for c in (0, 1, 2)])
    task = UnlearningTask(original, train, forget, ~forget, RECIPE)
    masks = saliency_masks(task, forget_gradients(task, batch_size=64), ratio=0.2)
    kept = sum(m.flatten(1).sum(1) for m in masks.values())
    total = original.num_parameters()
    assert torch.allclose(kept / total, torch.full((3,), 0.2), atol=2 / total), "top 20% of each member's weights"
    unlearned, cost = unlearn_population(original, train, forget, ~forget, "salun", RECIPE, seed=0,
                                         saliency_ratio=0.2, epochs=2)
    for name, mask in masks.items():
        moved = unlearned.params[name] != original.params[name]
        assert not bool((moved & (mask == 0)).any()), f"{name}: a weight outside the saliency mask moved"
    moved_fraction = sum((unlearned.params[k] != original.params[k]).flatten(1).sum(1) for k in masks) / total
    assert bool((moved_fraction > 0.1).all())
    # The saliency pass is counted: |S| gradients, then 2 epochs of |S| + |retain|.
    assert cost.example_gradients == float(forget.sum(1).float().mean()) + 2 * len(train)


def test_a_forgotten_class_is_unlearned_while_the_rest_is_kept(gaussians):
    train, test = gaussians.train, gaussians.test
    original, _ = train_population(RECIPE, train, seeds=[0, 1])
    forget = class_forget(train, 1).forget_mask
    unlearned, _ = unlearn_population(original, train, forget, ~forget, "salun", RECIPE, seed=0)
    assert bool((accuracy(unlearned, train, torch.nonzero(forget).flatten()) < 5).all())
    other = torch.nonzero(test.y != 1).flatten()
    assert bool((accuracy(unlearned, test, other) > accuracy(original, test, other) - 5).all())
