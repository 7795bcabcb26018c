"""Closed-form exact heads: deletion equals a refit without the deleted examples."""
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from expunge.data import load_dataset
from expunge.errors import ExpungeError
from expunge.exact.closed_form import ClosedFormModel, RidgeHead, fit_heads
from expunge.training.engine import train_population
from expunge.training.recipe import Recipe

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def trained(mnist1d):
    """A tiny MLP population trained on MNIST-1D for a few epochs, and its penultimate features."""
    recipe = Recipe(model="mlp", model_kwargs={"hidden": [100, 100]}, lr=3e-3, epochs=3)
    population, _ = train_population(recipe, mnist1d.train, seeds=[0, 1, 2])
    return population, population.features(mnist1d.train.x), population.features(mnist1d.test.x)


@pytest.fixture(scope="module")
def head(mnist1d, trained):
    return RidgeHead.fit(trained[1][0], mnist1d.train.y, mnist1d.train.ids, num_classes=10, l2=1.0)


def refit_without(head: RidgeHead, features, data, deleted) -> RidgeHead:
    keep = ~torch.isin(data.ids, torch.as_tensor(deleted))
    return RidgeHead.fit(features[keep], data.y[keep], data.ids[keep], head.task, head.num_classes, head.l2)


def assert_same_head(head: RidgeHead, refit: RidgeHead, test_features) -> None:
    assert torch.equal(torch.sort(head.ids).values, torch.sort(refit.ids).values)
    assert (head.weights - refit.weights).abs().max() < TOLERANCE
    assert (head.a_inv - refit.a_inv).abs().max() < TOLERANCE
    assert (head.predict(test_features) - refit.predict(test_features)).abs().max() < TOLERANCE


