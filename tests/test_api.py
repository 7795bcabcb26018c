"""expunge.unlearn on a user's own nn.Module and data."""
import numpy as np
import pytest
import torch
from torch import nn

import expunge
from expunge import ExpungeError


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 4))


@pytest.fixture(scope="module")
def trained(gaussians):
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = gaussians.train.x, gaussians.train.y
    for _ in range(200):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model, x, y


def test_unlearn_returns_new_module_and_leaves_input_untouched(trained):
    model, x, y = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forget = y == 1
    unlearned, cost, _ = expunge.unlearn(model, forget=(x[forget], y[forget]), retain=(x[~forget], y[~forget]),
                                         method="finetune", epochs=2, stop=None)  # the fixed schedule
    assert isinstance(unlearned, nn.Sequential) and unlearned is not model
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert cost.example_gradients == pytest.approx(2 * int((~forget).sum()))


def test_gradient_ascent_forgets_a_class_of_a_user_model_to_a_stopping_target(trained):
    model, x, y = trained
    forget = y == 2
    with torch.no_grad():
        before = (model(x[forget]).argmax(1) == 2).float().mean()
    unlearned, cost, check = expunge.unlearn(model, forget=(x[forget], y[forget]), retain=(x[~forget], y[~forget]),
                                             method="gradient_ascent", lr=0.01, stop="chance")
    with torch.no_grad():
        after = (unlearned(x[forget]).argmax(1) == 2).float().mean()
    assert before > 0.9 and after <= 0.25, "stop='chance' runs until the forget class is at chance (4 classes)"
    assert check.ok and "reached the stopping target" in check.stopped and check.forget.accuracy_after <= 25.0


def test_numpy_arrays_and_datasets_are_accepted(trained):
    model, x, y = trained
    forget = torch.utils.data.TensorDataset(x[:30], y[:30])
    retain = (x[30:].numpy(), y[30:].numpy().astype(np.int64))
    unlearned, _, _ = expunge.unlearn(model, forget=forget, retain=retain, method="finetune", epochs=1)
    assert unlearned(x[:2]).shape == (2, 4)


def test_population_in_population_out(gaussians):
    population, _ = expunge.train_population(expunge.Recipe(model_kwargs={"hidden": [16]}, epochs=2),
                                             gaussians.train, members=3)
    x, y = gaussians.train.x, gaussians.train.y
    result, cost, _ = expunge.unlearn(population, forget=(x[:20], y[:20]), retain=(x[20:], y[20:]),
                                   method="finetune", epochs=1)
    assert isinstance(result, expunge.Population) and len(result) == 3 and cost.members == 3


def test_missing_retain_and_label_mismatch_are_explained(trained):
    model, x, y = trained
    with pytest.raises(ExpungeError, match="needs the retain set"):
        expunge.unlearn(model, forget=(x[:10], y[:10]), method="finetune")
    with pytest.raises(ExpungeError, match="labels go up to 7"):
        expunge.unlearn(model, forget=(x[:10], torch.full((10,), 7)), method="gradient_ascent")
    with pytest.raises(ExpungeError, match="same training set"):
        expunge.unlearn(model, forget=(x[:10], y[:10]), retain=(torch.randn(5, 3), y[:5]), method="finetune")


def test_model_that_cannot_take_the_data_is_explained(trained):
    _, x, y = trained
    with pytest.raises(ExpungeError, match="cannot run on the forget examples"):
        expunge.unlearn(nn.Linear(3, 4), forget=(x[:10], y[:10]), method="gradient_ascent")


def test_a_retain_free_method_given_a_retain_set_says_once_that_it_ignored_it(trained, recwarn):
    model, x, y = trained
    forget = y == 2
    _, _, check = expunge.unlearn(model, forget=(x[forget], y[forget]), retain=(x[~forget], y[~forget]),
                                  method="gradient_ascent", lr=0.01, stop="chance")
    ignored = [n for n in check.notes if "ignored the retain set" in n]
    assert len(ignored) == 1 and f"{int((~forget).sum()):,} examples" in ignored[0]
    assert str(check).count("ignored the retain set") == 1 and check.ok, "a note, not a warning"
    assert not [w for w in recwarn if "retain" in str(w.message)]


def test_a_label_free_method_runs_on_unlabeled_data(trained):
    model, x, y = trained
    forget = y == 2
    unlearned, _, check = expunge.unlearn(model, forget=x[forget], retain=(x[~forget], None), method="bad_teacher",
                                          stop=None, epochs=3, lr=0.005)
    assert any("no labels" in n and "agreement with the original" in n for n in check.notes)
    assert check.forget.accuracy_before == 100.0, "without labels, figures compare with the original's predictions"
    with torch.no_grad():
        agreement = (unlearned(x[forget]).argmax(1) == model(x[forget]).argmax(1)).float().mean()
    assert float(agreement) * 100 == pytest.approx(check.forget.accuracy_after)
    assert check.forget.accuracy_after < 50.0, "bad_teacher moved the forget set away from the original"
    assert check.retain.accuracy_after > 85.0


def test_a_method_that_needs_labels_refuses_unlabeled_data_naming_the_label_free_ones(trained):
    model, x, y = trained
    with pytest.raises(ExpungeError, match="needs labels .* use a label-free method \\(.*bad_teacher"):
        expunge.unlearn(model, forget=x[:10], retain=(x[10:], y[10:]), method="finetune")


def test_a_regression_model_given_to_a_classification_only_method_names_the_regression_methods():
    torch.manual_seed(0)
    x, y = torch.randn(40, 10), torch.randn(40)
    with pytest.raises(ExpungeError) as error:
        expunge.unlearn(nn.Linear(10, 1), forget=(x[:5], y[:5]), retain=(x[5:], y[5:]), method="salun")
    message = str(error.value)
    assert "\n" not in message and "not regression" in message
    assert "methods that support regression: " in message and "finetune" in message and "salun, " not in message


def test_unlearn_takes_array_datasets_for_forget_and_retain():
    """A user's ArrayDatasets (e.g. subsets of a built-in split) pass through as they are."""
    split = expunge.load_dataset("gaussians", n_train=200, n_test=50)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    forget, retain = split.train.subset(torch.arange(20)), split.train.subset(torch.arange(20, 200))
    unlearned, cost, check = expunge.unlearn(model, forget=forget, retain=retain, method="finetune", epochs=1)
    assert cost.example_gradients > 0 and check.retain is not None
    with pytest.raises(expunge.ExpungeError, match="num_classes=7 but the ArrayDataset says 4"):
        expunge.unlearn(model, forget=forget, retain=retain, method="finetune", num_classes=7)
