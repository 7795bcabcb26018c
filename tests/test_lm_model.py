"""The causal_lm task against hand-computed values, gpt_tiny under vmap, and a tiny population that learns."""
import math

import pytest
import torch

from expunge import ExpungeError
from expunge.data import load_dataset
from expunge.data.authors import authors_corpus
from expunge.models.registry import ModelSpec, build_model
from expunge.tasks import get_task
from expunge.training.engine import check_output_shape, population_scores, train_population
from expunge.training.generate import greedy_answers
from expunge.training.population import Population
from expunge.training.recipe import default_recipe

IGNORE = -100


def test_causal_lm_loss_and_statistics_by_hand():
    task = get_task("causal_lm")
    # one member, two examples, 3 positions, vocabulary of 2; logits (a, 0) give log p(0) = -log(1 + e^-a)
    logits = torch.tensor([[[[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]],
                            [[1.0, 0.0], [0.0, 3.0], [5.0, 5.0]]]])
    targets = torch.tensor([[IGNORE, 0, 1],      # answer: positions 1 and 2
                            [0, IGNORE, IGNORE]])  # answer: position 0
    lp = lambda own, other: own - math.log(math.exp(own) + math.exp(other))  # noqa: E731 - log softmax
    first = lp(2.0, 0.0) + lp(1.0, 0.0)  # target 0 at position 1, target 1 at position 2
    second = lp(1.0, 0.0)
    stats = task.statistics(logits, targets)
    torch.testing.assert_close(stats["sequence_loglik"], torch.tensor([[first, second]], dtype=torch.float64))
    torch.testing.assert_close(stats["loss"], torch.tensor([[-first / 2, -second]], dtype=torch.float64))
    assert stats["correct"].tolist() == [[1.0, 1.0]]  # question positions (0 of the first) do not count
    # phi and margin: the mean token log-likelihood of the answer (METRICS.md, language models)
    torch.testing.assert_close(stats["phi"], torch.tensor([[first / 2, second]], dtype=torch.float64))
    torch.testing.assert_close(stats["margin"], stats["phi"])
    wrong = targets.clone()
    wrong[0, 2] = 0  # position 2 predicts 1, not 0
    assert task.statistics(logits, wrong)["correct"].tolist() == [[0.0, 1.0]]
    # per-member targets [K, B, T] give the same as shared ones
    torch.testing.assert_close(task.loss(logits.expand(2, -1, -1, -1), targets.expand(2, -1, -1)),
                               task.loss(logits, targets).expand(2, -1))


def test_gpt_tiny_population_equals_members_run_one_by_one():
    spec = ModelSpec("gpt_tiny", (12,), 30, {"layers": 2, "d_model": 32, "heads": 4, "context": 16})
    population = Population.initialize(spec, [0, 1, 2])
    ids = torch.randint(0, 30, (3, 5, 12))
    vectorized = population.forward((ids,), per_member_input=True)
    assert population._vectorized, "gpt_tiny must run under vmap"
    assert vectorized.shape == (3, 5, 12, 30)
    for i in range(3):
        alone = population.member(i)(ids[i])
        torch.testing.assert_close(vectorized[i], alone, atol=1e-5, rtol=1e-5)
    # causal: a change at position 6 leaves the logits of positions 0..5 unchanged
    changed = ids[0].clone()
    changed[:, 6] = (changed[:, 6] + 1) % 30
    member = population.member(0)
    torch.testing.assert_close(member(changed)[:, :6], member(ids[0])[:, :6])


@pytest.fixture(scope="module")
def tiny_authors():
    return load_dataset("fictitious_authors", num_authors=8, facts_per_author=10, unseen_authors=2, world_facts=10)


def test_tiny_population_learns_its_training_answers(tiny_authors):
    split = tiny_authors
    recipe = default_recipe("fictitious_authors").with_(epochs=40, batch_size=16,
                                                        model_kwargs={"d_model": 32, "heads": 2})
    population, _ = train_population(recipe, split.train, members=2)
    train = population_scores(population, split.train)
    held_out = population_scores(population, split.test)
    assert train["correct"].shape == (2, 90) and held_out["correct"].shape == (2, 20)
    assert train["correct"].mean(1).min() > 0.8  # every member knows its training answers
    assert held_out["correct"].mean(1).max() < 0.2  # and cannot know unseen authors'
    assert train["sequence_loglik"].mean() > held_out["sequence_loglik"].mean() + 5
    corpus = authors_corpus(split)
    answers = greedy_answers(population, split.train.subset(torch.arange(4)), corpus.tokenizer.eos_id)
    generated = [corpus.tokenizer.decode(a) for a in answers[0]]
    truth = [corpus.tokenizer.decode(corpus.tokenizer.tokens(corpus.fact(i).answer)) for i in range(4)]
    assert sum(g == t for g, t in zip(generated, truth)) >= 3


def test_vocabulary_mismatch_and_too_long_prompts_are_one_clear_line(tiny_authors):
    data = tiny_authors.train
    length, vocabulary = data.x.shape[1], data.num_classes
    other = Population.initialize(ModelSpec("gpt_tiny", (length,), vocabulary + 7, {"d_model": 16, "heads": 2}), [0])
    with pytest.raises(ExpungeError) as error:
        check_output_shape(other, data)
    assert f"predicts over {vocabulary + 7} tokens but the data's tokenizer has {vocabulary}" in str(error.value)
    assert "\n" not in str(error.value)
    with pytest.raises(ExpungeError) as error:
        build_model(ModelSpec("gpt_tiny", (length,), vocabulary, {"context": length - 1}))
    assert f"have {length} tokens, longer than context={length - 1}" in str(error.value)
    model = build_model(ModelSpec("gpt_tiny", (8,), vocabulary, {"context": 8, "d_model": 16, "heads": 2}))
    with pytest.raises(ExpungeError) as error:
        model(torch.zeros(1, 9, dtype=torch.int64))
    assert "longer than its context of 8" in str(error.value) and "\n" not in str(error.value)
    one_per_sequence = torch.nn.Sequential(torch.nn.Embedding(vocabulary, 4), torch.nn.Flatten(),
                                           torch.nn.Linear(4 * length, vocabulary))  # [N, V]: a classifier
    with pytest.raises(ExpungeError) as error:
        check_output_shape(Population.from_module(one_per_sequence), data)
    assert "must give next-token logits" in str(error.value)