class Net(nn.Module):
    """A user's own module with named layers."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(40, 64)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# ----------------------------------------------------------------- exactness ---
def test_deleting_one_example_equals_refit(mnist1d, trained, head):
    features, test_features = trained[1][0], trained[2][0]
    smaller = head.delete([17])
    assert smaller.update == "woodbury"
    assert_same_head(smaller, refit_without(head, features, mnist1d.train, [17]), test_features)


def test_batched_deletion_equals_refit(mnist1d, trained, head):
    features, test_features = trained[1][0], trained[2][0]
    forget = torch.randperm(4000, generator=torch.Generator().manual_seed(0))[:100]
    smaller = head.delete(forget)
    assert smaller.update == "woodbury"  # 100 deleted rows <= 101 parameters per output
    assert_same_head(smaller, refit_without(head, features, mnist1d.train, forget), test_features)


def test_sequential_deletions_equal_refit(mnist1d, trained, head):
    features, test_features = trained[1][0], trained[2][0]
    requests = [[3], list(range(100, 150)), [7, 4000 - 1], list(range(2000, 2300)), [5]]
    current, deleted = head, []
    for request in requests:
        current = current.delete(request)
        deleted += request
        assert_same_head(current, refit_without(head, features, mnist1d.train, deleted), test_features)
    assert current.update == "woodbury"
    assert sorted(current.deleted_ids.tolist()) == sorted(deleted)


def test_large_batch_refits_from_statistics(mnist1d, trained, head):
    # More deleted rows than parameters per output: the p x p refit from X^T X - U^T U is the cheaper path.
    features, test_features = trained[1][0], trained[2][0]
    forget = list(range(0, 4000, 3))
    smaller = head.delete(forget)
    assert smaller.update == "statistics"
    assert_same_head(smaller, refit_without(head, features, mnist1d.train, forget), test_features)


def test_ill_conditioned_deletion_falls_back_to_statistics(monkeypatch):
    # Deleting almost all of a tiny, weakly regularised fit: the down-date cancels nearly equal terms.
    from expunge.exact import closed_form

    generator = torch.Generator().manual_seed(0)
    features, labels = torch.randn(12, 30, generator=generator) * 3, torch.arange(12) % 3
    head = RidgeHead.fit(features, labels, torch.arange(12), num_classes=3, l2=1e-4)
    refit = RidgeHead.fit(features[10:], labels[10:], torch.arange(10, 12), num_classes=3, l2=1e-4)
    smaller = head.delete(list(range(10)))
    assert smaller.update == "statistics"
    assert (smaller.predict(features) - refit.predict(features)).abs().max() < TOLERANCE
    # the guard matters: without it the down-date would be off by far more than the tolerance
    monkeypatch.setattr(closed_form, "WOODBURY_MAX_RESIDUAL", float("inf"))
    unguarded = head.delete(list(range(10)))
    assert unguarded.update == "woodbury"
    assert (unguarded.predict(features) - refit.predict(features)).abs().max() > 10 * TOLERANCE


def test_regression_head_deletion_equals_refit():
    split = load_dataset("diabetes")
    torch.manual_seed(0)
    model = ClosedFormModel.fit(nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1)), split.train, l2=0.1)
    assert model.predict(split.test.x).shape == (len(split.test), 1)
    forget = split.train.ids[:25]
    smaller = model.forget(forget)
    refit = ClosedFormModel.fit(model.backbone, split.train, l2=0.1, ids=split.train.ids[25:])
    assert (smaller.head.weights - refit.head.weights).abs().max() < TOLERANCE
    assert (smaller.predict(split.test.x) - refit.predict(split.test.x)).abs().max() < TOLERANCE
    with pytest.raises(ExpungeError, match="accuracy needs a classifier"):
        model.accuracy(split.test)


# -------------------------------------------------------------- the models ---
def test_user_module_named_layer_forget_equals_refit(mnist1d):
    torch.manual_seed(0)
    net = Net()
    model = ClosedFormModel.fit(net, mnist1d.train, layer="fc1", l2=1.0)
    with torch.no_grad():
        assert torch.allclose(model.features(mnist1d.test.x), net.fc1(mnist1d.test.x))
    forget = list(range(0, 4000, 50))
    smaller = model.forget(forget)
    refit = ClosedFormModel.fit(net, mnist1d.train, layer="fc1", l2=1.0,
                                ids=[i for i in range(4000) if i % 50])
    assert (smaller.predict(mnist1d.test.x) - refit.predict(mnist1d.test.x)).abs().max() < TOLERANCE
    assert (smaller.head.weights - refit.head.weights).abs().max() < TOLERANCE


def test_default_layer_reads_penultimate_features_of_a_built_in_architecture(mnist1d, trained):
    population = trained[0]
    model = ClosedFormModel.fit(population.select([1]), mnist1d.train)
    assert model.layer == "head" and model.inputs_of
    assert torch.equal(model.features(mnist1d.test.x), trained[2][1])
    with pytest.raises(ExpungeError, match="population of 3"):
        ClosedFormModel.fit(population, mnist1d.train)


def test_ridge_accuracy_is_well_above_chance(mnist1d, trained):
    model = ClosedFormModel.fit(trained[0].member(0), mnist1d.train, l2=1.0)
    assert model.accuracy(mnist1d.test) > 35.0  # chance is 10%; the MLP itself reaches ~43% after 3 epochs
    digits = load_dataset("digits")
    torch.manual_seed(0)
    random_features = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    assert ClosedFormModel.fit(random_features, digits.train).accuracy(digits.test) > 85.0


def test_population_heads_equal_single_heads(mnist1d, trained):
    features, test_features = trained[1], trained[2]
    masks = torch.rand(3, 4000, generator=torch.Generator().manual_seed(1)) < 0.5
    heads = fit_heads(features, mnist1d.train.y, masks, num_classes=10, l2=1.0)
    outputs = heads.predict(test_features)
    assert outputs.shape == (3, 1000, 10)
    for k in range(3):
        single = RidgeHead.fit(features[k][masks[k]], mnist1d.train.y[masks[k]], mnist1d.train.ids[masks[k]],
                               num_classes=10, l2=1.0)
        assert (heads.member(k) - single.weights).abs().max() < TOLERANCE
        assert (outputs[k] - single.predict(test_features[k])).abs().max() < TOLERANCE
    shared = fit_heads(features[0], mnist1d.train.y, masks, num_classes=10)
    assert shared.predict(test_features[0]).shape == (3, 1000, 10)


# ------------------------------------------------------------ state and storage ---
def test_delete_leaves_the_original_untouched_and_drops_deleted_rows(head):
    before = head.content_hash()
    weights = head.weights.clone()
    smaller = head.delete([1, 2, 3])
    assert head.content_hash() == before and torch.equal(head.weights, weights) and len(head) == 4000
    assert len(smaller) == 3997 and smaller.design.shape[0] == 3997
    assert not torch.isin(torch.tensor([1, 2, 3]), smaller.ids).any()
    assert smaller.content_hash() != before


def test_safetensors_round_trip_gives_the_same_predictions(tmp_path, trained, head):
    smaller = head.delete([5, 6])
    save_file(smaller.tensors(), tmp_path / "head.safetensors")
    loaded = RidgeHead.from_tensors(load_file(tmp_path / "head.safetensors"))
    assert torch.equal(loaded.predict(trained[2][0]), smaller.predict(trained[2][0]))
    assert loaded.content_hash() == smaller.content_hash()
    assert (loaded.update, loaded.task, loaded.num_classes, loaded.l2) == ("woodbury", "classification", 10, 1.0)
    # the loaded head deletes on: the deletion record travels with it
    with pytest.raises(ExpungeError, match=r"ids \[5\] were already deleted"):
        loaded.delete([5])
    with pytest.raises(ExpungeError, match="missing"):
        RidgeHead.from_tensors({k: v for k, v in smaller.tensors().items() if k != "a_inv"})


# ---------------------------------------------------------------- bad input ---
def test_bad_input_gives_one_clear_error(mnist1d, head):
    smaller = head.delete([10, 11])
    with pytest.raises(ExpungeError, match=r"ids \[4000, 99999\] were never in the training set"):
        head.delete([4000, 99999])
    with pytest.raises(ExpungeError, match=r"ids \[11\] were already deleted"):
        smaller.delete([12, 11])
    with pytest.raises(ExpungeError, match=r"ids \[7\] appear more than once in this request"):
        head.delete([7, 8, 7])
    with pytest.raises(ExpungeError, match="width 99 but the head was fit on width 100"):
        head.predict(torch.zeros(3, 99))
    with pytest.raises(ExpungeError, match="would delete every example"):
        RidgeHead.fit(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), [0, 1, 2, 3]).delete([0, 1, 2, 3])
    with pytest.raises(ExpungeError, match="no ids to delete"):
        head.delete([])
    for l2 in (0.0, -1.0, float("nan")):
        with pytest.raises(ExpungeError, match="l2 must be a positive"):
            RidgeHead.fit(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), [0, 1, 2, 3], l2=l2)
    with pytest.raises(ExpungeError, match=r"ids \[2\] appear more than once"):
        RidgeHead.fit(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), [0, 2, 2, 3])
    with pytest.raises(ExpungeError, match="unknown layer 'fc3'"):
        ClosedFormModel.fit(Net(), mnist1d.train, layer="fc3")
    with pytest.raises(ExpungeError, match="l2 must be a positive"):
        ClosedFormModel.fit(Net(), mnist1d.train, l2=0)
    # the head is unchanged by the refused requests
    assert len(head) == 4000 and head.deleted_ids.numel() == 0
