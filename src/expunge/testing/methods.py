"""The method conformance suite: :func:`check_method`, and each of its checks as a function.

Every registered method passes it (``tests/test_methods_conformance.py`` runs each
check over the registry), and another package holds its own method to the same contract
with one call, as scikit-learn's ``check_estimator`` does for estimators::

    from expunge.testing import check_method
    check_method(MyMethod)  # returns, or raises ContractViolation naming the check

The checks run on a small built-in setting: Gaussian mixtures (600 training examples,
10 features, 4 classes), an MLP with one hidden layer of 32 units trained 4 epochs, a
population of 3 members (seeds 11, 12, 13), a random 10% forget set; for the
task-support check, scikit-learn's diabetes regression with a population of 2; and for
language-model methods (``causal_lm``), a tiny ``fictitious_authors`` corpus (8 authors x
4 facts) learned by ``gpt_tiny`` (1 layer, d_model 32). Each check takes a
:class:`MethodSetting`, so a test can run one check at a time.
"""
from __future__ import annotations

import functools
import inspect
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from expunge.data import class_forget, load_dataset, random_forget, subclass_forget
from expunge.data.base import ArrayDataset
from expunge.errors import ExpungeError
from expunge.methods.base import Method, UnlearningTask, check_method_class
from expunge.methods.registry import METHODS, unlearn_population
from expunge.testing.contract import ContractViolation
from expunge.training.cost import Cost
from expunge.training.engine import train_population
from expunge.training.population import Population
from expunge.training.recipe import Recipe

# The suite's small setting. Methods run with LIGHT hyperparameters where they have them
# (one epoch), so the whole suite takes seconds per method.
RECIPES = {
    "classification": Recipe(model="mlp", model_kwargs={"hidden": [32]}, epochs=4, batch_size=64),
    "regression": Recipe(model="mlp", model_kwargs={"hidden": [16]}, epochs=3, batch_size=32),
    "causal_lm": Recipe(model="gpt_tiny", model_kwargs={"layers": 1, "d_model": 32, "heads": 2}, optimizer="adam",
                        lr=3e-3, epochs=12, batch_size=8),
}
FIRST_SEED = {"classification": 11, "regression": 0, "causal_lm": 0}
TINY_AUTHORS = {"num_authors": 8, "facts_per_author": 4, "unseen_authors": 1, "world_facts": 4}  # member i has seed FIRST_SEED + i
OTHER_TASK_MEMBERS = 2  # population size on the task a method is not mainly checked on
LIGHT = {"epochs": 1}
# Member i unlearned inside the population vs alone, after one light run: predictions agree
# to this tolerance (see check_member_independence for why "agree", not "equal").
MEMBER_TOLERANCE = 2e-3
# An approximate method must spend less than this fraction of retraining's example gradients.
MAX_APPROXIMATE_COST = 1.5


# --------------------------------------------------------------------------- the setting
@dataclass
class TaskData:
    """One task's part of the setting: training data, the recipe, a trained original population, a forget mask."""

    train: ArrayDataset
    recipe: Recipe
    original: Population
    forget: torch.Tensor  # bool [N]: a random 10% of the training set


@functools.lru_cache(maxsize=4)
def _trained(task: str, members: int) -> tuple[ArrayDataset, Population, torch.Tensor]:
    if task == "classification":
        train = load_dataset("gaussians", n_train=600, n_test=200, dim=10, num_classes=4).train
    elif task == "causal_lm":
        train = load_dataset("fictitious_authors", **TINY_AUTHORS).train
    else:
        train = load_dataset("diabetes").train
    original, _ = train_population(RECIPES[task], train, seeds=[FIRST_SEED[task] + i for i in range(members)])
    return train, original, random_forget(train, fraction=0.1, seed=0).forget_mask


@functools.lru_cache(maxsize=1)
def suite_tokenizer() -> str:
    """The path of the suite's corpus tokenizer (saved once per process), for methods taking ``tokenizer=``."""
    from expunge.data.authors import authors_corpus

    split = load_dataset("fictitious_authors", **TINY_AUTHORS)
    return str(authors_corpus(split).save_tokenizer(split, tempfile.mkdtemp(prefix="expunge-suite-")))


