"""Language-model unlearning methods: each loss against a hand-computed value, and each method on a tiny population."""
import math
import tempfile

import pytest
import torch

from expunge import ExpungeError
from expunge.data import load_dataset
from expunge.data.authors import authors_corpus
from expunge.methods.language import (
    answer_lengths,
    grad_diff_loss,
    npo_loss,
    random_unit_vector,
    refusal_sequences,
    sequence_loglik,
    simnpo_loss,
    text_mask,
    token_mse,
)
from expunge.methods.registry import methods_supporting, unlearn_population
from expunge.tasks import get_task
from expunge.training.engine import population_scores, train_population
from expunge.training.recipe import default_recipe

IGNORE = -100
LM_METHODS = ["finetune", "gradient_ascent", "grad_diff", "idk", "npo", "rmu", "simnpo"]


def log_sigmoid(z: float) -> float:
    return -math.log(1.0 + math.exp(-z))


class _Task:  # what the loss helpers read from an UnlearningTask: the task's loss
    objective = get_task("causal_lm")

    def loss(self, outputs, targets):
        return self.objective.loss(outputs, targets)


def test_sequence_loglik_and_lengths_by_hand():
    # one member, one example, 3 positions, vocabulary 2; answer at positions 1 and 2
    logits = torch.tensor([[[[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]]]])
    targets = torch.tensor([[IGNORE, 0, 1]])
    expected = (2.0 - math.log(math.exp(2.0) + 1.0)) + (1.0 - math.log(1.0 + math.exp(1.0)))
    assert answer_lengths(targets).tolist() == [2.0]
    torch.testing.assert_close(sequence_loglik(_Task(), logits, targets), torch.tensor([[expected]]))


def test_grad_diff_loss_by_hand():
    torch.testing.assert_close(grad_diff_loss(torch.tensor([3.0]), torch.tensor([0.5]), 2.0), torch.tensor([-2.0]))


def test_npo_loss_by_hand():
    # log pi_theta = -2, log pi_ref = -1, beta 0.1: -(2/0.1) log sigmoid(-0.1 * (-2 - (-1))) = -20 log sigmoid(0.1)
    value = npo_loss(torch.tensor([-2.0]), torch.tensor([-1.0]), 0.1)
    torch.testing.assert_close(value, torch.tensor([-20.0 * log_sigmoid(0.1)]))
    # at pi_theta = pi_ref: (2/beta) log 2
    torch.testing.assert_close(npo_loss(torch.tensor([-5.0]), torch.tensor([-5.0]), 0.1),
                               torch.tensor([20.0 * math.log(2.0)]))


def test_simnpo_loss_by_hand():
    # log pi = -6 over |y| = 3 tokens, beta 2.5, gamma 0.5: -(2/2.5) log sigmoid(-(2.5/3)(-6) - 0.5) = -0.8 log sigmoid(4.5)
    value = simnpo_loss(torch.tensor([-6.0]), torch.tensor([3.0]), 2.5, 0.5)
    torch.testing.assert_close(value, torch.tensor([-0.8 * log_sigmoid(4.5)]))


def test_rmu_pieces_by_hand():
    targets = torch.tensor([[5, 7, IGNORE, IGNORE]])  # last scored position 1: text at 0..2 (position 2 holds <eos>)
    assert text_mask(targets).tolist() == [[True, True, True, False]]
    h = torch.tensor([[[[1.0, 2.0], [0.0, 0.0], [3.0, 1.0], [9.0, 9.0]]]])  # [K=1, B=1, T=4, d=2]
    control = torch.tensor([1.0, 1.0])
    # per token mean over units of (h - c)^2: 0.5, 1.0, 2.0 (the padding position 3 is left out) -> mean 7/6
    torch.testing.assert_close(token_mse(h, control, text_mask(targets).unsqueeze(0)), torch.tensor([[7.0 / 6.0]]))
    u = random_unit_vector(16, 3, torch.device("cpu"))
    assert abs(float(u.norm()) - 1.0) < 1e-6 and bool((u >= 0).all())
    assert torch.equal(u, random_unit_vector(16, 3, torch.device("cpu")))


