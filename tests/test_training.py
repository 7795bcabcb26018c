"""Population training engine: equivalence with single models, caching, storage, errors."""
import json

import pytest
import torch
from torch import nn

from expunge import (
    ExpungeError,
    Population,
    Recipe,
    load_population,
    save_population,
    train_population,
)
from expunge.training.engine import accuracy
from expunge.training.optim import PopulationOptimizer
from expunge.training.store import PopulationCache

FAST = Recipe(model="mlp", model_kwargs={"hidden": [32]}, epochs=5, batch_size=64)


def test_member_equals_same_member_trained_alone(gaussians):
    population, _ = train_population(FAST, gaussians.train, seeds=[3, 4, 5])
    alone, _ = train_population(FAST, gaussians.train, seeds=[4])
    for name in population.params:
        torch.testing.assert_close(population.params[name][1], alone.params[name][0], atol=1e-4, rtol=1e-4)


def test_members_differ_and_match_single_model_accuracy(mnist1d):
    recipe = Recipe(model="mlp", model_kwargs={"hidden": [100, 100]}, epochs=8)
    population, _ = train_population(recipe, mnist1d.train, members=6)
    test_acc = accuracy(population, mnist1d.test)
    assert float(test_acc.std()) > 0.2, "members should differ like independent runs"
    singles = torch.cat([accuracy(train_population(recipe, mnist1d.train, seeds=[100 + i])[0], mnist1d.test)
                         for i in range(3)])
    # Same recipe trained alone with other seeds: the population mean lies within seed noise.
    noise = 3 * (float(test_acc.std()) + float(singles.std())) + 1.0
    assert abs(float(test_acc.mean()) - float(singles.mean())) < noise
    assert float(test_acc.mean()) > 40  # well above 10% chance


def test_optimizer_matches_torch_adam_and_sgd():
    torch.manual_seed(0)
    for kind, torch_cls, kwargs in [("adam", torch.optim.Adam, {}), ("sgd", torch.optim.SGD, {"momentum": 0.9}),
                                    ("adamw", torch.optim.AdamW, {"weight_decay": 0.1})]:
        w = torch.randn(2, 5)
        ours = {"w": w.clone().requires_grad_(True)}
        ref = [w[i].clone().requires_grad_(True) for i in range(2)]
        opt = PopulationOptimizer(ours, kind, lr=0.1, momentum=kwargs.get("momentum", 0.0),
                                  weight_decay=kwargs.get("weight_decay", 0.0))
        ref_opts = [torch_cls([p], lr=0.1, **kwargs) for p in ref]
        for step in range(4):
            active = torch.tensor([True, step % 2 == 0])  # member 1 skips odd steps
            opt.step((ours["w"] ** 2).sum(1) + ours["w"].sum(1), active)
            for i in range(2):
                if active[i]:
                    ref_opts[i].zero_grad()
                    ((ref[i] ** 2).sum() + ref[i].sum()).backward()
                    ref_opts[i].step()
        for i in range(2):
            torch.testing.assert_close(ours["w"][i].detach(), ref[i].detach(), atol=1e-6, rtol=1e-5)


def test_divergent_member_is_frozen_and_reported():
    params = {"w": torch.ones(2, 3, requires_grad=True)}
    opt = PopulationOptimizer(params, "sgd", lr=0.1)
    loss = params["w"].sum(1) * torch.tensor([1.0, float("nan")])
    opt.step(loss)
    assert opt.diverged.tolist() == [False, True]
    assert torch.equal(params["w"][1].detach(), torch.ones(3))
    assert not torch.equal(params["w"][0].detach(), torch.ones(3))