def _copy(data: ArrayDataset, y: torch.Tensor | None = None) -> ArrayDataset:
    x = tuple(t.clone() for t in data.inputs)
    return ArrayDataset(x[0] if data.single_input else x, (data.y if y is None else y).clone(), data.ids.clone(),
                        data.task, data.num_classes)


class MethodSetting:
    """A method class and the small setting the checks run it in (built lazily, so static checks train nothing).

    ``hyperparameters``: passed to every run, over the suite's light defaults
    (``epochs=1`` where the method has ``epochs``). Every call of :meth:`data` hands out
    fresh copies of the data and the original population, so a method that mutates its
    input cannot spoil the next check.
    """

    def __init__(self, method_class: type[Method], hyperparameters: dict[str, Any] | None = None,
                 members: int = 3):
        if members < 2:
            raise ExpungeError(f"check_method needs a population of at least 2 members to compare; got {members}")
        self.method = method_class
        self.members = int(members)
        self.extra = dict(hyperparameters or {})

    @property
    def name(self) -> str:
        return getattr(self.method, "name", getattr(self.method, "__name__", repr(self.method)))

    @property
    def task(self) -> str:
        """The task the checks run on: classification where the method supports it, else regression."""
        tasks = tuple(getattr(self.method, "tasks", ()))
        for task in RECIPES:
            if task in tasks:
                return task
        raise ExpungeError(f"check_method runs methods on {', '.join(RECIPES)} data; method {self.name!r} "
                           f"supports only {', '.join(tasks) or 'no tasks'}")

    @property
    def hyperparameters(self) -> dict[str, Any]:
        fields = {f.name for f in self.method.hyperparameter_fields()}
        tokenizer = {"tokenizer": suite_tokenizer()} if "tokenizer" in fields else {}  # a language model's (idk)
        return {k: v for k, v in LIGHT.items() if k in fields} | tokenizer | self.extra

    def data(self, task: str | None = None) -> TaskData:
        """Fresh copies of the setting on ``task`` (default: the main task, with ``members`` members)."""
        main = task is None or task == self.task
        task = task or self.task
        train, original, forget = _trained(task, self.members if main else OTHER_TASK_MEMBERS)
        return TaskData(_copy(train), RECIPES[task], original.clone(), forget.clone())

    def unlearn(self, data: TaskData, population: Population | None = None, forget: torch.Tensor | None = None,
                retain: torch.Tensor | None | str = "complement", seed: int = 0, train: ArrayDataset | None = None,
                **hyperparameters: Any) -> tuple[Population, Cost]:
        """Run the method through :func:`~expunge.methods.registry.unlearn_population` (registered meanwhile).

        Defaults: the whole original population, the setting's forget set, the retain set
        its complement (``retain=None``: no retain set), the suite's hyperparameters.
        """
        forget = data.forget if forget is None else forget
        retain = ~forget if isinstance(retain, str) else retain
        with registered(self.method):
            return unlearn_population(data.original if population is None else population,
                                      data.train if train is None else train, forget, retain, self.name,
                                      data.recipe, seed=seed, **(self.hyperparameters | hyperparameters))


