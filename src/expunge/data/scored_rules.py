"""Scored forget rules: worst-case and structured forget sets read off per-example scores.

An audit on a random forget set flatters every method: random examples are the easiest
to forget. These rules pick the examples the literature finds hardest, from scores
computed with models trained by the scenario's recipe (given as a
:class:`~expunge.data.forget.RuleContext`):

- ``memorized:<fraction>``: the most memorised examples. Memorisation (Feldman and
  Zhang, NeurIPS 2020) is ``mem(i) = P(correct on i | i in training) - P(correct on i |
  i not in training)``, estimated from ``models`` subset-trained models, each keeping a
  random 50% of the training set (the attribution layer's subset populations, purpose
  ``"memorisation"``): the accuracy on ``i`` of the models that kept it minus that of the
  models that left it out. Zhao et al. (RUM, NeurIPS 2024) find these the hardest to
  unlearn.
- ``entangled:<fraction>``: the examples most entangled with the rest of the training
  set in the original models' embedding space (the input of the classifier head).
  RUM's entanglement score of a retain/forget split is
  ``ES = [mean_{i in R} |z_i - mu_R|^2 + mean_{j in F} |z_j - mu_F|^2] / [|mu_R - mu|^2 + |mu_F - mu|^2]``
  (``mu``: mean over the whole training set). For a single forget example ``j`` the
  forget term's spread is 0, ``mu_F = z_j`` and ``mu_R = mu`` up to ``O(1/N)``, so
  ``ES({j}) = V / |z_j - mu|^2`` with ``V`` the training set's mean squared distance to
  ``mu``: the example's closeness to the centre of the retain set relative to its
  spread. Computed per original member and averaged as ``1 / mean_k(|z_j - mu|^2 / V)``;
  the highest are chosen.
- ``datamodel_pc:<k>[:<fraction>]``: the structured forget sets of the KLoM benchmark
  (Georgiev et al., 2024): the training examples at the extreme of the ``k``-th
  principal component (1 = the first) of the datamodel matrix (rows: targets, columns:
  training examples), from the cached datamodel attribution (the one RUM's attribution
  proxy and ``datamodel_matching`` use, fitted if absent). The sign is fixed so the
  extreme with the larger loadings is chosen; default fraction 0.05.

- ``hard:<method>:<fraction>``: a forget set that is hard *for one method* (after
  "Challenging Forgets", Fan et al., ECCV 2024, who select by bi-level optimisation the
  forget set that maximises a method's unlearning error). A greedy one-step version:
  on a *validation* world (its own seeds, disjoint from every evaluation population's),
  ``HARD_MEMBERS`` originals are trained on the whole training set and as many oracles
  without a random candidate pool of ``HARD_POOL`` times the wanted size; the method
  unlearns the pool from the validation originals; each candidate's score is how far
  the method's output stays from the oracle's on it, ``|mean_k margin_unlearned(i) -
  mean_k margin_oracle(i)|`` over the validation members; the top ``fraction x N``
  candidates form the set. The audit then evaluates it on fresh populations (the
  scenario's own seeds), so the selection does not grade itself.

Every rule's scores are cached under ``EXPUNGE_HOME/forget_scores`` by a content hash of
the training set, recipe, model and settings (a second call loads them and trains
nothing), and the :class:`~expunge.data.base.ForgetSet` carries them as its ``reason``.
Selection is the top ``round(fraction x N)`` scores, ties broken by training position.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from expunge.data.base import ArrayDataset, ForgetReason, ForgetSet
from expunge.data.forget import ForgetRuleSyntaxError, RuleContext, register_forget_rule
from expunge.errors import ExpungeError

HARD_MEMBERS = 4  # validation originals and oracles for hard:<method>:<fraction>
HARD_POOL = 3  # candidates per selected example (the pool is at most the training set)
HARD_SEED_OFFSET = 900_000  # validation seeds: clear of every scenario role's (training.scenario.ROLE_SEED_OFFSETS)
MEMORISATION_MODELS = 64  # MNIST-1D: split-half (32 vs 32) Spearman 0.876, Spearman-Brown 0.93 for all 64; 128: 0.931
MEMORISATION_FRACTION = 0.5
ORIGINAL_MEMBERS = 8
DATAMODEL_PC_FRACTION = 0.05
SCORES_FORMAT = 1

MEMORISATION_DEFINITION = ("Feldman & Zhang (2020) memorisation: accuracy on the example of subset models that "
                           "trained on it minus that of subset models that did not (each keeps a random 50%)")
ENTANGLEMENT_DEFINITION = ("RUM's entanglement score of the example alone as the forget set: the training set's mean "
                           "squared distance to its centroid divided by the example's squared distance to it, in the "
                           "original models' penultimate features (higher: closer to the retain set)")
HARD_DEFINITION = ("distance of the method's output from the oracle's on the example: |mean margin of the "
                   "validation members after the method unlearned a candidate pool - mean margin of validation "
                   "oracles trained without the pool| (candidates outside the pool: -inf)")
PC_DEFINITION = ("loading of the training example on principal component {k} of the datamodel matrix (targets x "
                 "training examples, centred over targets); sign fixed so the chosen extreme has the larger loadings")


# --------------------------------------------------------------------------- argument parsing
def _fraction(text: str, what: str = "fraction") -> float:
    try:
        value = float(text)
    except ValueError:
        raise ForgetRuleSyntaxError(f"{text!r} is not a {what} (a number strictly between 0 and 1)") from None
    if not 0.0 < value < 1.0:
        raise ForgetRuleSyntaxError(f"{what} {text} must be strictly between 0 and 1")
    return value


def _count(fraction: float, train: ArrayDataset) -> int:
    count = round(fraction * len(train))
    if count < 1:
        raise ExpungeError(f"fraction={fraction!r} of {len(train)} training examples selects none: use a fraction of "
                           f"at least {1.0 / len(train):.2g}")
    return count


def _check_fraction(argument: str, train: ArrayDataset) -> None:
    _count(_fraction(argument), train)


def _pc_arguments(argument: str) -> tuple[int, float]:
    parts = argument.split(":")
    if len(parts) > 2:
        raise ForgetRuleSyntaxError("use datamodel_pc:K[:FRACTION]")
    try:
        k = int(parts[0])
    except ValueError:
        raise ForgetRuleSyntaxError(f"principal component {parts[0]!r} must be an integer (1: the first)") from None
    if k < 1:
        raise ForgetRuleSyntaxError(f"principal component {k} must be at least 1 (1: the first)")
    return k, _fraction(parts[1]) if len(parts) == 2 else DATAMODEL_PC_FRACTION


def _check_pc(argument: str, train: ArrayDataset) -> None:
    _count(_pc_arguments(argument)[1], train)


def _need(context: RuleContext | None, rule: str) -> RuleContext:
    if context is None or context.recipe is None:
        raise ExpungeError(f"the {rule}: forget rule scores examples with trained models: build it through "
                           "Scenario.build (or pass context=RuleContext(recipe) to parse_forget_rule)")
    return context


def _cache(context: RuleContext):
    from expunge.training.store import PopulationCache

    return context.cache if context.cache is not None else PopulationCache()


# --------------------------------------------------------------------------- the score store
def _scores_path(context: RuleContext, kind: str, train: ArrayDataset, settings: dict[str, Any]) -> tuple[Path, str]:
    from expunge.training.engine import ENGINE_VERSION
    from expunge.training.scenario import module_fingerprint
    from expunge.training.store import content_key

    parts = {"format": SCORES_FORMAT, "kind": kind, "train": train.fingerprint(), "recipe": context.recipe.to_json(),
             "model": None if context.model is None else module_fingerprint(context.model), "settings": settings,
             "engine": ENGINE_VERSION}
    key = content_key(parts)
    return _cache(context).root.parent / "forget_scores" / f"{kind}-{key}.safetensors", key


def cached_scores(context: RuleContext, kind: str, train: ArrayDataset, settings: dict[str, Any],
                  compute) -> tuple[torch.Tensor, dict[str, Any]]:
    """``(scores [N], info)`` from the store, or ``compute() -> (scores, info)`` and stored (atomically)."""
    from safetensors.torch import load_file, save_file

    from expunge.files import atomic_write, json_text

    path, key = _scores_path(context, kind, train, settings)
    sidecar = path.with_suffix(".json")
    if path.exists() and sidecar.exists():
        try:
            scores = load_file(str(path))["scores"]
            if scores.shape == (len(train),):
                return scores, json.loads(sidecar.read_text()) | {"cache": "hit", "key": key}
        except Exception:  # noqa: BLE001 - a damaged entry is recomputed and replaced
            pass
    scores, info = compute()
    scores = scores.detach().float().cpu().contiguous()
    atomic_write(path, lambda tmp: save_file({"scores": scores}, str(tmp)))
    atomic_write(sidecar, lambda tmp: tmp.write_text(json_text(info | {"settings": settings}, indent=1)))
    return scores, info | {"settings": settings, "cache": "miss", "key": key}


def _top(train: ArrayDataset, scores: torch.Tensor, count: int, rule: str, reason: ForgetReason) -> ForgetSet:
    order = torch.argsort(-scores.double(), stable=True)[:count]  # ties: earlier training position first
    return ForgetSet(train, torch.sort(train.ids[order]).values, rule, reason)


# --------------------------------------------------------------------------- memorisation
def memorisation_scores(train: ArrayDataset, context: RuleContext, models: int, seed: int = 0
                        ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Feldman-Zhang memorisation of every training example ``[N]`` from ``models`` 50% subset models (cached)."""
    from expunge.attribution.base import SubsetDesign

    if models < 4:
        raise ExpungeError(f"memorisation needs at least 4 subset models (dozens recommended); got {models}")
    design = SubsetDesign(MEMORISATION_FRACTION, models, seed)

    def compute() -> tuple[torch.Tensor, dict[str, Any]]:
        correct, masks = memorisation_population(train, context, design)
        scores = feldman_zhang(correct, masks)
        return scores, {"models": models, "fraction": MEMORISATION_FRACTION, "design_seed": seed}

    return cached_scores(context, "memorized", train, {"models": models, "seed": seed}, compute)


