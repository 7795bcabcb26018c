"""One-shot global magnitude pruning of a population ("prune first, then unlearn").

Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023, show that
unlearning a sparse model closes much of the gap to retraining. :func:`prune_population`
gives any method that sparse prior: it zeroes, per member, the smallest-magnitude
weights and returns the masks, which a method passes to its optimiser
(``StackedTraining(..., update_masks=masks, start=pruned)``) so that pruned weights stay
zero while it unlearns. ``l1_sparse`` exposes it as its ``prune_sparsity``
hyperparameter.

This module is a helper: it registers no method.
"""
from __future__ import annotations

import torch

from expunge.errors import ExpungeError
from expunge.training.population import Params, Population


def prunable(name: str, tensor: torch.Tensor) -> bool:
    """Whether a stacked parameter ``[K, ...]`` is a weight tensor that pruning may zero.

    Weight matrices and convolution kernels (two or more dimensions per member) are
    pruned; biases and normalisation scales (one dimension per member) never are, as
    in the paper's code, which prunes only convolution and linear weights.
    """
    return tensor.dim() >= 3


def prune_population(population: Population, sparsity: float) -> tuple[Population, Params]:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights of every member.

    The threshold is global over all of a member's weight tensors (see
    :func:`prunable`) and computed per member: member ``k``'s pruned weights depend
    only on its own parameters. Exactly ``round(sparsity * weights)`` weights are zeroed
    per member (ties broken by position). Returns a new population (the input is not
    changed) and the masks, name -> 0/1 tensor ``[K, ...]`` for every pruned tensor,
    ready for :class:`~expunge.training.optim.PopulationOptimizer`'s ``update_masks``.

    Example:
        >>> pruned, masks = prune_population(population, 0.5)  # doctest: +SKIP
        >>> training = StackedTraining(task, start=pruned, update_masks=masks)  # doctest: +SKIP
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise ExpungeError(f"sparsity={sparsity!r} must be a fraction in [0, 1): the share of weights to zero")
    names = [name for name, tensor in population.params.items() if prunable(name, tensor)]
    if not names:
        raise ExpungeError("the model has no weight tensors to prune (only biases or normalisation parameters)")
    magnitudes = torch.cat([population.params[name].detach().abs().flatten(1) for name in names], dim=1)
    members, weights = magnitudes.shape
    count = int(round(float(sparsity) * weights))
    keep = torch.ones_like(magnitudes)
    if count > 0:
        order = torch.argsort(magnitudes, dim=1, stable=True)
        keep.scatter_(1, order[:, :count], 0.0)
    masks: Params = {}
    start = 0
    for name in names:
        tensor = population.params[name]
        size = tensor[0].numel()
        masks[name] = keep[:, start:start + size].reshape(tensor.shape).to(tensor.dtype)
        start += size
    params = {name: (tensor.detach() * masks[name] if name in masks else tensor.detach()).clone()
              for name, tensor in population.params.items()}
    info = dict(population.info) | {"pruned_sparsity": float(sparsity)}
    return population.with_params(params, info), masks


def sparsity_of(population: Population) -> torch.Tensor:
    """Per-member fraction ``[K]`` of weights (see :func:`prunable`) that are exactly zero."""
    tensors = [t.detach().flatten(1) for name, t in population.params.items() if prunable(name, t)]
    if not tensors:
        return torch.zeros(len(population))
    flat = torch.cat(tensors, dim=1)
    return (flat == 0).float().mean(1).cpu()