def test_refusal_sequences_by_hand():
    # question tokens 10 11, answer 12 13, <eos> 2, padding 0
    x = torch.tensor([[10, 11, 12, 13, 2, 0, 0]])
    y = torch.tensor([[IGNORE, 12, 13, 2, IGNORE, IGNORE, IGNORE]])
    new_x, new_y = refusal_sequences(x, y, [[20], [21, 22, 23]], torch.tensor([1]), pad_id=0)
    assert new_x.tolist() == [[10, 11, 21, 22, 23, 2, 0]]
    assert new_y.tolist() == [[IGNORE, 21, 22, 23, 2, IGNORE, IGNORE]]
    with pytest.raises(ExpungeError, match="does not fit the sequence length 7"):
        refusal_sequences(x, y, [[20] * 5], torch.tensor([0]), pad_id=0)


# ---- each method on a tiny population: one author of 10 forgotten -----------------------------------------
@pytest.fixture(scope="module")
def tiny():
    split = load_dataset("fictitious_authors", num_authors=10, facts_per_author=10, unseen_authors=2, world_facts=10)
    recipe = default_recipe("fictitious_authors").with_(epochs=40, batch_size=16,
                                                        model_kwargs={"d_model": 32, "heads": 2})
    original, _ = train_population(recipe, split.train, members=2)
    forget = split.train.groups == 0
    tokenizer = authors_corpus(split).save_tokenizer(split, tempfile.mkdtemp())
    return split, recipe, original, forget, str(tokenizer)


# Hyperparameters: the defaults, except gradient_ascent (its defaults are tuned for classification: SGD lr 0.002
# barely moves a language model). finetune is not here: it never looks at the forget set and does not forget an
# author's facts (its docstring gives the figures).
SETTINGS = {"gradient_ascent": {"lr": 0.006}}


@pytest.mark.parametrize("method", ["gradient_ascent", "grad_diff", "idk", "npo", "rmu", "simnpo"])
def test_method_forgets_the_author_and_keeps_the_rest(tiny, method):
    split, recipe, original, forget, tokenizer = tiny
    extra = {"tokenizer": tokenizer} if method == "idk" else {}
    unlearned, _ = unlearn_population(original, split.train, forget, ~forget, method, recipe, seed=0,
                                      **SETTINGS.get(method, {}), **extra)
    before, after = population_scores(original, split.train), population_scores(unlearned, split.train)
    f, r = forget.numpy(), (~forget).numpy()
    assert after["sequence_loglik"][:, f].mean() < before["sequence_loglik"][:, f].mean() - 2.0, method
    assert after["correct"][:, f].mean() <= 0.5 * before["correct"][:, f].mean(), method
    assert after["correct"][:, r].mean() >= 0.7, f"{method}: retain exact match {after['correct'][:, r].mean():.2f}"


def test_lm_methods_are_registered_and_a_classification_method_is_refused_naming_them(tiny):
    split, recipe, original, forget, _ = tiny
    assert set(LM_METHODS) <= set(methods_supporting("causal_lm"))
    with pytest.raises(ExpungeError) as error:
        unlearn_population(original, split.train, forget, ~forget, "scrub", recipe)
    message = str(error.value)
    assert "not causal_lm" in message and "\n" not in message
    assert all(name in message for name in LM_METHODS), message


def test_idk_without_a_tokenizer_is_one_clear_line(tiny):
    split, recipe, original, forget, _ = tiny
    with pytest.raises(ExpungeError, match="pass tokenizer=") as error:
        unlearn_population(original, split.train, forget, ~forget, "idk", recipe)
    assert "\n" not in str(error.value)
    with pytest.raises(ExpungeError, match="outside the tokenizer's vocabulary"):
        unlearn_population(original, split.train, forget, ~forget, "idk", recipe, tokenizer=tiny[4],
                           answers="Nobody knows, sorry.")