def memorisation_population(train: ArrayDataset, context: RuleContext, design) -> tuple[np.ndarray, torch.Tensor]:
    """Correctness ``[M, N]`` of the design's subset models on the training set, and their keep-masks ``[M, N]``."""
    from expunge.attribution.subsets import subset_population
    from expunge.training.engine import population_scores

    population, _, _, masks = subset_population(train, context.recipe, design, "memorisation", _cache(context),
                                                context.device, context.model)
    scores = population_scores(population, train)
    if "correct" not in scores:
        raise ExpungeError(f"the memorized: rule needs a task with a notion of correct predictions; "
                           f"{train.task} has none")
    return np.asarray(scores["correct"], dtype=np.float64), masks


def feldman_zhang(correct: np.ndarray, masks: torch.Tensor) -> torch.Tensor:
    """``mean(correct | kept) - mean(correct | left out)`` per example; each must be kept and left out at least once."""
    keep = np.asarray(masks, dtype=bool)
    kept, out = keep.sum(0), (~keep).sum(0)
    if (kept == 0).any() or (out == 0).any():
        raise ExpungeError(f"{int(((kept == 0) | (out == 0)).sum())} training examples were never kept or never left "
                           "out by the subset models: use more models")
    p_in = (correct * keep).sum(0) / kept
    p_out = (correct * ~keep).sum(0) / out
    return torch.from_numpy(p_in - p_out).float()


