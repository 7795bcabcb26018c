"""Example generations for a language-model audit: a few forget questions, answered before and after.

For the first :data:`EXAMPLES` forget questions, member 0 of the original population,
of every unlearned population and of the oracle population answers greedily
(:func:`expunge.training.generate.greedy_answers`); the report shows them beside the
true answer, so a reader sees what "forgot the author" looks like.
"""
from __future__ import annotations

from typing import Any

from expunge.audit.evidence import AuditData
from expunge.training.generate import greedy_answers
from expunge.training.population import Population

EXAMPLES = 4


def example_generations(data: AuditData, populations: dict[str, Population], examples: int = EXAMPLES
                        ) -> list[dict[str, Any]]:
    """``[{"id", "question", "truth", "answers": {name: text}}]`` for the first forget questions (member 0 each)."""
    corpus = data.corpus
    if corpus is None or not hasattr(corpus, "tokenizer"):
        return []
    questions = data.train.subset(data.forget_positions[:examples])
    tokenizer = corpus.tokenizer
    rows = [{"id": int(i), "question": corpus.fact(int(i)).question, "truth": corpus.fact(int(i)).answer,
             "answers": {}} for i in questions.ids.tolist()]
    for name, population in populations.items():
        first = population.select([0]) if len(population) > 1 else population
        answers = greedy_answers(first, questions, tokenizer.eos_id)[0]
        for row, answer in zip(rows, answers):
            row["answers"][name] = tokenizer.decode(answer)
    return rows