def _qualname(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', repr(cls))}"


@contextmanager
def registered(method_class: type[Method]) -> Iterator[None]:
    """Register ``method_class`` for the duration (the runner finds methods by name), then restore the registry.

    A class already registered under its name is used as it is; a different class of
    the same qualified name (a reloaded module) stands in for it meanwhile; a name taken
    by another class is a contract violation, as registering it would fail.
    """
    name = getattr(method_class, "name", None)
    previous = None
    if isinstance(name, str) and name in METHODS:
        existing = METHODS.get(name)
        if existing is method_class:
            yield
            return
        if _qualname(existing) != _qualname(method_class):
            raise ContractViolation("check_static_contract", f"the name {name!r} is already registered for "
                                    f"{_qualname(existing)} ({METHODS.origin(name)}); give the method a name "
                                    "of its own")
        previous = (existing, METHODS.origin(name))
        METHODS.unregister(name)
    METHODS.register(method_class, origin="expunge.testing.check_method")
    try:
        yield
    finally:
        METHODS.unregister(name)
        if previous is not None:
            METHODS.register(previous[0], origin=previous[1])


# --------------------------------------------------------------------------- the checks
Check = Callable[[MethodSetting], None]


def _check(function: Callable[[MethodSetting], None]) -> Check:
    """A check: any error it meets becomes a ContractViolation naming it."""
    @functools.wraps(function)
    def run(setting: MethodSetting) -> None:
        try:
            function(setting)
        except ContractViolation:
            raise
        except ExpungeError as error:
            raise ContractViolation(function.__name__, str(error)) from error
        except Exception as error:  # noqa: BLE001 - a crash is a violation of the check that met it
            raise ContractViolation(function.__name__, f"{type(error).__name__}: {error}") from error

    return run


def _fail(check: str, setting: MethodSetting, message: str) -> ContractViolation:
    return ContractViolation(check, f"method {setting.name!r} {message}")


@_check
def check_static_contract(setting: MethodSetting) -> None:
    """The class attributes of the contract (:func:`expunge.methods.base.check_method_class`) and a name of its own."""
    check_method_class(setting.method)
    with registered(setting.method):
        pass


@_check
def check_metadata(setting: MethodSetting) -> None:
    """Summary, paper, a docstring of its own that ends in an example, and a help text for every hyperparameter."""
    cls = setting.method
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    if not doc:
        raise _fail("check_metadata", setting, "has no docstring of its own: explain the method, cite its paper "
                    "and end in an example")
    heading = doc.rfind("Example")
    if heading < 0 or ">>>" not in doc[heading:]:
        raise _fail("check_metadata", setting, "has a docstring that does not end in an example: add an "
                    "'Example:' section with a >>> line")
    for f in cls.hyperparameter_fields():
        if not str(f.metadata.get("help", "")).strip():
            raise _fail("check_metadata", setting, f"has a hyperparameter {f.name!r} without help text: declare "
                        "it with expunge.methods.base.hyperparameter(default, help)")


@_check
def check_population_of_one_and_of_k(setting: MethodSetting) -> None:
    """A population of 1 and of K in, the same number of members out: new, finite, same seeds and parameter shapes."""
    data = setting.data()
    for population in (data.original.select([0]), data.original):
        unlearned, cost = setting.unlearn(data, population, seed=1)
        k = len(population)
        if len(unlearned) != k or unlearned.seeds != population.seeds:
            raise _fail("check_population_of_one_and_of_k", setting, f"returned {len(unlearned)} members with "
                        f"seeds {unlearned.seeds} for a population of {k} with seeds {population.seeds}")
        if unlearned is population:
            raise _fail("check_population_of_one_and_of_k", setting, "returned its input population; return a "
                        "new one")
        for key, value in population.params.items():
            if unlearned.params[key].shape != value.shape:
                raise _fail("check_population_of_one_and_of_k", setting, f"changed the shape of parameter {key!r} "
                            f"from {list(value.shape)} to {list(unlearned.params[key].shape)}")
            if not torch.isfinite(unlearned.params[key]).all():
                raise _fail("check_population_of_one_and_of_k", setting, f"left non-finite values in parameter "
                            f"{key!r} (population of {k})")
        if cost.members != k:
            raise _fail("check_population_of_one_and_of_k", setting, f"reported a cost for {cost.members} members, "
                        f"not {k}")


@_check
def check_member_independence(setting: MethodSetting) -> None:
    """Member i unlearned inside a population agrees with member i unlearned alone (a smoke test, not equality).

    Each member forgets a different random 10%; after one light run the last member's
    predictions inside the population and alone must agree within
    :data:`MEMBER_TOLERANCE`. They are not bitwise equal and need not be: vectorised and
    single-model kernels round differently (see :func:`check_method`). A larger gap
    means the members are not independent: a statistic, threshold or random stream
    shared by the population.
    """
    data = setting.data()
    k = len(data.original)
    masks = torch.stack([random_forget(data.train, fraction=0.1, seed=s).forget_mask for s in range(k)])
    together, _ = setting.unlearn(data, data.original, masks, ~masks, seed=5)
    last = k - 1
    alone, _ = setting.unlearn(data, data.original.select([last]), masks[last:], ~masks[last:], seed=5)
    x = data.train.x[:200]
    inside, single = together.predict(x)[last], alone.predict(x)[0]
    gap = (inside - single).abs()
    allowed = MEMBER_TOLERANCE + MEMBER_TOLERANCE * single.abs()
    if not bool((gap <= allowed).all()):
        raise _fail("check_member_independence", setting,
                    f"unlearns member {last} differently inside a population of {k} than alone: outputs differ by "
                    f"up to {float(gap.max()):.3g} (allowed {MEMBER_TOLERANCE:g} + {MEMBER_TOLERANCE:g} x |output|). "
                    "Compute every statistic, threshold and random stream per member (task.member_seeds, "
                    "per-member masks), never over the whole population")


def _differences(a: Population, b: Population) -> list[str]:
    return [k for k in a.params if not torch.equal(a.params[k], b.params[k])] + \
        [k for k in a.buffers if not torch.equal(a.buffers[k], b.buffers[k])]


@_check
def check_same_seed_same_result(setting: MethodSetting) -> None:
    """The same call twice (same population, data, hyperparameters, seed) gives bitwise-identical members."""
    data = setting.data()
    a, _ = setting.unlearn(data, seed=3)
    b, _ = setting.unlearn(data, seed=3)
    differing = _differences(a, b)
    if differing:
        raise _fail("check_same_seed_same_result", setting, f"gave different parameters {differing} for the same "
                    "call twice; draw randomness only from generators seeded by task.member_seeds(purpose)")


@_check
def check_input_untouched(setting: MethodSetting) -> None:
    """The input population, the training set and the masks are unchanged after a run."""
    data = setting.data()
    before = data.original.clone()
    inputs = [t.clone() for t in data.train.inputs]
    labels, forget = data.train.y.clone(), data.forget.clone()
    retain = ~forget
    setting.unlearn(data, retain=retain, seed=0)
    changed = _differences(data.original, before)
    if changed:
        raise _fail("check_input_untouched", setting, f"changed the input population's {changed} in place; work "
                    "on a copy (task.original.clone(), or StackedTraining)")
    if not all(torch.equal(a, b) for a, b in zip(inputs, data.train.inputs)) or not torch.equal(labels, data.train.y):
        raise _fail("check_input_untouched", setting, "changed the training set in place")
    if not torch.equal(forget, data.forget) or not torch.equal(retain, ~forget):
        raise _fail("check_input_untouched", setting, "changed the forget or retain masks in place")


@_check
def check_cost_record(setting: MethodSetting) -> None:
    """The cost record is consistent, and an approximate method spends something, less than retraining."""
    data = setting.data()
    _, cost = setting.unlearn(data, seed=0)
    k = len(data.original)
    if cost.members != k:
        raise _fail("check_cost_record", setting, f"reported a cost for {cost.members} members, not {k}")
    if not (cost.example_gradients >= 0 and cost.forward_examples >= 0 and cost.wall_time_s > 0):
        raise _fail("check_cost_record", setting, f"reported example_gradients={cost.example_gradients}, "
                    f"forward_examples={cost.forward_examples}, wall_time_s={cost.wall_time_s}: counts must be "
                    ">= 0 and the wall time > 0")
    if setting.method.kind != "approximate":
        return
    if cost.example_gradients + cost.forward_examples <= 0:
        raise _fail("check_cost_record", setting, "is approximate but counted no gradients and no forward passes; "
                    "count them through task.meter (the shared building blocks do)")
    retrain = Cost(example_gradients=data.recipe.epochs * int((~data.forget).sum()), wall_time_s=1.0, members=1)
    ratio = cost.ratios(retrain)["example_gradients"]
    if not ratio < MAX_APPROXIMATE_COST:
        raise _fail("check_cost_record", setting, f"spent {ratio:.2f}x retraining's example gradients with "
                    f"{setting.hyperparameters or 'its defaults'}; an approximate method must be cheaper than "
                    "retraining")


def _needs_retain(setting: MethodSetting) -> bool:
    """What the method declares it needs at the suite's hyperparameters (``needs_retain_with``)."""
    method = setting.method
    return method.needs_retain_with(method.make_hyperparameters(**setting.hyperparameters))


@_check
def check_retain_requirement(setting: MethodSetting) -> None:
    """``needs_retain`` is honest: without a retain set, a method that needs one is refused clearly, another runs."""
    data = setting.data()
    if _needs_retain(setting):
        try:
            setting.unlearn(data, retain=None)
        except ExpungeError as error:
            if "needs the retain set" not in str(error):
                raise _fail("check_retain_requirement", setting, f"refused a missing retain set unclearly: {error}")
            return
        raise _fail("check_retain_requirement", setting, "declares needs_retain=True but ran without a retain set")
    try:
        unlearned, _ = setting.unlearn(data, retain=None)
    except ExpungeError as error:
        raise _fail("check_retain_requirement", setting, f"declares needs_retain=False but refused to run without "
                    f"a retain set: {error}") from error
    if len(unlearned) != len(data.original):
        raise _fail("check_retain_requirement", setting, "returned the wrong number of members without a retain set")


@_check
def check_unknown_hyperparameter(setting: MethodSetting) -> None:
    """An unknown hyperparameter is refused with a message listing the valid ones."""
    data = setting.data()
    try:
        setting.unlearn(data, not_a_hyperparameter=1)
    except ExpungeError as error:
        message = str(error)
        missing = [f.name for f in setting.method.hyperparameter_fields() if f.name not in message]
        if "not_a_hyperparameter" not in message or "valid:" not in message or missing:
            raise _fail("check_unknown_hyperparameter", setting, f"refused an unknown hyperparameter without "
                        f"naming it and listing the valid ones ({missing} missing): {message}") from error
        return
    raise _fail("check_unknown_hyperparameter", setting, "accepted the unknown hyperparameter not_a_hyperparameter")


@_check
def check_label_free(setting: MethodSetting) -> None:
    """A method that declares ``needs_labels=False`` gives the same result with the labels shuffled."""
    if setting.method.needs_labels:
        return
    data = setting.data()
    shuffled = data.train.y[torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))]
    a, _ = setting.unlearn(data, seed=2)
    b, _ = setting.unlearn(data, seed=2, train=_copy(data.train, y=shuffled))
    differing = _differences(a, b)
    if differing:
        raise _fail("check_label_free", setting, f"declares needs_labels=False but reads labels: shuffling them "
                    f"changed {differing}")


