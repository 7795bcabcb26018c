"""Scored forget rules (memorized:, entangled:, datamodel_pc:): parsing, what they pick, caching, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from expunge.attribution import AttributionSettings
from expunge.data import ArrayDataset, RuleContext, load_dataset, parse_forget_rule, validate_forget_rule
from expunge.data.scored_rules import principal_loadings
from expunge.errors import ExpungeError
from expunge.training.recipe import Recipe
from expunge.training.store import PopulationCache

RECIPE = Recipe(model="mlp", model_kwargs={"hidden": [128]}, optimizer="adam", lr=1e-2, epochs=100, batch_size=32)
FLIPPED = 12


@pytest.fixture(scope="module")
def planted() -> tuple[ArrayDataset, torch.Tensor]:
    """Well-separated Gaussian classes with FLIPPED mislabelled examples: only memorising fits those."""
    train = load_dataset("gaussians", n_train=240, n_test=40, dim=8, num_classes=3, separation=4.0).train
    y = train.y.clone()
    flipped = torch.arange(0, 240, 240 // FLIPPED)[:FLIPPED]
    y[flipped] = (y[flipped] + 1) % 3
    return ArrayDataset(train.x, y, train.ids, train.task, train.num_classes), train.ids[flipped]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> PopulationCache:
    return PopulationCache(tmp_path_factory.mktemp("home") / "populations")


def context(cache: PopulationCache, **options) -> RuleContext:
    return RuleContext(RECIPE, cache, memorisation_models=options.pop("models", 24), **options)


def test_memorized_picks_the_mislabelled_examples_and_says_why(planted, cache):
    train, flipped = planted
    forget = parse_forget_rule(f"memorized:{FLIPPED / 240}", train, context=context(cache))
    assert len(forget) == FLIPPED and forget.rule == "memorized:0.05@seed0"
    assert len(set(forget.forget_ids.tolist()) & set(flipped.tolist())) >= FLIPPED - 2
    reason = forget.reason
    assert reason.score == "memorisation" and "Feldman" in reason.definition and reason.scores.shape == (240,)
    summary = reason.summary(forget.forget_mask)
    assert summary["forget_min"] >= summary["all_mean"] and summary["source"]["models"] == 24
    assert summary["source"]["cache"] == "miss"


def test_scores_are_cached_second_call_trains_nothing(planted, cache, monkeypatch):
    train, _ = planted
    first = parse_forget_rule("memorized:0.05", train, context=context(cache))

    def no_training(*args, **kwargs):
        raise AssertionError("trained or loaded models on a cached call")

    monkeypatch.setattr("expunge.attribution.subsets.subset_population", no_training)
    monkeypatch.setattr(PopulationCache, "trained", no_training)
    second = parse_forget_rule("memorized:0.05", train, context=context(cache))
    assert torch.equal(first.forget_ids, second.forget_ids) and second.reason.source["cache"] == "hit"
    bigger = parse_forget_rule("memorized:0.1", train, context=context(cache))  # other fraction, same scores
    assert set(first.forget_ids.tolist()) <= set(bigger.forget_ids.tolist())


def test_memorized_is_deterministic_across_caches(planted, cache, tmp_path):
    train, _ = planted
    again = parse_forget_rule("memorized:0.05", train, context=context(PopulationCache(tmp_path / "populations")))
    cached = parse_forget_rule("memorized:0.05", train, context=context(cache))
    assert torch.equal(again.forget_ids, cached.forget_ids)
    assert torch.allclose(again.reason.scores, cached.reason.scores)


def test_entangled_picks_the_examples_nearest_the_centre(planted, cache):
    train, _ = planted
    forget = parse_forget_rule("entangled:0.1", train, context=context(cache, original_members=2))
    scores, mask = forget.reason.scores, forget.forget_mask
    assert len(forget) == 24 and forget.reason.score == "entanglement"
    assert float(scores[mask].min()) >= float(scores[~mask].max())
    assert forget.reason.source["original_members"] == 2


def test_datamodel_pc_selects_an_extreme_of_a_component(planted, cache):
    train, _ = planted
    settings = AttributionSettings("datamodel", fraction=0.5, models=32, lds_models=6)
    forget = parse_forget_rule("datamodel_pc:1:0.05", train, context=context(cache, attribution=settings))
    scores, mask = forget.reason.scores, forget.forget_mask
    assert len(forget) == 12 and forget.rule == "datamodel_pc:1:0.05"
    assert float(scores[mask].min()) >= float(scores[~mask].max()) and float(scores.max()) >= -float(scores.min())


def test_principal_loadings_match_a_dense_svd():
    g = torch.Generator().manual_seed(0)
    left, right = torch.randn(30, 5, generator=g), torch.randn(40, 5, generator=g)
    dense = left @ right.T
    _, _, vh = np.linalg.svd((dense - dense.mean(0, keepdim=True)).double().numpy())
    for k in (1, 2):
        ours = principal_loadings(left, right, k).double().numpy()
        assert abs(abs(float(ours @ vh[k - 1])) - 1.0) < 1e-5


def test_bad_input_is_one_clear_line(planted):
    train, _ = planted
    for spec, expected in [("memorized:0.001", "selects none"), ("entangled:0.001", "selects none"),
                           ("memorized:1.5", "strictly between 0 and 1"), ("datamodel_pc:0", "at least 1"),
                           ("datamodel_pc:x", "must be an integer"), ("memorised:0.1", "Did you mean 'memorized'"),
                           ("hard:salunn:0.1", "salun"), ("hard:salun:0.001", "selects none"),
                           ("hard:0.1", "hard:METHOD:FRACTION"), ("hard:npo:0.1", "not classification")]:
        with pytest.raises(ExpungeError, match=expected) as error:
            validate_forget_rule(spec, train)
        assert "\n" not in str(error.value)
    with pytest.raises(ExpungeError, match="Scenario.build"):
        parse_forget_rule("memorized:0.1", train)  # no models to score with
    validate_forget_rule("memorized:0.1", train)  # valid: checked without training anything


def _gap(train, forget_mask, seeds, method="finetune"):
    """Mean |unlearned - oracle| margin gap on the forget examples, with fresh populations of ``seeds``."""
    from expunge.methods.registry import unlearn_population
    from expunge.training.engine import population_scores, train_population

    original, _ = train_population(RECIPE, train, seeds=seeds)
    oracle, _ = train_population(RECIPE, train, seeds=seeds, keep_masks=(~forget_mask).expand(len(seeds), -1).clone())
    unlearned, _ = unlearn_population(original, train, forget_mask, ~forget_mask, method, RECIPE, seed=1)
    mine = np.asarray(population_scores(unlearned, train)["margin"]).mean(0)
    theirs = np.asarray(population_scores(oracle, train)["margin"]).mean(0)
    return float(np.abs(mine - theirs)[forget_mask.numpy()].mean())


def test_hard_for_a_method_is_harder_than_random_on_fresh_models_cached_and_says_why(planted, cache, tmp_path):
    train, _ = planted
    hard = parse_forget_rule("hard:finetune:0.05", train, context=context(cache))
    assert len(hard) == 12 and hard.reason.score == "hardness" and hard.reason.source["method"] == "finetune"
    scores = hard.reason.scores
    assert int(torch.isfinite(scores).sum()) == 36  # a pool of 3 x 12 candidates was scored
    with pytest.MonkeyPatch.context() as patch:  # a second call reads the stored scores: it trains nothing
        def no_training(*args, **kwargs):
            raise AssertionError("trained or unlearned on a cached call")

        patch.setattr(PopulationCache, "trained", no_training)
        patch.setattr("expunge.methods.registry.unlearn_population", no_training)
        again = parse_forget_rule("hard:finetune:0.05", train, context=context(cache))
    assert torch.equal(hard.forget_ids, again.forget_ids) and again.reason.source["cache"] == "hit"
    fresh = parse_forget_rule("hard:finetune:0.05", train, context=context(PopulationCache(tmp_path / "p")))
    assert torch.equal(hard.forget_ids, fresh.forget_ids)  # deterministic for a seed: recomputed from scratch
    other = parse_forget_rule("hard:finetune:0.05", train, seed=1, context=context(cache))
    assert other.reason.source["validation_seeds"] == hard.reason.source["validation_seeds"]
    assert not torch.equal(other.reason.scores.isfinite(), scores.isfinite())  # another seed: another pool
    # evaluated on fresh populations (seeds the validation world never used): harder than a random set
    hard_mask = torch.isin(train.ids, hard.forget_ids)
    random_mask = torch.zeros(len(train), dtype=torch.bool)
    random_mask[torch.randperm(len(train), generator=torch.Generator().manual_seed(5))[:12]] = True
    seeds = [11, 12, 13, 14]
    assert _gap(train, hard_mask, seeds) > 1.5 * _gap(train, random_mask, seeds)
