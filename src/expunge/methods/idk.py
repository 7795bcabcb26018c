"""``idk``: fine-tune the forget questions toward "I don't know"-style answers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from expunge.errors import ExpungeError
from expunge.methods.base import Method, UnlearningTask, hyperparameter
from expunge.methods.common import StackedTraining
from expunge.methods.language import (
    forget_with_retain,
    refusal_sequences,
    require_causal_lm,
)
from expunge.methods.registry import register
from expunge.tasks.causal_lm import REFUSALS
from expunge.training.batches import Batch
from expunge.training.population import Population


def refusal_token_ids(tokenizer_path: str, answers: str, vocabulary: int) -> tuple[list[list[int]], int]:
    """The refusal answers (``|``-separated text) as token ids of the tokenizer saved at ``tokenizer_path``,
    and its padding id; a word outside its vocabulary or a vocabulary that is not the model's is refused."""
    from expunge.data.authors import UNK, CorpusTokenizer, check_vocabulary

    if not tokenizer_path:
        raise ExpungeError("idk writes its refusal answers with the data's tokenizer: pass tokenizer=<path of the "
                           "tokenizer JSON> (fictitious_authors: authors_corpus(split).save_tokenizer(split, folder))")
    try:
        tokenizer = CorpusTokenizer.load(tokenizer_path)
    except Exception as error:
        raise ExpungeError(f"idk: cannot read the tokenizer {tokenizer_path!r}: {error}") from error
    check_vocabulary(vocabulary, tokenizer)
    texts = [a.strip() for a in answers.split("|") if a.strip()]
    if not texts:
        raise ExpungeError("idk: answers is empty; give refusal answers separated by '|'")
    unknown = tokenizer._tokenizer.token_to_id(UNK)
    ids = [tokenizer.tokens(text) for text in texts]
    for text, tokens in zip(texts, ids):
        if unknown in tokens:
            raise ExpungeError(f"idk: the refusal {text!r} has words outside the tokenizer's vocabulary; use "
                               "answers made of its words")
    return ids, tokenizer.pad_id


def _hash_choice(ids: torch.Tensor, seed: int, count: int) -> torch.Tensor:
    """A pseudo-random index in ``0..count-1`` per example ID, from ``seed`` (a multiplicative hash)."""
    mixed = (ids.to(torch.int64) * 2654435761 + (seed % 2**31) * 40503) % (2**31 - 1)
    mixed = (mixed * 48271) % (2**31 - 1)
    return mixed % count


@register
class IDK(Method):
    """Fine-tune each forget question toward an "I don't know"-style answer, with a retain term.

    The ``idk`` baseline of TOFU (Maini et al., "TOFU: A Task of Fictitious Unlearning
    for LLMs", 2024; Rafailov et al.'s DPO "preferred answer" set): every forget question is
    relabelled with one refusal answer drawn at random (per member, from its seed) from
    ``answers`` and the model is trained on the relabelled pairs by the task's loss, while
    the retain set's loss is descended alongside (TOFU: ``L = L_idk + L_retain``, AdamW lr
    1e-5, 5 epochs on 7B models; the learning rate here is scaled to ``gpt_tiny``). Unlike
    gradient ascent the objective is bounded: the model learns a new answer instead of
    unlearning toward nothing.

    The refusals are text, tokenized with the data's tokenizer (``tokenizer``: the path of
    its JSON; every word must be in its vocabulary, and the default refusals
    (:data:`expunge.tasks.causal_lm.REFUSALS`) are in ``fictitious_authors``'s). The
    question and the example's ``<eos>`` are kept; the answer is replaced.

    Defaults: 5 passes over the forget set, Adam lr 1e-3, retain weight 1, minibatches of 32.
    Forgetting one of 10 authors (2 members, d_model 32, 40 epochs): forget exact match
    1.00 -> 0.00 (true-answer log-likelihood -0.27 -> -14), retain 1.00 -> 0.97.

    Example:
        >>> path = authors_corpus(split).save_tokenizer(split, "out")  # doctest: +SKIP
        >>> unlearned, cost, check = expunge.unlearn(model, forget=f, retain=r, method="idk", tokenizer=str(path))  # doctest: +SKIP
    """

    name = "idk"
    summary = "fine-tune forget questions to \"I don't know\" answers, retain loss alongside (language models)"
    paper = "Maini et al., TOFU 2024 (idk)"
    needs_retain = True
    tasks = ("causal_lm",)
    demo = "quick"  # the language-model demo (expunge demo selects methods by the data's task)
    forget_sets = ("random",)

    @dataclass(frozen=True)
    class Hyperparameters:
        tokenizer: str = hyperparameter("", "path of the data's tokenizer JSON (the refusals are tokenized with it)")
        answers: str = hyperparameter("|".join(REFUSALS), "refusal answers, separated by '|'")
        retain_weight: float = hyperparameter(1.0, "weight of the retain loss (0: never reads the retain set)",
                                              search=(0.1, 10.0, "log"))
        epochs: int = hyperparameter(5, "passes over the forget set", search=(1, 10))
        lr: float = hyperparameter(1e-3, "Adam learning rate", search=(1e-4, 1e-2, "log"))
        batch_size: int = hyperparameter(32, "forget and retain minibatch size per member")

    @classmethod
    def needs_retain_with(cls, hp: Any) -> bool:
        return hp.retain_weight > 0

    def run(self, task: UnlearningTask, hp: Any) -> Population:
        require_causal_lm(task, self.name)
        refusals, pad = refusal_token_ids(hp.tokenizer, hp.answers, int(task.train.num_classes))
        x, y = task.train.x, task.y
        relabelled_x, relabelled_y = [], []
        for k, seed in enumerate(task.member_seeds("idk/answers")):
            # each member draws its own refusal per question, keyed by example ID (not position), so a member's
            # relabelling is the same whichever examples the training set or the other members hold
            own = torch.nonzero(task.forget_masks[k]).flatten().cpu()
            choice = _hash_choice(task.train.ids[own], seed, len(refusals))
            new_x, new_y = refusal_sequences(x[own].cpu(), y[own].cpu(), refusals, choice, pad)
            member_x, member_y = x.clone(), y.clone()
            member_x[own.to(x.device)], member_y[own.to(y.device)] = new_x.to(x.device), new_y.to(y.device)
            relabelled_x.append(member_x)
            relabelled_y.append(member_y)
        idk_x, idk_y = torch.stack(relabelled_x), torch.stack(relabelled_y)  # [K, N, T]
        members = torch.arange(task.members, device=task.device)[:, None]
        def forget_loss(training: StackedTraining, batch: Batch) -> torch.Tensor:
            outputs = training.population.forward((idk_x[members, batch.index],), training.params,
                                                  per_member_input=True)
            return batch.mean(task.loss(outputs, idk_y[members, batch.index]))

        return forget_with_retain(task, self.name, hp, forget_loss)