@_check
def check_task_support(setting: MethodSetting) -> None:
    """Declared task support is honest: each declared task runs, an undeclared one is refused clearly."""
    for task in RECIPES:
        data = setting.data(task)
        if task in setting.method.tasks:
            try:
                unlearned, _ = setting.unlearn(data)
            except Exception as error:  # noqa: BLE001 - say which declared task failed
                raise _fail("check_task_support", setting, f"declares {task} support but failed on {task} data: "
                            f"{type(error).__name__}: {error}") from error
            bad = [k for k, v in unlearned.params.items() if not torch.isfinite(v).all()]
            if len(unlearned) != len(data.original) or bad:
                raise _fail("check_task_support", setting, f"declares {task} support but on {task} data returned "
                            f"{len(unlearned)} members, non-finite parameters {bad}")
            unmoved = _unmoved_members(data.original, unlearned) if setting.method.forgets else []
            if unmoved:
                raise _fail("check_task_support", setting, f"declares {task} support but on {task} data left "
                            f"members {unmoved} exactly as the original")
            continue
        try:
            setting.unlearn(data)
        except ExpungeError as error:
            if f"not {task}" not in str(error) or f"methods that support {task}" not in str(error):
                raise _fail("check_task_support", setting, f"refused {task} data unclearly: {error}") from error
            continue
        raise _fail("check_task_support", setting, f"does not declare {task} support but ran on {task} data")


