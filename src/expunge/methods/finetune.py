"""``finetune`` (FT): continue training on the retain set only."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from expunge.methods.base import Method, UnlearningTask, hyperparameter
from expunge.methods.common import StackedTraining, epochs_over
from expunge.methods.registry import register
from expunge.training.population import Population


@register
class Finetune(Method):
    """Fine-tuning on the retain set ("catastrophic forgetting" of the forget set).

    Warnecke et al., "Machine Unlearning of Features and Labels", NDSS 2023, and the
    FT baseline of Jia et al., NeurIPS 2023. The forget set is never looked at: its
    influence fades only as far as further training on the rest overwrites it, which is
    why FT is a weak but cheap baseline.

    Defaults: 5 epochs of SGD (lr 0.05, momentum 0.9), against the 30 epochs of the
    MNIST-1D recipe. The papers use lr 0.01-0.1 for 10 epochs on CIFAR-10. With only five
    epochs, on MNIST-1D (MLP) lr 0.01 left a forgotten class mostly recognised; lr 0.05
    forgets much of it with test accuracy on the other classes unchanged; lr 0.1 forgets
    it entirely but costs retain accuracy. Figures for the defaults:
    ``python benchmarks/methods.py``.

    Language models (``causal_lm``): the task loss is the mean answer-token cross-entropy on
    the retain questions. On ``fictitious_authors`` (one of 10 authors forgotten, 2 members,
    d_model 32) even 10 epochs at lr 0.1 leave the forgotten author's answers known (exact
    match 1.00 -> 0.95): facts of one author are not overwritten by training on others'.

    Example:
        >>> unlearned, cost, check = expunge.unlearn(model, forget=f, retain=r, method="finetune", epochs=3)  # doctest: +SKIP
    """

    name = "finetune"
    demo = "quick"
    summary = "fine-tune on the retain set"
    paper = "Warnecke et al., NDSS 2023; Jia et al., NeurIPS 2023 (FT)"
    needs_retain = True
    forget_sets = ("random", "class", "subclass")  # never looks at the forget set: any kind
    tasks = ("classification", "regression", "causal_lm")  # the task's loss: answer tokens for causal_lm

    @dataclass(frozen=True)
    class Hyperparameters:
        epochs: int = hyperparameter(5, "passes over the retain set", search=(1, 10))
        lr: float = hyperparameter(0.05, "SGD learning rate", search=(1e-3, 0.3, "log"))
        momentum: float = hyperparameter(0.9, "SGD momentum")
        weight_decay: float = hyperparameter(0.0, "L2 weight decay")
        batch_size: int = hyperparameter(128, "minibatch size per member")

    def run(self, task: UnlearningTask, hp: Any) -> Population:
        retain = task.require_retain(self.name)
        training = StackedTraining(task, "sgd", hp.lr, hp.momentum, hp.weight_decay)
        for batch in epochs_over(task, retain, hp.batch_size, hp.epochs, "finetune"):
            training.step(training.task_loss(batch), batch.active, batch.examples)
        return training.result()