@register_forget_rule("memorized", "memorized:0.1 (the most memorised fraction)", check=_check_fraction)
def _parse_memorized(argument: str, train: ArrayDataset, seed: int, context: RuleContext | None = None) -> ForgetSet:
    fraction = _fraction(argument)
    count = _count(fraction, train)
    context = _need(context, "memorized")
    models = context.memorisation_models or MEMORISATION_MODELS
    scores, info = memorisation_scores(train, context, models, seed)
    reason = ForgetReason("memorisation", MEMORISATION_DEFINITION, scores,
                          f"the {count} highest of {len(train)} (ties: earlier position)", info)
    return _top(train, scores, count, f"memorized:{fraction!r}@seed{seed}", reason)


# --------------------------------------------------------------------------- entanglement
def entanglement_scores(train: ArrayDataset, context: RuleContext, members: int) -> tuple[torch.Tensor, dict]:
    """RUM's singleton entanglement score of every training example ``[N]`` under the original members (cached)."""

    def compute() -> tuple[torch.Tensor, dict[str, Any]]:
        cache = _cache(context)
        parts = context.original_parts or {"role": "original", "data": train.fingerprint(),
                                           "recipe": context.recipe.to_json()}
        seeds = [context.recipe.seed + i for i in range(members)]
        population, _, _ = cache.trained(parts, context.recipe, train, seeds, None, model=context.model,
                                         device=context.device)
        z = population.features(train.x).double().cpu()  # [K, N, d]
        centre = z.mean(dim=1, keepdim=True)
        squared = ((z - centre) ** 2).sum(-1)  # [K, N]
        relative = squared / squared.mean(dim=1, keepdim=True).clamp(min=1e-12)
        scores = 1.0 / relative.mean(0).clamp(min=1e-12)
        return scores, {"original_members": members, "layer": population.head_name() + " (input)"}

    return cached_scores(context, "entangled", train, {"members": members,
                                                       "parts": context.original_parts is not None}, compute)


