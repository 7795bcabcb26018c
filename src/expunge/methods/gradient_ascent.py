"""``gradient_ascent`` (GA): maximise the loss on the forget set."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from expunge.methods.base import Method, UnlearningTask, hyperparameter
from expunge.methods.common import StackedTraining, epochs_over
from expunge.methods.registry import register
from expunge.training.population import Population


@register
class GradientAscent(Method):
    """Gradient ascent on the forget-set loss.

    Thudi et al., "Unrolling SGD: Understanding Factors Influencing Machine Unlearning",
    EuroS&P 2022 (also the GA baseline of Jia et al., NeurIPS 2023). Ascent is unbounded:
    run too long it destroys the model, so the defaults are a small learning rate and few
    epochs. A member whose loss becomes non-finite is frozen at its last finite weights
    and reported in the cost record.

    Defaults: 3 epochs over the forget set, SGD lr 0.002, momentum 0.9. Measured on
    MNIST-1D (MLP, 4 members): class-wise, forget accuracy 99.9% -> 10% with test accuracy
    on the other classes 58.2% -> 54.3%; at lr 0.001 the class stays at 92%. Ascent has a
    sharp threshold: on a random 10% forget set the same setting also costs 15 points of
    retain accuracy, the known weakness of GA.

    Example:
        >>> unlearned, cost = expunge.unlearn(model, forget=f, method="gradient_ascent", lr=1e-3)  # doctest: +SKIP
    """

    name = "gradient_ascent"
    summary = "ascend the forget-set loss"
    paper = "Thudi et al., EuroS&P 2022; Jia et al., NeurIPS 2023 (GA)"

    @dataclass(frozen=True)
    class Hyperparameters:
        epochs: int = hyperparameter(3, "passes over the forget set")
        lr: float = hyperparameter(0.002, "SGD learning rate of the ascent")
        momentum: float = hyperparameter(0.9, "SGD momentum")
        batch_size: int = hyperparameter(64, "minibatch size per member")

    def run(self, task: UnlearningTask, hp: Any) -> Population:
        training = StackedTraining(task, "sgd", hp.lr, hp.momentum)
        for batch in epochs_over(task, task.forget_masks, hp.batch_size, hp.epochs, "gradient_ascent"):
            training.step(-training.task_loss(batch), batch.active, batch.examples)
        return training.result()