def test_keep_masks_restrict_training_data(gaussians):
    n = len(gaussians.train)
    masks = torch.zeros(2, n, dtype=torch.bool)
    masks[0, : n // 2] = True
    masks[1, n // 2:] = True
    population, cost = train_population(FAST, gaussians.train, seeds=[0, 1], keep_masks=masks)
    assert population.info["trained_examples"] == [n // 2, n - n // 2]
    assert cost.example_gradients == pytest.approx(FAST.epochs * n / 2)


def test_keep_mask_of_wrong_length_is_rejected(gaussians):
    with pytest.raises(ExpungeError, match="keep-mask has shape"):
        train_population(FAST, gaussians.train, members=2, keep_masks=torch.ones(2, 10, dtype=torch.bool))


def test_user_model_with_wrong_output_width_is_rejected(gaussians):
    with pytest.raises(ExpungeError, match="needs 4"):
        train_population(FAST, gaussians.train, members=1, model=nn.Linear(10, 3))


def test_user_module_population_and_standalone_member(gaussians):
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4))
    population, _ = train_population(FAST, gaussians.train, members=2, model=model)
    member = population.member(1)
    x = gaussians.test.x[:7]
    torch.testing.assert_close(member(x), population.predict(x)[1])
    assert isinstance(member, nn.Sequential)


def test_example_gradients_are_counted(gaussians):
    _, cost = train_population(FAST, gaussians.train, members=3)
    assert cost.example_gradients == FAST.epochs * len(gaussians.train)
    assert cost.members == 3 and cost.wall_time_s > 0


def test_safetensors_round_trip(tmp_path, gaussians):
    population, cost = train_population(FAST, gaussians.train, members=2)
    path = save_population(population, tmp_path / "pop", cost)
    assert path.suffix == ".safetensors" and path.with_suffix(".json").exists()
    loaded, loaded_cost, _ = load_population(path)
    assert loaded.seeds == population.seeds and loaded_cost.example_gradients == cost.example_gradients
    torch.testing.assert_close(loaded.predict(gaussians.test.x), population.predict(gaussians.test.x))
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["spec"]["name"] == "mlp"


def test_user_module_needs_template_to_load(tmp_path):
    population = Population.from_module(nn.Linear(3, 2))
    path = save_population(population, tmp_path / "user")
    with pytest.raises(ExpungeError, match="pass model="):
        load_population(path)
    loaded, _, _ = load_population(path, model=nn.Linear(3, 2))
    torch.testing.assert_close(loaded.params["weight"], population.params["weight"])


def _trainer(gaussians, calls):
    def train(seeds, masks):
        calls.append(list(seeds))
        return train_population(FAST, gaussians.train, seeds=seeds, keep_masks=masks)
    return train


def test_cache_trains_once(tmp_path, gaussians):
    cache = PopulationCache(tmp_path)
    calls = []
    first, _, report1 = cache.get_or_train({"a": 1}, [0, 1], None, _trainer(gaussians, calls))
    second, _, report2 = cache.get_or_train({"a": 1}, [0, 1], None, _trainer(gaussians, calls))
    assert (report1.hit, report2.hit) == (False, True) and calls == [[0, 1]]
    torch.testing.assert_close(first.params["head.weight"], second.params["head.weight"])
    cache.get_or_train({"a": 2}, [0, 1], None, _trainer(gaussians, calls))
    assert len(calls) == 2


def test_cache_is_per_member_so_more_members_train_only_the_new_ones(tmp_path, gaussians):
    cache = PopulationCache(tmp_path)
    calls = []
    small, _, _ = cache.get_or_train({"a": 1}, [0, 1], None, _trainer(gaussians, calls))
    large, cost, report = cache.get_or_train({"a": 1}, [0, 1, 2, 3], None, _trainer(gaussians, calls))
    assert calls == [[0, 1], [2, 3]] and report.loaded == [0, 1] and report.trained == [2, 3]
    assert len(large) == 4 and large.seeds == [0, 1, 2, 3] and cost.members == 4
    torch.testing.assert_close(large.params["head.weight"][:2], small.params["head.weight"])
    assert any("loaded from the cache" in note for note in cost.notes)
    masks = torch.zeros(2, len(gaussians.train), dtype=torch.bool)
    masks[:, :100] = True  # another training subset is another member, even with the same seed
    cache.get_or_train({"a": 1}, [0, 1], masks, _trainer(gaussians, calls))
    assert calls[-1] == [0, 1]


def test_missing_members_train_in_groups_each_saved_before_the_next(tmp_path, gaussians):
    calls = []
    grouped = PopulationCache(tmp_path / "grouped", chunk=3)
    train = _trainer(gaussians, calls)

    def crash_on_third_group(seeds, masks):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return train(seeds, masks)

    seeds = list(range(7))
    with pytest.raises(KeyboardInterrupt):
        grouped.get_or_train({"a": 1}, seeds, None, crash_on_third_group)
    assert calls == [[0, 1], [2, 3, 4]]  # 7 members at most 3 per group: 2 + 3 + 2, never a group of one
    # The two finished groups survived the crash: only the last group is trained again.
    population, _, report = grouped.get_or_train({"a": 1}, seeds, None, train)
    assert report.loaded == [0, 1, 2, 3, 4] and report.trained == [5, 6] and calls[-1] == [5, 6]
    whole, _, _ = PopulationCache(tmp_path / "whole").get_or_train({"a": 1}, seeds, None, train)
    for name, value in whole.params.items():  # grouping does not change a member (vectorised either way)
        assert torch.equal(population.params[name], value), name


def test_engine_version_is_part_of_every_member_key(tmp_path, gaussians, monkeypatch):
    from expunge.training import engine

    cache = PopulationCache(tmp_path)
    calls = []
    cache.get_or_train({"a": 1}, [0], None, _trainer(gaussians, calls))
    monkeypatch.setattr(engine, "ENGINE_VERSION", "test-next")
    _, _, report = cache.get_or_train({"a": 1}, [0], None, _trainer(gaussians, calls))
    assert not report.hit and len(calls) == 2, "a new engine must not reuse members trained by the old one"


def test_crashed_training_leaves_good_cache_entry_intact(tmp_path, gaussians):
    cache = PopulationCache(tmp_path)
    good, _, _ = cache.get_or_train({"a": 1}, [0], None, _trainer(gaussians, []))
    members = tmp_path / "members"
    before = sorted(p.name for p in members.iterdir())

    def crash(seeds, masks):
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        cache.get_or_train({"a": 3}, [0], None, crash)
    # A crash mid-write (after the weights, before the sidecar) leaves no entry and no temp files.
    from expunge.training import store

    original_save = store.save_file

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    store.save_file = failing_save
    try:
        with pytest.raises(OSError):
            store.save_population(good, members / (sorted(before)[0].split(".")[0]))
    finally:
        store.save_file = original_save
    assert sorted(p.name for p in members.iterdir()) == before
    again, _, report = cache.get_or_train({"a": 1}, [0], None, lambda s, m: pytest.fail("should not retrain"))
    assert report.hit
    torch.testing.assert_close(again.params["head.weight"], good.params["head.weight"])


def test_same_seed_same_numbers(gaussians):
    a, _ = train_population(FAST, gaussians.train, members=2)
    b, _ = train_population(FAST, gaussians.train, members=2)
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name])


