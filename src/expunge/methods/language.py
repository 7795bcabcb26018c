"""Building blocks of the language-model (``causal_lm``) unlearning methods: their losses and helpers.

Every loss here is a pure function of per-example quantities, so each is unit-tested against a
hand-computed value (``tests/test_lm_methods.py``). Conventions (see :mod:`expunge.tasks.causal_lm`):
targets are ``[..., T]`` token ids with ``-100`` outside the answer; a sequence's log-likelihood
``log pi(y|x)`` is the sum of its answer tokens' log-probabilities (``<eos>`` included), its
length ``|y|`` the number of answer tokens.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from expunge.errors import ExpungeError
from expunge.methods.base import UnlearningTask
from expunge.methods.common import CycledBatches, StackedTraining, epochs_over
from expunge.tasks.causal_lm import IGNORE
from expunge.training.batches import Batch
from expunge.training.population import Population


def require_causal_lm(task: UnlearningTask, method: str) -> None:
    """Refuse data of another task in one line (the runner's check_task does so first; this guards direct runs)."""
    if task.train.task != "causal_lm":
        raise ExpungeError(f"method {method!r} unlearns language models (causal_lm data), not {task.train.task}")


def answer_lengths(targets: torch.Tensor) -> torch.Tensor:
    """Answer tokens per sequence ``|y|`` (at least 1), as float, from targets ``[..., T]``."""
    return (targets != IGNORE).sum(-1).clamp(min=1).to(torch.float32)


def sequence_loglik(task: UnlearningTask, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log pi(y|x)`` per sequence ``[K, B]``: the task's mean answer-token loss times the answer length."""
    return -task.loss(outputs, targets) * answer_lengths(targets)


def grad_diff_loss(forget_loss: torch.Tensor, retain_loss: torch.Tensor, retain_weight: float) -> torch.Tensor:
    """Gradient difference: ``retain_weight * L_retain - L_forget`` (TOFU's ``grad_diff`` with weight 1)."""
    return retain_weight * retain_loss - forget_loss


def npo_loss(loglik: torch.Tensor, reference_loglik: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO's per-sequence loss ``-(2/beta) log sigmoid(-beta (log pi_theta(y|x) - log pi_ref(y|x)))``.

    Zhang et al., "Negative Preference Optimization", 2024 (eq. 3). At ``pi_theta = pi_ref`` it is
    ``(2/beta) log 2``; it falls toward 0 as the forget answer's likelihood falls below the
    reference's, and its gradient is gradient ascent's weighted by ``2 sigmoid(beta * log-ratio)``,
    which vanishes as the answer is forgotten (why NPO does not collapse as fast as GA).
    """
    return -(2.0 / beta) * F.logsigmoid(-beta * (loglik - reference_loglik))


def simnpo_loss(loglik: torch.Tensor, lengths: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimNPO's per-sequence loss ``-(2/beta) log sigmoid(-(beta/|y|) log pi_theta(y|x) - gamma)``.

    Fan et al., "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
    Unlearning", 2024: NPO with the reference model replaced by length normalisation (the mean
    answer-token log-probability) and a reward margin ``gamma``.
    """
    return -(2.0 / beta) * F.logsigmoid(-(beta / lengths) * loglik - gamma)


def text_mask(targets: torch.Tensor) -> torch.Tensor:
    """Bool ``[..., T]``: the positions holding the example's text (question, answer and ``<eos>``), not padding.

    A sequence's last scored position predicts ``<eos>``, which sits one position later.
    """
    positions = torch.arange(targets.shape[-1], device=targets.device)
    scored = targets != IGNORE
    last = torch.where(scored, positions, torch.full_like(positions, -1)).amax(-1, keepdim=True)
    return positions <= last + 1


def token_mse(activations: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean over its text positions of the mean squared difference over the hidden units.

    ``activations`` ``[K, B, T, d]``, ``target`` broadcastable to it, ``mask`` bool ``[K, B, T]``:
    RMU's losses (``torch.nn.functional.mse_loss`` over a sequence's tokens and units).
    """
    per_token = ((activations - target) ** 2).mean(-1)
    weight = mask.to(per_token.dtype)
    return (per_token * weight).sum(-1) / weight.sum(-1).clamp(min=1.0)


def random_unit_vector(size: int, seed: int, device: torch.device) -> torch.Tensor:
    """RMU's fixed direction: uniform in ``[0, 1)^d`` (the authors' ``torch.rand``), scaled to unit length."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(size, generator=generator)
    return (u / u.norm()).to(device)


def refusal_sequences(x: torch.Tensor, y: torch.Tensor, refusals: Sequence[Sequence[int]], choice: torch.Tensor,
                      pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Examples ``x``/``y`` ``[N, T]`` with each answer replaced by refusal ``choice[i]`` (token ids, no ``<eos>``).

    The question (the tokens up to the first scored position) is kept; the refusal and the
    example's own ``<eos>`` (its last answer target) follow it; the rest is padding and the
    targets are rebuilt as the task defines them. A refusal that does not fit the sequence
    length is refused in one line.
    """
    n, length = x.shape
    new_x = torch.full_like(x, pad_id)
    new_y = torch.full_like(y, IGNORE)
    for i in range(n):
        scored = torch.nonzero(y[i] != IGNORE).flatten()
        if len(scored) == 0:
            raise ExpungeError(f"example at position {i} has no answer tokens to relabel")
        prompt = int(scored[0]) + 1
        eos = int(y[i, scored[-1]])
        reply = list(refusals[int(choice[i])]) + [eos]
        size = prompt + len(reply)
        if size > length:
            raise ExpungeError(f"a refusal of {len(reply) - 1} tokens after a question of {prompt} does not fit the "
                               f"sequence length {length}: use shorter refusal answers")
        new_x[i, :prompt] = x[i, :prompt]
        new_x[i, prompt:size] = torch.tensor(reply, dtype=x.dtype)
        new_y[i, prompt - 1:size - 1] = new_x[i, prompt:size]
    return new_x, new_y


def forget_with_retain(task: UnlearningTask, name: str, hp: Any,
                       forget_loss: Callable[[StackedTraining, Batch], torch.Tensor]) -> Population:
    """The loop NPO, SimNPO and IDK share: Adam (``hp.lr``) over the forget set for ``hp.epochs`` passes of
    ``hp.batch_size`` minibatches, minimising ``forget_loss(training, batch)`` (per member ``[K]``) plus, when
    ``hp.retain_weight > 0``, that weight times the task loss of a retain minibatch cycled alongside (the retain
    set is not read otherwise)."""
    retain_batches = None
    if hp.retain_weight > 0:
        retain_batches = CycledBatches(task, task.require_retain(name), hp.batch_size, f"{name}/retain")
    training = StackedTraining(task, "adam", hp.lr)
    for batch in epochs_over(task, task.forget_masks, hp.batch_size, hp.epochs, f"{name}/forget"):
        loss = forget_loss(training, batch)
        examples = batch.examples
        if retain_batches is not None:
            retain_batch = retain_batches.next(batch.active)
            loss = loss + hp.retain_weight * training.task_loss(retain_batch)
            examples += retain_batch.examples
        training.step(loss, batch.active, examples)
    return training.result()
