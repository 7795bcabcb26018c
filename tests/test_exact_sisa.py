"""SISA: deletion equals training from scratch without the deleted examples, and costs only the shards that held them."""
import pytest
import torch

from expunge.errors import ExpungeError
from expunge.exact.sisa import SisaModel, assign, stage_epochs
from expunge.training.recipe import Recipe

RECIPE = Recipe(model="mlp", model_kwargs={"hidden": [32]}, optimizer="adam", lr=3e-3, epochs=4, batch_size=64)


def _max_difference(a: SisaModel, b: SisaModel) -> float:
    return max(float((x.params[k] - y.params[k]).abs().max()) for x, y in zip(a.checkpoints, b.checkpoints)
               for k in x.params)


@pytest.fixture(scope="module")
def data(mnist1d):
    return mnist1d.train.subset(torch.arange(800))


@pytest.fixture(scope="module")
def sisa(data):
    return SisaModel.train(data, shards=3, slices=3, recipe=RECIPE, seed=7, ensembles=2)


def test_assignment_depends_on_the_id_alone():
    ids = torch.arange(1000)
    shard, slice_ = assign(ids, 4, 3, seed=1)
    sub_shard, sub_slice = assign(ids[::7], 4, 3, seed=1)
    assert torch.equal(shard[::7], sub_shard) and torch.equal(slice_[::7], sub_slice)
    counts = torch.bincount(shard, minlength=4)
    assert int(counts.min()) > 200  # near-balanced shards
    assert not torch.equal(shard, assign(ids, 4, 3, seed=2)[0])
    assert stage_epochs(30, 1) == 30 and stage_epochs(30, 4) == 12  # 2E/(R+1): same example gradients in all


def test_deletion_equals_training_from_scratch_without_the_ids(data, sisa):
    ids = data.ids[torch.tensor([0, 5, 123, 400, 799])]
    after, cost = sisa.forget(data, ids)
    scratch = SisaModel.train(data, shards=3, slices=3, recipe=RECIPE, seed=7, ensembles=2, exclude_ids=ids)
    assert _max_difference(after, scratch) <= 1e-6
    # a second request on top of the first: still equal to scratch without both
    more = data.ids[torch.tensor([10, 11])]
    again, _ = after.forget(data, more)
    scratch2 = SisaModel.train(data, shards=3, slices=3, recipe=RECIPE, seed=7, ensembles=2,
                               exclude_ids=torch.cat([ids, more]))
    assert _max_difference(again, scratch2) <= 1e-6
    assert cost.ratio_to_full < 1.0
    # the input model is untouched
    assert bool(sisa.alive.all())


def test_only_the_shards_that_held_the_ids_are_retrained(data, sisa):
    shard, slice_ = assign(data.ids, 3, 3, seed=7)
    position = int(torch.nonzero((shard == 1) & (slice_ == 2))[0])  # last slice of shard 1
    after, cost = sisa.forget(data, data.ids[position:position + 1])
    assert cost.shards_retrained == 2  # shard 1 of each of the two ensembles
    assert cost.stages_retrained == 2  # only the last stage: the earlier checkpoints never saw the example
    changed = [m for m in range(sisa.members)
               if not torch.equal(after.model.params["head.weight"][m], sisa.model.params["head.weight"][m])]
    assert changed == [1, 4]
    for r in range(2):  # checkpoints before the slice are the old ones
        assert torch.equal(after.checkpoints[r].params["head.weight"], sisa.checkpoints[r].params["head.weight"])
    # deleting from the first slice of a shard retrains that shard through every stage
    first = int(torch.nonzero((shard == 0) & (slice_ == 0))[0])
    _, cost0 = sisa.forget(data, data.ids[first:first + 1])
    assert cost0.stages_retrained == 2 * 3
    assert cost0.example_gradients > cost.example_gradients


def test_sharding_keeps_a_useful_model(data, mnist1d, sisa):
    accuracy = sisa.accuracy(mnist1d.test)
    assert accuracy.shape == (2,) and bool((accuracy > 15.0).all())  # 10 classes: chance is 10%
    voting = SisaModel.train(data, shards=3, slices=3, recipe=RECIPE, seed=7, ensembles=2, aggregate="vote")
    assert torch.equal(voting.model.params["head.weight"], sisa.model.params["head.weight"])
    vote = voting.predict(mnist1d.test.inputs).argmax(-1)
    members = sisa.model.predict(mnist1d.test.inputs).argmax(-1).view(2, 3, -1)
    unanimous = (members[:, 0] == members[:, 1]) & (members[:, 1] == members[:, 2])
    assert torch.equal(vote[unanimous], members[:, 0][unanimous])


def test_save_and_load_round_trip(tmp_path, data, sisa):
    digest = sisa.save(tmp_path / "s.safetensors")
    loaded = SisaModel.load(tmp_path / "s.safetensors")
    assert _max_difference(loaded, sisa) == 0.0 and torch.equal(loaded.alive, sisa.alive)
    assert loaded.save(tmp_path / "t.safetensors") == digest  # same content, same hash
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(ExpungeError, match="not an expunge SISA model"):
        SisaModel.load(tmp_path / "bad.safetensors")


def test_bad_requests_are_refused(data, sisa):
    with pytest.raises(ExpungeError, match="never in the training set"):
        sisa.forget(data, [10**9])
    with pytest.raises(ExpungeError, match="more than once"):
        sisa.forget(data, [int(data.ids[0])] * 2)
    after, _ = sisa.forget(data, data.ids[:1])
    with pytest.raises(ExpungeError, match="already deleted"):
        after.forget(data, data.ids[:2])
    with pytest.raises(ExpungeError, match="not the training set"):
        sisa.forget(data.subset(torch.arange(10)), data.ids[:1])
    with pytest.raises(ExpungeError, match="shards for 5 training examples"):
        SisaModel.train(data.subset(torch.arange(5)), shards=8, recipe=RECIPE)
    with pytest.raises(ExpungeError, match="unknown aggregation"):
        SisaModel.train(data, shards=2, recipe=RECIPE, aggregate="median")
