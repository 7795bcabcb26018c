"""``grad_diff`` (gradient difference): ascend the forget-set loss while descending the retain-set loss."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from expunge.methods.base import Method, UnlearningTask, hyperparameter
from expunge.methods.common import CycledBatches, StackedTraining, epochs_over
from expunge.methods.language import grad_diff_loss, require_causal_lm
from expunge.methods.registry import register
from expunge.training.population import Population


@register
class GradDiff(Method):
    """Gradient difference: gradient ascent on the forget set plus gradient descent on the retain set.

    Liu et al., "Continual Learning and Private Unlearning", CoLLAs 2022; the ``grad_diff``
    baseline of TOFU (Maini et al., 2024). Per step, with a forget minibatch and a retain
    minibatch (the retain set cycled alongside the passes over the forget set, as TOFU's
    loader pairs them):

        ``L = retain_weight * L_retain - L_forget``

    where each ``L`` is the task's loss, the mean answer-token cross-entropy. TOFU uses
    ``retain_weight = 1`` (and AdamW, lr 1e-5, 5 epochs, on 7B models); the learning rate
    here is scaled to ``gpt_tiny``.

    Defaults (``gpt_tiny`` on ``fictitious_authors``): 3 passes over the forget set, Adam lr
    3e-4, retain weight 1, minibatches of 32. Forgetting one of 10 authors (2 members,
    d_model 32, 40 epochs): forget exact match 1.00 -> 0.10, retain 1.00 -> 0.96 (lr 1e-3 or
    5 passes drive the forget answers far lower but cost a third of the retain answers or more).

    Example:
        >>> unlearned, cost, check = expunge.unlearn(model, forget=f, retain=r, method="grad_diff")  # doctest: +SKIP
    """

    name = "grad_diff"
    summary = "forget-set loss ascent plus retain-set loss descent (language models)"
    paper = "Liu et al., CoLLAs 2022; Maini et al., TOFU 2024 (grad_diff)"
    needs_retain = True
    tasks = ("causal_lm",)
    demo = "quick"  # the language-model demo (expunge demo selects methods by the data's task)
    forget_sets = ("random",)

    @dataclass(frozen=True)
    class Hyperparameters:
        epochs: int = hyperparameter(3, "passes over the forget set (the retain set is cycled alongside)",
                                     search=(1, 10))
        lr: float = hyperparameter(3e-4, "Adam learning rate", search=(1e-4, 1e-2, "log"))
        retain_weight: float = hyperparameter(1.0, "weight of the retain loss", search=(0.1, 10.0, "log"))
        batch_size: int = hyperparameter(32, "forget and retain minibatch size per member")

    def run(self, task: UnlearningTask, hp: Any) -> Population:
        require_causal_lm(task, self.name)
        retain = task.require_retain(self.name)
        training = StackedTraining(task, "adam", hp.lr)
        retain_batches = CycledBatches(task, retain, hp.batch_size, "grad_diff/retain")
        for batch in epochs_over(task, task.forget_masks, hp.batch_size, hp.epochs, "grad_diff/forget"):
            retain_batch = retain_batches.next(batch.active)
            loss = grad_diff_loss(training.task_loss(batch), training.task_loss(retain_batch), hp.retain_weight)
            training.step(loss, batch.active, batch.examples + retain_batch.examples)
        return training.result()