@register_forget_rule("entangled", "entangled:0.1 (the fraction most entangled with the retain set)",
                      check=_check_fraction)
def _parse_entangled(argument: str, train: ArrayDataset, seed: int, context: RuleContext | None = None) -> ForgetSet:
    fraction = _fraction(argument)
    count = _count(fraction, train)
    context = _need(context, "entangled")
    members = context.original_members or ORIGINAL_MEMBERS
    scores, info = entanglement_scores(train, context, members)
    reason = ForgetReason("entanglement", ENTANGLEMENT_DEFINITION, scores,
                          f"the {count} highest of {len(train)} (ties: earlier position)", info)
    return _top(train, scores, count, f"entangled:{fraction!r}", reason)


# --------------------------------------------------------------------------- datamodel principal components
def principal_loadings(left: torch.Tensor, right: torch.Tensor, k: int) -> torch.Tensor:
    """Loadings ``[N]`` of the training examples on the ``k``-th principal component of ``B = left @ right.T``
    (``[T, N]``, centred over its rows), computed in the factors' rank without forming ``B``."""
    a = (left - left.mean(0, keepdim=True)).double()
    b = right.double()
    if k > min(a.shape[1], b.shape[0], a.shape[0]):
        raise ExpungeError(f"principal component {k} does not exist: the datamodel matrix has rank at most "
                           f"{min(a.shape[1], b.shape[0], a.shape[0])}")
    q_a, r_a = torch.linalg.qr(a)
    q_b, r_b = torch.linalg.qr(b)
    _, _, vh = torch.linalg.svd(r_a @ r_b.T)
    loadings = q_b @ vh[k - 1]
    if float(loadings.max()) < -float(loadings.min()):
        loadings = -loadings  # the larger extreme is the positive one
    return loadings.float()


def datamodel_pc_scores(train: ArrayDataset, context: RuleContext, k: int) -> tuple[torch.Tensor, dict]:
    from dataclasses import asdict

    from expunge.attribution import AttributionSettings, get_attribution

    settings = context.attribution or AttributionSettings("datamodel")
    if settings.estimator != "datamodel":
        raise ExpungeError("the datamodel_pc: rule needs the 'datamodel' attribution estimator")

    def compute() -> tuple[torch.Tensor, dict[str, Any]]:
        attribution = get_attribution(train, None, context.recipe, settings, _cache(context), context.device,
                                      context.model)
        return principal_loadings(attribution.left, attribution.right, k), {
            "attribution": asdict(settings), "lds": attribution.quality.get("lds")}

    return cached_scores(context, "datamodel_pc", train, {"k": k, "attribution": asdict(settings)}, compute)


@register_forget_rule("datamodel_pc", "datamodel_pc:1, datamodel_pc:2:0.05 (principal component[:fraction])",
                      check=_check_pc)
def _parse_datamodel_pc(argument: str, train: ArrayDataset, seed: int,
                        context: RuleContext | None = None) -> ForgetSet:
    k, fraction = _pc_arguments(argument)
    count = _count(fraction, train)
    context = _need(context, "datamodel_pc")
    scores, info = datamodel_pc_scores(train, context, k)
    reason = ForgetReason(f"datamodel PC {k} loading", PC_DEFINITION.format(k=k), scores,
                          f"the {count} largest of {len(train)} (ties: earlier position)", info)
    return _top(train, scores, count, f"datamodel_pc:{k}:{fraction!r}", reason)


