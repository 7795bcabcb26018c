"""``rmu`` (Representation Misdirection for Unlearning, WMDP): scramble a middle layer's activations on forget text."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from expunge.errors import ExpungeError
from expunge.methods.base import Method, UnlearningTask, hyperparameter
from expunge.methods.common import CycledBatches, StackedTraining, epochs_over
from expunge.methods.language import (
    random_unit_vector,
    require_causal_lm,
    text_mask,
    token_mse,
)
from expunge.methods.registry import register
from expunge.methods.representation import Representations
from expunge.training.population import Population


def _layer_names(task: UnlearningTask, layer: int) -> tuple[int, str, list[str]]:
    """The layer read (index), the module whose input is its output, and the parameters RMU updates."""
    template = task.original.template
    blocks = getattr(template, "blocks", None)
    if not isinstance(blocks, torch.nn.ModuleList) or len(blocks) == 0:
        raise ExpungeError("rmu steers a transformer's residual stream: it needs a model with a .blocks list of "
                           "layers, such as gpt_tiny")
    count = len(blocks)
    index = (count - 1) // 2 if layer < 0 else layer
    if not 0 <= index < count:
        raise ExpungeError(f"rmu: layer={layer} is not a layer of this model (it has {count}: 0..{count - 1})")
    reader = f"blocks.{index + 1}" if index + 1 < count else "norm"
    updated = [name for name in task.original.params
               if any(name.startswith(f"blocks.{i}.mlp.") for i in range(max(0, index - 2), index + 1))]
    return index, reader, updated


@register
class RMU(Method):
    """RMU: push a middle layer's activations on forget text toward a fixed random vector, keep them on retain text.

    Li et al., "The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning",
    ICML 2024 (section 5). With ``h_theta(t)`` the residual stream after layer ``l`` at token
    ``t`` of the model being updated, ``h_0`` the original's, ``u`` a random unit vector
    (drawn once, uniform in ``[0, 1)^d`` then normalised) and ``c`` the steering coefficient:

        ``L = mean_forget-tokens ||h_theta(t) - c u||^2 + alpha * mean_retain-tokens ||h_theta(t) - h_0(t)||^2``

    (squared distances averaged over hidden units, as the authors' ``mse_loss``). Only the
    MLP weights of layers ``l - 2 .. l`` are updated, as the authors do (Zephyr-7B: layer 7,
    MLPs of layers 5-7, ``c = 6.5``, ``alpha = 1200``, AdamW lr 5e-5, a few hundred steps of
    small batches; recalled from the paper, not re-checked against it here).
    Every text token of an example counts (question, answer, ``<eos>``; not padding).

    Scaled to ``gpt_tiny`` (residual stream of 64 units, its activations' norm a few units
    rather than tens): the middle layer (``(layers - 1) // 2``), ``c = 20`` (about six times
    the original's per-token activation norm, 3.5 at d_model 32), ``alpha = 100``, Adam lr
    1e-2 (only a few MLP weights move), 5 passes over the forget set with the retain set
    cycled alongside. Each member draws its own ``u`` from its seed. Forgetting one of 10
    authors (2 members, d_model 32, 40 epochs): forget exact match 1.00 -> 0.10 (log-
    likelihood -0.27 -> -6.7), retain 1.00 -> 1.00; alpha 10 costs a fifth of the retain
    answers, c = 50 forgets all but costs 8%.

    Example:
        >>> unlearned, cost, check = expunge.unlearn(model, forget=f, retain=r, method="rmu", steering=20.0)  # doctest: +SKIP
    """

    name = "rmu"
    summary = "steer a middle layer's forget-text activations to a random vector, keep retain ones (language models)"
    paper = "Li et al., ICML 2024 (WMDP, RMU)"
    needs_retain = True
    tasks = ("causal_lm",)
    demo = "quick"  # the language-model demo (expunge demo selects methods by the data's task)
    forget_sets = ("random",)

    @dataclass(frozen=True)
    class Hyperparameters:
        layer: int = hyperparameter(-1, "layer whose output is steered (-1: the middle one, (layers - 1) // 2)")
        steering: float = hyperparameter(20.0, "steering coefficient c: the forget activations' target is c u",
                                         search=(2.0, 100.0, "log"))
        alpha: float = hyperparameter(100.0, "weight of the retain activations' MSE", search=(0.1, 1000.0, "log"))
        epochs: int = hyperparameter(5, "passes over the forget set (the retain set is cycled alongside)",
                                     search=(1, 10))
        lr: float = hyperparameter(1e-2, "Adam learning rate", search=(1e-4, 1e-2, "log"))
        batch_size: int = hyperparameter(32, "forget and retain minibatch size per member")

    def run(self, task: UnlearningTask, hp: Any) -> Population:
        require_causal_lm(task, self.name)
        retain = task.require_retain(self.name)
        _index, reader, updated = _layer_names(task, hp.layer)
        masks = {name: torch.zeros_like(value) for name, value in task.original.params.items() if name not in updated}
        masks |= {name: torch.ones_like(task.original.params[name]) for name in updated}
        training = StackedTraining(task, "adam", hp.lr, update_masks=masks)
        current = Representations(training.population, reader)
        frozen = Representations(task.original, reader)
        width = task.original.template.token_embedding.embedding_dim
        directions = torch.stack([random_unit_vector(width, seed, task.device)
                                  for seed in task.member_seeds("rmu/direction")])  # [K, d]
        control = (hp.steering * directions)[:, None, None, :]
        retain_batches = CycledBatches(task, retain, hp.batch_size, "rmu/retain")
        for batch in epochs_over(task, task.forget_masks, hp.batch_size, hp.epochs, "rmu/forget"):
            retain_batch = retain_batches.next(batch.active)
            _, forget_h = current.at(task, batch.index, training.params)
            _, retain_h = current.at(task, retain_batch.index, training.params)
            with torch.no_grad():
                _, retain_h0 = frozen.at(task, retain_batch.index)
            task.meter.forwards(retain_batch.examples)
            shape = (*batch.index.shape, task.train.x.shape[1], width)
            forget_loss = token_mse(forget_h.view(shape), control, text_mask(task.y[batch.index]))
            retain_loss = token_mse(retain_h.view(shape[:1] + retain_h.shape[1:2] + shape[2:]),
                                    retain_h0.view(shape[:1] + retain_h0.shape[1:2] + shape[2:]),
                                    text_mask(task.y[retain_batch.index]))
            loss = batch.mean(forget_loss) + hp.alpha * retain_batch.mean(retain_loss)
            training.step(loss, batch.active, batch.examples + retain_batch.examples)
        return training.result()