@_check
def check_retain_free(setting: MethodSetting) -> None:
    """A retain-free method (``needs_retain=False``) never reads the retain set.

    The runner gives such a method the forget examples alone (the retain set is absent, not
    merely hidden: see :func:`~expunge.methods.registry.unlearn_population`), and this check
    holds it to the result: run without a retain set, with one, with the retain examples'
    inputs and labels scrambled, and directly (``run`` on a task that holds the whole
    training set and the retain masks, as a caller bypassing the runner would), the method
    must give bitwise-identical members, and it must not ask for the retain set.
    """
    if _needs_retain(setting):
        return
    data = setting.data()
    forget = data.forget
    try:
        absent, _ = setting.unlearn(data, retain=None, seed=6)
        given, cost = setting.unlearn(data, retain=~forget, seed=6)
        scrambled, _ = setting.unlearn(data, retain=None, seed=6, train=_scrambled_retain(data.train, forget))
    except ExpungeError as error:
        raise _fail("check_retain_free", setting, f"declares needs_retain=False but failed when its retain set "
                    f"was absent or scrambled: {error}. Declare needs_retain=True, or use only the forget "
                    "set") from error
    # The method itself, run directly on a task that holds the retain set (as a caller bypassing the runner
    # would): it must still ignore it.
    with registered(setting.method):
        hp = setting.method.make_hyperparameters(**setting.hyperparameters)
    data = setting.data()
    members = len(data.original)
    task = UnlearningTask(data.original, data.train, forget.unsqueeze(0).expand(members, -1).clone(),
                          (~forget).unsqueeze(0).expand(members, -1).clone(), data.recipe, seed=6)
    direct = setting.method().run(task, hp)
    for name, other in (("given a retain set", given), ("with the retain examples scrambled", scrambled),
                        ("run directly on a task holding a retain set", direct)):
        differing = _differences(absent, other)
        if differing:
            raise _fail("check_retain_free", setting, f"declares needs_retain=False but reads the retain set: "
                        f"{name} it changed {differing}")
    if not any("ignored the retain set" in note for note in cost.notes):
        raise _fail("check_retain_free", setting, "was given a retain set it ignores and the cost record does not "
                    "say so")


