"""Greedy answers of a population of language models (``causal_lm`` data).

Every member answers every question itself: the prompt is an example's tokens before
its answer (where the shifted targets are still ``-100``), and each member extends it
with its own arg-max token until ``<eos>`` or ``max_new_tokens``. Members run as one
computation (``Population.forward`` with per-member inputs).
"""
from __future__ import annotations

import torch

from expunge.data.base import ArrayDataset
from expunge.errors import ExpungeError
from expunge.tasks.causal_lm import IGNORE
from expunge.training.population import Population


@torch.no_grad()
def greedy_answers(population: Population, data: ArrayDataset, eos_id: int, max_new_tokens: int | None = None,
                   chunk: int = 256) -> list[list[list[int]]]:
    """Each member's greedy answer to each example's question: ``[K][n]`` lists of token ids (no ``<eos>``).

    The answer may run to the end of the example's sequence length (the context the
    data was built for) or ``max_new_tokens``, whichever is shorter; it is never truncated
    silently beyond that, the model just stops being asked.
    """
    if data.task != "causal_lm":
        raise ExpungeError(f"greedy answers need causal_lm data, got {data.task} data")
    ids, targets = data.inputs[0], data.y
    length = ids.shape[1]
    scored = targets != IGNORE
    if not bool(scored.any(1).all()):
        raise ExpungeError("every example needs an answer (some target that is not -100) to find its prompt")
    prompt_lengths = scored.int().argmax(1) + 1  # the first scored position predicts the first answer token
    answers: list[list[list[int]]] = [[] for _ in range(len(population))]
    for start in range(0, len(data), chunk):
        sequences, prompts = ids[start:start + chunk].clone(), prompt_lengths[start:start + chunk]
        steps = int(length - prompts.min())
        if max_new_tokens is not None:
            steps = min(steps, max_new_tokens)
        rows = torch.arange(sequences.shape[0])
        position_mask = torch.arange(length).unsqueeze(0) >= prompts.unsqueeze(1)
        sequences = sequences.masked_fill(position_mask, 0)  # nothing of the true answer is visible
        current = sequences.unsqueeze(0).repeat(len(population), 1, 1).to(population.device)
        finished = torch.zeros(len(population), sequences.shape[0], dtype=torch.bool, device=current.device)
        for step in range(steps):
            where = (prompts + step).clamp(max=length - 1)
            logits = population.forward((current,), per_member_input=True)  # [K, n, T, V]
            chosen = logits[:, rows, where - 1].argmax(-1)  # [K, n]
            writable = (prompts + step < length).to(current.device) & ~finished
            current[:, rows, where] = torch.where(writable, chosen, current[:, rows, where])
            finished |= writable & (chosen == eos_id)
            if bool(finished.all()):  # every member has ended every answer: nothing left to write
                break
        for k in range(len(population)):
            for i in range(sequences.shape[0]):
                tokens = current[k, i, int(prompts[i]):int(prompts[i]) + steps].tolist()
                answers[k].append(tokens[:tokens.index(eos_id)] if eos_id in tokens else tokens)
    return answers