@pytest.mark.parametrize("name,shape", [("mlp", (40,)), ("cnn1d", (40,)), ("cnn2d", (1, 8, 8)), ("resnet", (3, 16, 16))])
def test_every_builtin_model_trains_as_population(name, shape):
    from expunge.data.base import ArrayDataset

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, *shape, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    data = ArrayDataset(x, y, torch.arange(64), num_classes=2)
    population, _ = train_population(Recipe(model=name, epochs=3, batch_size=32), data, members=2)
    assert population.predict(x).shape == (2, 64, 2)
    assert population.features(x).shape[:2] == (2, 64)


def test_unknown_model_name_lists_valid_ones(gaussians):
    with pytest.raises(ExpungeError, match="Valid models: cnn1d, cnn2d, gpt_tiny, mlp, resnet"):
        train_population(Recipe(model="transformer"), gaussians.train)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_population_trains_on_cuda(gaussians):
    population, _ = train_population(FAST, gaussians.train, members=2, device="cuda")
    assert population.device.type == "cuda"


def test_a_registered_model_builds_and_trains_by_name(gaussians):
    from expunge.models import MODELS, model_names, register_model

    before = model_names()

    @register_model("linear_probe", "one linear layer", "any (flattened)")
    def linear_probe(input_shape, num_outputs, bias: bool = True):
        return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), num_outputs, bias=bias))

    try:
        assert "linear_probe" in model_names() and MODELS["linear_probe"].input_kinds == "any (flattened)"
        population, _ = train_population(Recipe(model="linear_probe", epochs=1), gaussians.train, members=2)
        assert population.spec.name == "linear_probe" and population.predict(gaussians.test.x[:3]).shape == (2, 3, 4)
        with pytest.raises(ExpungeError, match=r"no argument\(s\) \['width'\]; valid arguments: \['bias'\]"):
            train_population(Recipe(model="linear_probe", model_kwargs={"width": 3}), gaussians.train)
        with pytest.raises(ExpungeError, match="two models are registered as 'mlp'"):
            register_model("mlp", "another mlp", "any")(linear_probe)
        with pytest.raises(ExpungeError, match=r"must take the keyword argument\(s\) \['num_outputs'\]"):
            register_model("shapeless", "", "")(lambda input_shape: None)
    finally:
        MODELS.unregister("linear_probe")
    assert model_names() == before