def _scrambled_retain(train: ArrayDataset, forget: torch.Tensor) -> ArrayDataset:
    """A copy of ``train`` whose non-forget examples have random inputs and shuffled labels."""
    generator = torch.Generator().manual_seed(1)
    copy = _copy(train)
    retain = torch.nonzero(~forget).flatten()
    for tensor in copy.inputs:
        if tensor.is_floating_point():
            tensor[retain] = torch.randn(tensor[retain].shape, generator=generator, dtype=tensor.dtype) * 3
        else:
            tensor[retain] = tensor[retain][torch.randperm(len(retain), generator=generator)]
    copy.y[retain] = copy.y[retain][torch.randperm(len(retain), generator=generator)]
    return copy


def _forget_sets(setting: MethodSetting, data: TaskData) -> dict[str, torch.Tensor]:
    """The forget mask of each kind the method claims, built on the setting's data."""
    kinds = {"random": lambda: data.forget}
    if data.train.task == "classification":
        kinds["class"] = lambda: class_forget(data.train, 1).forget_mask
        kinds["subclass"] = lambda: subclass_forget(data.train, 1, n_clusters=3).forget_mask
    return {kind: build() for kind, build in kinds.items() if kind in setting.method.forget_sets}


def _unmoved_members(original: Population, unlearned: Population) -> list[int]:
    """Members whose every parameter equals the original's (to the last bit)."""
    return [k for k in range(len(original))
            if all(torch.equal(original.params[n][k], unlearned.params[n][k]) for n in original.params)]


@_check
def check_parameters_move(setting: MethodSetting) -> None:
    """A method that claims to forget (``forgets=True``) changes every member's parameters, for each forget kind
    it claims (``forget_sets``).

    Catches the class of bug where the method optimises something other than the model it returns: an
    optimiser built over a frozen teacher or a copy, a result taken from the wrong tensors (a published
    benchmark's SCRUB built its optimiser over the teacher and never moved the student).
    """
    if not setting.method.forgets:
        return
    data = setting.data()
    for kind, forget in _forget_sets(setting, data).items():
        unlearned, _ = setting.unlearn(data, forget=forget, seed=7)
        unmoved = _unmoved_members(data.original, unlearned)
        if unmoved:
            raise _fail("check_parameters_move", setting, f"claims to forget {kind} forget sets but left members "
                        f"{unmoved} exactly as the original on one (every parameter unchanged): check that the "
                        "optimiser updates the parameters the method returns")


