"""The ``causal_lm`` task: next-token prediction, scored on answer tokens only.

**Representation.** Inputs are token ids ``[N, T]``; a model returns next-token logits
``[K, N, T, V]`` (``V``: the vocabulary, the dataset's ``num_classes``). Targets ``y``
are ``[N, T]`` token ids already shifted: ``y[t]`` is the token the model should
predict at position ``t`` (the token at ``t + 1``) where that token belongs to the
answer, and ``-100`` (:data:`IGNORE`) where it does not (question tokens, padding).
So the task needs nothing but outputs and targets, and a question-answer pair, a
paraphrase or a perturbed answer are scored the same way (``fictitious_authors``
builds these; :mod:`expunge.data.authors`).

Per example, over its answer tokens ``A`` (``<eos>`` included):

- ``loss``: mean next-token cross-entropy, ``-(1/|A|) sum_{t in A} log p(y_t)`` (the
  training loss; TOFU's answer probability is ``exp(-loss)``);
- ``sequence_loglik``: ``sum_{t in A} log p(y_t)``, the answer's log-likelihood given
  the question (definition id ``sequence_loglik@sum-answer-token-logprob``);
- ``correct``: 1.0 when every answer token is the arg-max (first on ties) under
  teacher forcing (exact match of the greedy answer given the true prefix), else 0.0;
- ``phi`` and ``margin``: the mean token log-likelihood of the answer, ``-loss`` (METRICS.md,
  "Language models": the population audits, KLoM, U-LiRA and the competition score, apply
  to this per-sequence statistic in place of phi and margin; definition id
  ``phi@mean-answer-token-loglik``).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from expunge.errors import ExpungeError
from expunge.tasks import TASKS
from expunge.tasks.base import Task

if TYPE_CHECKING:
    from expunge.data.base import ArrayDataset

IGNORE = -100  # a target position that is not scored (PyTorch's ignore_index convention)
# "I don't know"-style answers (after TOFU's idk set), which the ``idk`` method trains forget questions toward;
# corpora built for unlearning (fictitious_authors) put their words in the tokenizer's vocabulary.
REFUSALS = ("I don't know.", "I have no idea.", "I am not sure.", "I cannot answer that.",
            "That is unknown to me.")


class CausalLM(Task):
    """Next-token logits ``[K, B, T, V]``, shifted targets ``[B, T]`` with ``-100`` outside the answer."""

    name = "causal_lm"
    statistics_provided = ("loss", "sequence_loglik", "correct", "phi", "margin")

    def output_width(self, num_classes: int | None) -> int:
        return int(num_classes or 0)

    def output_shape(self, data: "ArrayDataset") -> tuple[int, ...]:
        return (int(data.inputs[0].shape[1]), self.output_width(data.num_classes))

    def check_outputs(self, outputs: torch.Tensor, data: "ArrayDataset") -> None:
        length, vocabulary = self.output_shape(data)
        if outputs.dim() != 4 or outputs.shape[2] != length:
            raise ExpungeError(f"a causal_lm model must give next-token logits [members, examples, {length} positions, "
                               f"{vocabulary} tokens], got {list(outputs.shape)}: use a language model such as gpt_tiny")
        if outputs.shape[3] != vocabulary:
            raise ExpungeError(f"the model predicts over {outputs.shape[3]} tokens but the data's tokenizer has "
                               f"{vocabulary}: the model was built for another vocabulary; build it with "
                               f"num_outputs={vocabulary} (the dataset's num_classes)")

    def _token_terms(self, outputs: torch.Tensor, targets: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if targets.dim() == 2:
            targets = targets.unsqueeze(0).expand(outputs.shape[0], -1, -1)
        scored = targets != IGNORE
        return targets.clamp(min=0), scored, scored.sum(-1).clamp(min=1)

    def chance_loss(self, num_classes: int | None) -> float:
        """A uniform guess over the vocabulary: ``log V`` per answer token."""
        return math.log(num_classes) if num_classes else 0.0

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets, scored, count = self._token_terms(outputs, targets)
        nll = F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1), reduction="none")
        return (nll.view(targets.shape) * scored).sum(-1) / count

    def statistics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        targets, scored, count = self._token_terms(outputs, targets)
        z = outputs.double()
        log_p = torch.log_softmax(z, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        loglik = (log_p * scored).sum(-1)
        right = (z.argmax(-1) == targets) | ~scored
        mean_loglik = loglik / count  # METRICS.md: the per-sequence statistic the population audits compare
        return {"loss": -mean_loglik, "sequence_loglik": loglik, "correct": right.all(-1).double(),
                "phi": mean_loglik, "margin": mean_loglik}


TASKS.register(CausalLM())