@pytest.mark.slow
def test_members_inside_a_population_and_alone_are_equal_in_distribution(mnist1d):
    """Member i trained inside a population and alone: equal in distribution, not bitwise.

    A population of K >= 2 runs vectorised kernels, a population of one single-model
    kernels; they round differently and 30 epochs amplify it (per seed, none to a few
    hundred of the 4,000 training predictions differ). What must hold is that the two
    paths draw from the same distribution: 16 seeds in one population and the same 16
    seeds each trained alone give per-member test accuracy and loss that a two-sample
    test cannot tell apart, with means within half the between-member spread.
    """
    import numpy as np
    from scipy import stats

    from expunge.training.engine import population_scores
    from expunge.training.recipe import default_recipe

    recipe, seeds = default_recipe("mnist1d"), list(range(16))
    together, _ = train_population(recipe, mnist1d.train, seeds=seeds)
    alone = [train_population(recipe, mnist1d.train, seeds=[seed])[0] for seed in seeds]
    for statistic in ("correct", "loss"):
        inside = population_scores(together, mnist1d.test)[statistic].mean(1)
        single = np.concatenate([population_scores(member, mnist1d.test)[statistic].mean(1) for member in alone])
        spread = np.sqrt((inside.var(ddof=1) + single.var(ddof=1)) / 2)
        assert spread > 0, "members must differ like independent runs"
        assert abs(inside.mean() - single.mean()) <= 0.5 * spread, (statistic, inside.mean(), single.mean(), spread)
        assert stats.mannwhitneyu(inside, single).pvalue > 0.05, statistic
        assert stats.ks_2samp(inside, single).pvalue > 0.05, statistic


def test_a_cycled_member_beside_a_member_with_more_batches():
    """A tiny set cycled up to min_steps, beside a member with more batches per pass (shadow members of a
    sub-class forget set): each member gets its own number of full batches, every example of the tiny set is used."""
    from expunge.training.batches import MemberBatches

    masks = torch.zeros(2, 1000, dtype=torch.bool)
    masks[0, :100] = True  # 100 examples, batch 64: 2 batches, cycled up to min_steps = 4
    masks[1, 100:420] = True  # 320 examples: 5 batches
    batches = MemberBatches(masks, 64, seeds=[1, 2], min_steps=4)
    epoch = list(batches.epoch())
    assert len(epoch) == 5 and [int(b.active[0]) for b in epoch] == [1, 1, 1, 1, 0]
    tiny = torch.cat([b.index[0][b.weight[0] > 0] for b in epoch if b.active[0]])
    assert len(tiny) == 4 * 64 and set(tiny.tolist()) == set(range(100))
    assert float(epoch[4].weight[0].sum()) == 0.0 and float(epoch[4].weight[1].sum()) == 64.0
