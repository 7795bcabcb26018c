"""l1-sparse: the decaying l1 penalty sparsifies, and "prune first" keeps pruned weights at zero."""
import pytest
import torch

from expunge import ExpungeError, Recipe, train_population, unlearn_population
from expunge.data import random_forget
from expunge.methods.pruning import prune_population, sparsity_of

RECIPE = Recipe(model="mlp", model_kwargs={"hidden": [32, 32]}, epochs=8, batch_size=64)


@pytest.fixture(scope="module")
def setting(gaussians):
    train = gaussians.train
    original, _ = train_population(RECIPE, train, seeds=[0, 1, 2])
    forget = random_forget(train, fraction=0.1, seed=0).forget_mask
    return train, original, forget


def test_pruning_reaches_the_target_sparsity_per_member(setting):
    _, original, _ = setting
    before = {k: v.clone() for k, v in original.params.items()}
    pruned, masks = prune_population(original, 0.6)
    assert sorted(masks) == ["features.1.weight", "features.3.weight", "head.weight"], "weights only, no biases"
    weights = sum(original.params[k][0].numel() for k in masks)
    for member in range(3):
        zeros = sum(int((pruned.params[k][member] == 0).sum()) for k in masks)
        assert zeros == round(0.6 * weights)
        # Global threshold per member: every kept weight is at least as large as every pruned one.
        kept = torch.cat([original.params[k][member][masks[k][member] == 1].abs() for k in masks])
        cut = torch.cat([original.params[k][member][masks[k][member] == 0].abs() for k in masks])
        assert kept.min() >= cut.max()
    for k in ("features.1.bias", "head.bias"):
        assert torch.equal(pruned.params[k], original.params[k])
    assert not torch.equal(masks["head.weight"][0], masks["head.weight"][1]), "thresholds are per member"
    for k, v in before.items():
        assert torch.equal(original.params[k], v), "the input population is not changed"


def test_pruned_weights_stay_zero_while_unlearning(setting):
    train, original, forget = setting
    unlearned, _ = unlearn_population(original, train, forget, ~forget, "l1_sparse", RECIPE, seed=0,
                                      prune_sparsity=0.5, epochs=2)
    _, masks = prune_population(original, 0.5)
    for k, mask in masks.items():
        assert bool((unlearned.params[k][mask == 0] == 0).all()), k
    assert bool((sparsity_of(unlearned) >= 0.5).all())


def test_l1_penalty_shrinks_the_weights(setting):
    train, original, forget = setting

    def l1_norm(population):
        return sum(v.abs().flatten(1).sum(1) for v in population.params.values())

    plain, _ = unlearn_population(original, train, forget, ~forget, "l1_sparse", RECIPE, seed=0, gamma=0.0, epochs=2)
    sparse, _ = unlearn_population(original, train, forget, ~forget, "l1_sparse", RECIPE, seed=0, gamma=5e-3, epochs=2)
    assert bool((l1_norm(sparse) < l1_norm(plain)).all())


def test_bad_sparsity_is_refused(setting):
    _, original, _ = setting
    with pytest.raises(ExpungeError, match="sparsity"):
        prune_population(original, 1.0)