# In the order check_method runs them: static first (they train nothing), then the most basic cause first.
METHOD_CHECKS: tuple[Check, ...] = (
    check_static_contract,
    check_metadata,
    check_population_of_one_and_of_k,
    check_input_untouched,  # before the comparisons: a mutated input makes every comparison fail too
    check_same_seed_same_result,  # before independence: randomness not seeded per member fails both
    check_member_independence,
    check_cost_record,
    check_retain_requirement,
    check_retain_free,
    check_parameters_move,
    check_unknown_hyperparameter,
    check_label_free,
    check_task_support,
)


def check_method(method_class: type[Method], *, hyperparameters: dict[str, Any] | None = None,
                 members: int = 3) -> None:
    """Run the method conformance suite on ``method_class``; return if it passes, else raise :class:`ContractViolation`.

    The method need not be registered: it is registered for the duration of each run
    and the registry restored afterwards. Checks, in order (each is also a function of
    this module taking a :class:`MethodSetting`, listed in :data:`METHOD_CHECKS`):

    - ``check_static_contract``: the class attributes (:func:`~expunge.methods.base.check_method_class`)
      and a name no other method has;
    - ``check_metadata``: summary, paper, a docstring ending in an example, help for every hyperparameter;
    - ``check_population_of_one_and_of_k``: K members in, K new finite members out, for K = 1 and 3;
    - ``check_input_untouched``: the input population, training set and masks are not mutated;
    - ``check_same_seed_same_result``: the same call twice gives bitwise-identical members;
    - ``check_member_independence``: member i inside the population agrees with member i alone (below);
    - ``check_cost_record``: the cost record is consistent; an approximate method spends
      something and less than retraining;
    - ``check_retain_requirement``: ``needs_retain`` is honest (missing retain set refused
      clearly, or the method runs without one);
    - ``check_retain_free``: a ``needs_retain=False`` method gives identical members without a retain set,
      with one, and with the retain examples scrambled, and says it ignored one it was given;
    - ``check_parameters_move``: a method that forgets changes every member's parameters, for each forget
      kind it claims (random 10%, class 1, a sub-class of class 1);
    - ``check_unknown_hyperparameter``: refused, listing the valid ones;
    - ``check_label_free``: ``needs_labels=False`` methods give the same result with shuffled labels;
    - ``check_task_support``: declared tasks run and move every member (regression on scikit-learn's real
      diabetes data), others are refused in one line naming the methods that support the task.

    **Member i of a population and member i alone: what is guaranteed.** Every random
    stream a member uses derives from the method seed and that member's own seed, and no
    statistic is shared between members, so a member's computation is the same wherever
    it runs. The *numbers* are the same only for the same call: the same population,
    data, hyperparameters and seeds give bitwise-identical results
    (``check_same_seed_same_result``). Across paths the guarantee is equality **in
    distribution**, not identity: a population of K >= 2 runs its members through
    vectorised (``vmap``) kernels and a population of one through single-model kernels,
    the two round floating point differently, and training amplifies last-bit
    differences. After a full-length run (MNIST-1D, default recipe, 30 epochs) a member
    trained inside a population and the same member trained alone disagree on none to a
    few hundred of the 4,000 training predictions, depending on the seed; they are two
    samples of one distribution (``tests/test_training.py`` tests that), not one model.
    So ``check_member_independence`` is a smoke test of per-member independence: after
    one short run the two must agree within :data:`MEMBER_TOLERANCE`, which a method that
    pools statistics across members fails by far.

    ``hyperparameters``: used in every run, over the suite's light defaults (``epochs=1``
    where the method has ``epochs``); pass settings that keep your method to seconds on
    600 examples. ``members``: the population size K (at least 2).

    Example:
        >>> from expunge.methods.finetune import Finetune
        >>> check_method(Finetune)  # doctest: +SKIP
    """
    setting = MethodSetting(method_class, hyperparameters, members)
    for check in METHOD_CHECKS:
        check(setting)


__all__ = [
    "METHOD_CHECKS",
    "MethodSetting",
    "TaskData",
    "check_cost_record",
    "check_input_untouched",
    "check_label_free",
    "check_member_independence",
    "check_metadata",
    "check_method",
    "check_parameters_move",
    "check_population_of_one_and_of_k",
    "check_retain_free",
    "check_retain_requirement",
    "check_same_seed_same_result",
    "check_static_contract",
    "check_task_support",
    "check_unknown_hyperparameter",
    "registered",
]