def split_half_stability(correct: np.ndarray, masks: torch.Tensor) -> float:
    """Spearman rank correlation of memorisation estimated from the first and second half of the models."""
    from scipy.stats import spearmanr

    half = correct.shape[0] // 2
    first = feldman_zhang(correct[:half], masks[:half]).numpy()
    second = feldman_zhang(correct[half:2 * half], masks[half:2 * half]).numpy()
    return float(spearmanr(first, second).statistic)


__all__ = ["MEMORISATION_MODELS", "cached_scores", "datamodel_pc_scores", "entanglement_scores", "feldman_zhang",
           "memorisation_population", "memorisation_scores", "principal_loadings", "split_half_stability"]


# --------------------------------------------------------------------------- hard for a method
def _hard_arguments(argument: str) -> tuple[str, float]:
    from expunge.methods.registry import get_method

    parts = argument.split(":")
    if len(parts) != 2 or not parts[0]:
        raise ForgetRuleSyntaxError("use hard:METHOD:FRACTION, e.g. hard:salun:0.1")
    get_method(parts[0])  # an unknown method: one line with close matches
    return parts[0], _fraction(parts[1])


def _check_hard(argument: str, train: ArrayDataset) -> None:
    from expunge.methods.registry import check_task

    method, fraction = _hard_arguments(argument)
    _count(fraction, train)
    check_task(method, train.task)


def hardness_scores(train: ArrayDataset, context: RuleContext, method: str, count: int, seed: int = 0,
                    members: int = HARD_MEMBERS) -> tuple[torch.Tensor, dict[str, Any]]:
    """Per-example distance of ``method``'s output from the oracle's on a validation world ``[N]`` (cached);
    ``-inf`` outside the candidate pool."""
    pool_size = min(len(train), HARD_POOL * count)
    settings = {"method": method, "count": count, "pool": pool_size, "members": members, "seed": seed}

    def compute() -> tuple[torch.Tensor, dict[str, Any]]:
        from expunge.methods.registry import unlearn_population
        from expunge.training.engine import population_scores

        cache = _cache(context)
        g = torch.Generator().manual_seed(HARD_SEED_OFFSET + seed)
        pool = torch.zeros(len(train), dtype=torch.bool)
        pool[torch.randperm(len(train), generator=g)[:pool_size]] = True
        seeds = [context.recipe.seed + HARD_SEED_OFFSET + i for i in range(members)]
        common = {"data": train.fingerprint(), "recipe": context.recipe.to_json()}
        original, _, _ = cache.trained({"role": "hard_validation_original"} | common, context.recipe, train, seeds,
                                       None, model=context.model, device=context.device)
        oracle, _, _ = cache.trained({"role": "hard_validation_oracle", "pool_seed": seed, "pool": pool_size}
                                     | common, context.recipe, train, seeds, (~pool).expand(members, -1).clone(),
                                     model=context.model, device=context.device)
        unlearned, _ = unlearn_population(original, train, pool, ~pool, method, context.recipe, seed=seed)
        mine = np.asarray(population_scores(unlearned, train)["margin"], dtype=np.float64).mean(0)
        theirs = np.asarray(population_scores(oracle, train)["margin"], dtype=np.float64).mean(0)
        scores = torch.full((len(train),), float("-inf"))
        scores[pool] = torch.from_numpy(np.abs(mine - theirs)[pool.numpy()]).float()
        return scores, {"method": method, "validation_members": members, "pool": pool_size,
                        "validation_seeds": seeds}

    return cached_scores(context, "hard", train, settings, compute)


@register_forget_rule("hard", "hard:salun:0.1 (the fraction hardest for a method, chosen on a validation world)",
                      check=_check_hard)
def _parse_hard(argument: str, train: ArrayDataset, seed: int, context: RuleContext | None = None) -> ForgetSet:
    method, fraction = _hard_arguments(argument)
    count = _count(fraction, train)
    context = _need(context, "hard")
    scores, info = hardness_scores(train, context, method, count, seed)
    reason = ForgetReason("hardness", HARD_DEFINITION, scores,
                          f"the {count} highest of {info.get('pool', count)} candidates (ties: earlier position)",
                          info)
    return _top(train, scores, count, f"hard:{method}:{fraction!r}@seed{seed}", reason)
