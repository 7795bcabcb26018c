"""``gradient_ascent`` (GA): maximise the loss on the forget set."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from expunge.methods.base import Method, UnlearningTask, hyperparameter
from expunge.methods.common import StackedTraining, epochs_over
from expunge.methods.registry import register
from expunge.methods.reweighting import ForgetWeights, forget_loss
from expunge.training.population import Population


@register
class GradientAscent(Method):
    """Gradient ascent on the forget-set loss.

    Thudi et al., "Unrolling SGD: Understanding Factors Influencing Machine Unlearning",
    EuroS&P 2022 (also the GA baseline of Jia et al., NeurIPS 2023). Ascent is unbounded:
    run too long it destroys the model, so the defaults are a small learning rate and few
    epochs. A member whose loss becomes non-finite is frozen at its last finite weights
    and reported in the cost record.

    Defaults: 3 epochs over the forget set, SGD lr 0.002, momentum 0.9, and a per-member
    stop once the forget-batch loss exceeds ln(classes), the loss of a uniform guess (a
    safeguard of ours, ``stop_loss=0`` turns it off). Plain ascent has a sharp, member-
    dependent threshold: on MNIST-1D (MLP, class 3 forgotten) plain ascent at lr 0.0015
    for 5 epochs forgets the class but collapses test accuracy on the other classes, and
    3 epochs already collapse some members. With the stop, 3 epochs at lr 0.002 forget
    much of the class while the other classes lose little test accuracy on average and
    no member collapses. On a random forget set GA still costs a large part of the
    retain accuracy while its forget accuracy stays above the oracle's: the known
    weakness of GA. Figures for the defaults: ``python benchmarks/methods.py``.

    Regression: the objective is the task loss alone, so GA ascends squared error as
    well. There is no uniform guess to bound it (the task's chance loss is 0, so the stop
    is off); on scikit-learn's diabetes (MLP, random 10%, 4 members) the defaults raise
    the forget set's squared error from 0.312 to 0.364 (oracle 0.445) while the retain
    error moves from 0.352 to 0.363.

    Language models (``causal_lm``): the task loss is the mean answer-token cross-entropy,
    so GA ascends the forget answers' loss (TOFU's ``grad_ascent``), and the uniform-guess
    bound is ``ln(vocabulary)``. The classification defaults barely move ``gpt_tiny``; on
    ``fictitious_authors`` (one of 10 authors forgotten, 2 members, d_model 32) the
    threshold is sharp and member-dependent: lr 0.003 lowers the forget answers' log-
    likelihood from -0.27 to -1.1 (exact match 1.00 -> 0.75), lr 0.004 to -5.8 (0.50: one
    member forgets, the other not yet) with retain exact match 0.92, lr 0.005 costs 38% of
    the retain answers. ``grad_diff``, ``npo`` and ``simnpo`` are the bounded alternatives.

    Example:
        >>> unlearned, cost, check = expunge.unlearn(model, forget=f, method="gradient_ascent", lr=1e-3)  # doctest: +SKIP
    """

    name = "gradient_ascent"
    demo = "quick"
    tasks = ("classification", "regression", "causal_lm")  # only the task loss: squared error, answer tokens
    forget_sets = ("random", "class", "subclass")  # benchmark: subclass:3 keeps retain accuracy
    summary = "ascend the forget-set loss"
    paper = "Thudi et al., EuroS&P 2022; Jia et al., NeurIPS 2023 (GA)"

    @dataclass(frozen=True)
    class Hyperparameters:
        epochs: int = hyperparameter(3, "passes over the forget set", search=(1, 10))
        lr: float = hyperparameter(0.002, "SGD learning rate of the ascent", search=(1e-4, 0.1, "log"))
        momentum: float = hyperparameter(0.9, "SGD momentum")
        batch_size: int = hyperparameter(64, "minibatch size per member")
        stop_loss: float = hyperparameter(
            -1.0, "a member stops ascending once its forget-batch loss exceeds this; -1 means ln(classes), "
                  "the loss of a uniform guess (the forget set then looks unknown, not anti-learned); 0 never stops; "
            "ignored when a stopping target (stop=...) is given")

    def run(self, task: UnlearningTask, hp: Any, forget_weights: ForgetWeights | None = None) -> Population:
        """``forget_weights``: per-example weights on the ascended loss (``loreun``); None: the plain mean."""
        training = StackedTraining(task, "sgd", hp.lr, hp.momentum)
        stop = hp.stop_loss
        if stop < 0:
            stop = task.objective.chance_loss(task.train.num_classes)
        if task.stop is not None:
            stop = 0.0  # an explicit stopping target (task.stop) governs instead of the uniform-guess bound
        stopped = torch.zeros(task.members, dtype=torch.bool, device=task.device)
        for batch in epochs_over(task, task.forget_masks, hp.batch_size, hp.epochs, "gradient_ascent"):
            active = batch.active & ~stopped
            if not bool(active.any()):
                break
            loss = forget_loss(training, batch, weights=forget_weights)
            if stop > 0:  # per member: a member past the bound takes no further steps
                stopped |= batch.active & (loss.detach() > stop)
                active = active & ~stopped
            training.step(-loss, active, float(batch.weight[active].sum()))
        return training.result()
