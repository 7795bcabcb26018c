"""Boundary Expanding: a shadow output is added to the last linear layer, trained, then pruned away."""
import pytest
import torch
from torch import nn

from expunge import (
    ExpungeError,
    Population,
    Recipe,
    train_population,
    unlearn_population,
)
from expunge.data import class_forget
from expunge.methods.base import UnlearningTask
from expunge.methods.boundary_expand import output_layer, widen
from expunge.training.engine import accuracy

RECIPE = Recipe(model="mlp", model_kwargs={"hidden": [32]}, epochs=8, batch_size=64)


@pytest.fixture(scope="module")
def setting(gaussians):
    train = gaussians.train
    original, _ = train_population(RECIPE, train, seeds=[0, 1])
    forget = class_forget(train, 1).forget_mask
    return train, original, forget


def test_widened_model_keeps_the_original_outputs_and_adds_one(setting):
    train, original, forget = setting
    task = UnlearningTask(original, train, forget.expand(2, -1), None, RECIPE)
    name, head = output_layer(original, task)
    assert name == "head" and head.out_features == 4
    widened = widen(original, name, head, seeds=[3, 4])
    outputs = widened.predict(train.x[:50])
    assert outputs.shape == (2, 50, 5)
    torch.testing.assert_close(outputs[..., :4], original.predict(train.x[:50]))
    assert not torch.equal(widened.params["head.weight"][0, 4], widened.params["head.weight"][1, 4])
    assert original.params["head.weight"].shape == (2, 4, 32), "the original is not widened in place"


def test_shadow_class_is_pruned_and_the_class_forgotten(setting):
    train, original, forget = setting
    unlearned, _ = unlearn_population(original, train, forget, None, "boundary_expand", RECIPE, seed=0,
                                      lr=0.01, epochs=20)
    assert {k: v.shape for k, v in unlearned.params.items()} == {k: v.shape for k, v in original.params.items()}
    retain_positions = torch.nonzero(~forget).flatten()
    assert bool((accuracy(unlearned, train, torch.nonzero(forget).flatten()) < 5).all())
    assert bool((accuracy(unlearned, train, retain_positions) > accuracy(original, train, retain_positions) - 10).all())


class ScaledHead(nn.Module):
    """Its last nn.Linear is not its output: the output is rescaled afterwards."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(10, 4)

    def forward(self, x):
        return 2.0 * self.linear(x)


class ConvOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 10)

    def forward(self, x):
        return self.conv(x.unsqueeze(1)).squeeze(-1)


@pytest.mark.parametrize("module, message", [(ScaledHead(), "transforms that layer's output"),
                                             (ConvOnly(), "has no nn.Linear")])
def test_architectures_without_a_linear_output_layer_are_refused(gaussians, module, message):
    train = gaussians.train
    population = Population.from_module(module)
    forget = class_forget(train, 1).forget_mask
    with pytest.raises(ExpungeError, match=message):
        unlearn_population(population, train, forget, None, "boundary_expand", RECIPE)
