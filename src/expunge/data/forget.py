"""Forget-set rules: which training examples a scenario asks to unlearn.

Each rule takes the training set ``D`` and returns a :class:`ForgetSet` (the forget set
``S`` and, implicitly, the retain set ``D \\ S``). Rules are deterministic given their
seed, and the ``rule`` string they record describes them fully (e.g.
``"random:0.1@seed0"``) because reports show it. :func:`parse_forget_rule` reads the
short forms ``KIND:ARGUMENT[@seedN]`` the CLI and :meth:`Scenario.build` accept.

Each kind is a :class:`ForgetRule` in the :data:`FORGET_RULES` registry: the built-ins
below register with :func:`register_forget_rule`, other packages through the
``expunge.forget_rules`` entry-point group (naming a :class:`ForgetRule` or a module
that uses the decorator), and ``parse_forget_rule("KIND:...")`` then reads their forms too.

The scenarios follow the unlearning literature: random forget sets, whole classes,
sub-classes (a cluster inside one class, after Chundawat et al., "Can bad teaching
induce forgetting?", AAAI 2023) and explicit ID lists such as deletion requests.
"""
from __future__ import annotations

import json
import difflib
import hashlib
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch

from expunge.data.base import ArrayDataset, ForgetSet
from expunge.errors import ExpungeError
from expunge.registry import Registry, qualified_name

_PREDICATE_BATCH = 8192  # examples per predicate call: bounds memory on large training sets


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _require_classification(train: ArrayDataset, rule: str) -> None:
    if train.task != "classification":
        raise ExpungeError(f"the {rule} forget rule needs class labels, but this training set is {train.task}")


def _existing_classes(train: ArrayDataset) -> list[int]:
    return torch.unique(train.y).tolist()


def _as_class_list(classes: Any) -> list[int]:
    if isinstance(classes, torch.Tensor):
        classes = classes.reshape(-1).tolist()
    elif isinstance(classes, np.ndarray):
        classes = classes.reshape(-1).tolist()
    elif _is_int(classes):
        classes = [classes]
    elif isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
        raise ExpungeError(f"classes={classes!r} must be a class label or a list of class labels (integers)")
    classes = list(classes)
    if not classes or not all(_is_int(c) for c in classes):
        raise ExpungeError(f"classes={classes!r} must be one or more integer class labels")
    return sorted({int(c) for c in classes})


def _ids_digest(ids: torch.Tensor) -> str:
    return hashlib.sha256(torch.sort(ids).values.numpy().tobytes()).hexdigest()[:16]


def random_forget(train: ArrayDataset, fraction: float | None = None, count: int | None = None, seed: int = 0) -> ForgetSet:
    """A uniformly random forget set of ``fraction`` of the training set or exactly ``count`` examples.

    Give exactly one of ``fraction`` (strictly between 0 and 1; the count is rounded)
    and ``count``. The same ``seed`` picks the same examples on every machine.
    """
    if (fraction is None) == (count is None):
        raise ExpungeError("random_forget needs exactly one of fraction=... (e.g. 0.1) or count=... (e.g. 200)")
    if not _is_int(seed):
        raise ExpungeError(f"seed={seed!r} must be an integer")
    n = len(train)
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, Real) or not 0.0 < float(fraction) < 1.0:
            raise ExpungeError(f"fraction={fraction!r} must be strictly between 0 and 1 (use count=... for a number of examples)")
        size = round(float(fraction) * n)
        if size < 1:
            raise ExpungeError(f"fraction={fraction} of {n} training examples selects none: use a larger fraction")
        rule = f"random:{float(fraction)!r}@seed{seed}"
    else:
        if not _is_int(count) or count < 1:
            raise ExpungeError(f"count={count!r} must be an integer >= 1")
        size = int(count)
        if size >= n:
            raise ExpungeError(f"count={size} is not smaller than the training set ({n} examples): nothing would be retained")
        rule = f"random:{size}@seed{seed}"
    generator = torch.Generator().manual_seed(int(seed))
    positions = torch.randperm(n, generator=generator)[:size]
    return ForgetSet(train, torch.sort(train.ids[positions]).values, rule)


def class_forget(train: ArrayDataset, classes: int | Iterable[int]) -> ForgetSet:
    """Forget every training example of one or several classes (class-wise unlearning)."""
    _require_classification(train, "class")
    wanted = _as_class_list(classes)
    existing = _existing_classes(train)
    missing = [c for c in wanted if c not in existing]
    if missing:
        raise ExpungeError(f"class {missing[0]} has no training examples; existing classes: {existing}")
    mask = torch.isin(train.y, torch.tensor(wanted, dtype=train.y.dtype))
    return ForgetSet(train, torch.sort(train.ids[mask]).values, "class:" + ",".join(map(str, wanted)))


def subclass_forget(train: ArrayDataset, cls: int, cluster: int = 0, n_clusters: int = 4, seed: int = 0) -> ForgetSet:
    """Forget one sub-class: a k-means cluster inside class ``cls``.

    The class's flattened features are clustered with k-means (``n_init=10``,
    ``random_state=seed``); clusters are numbered by size, largest first, so
    ``cluster=0`` is the largest sub-population (ties go to the cluster holding the
    earliest example). The model should forget that sub-population while still
    recognising the rest of the class.
    """
    _require_classification(train, "subclass")
    for key, value in (("cls", cls), ("cluster", cluster), ("n_clusters", n_clusters), ("seed", seed)):
        if not _is_int(value):
            raise ExpungeError(f"{key}={value!r} must be an integer")
    if n_clusters < 2:
        raise ExpungeError(f"n_clusters={n_clusters} must be at least 2 (one cluster is the whole class: use class_forget)")
    if not 0 <= cluster < n_clusters:
        raise ExpungeError(f"cluster={cluster} must be in 0..{n_clusters - 1} (0 is the largest of {n_clusters} clusters)")
    existing = _existing_classes(train)
    if int(cls) not in existing:
        raise ExpungeError(f"class {cls} has no training examples; existing classes: {existing}")
    members = torch.nonzero(train.y == int(cls)).flatten()
    if members.numel() < n_clusters:
        raise ExpungeError(
            f"class {cls} has {members.numel()} training examples, fewer than n_clusters={n_clusters}: use fewer clusters"
        )

    from sklearn.cluster import KMeans

    features = train.x[members].reshape(members.numel(), -1).to(torch.float64).numpy()
    labels = KMeans(n_clusters=int(n_clusters), n_init=10, random_state=int(seed)).fit_predict(features)
    sizes = np.bincount(labels, minlength=n_clusters)
    first = [int(np.flatnonzero(labels == c)[0]) if sizes[c] else len(labels) for c in range(n_clusters)]
    ranked = sorted(range(n_clusters), key=lambda c: (-sizes[c], first[c]))
    chosen = members[torch.from_numpy(labels == ranked[cluster])]
    rule = f"subclass:{int(cls)}:{int(cluster)}:{int(n_clusters)}@seed{int(seed)}"
    return ForgetSet(train, torch.sort(train.ids[chosen]).values, rule)


def ids_forget(train: ArrayDataset, ids: Iterable[int] | torch.Tensor | np.ndarray) -> ForgetSet:
    """Forget the training examples with these IDs (e.g. a deletion request).

    Unknown, duplicated or no IDs are an error, as is naming the whole training set.
    """
    if isinstance(ids, torch.Tensor):
        tensor = ids.detach().cpu().reshape(-1)
    else:
        if _is_int(ids):
            values = [ids]
        elif isinstance(ids, np.ndarray):
            values = ids.reshape(-1).tolist()
        elif isinstance(ids, Iterable) and not isinstance(ids, (str, bytes)):
            values = list(ids)
        else:
            raise ExpungeError(f"forget IDs must be a list, array or tensor of integer IDs, got {type(ids).__name__}")
        bad = [v for v in values if not _is_int(v)]
        if bad:
            raise ExpungeError(f"forget IDs must be integers, got {bad[0]!r}")
        tensor = torch.tensor([int(v) for v in values], dtype=torch.int64)
    if tensor.is_floating_point() or tensor.dtype == torch.bool:
        raise ExpungeError(f"forget IDs must be integers, got a tensor of dtype {tensor.dtype}")
    tensor = tensor.to(torch.int64)
    listed = tensor.tolist()
    rule = "ids:" + ",".join(map(str, listed)) if len(listed) <= 20 else f"ids:{len(listed)} IDs sha256:{_ids_digest(tensor)}"
    return ForgetSet(train, tensor, rule)


def author_forget(train: ArrayDataset, authors: Iterable[int] | None = None, fraction: float | None = None,
                  seed: int = 0) -> ForgetSet:
    """Forget every fact of some authors: the listed ``authors`` or a random ``fraction`` of them.

    Reads the training set's ``groups`` (the author of each example, as in
    ``fictitious_authors``); group ``-1`` (facts about no author) is never selected.
    A fraction is rounded to a whole number of authors, at least one.
    """
    if train.groups is None:
        raise ExpungeError("the authors forget rule needs a training set whose examples name their author "
                           "(ArrayDataset.groups, as in fictitious_authors); this one has none")
    existing = sorted(g for g in torch.unique(train.groups).tolist() if g >= 0)
    if (authors is None) == (fraction is None):
        raise ExpungeError("author_forget needs exactly one of authors=[...] (author indices) or fraction=... (e.g. 0.05)")
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, Real) or not 0.0 < float(fraction) < 1.0:
            raise ExpungeError(f"fraction={fraction!r} of authors must be strictly between 0 and 1 "
                               "(use authors:3,7 to name authors)")
        count = max(1, round(float(fraction) * len(existing)))
        generator = torch.Generator().manual_seed(int(seed))
        chosen = sorted(existing[i] for i in torch.randperm(len(existing), generator=generator)[:count].tolist())
        rule = f"authors:{float(fraction)!r}@seed{seed}"
    else:
        chosen = sorted({int(a) for a in authors})
        unknown = [a for a in chosen if a not in set(existing)]
        if unknown:
            raise ExpungeError(f"author {unknown[0]} is not in this training set (its authors are "
                               f"{existing[0]}..{existing[-1]})")
        rule = "authors:" + ",".join(map(str, chosen))
    mask = torch.isin(train.groups.cpu(), torch.tensor(chosen, dtype=torch.int64))
    return ForgetSet(train, torch.sort(train.ids[mask]).values, rule)


def predicate_forget(
    train: ArrayDataset, predicate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], description: str | None = None
) -> ForgetSet:
    """Forget the training examples for which ``predicate(x, y)`` is True.

    ``predicate`` receives a batch of features and labels and returns a boolean tensor
    with one entry per example, e.g. ``lambda x, y: (y == 3) & (x[:, 0] > 0)``.
    ``description`` names the rule in reports (default: the function's name).
    """
    if not callable(predicate):
        raise ExpungeError(f"predicate must be a function (x, y) -> bool tensor, got {type(predicate).__name__}")
    parts = []
    for start in range(0, len(train), _PREDICATE_BATCH):
        x, y = train.x[start : start + _PREDICATE_BATCH], train.y[start : start + _PREDICATE_BATCH]
        result = predicate(x, y)
        result = torch.as_tensor(np.asarray(result)) if not isinstance(result, torch.Tensor) else result
        if result.dtype != torch.bool or result.numel() != x.shape[0]:
            raise ExpungeError(
                f"the predicate returned {result.dtype} of shape {tuple(result.shape)} for a batch of {x.shape[0]}: "
                "it must return one bool per example, e.g. y == 3"
            )
        parts.append(result.reshape(-1).cpu())
    mask = torch.cat(parts)
    name = description or getattr(predicate, "__name__", type(predicate).__name__)
    return ForgetSet(train, train.ids[mask], f"predicate:{name}")


# --------------------------------------------------------------------------- the rule registry
class ForgetRuleSyntaxError(ExpungeError):
    """A rule's argument is malformed; :func:`parse_forget_rule` adds the rule string and the valid forms."""


@dataclass(frozen=True)
class RuleContext:
    """What scored rules (``memorized:``, ``entangled:``, ``datamodel_pc:``) need besides the training set:
    the models they score examples with.

    ``recipe``: how the scoring models are trained (a :class:`~expunge.training.recipe.Recipe`;
    the scenario's own); ``cache``: the :class:`~expunge.training.store.PopulationCache`
    (default: the one under ``EXPUNGE_HOME``); ``device`` and ``model`` (a user
    ``nn.Module``) as in :class:`~expunge.training.scenario.Scenario`; ``original_parts``:
    the cache parts of the scenario's original population, so ``entangled:`` reads the
    members the scenario trains anyway; ``memorisation_models``, ``original_members``
    and ``attribution`` (:class:`~expunge.attribution.AttributionSettings`) override the
    rules' defaults (small values for tests).
    """

    recipe: Any
    cache: Any = None
    device: str = "cpu"
    model: Any = None
    original_parts: dict | None = None
    memorisation_models: int | None = None
    original_members: int | None = None
    attribution: Any = None


@dataclass(frozen=True)
class ForgetRule:
    """A kind of forget rule, written ``KIND:ARGUMENT[@seedN]``.

    ``name``: the kind (``"random"``); lower case, without ``:``, ``@`` or spaces.
    ``forms``: the forms it accepts, as help text (``"random:0.1 (fraction), random:200
    (count)"``); error messages list every rule's forms. ``parse(argument, train, seed)
    -> ForgetSet``: ``argument`` is the text after ``KIND:`` (never empty, ``@seedN``
    removed) and ``seed`` comes from ``@seedN`` or the caller. A malformed argument
    raises :class:`ForgetRuleSyntaxError`; any other problem an
    :class:`~expunge.errors.ExpungeError` saying what to do. A ``parse`` with a
    ``context`` parameter also receives the caller's :class:`RuleContext` (None when
    there is none). ``check(argument, train)``: optional, validates the argument without
    doing the work (rules that train models have one, so a grid checks them cheaply).
    """

    name: str
    forms: str
    parse: Callable[..., ForgetSet]
    check: Callable[[str, ArrayDataset], None] | None = None


def check_forget_rule(rule: Any) -> None:
    """Registry check: a :class:`ForgetRule` with a usable name, help text and a parse function."""
    if not isinstance(rule, ForgetRule):
        raise ExpungeError(f"a forget rule must be registered as an expunge.data.forget.ForgetRule "
                           f"(see register_forget_rule), got {rule!r}")
    if not isinstance(rule.name, str) or not re.fullmatch(r"[a-z0-9_\-]+", rule.name):
        raise ExpungeError(f"forget rule name {rule.name!r} must be lower case letters, digits, '_' or '-' "
                           "(it is the KIND in KIND:ARGUMENT)")
    if not isinstance(rule.forms, str) or not rule.forms.strip():
        raise ExpungeError(f"forget rule {rule.name!r} needs its forms as help text, e.g. '{rule.name}:3'")
    try:
        inspect.signature(rule.parse).bind("argument", None, 0)
    except (TypeError, ValueError):
        raise ExpungeError(f"forget rule {rule.name!r}: parse must be a function (argument, train, seed) -> "
                           f"ForgetSet, got {rule.parse!r}") from None


FORGET_RULES: Registry[ForgetRule] = Registry("forget rule", "expunge.forget_rules",
                                              ("expunge.data.forget", "expunge.data.scored_rules"),
                                              check=check_forget_rule, identity=lambda entry: qualified_name(entry.parse))

# Error messages list the built-in kinds in this order (the order of the literature's scenarios),
# then any other registered kinds by name.
_LISTING_ORDER = ("random", "class", "subclass", "ids", "authors", "memorized", "entangled", "datamodel_pc")


def register_forget_rule(name: str, forms: str, check: Callable[[str, ArrayDataset], None] | None = None
                         ) -> Callable[[Callable[[str, ArrayDataset, int], ForgetSet]],
                                                            Callable[[str, ArrayDataset, int], ForgetSet]]:
    """Decorator: register ``parse(argument, train, seed) -> ForgetSet`` as forget rule ``name``.

    >>> @register_forget_rule("first", "first:100 (the first 100 training examples)")
    ... def parse_first(argument, train, seed):
    ...     return ids_forget(train, train.ids[: int(argument)])  # doctest: +SKIP
    """
    def wrap(parse: Callable[[str, ArrayDataset, int], ForgetSet]) -> Callable[[str, ArrayDataset, int], ForgetSet]:
        FORGET_RULES.register(ForgetRule(name, forms, parse, check))
        return parse

    return wrap


def valid_forms() -> str:
    """Every registered rule's forms, for error messages and help."""
    names = sorted(FORGET_RULES.names(), key=lambda n: (
        _LISTING_ORDER.index(n) if n in _LISTING_ORDER else len(_LISTING_ORDER), n))
    return ", ".join(FORGET_RULES.get(n).forms for n in names) + "; append @seedN to set the seed"


def _split_rule(spec: str, seed: int) -> tuple[str, str, int]:
    if not isinstance(spec, str):
        raise ExpungeError(f"a forget rule must be a string like 'random:0.1', got {type(spec).__name__}")
    body = spec.strip()
    match = re.fullmatch(r"(.*[^:])@seed(\d+)", body)
    if match:
        body, seed = match.group(1), int(match.group(2))
    kind, _, argument = body.partition(":")
    kind, argument = kind.strip().lower(), argument.strip()
    if not argument:
        raise ExpungeError(f"bad forget rule {spec!r}. Valid forms: {valid_forms()}")
    if kind not in FORGET_RULES:
        close = difflib.get_close_matches(kind, FORGET_RULES.names(), n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ExpungeError(f"bad forget rule {spec!r}: unknown kind {kind!r}.{hint} Valid forms: {valid_forms()}")
    return kind, argument, seed


def parse_forget_rule(spec: str, train: ArrayDataset, seed: int = 0, context: RuleContext | None = None) -> ForgetSet:
    """Build a forget set from a rule string ``KIND:ARGUMENT[@seedN]`` (the CLI's ``--forget``).

    Built-in forms: ``random:0.1`` (a fraction: contains ``.`` or is below 1),
    ``random:200`` (a count), ``class:3``, ``class:3,5``, ``subclass:3`` /
    ``subclass:3:1`` / ``subclass:3:1:8`` (class, cluster, number of clusters),
    ``ids:1,2,3`` and ``ids:@file.txt`` (one ID per line), and the scored rules
    ``memorized:0.1``, ``entangled:0.1`` and ``datamodel_pc:1[:0.05]``
    (:mod:`expunge.data.scored_rules`; they train or load models, described by
    ``context``); plugins add kinds through :data:`FORGET_RULES`. A trailing ``@seedN``
    overrides ``seed``, so the rule strings recorded in reports parse back to the same
    forget set.
    """
    kind, argument, seed = _split_rule(spec, seed)
    rule = FORGET_RULES.get(kind)
    try:
        if "context" in inspect.signature(rule.parse).parameters:
            return rule.parse(argument, train, seed, context=context)
        return rule.parse(argument, train, seed)
    except ForgetRuleSyntaxError as error:
        raise ExpungeError(f"bad forget rule {spec!r}: {str(error).rstrip('.')}. Valid forms: {valid_forms()}") from None


def validate_forget_rule(spec: str, train: ArrayDataset, seed: int = 0) -> None:
    """Raise the error :func:`parse_forget_rule` would for a malformed rule, without training anything
    (a rule with a ``check`` is only checked; the others are parsed)."""
    kind, argument, seed = _split_rule(spec, seed)
    rule = FORGET_RULES.get(kind)
    if rule.check is None:
        parse_forget_rule(spec, train, seed)
        return
    try:
        rule.check(argument, train)
    except ForgetRuleSyntaxError as error:
        raise ExpungeError(f"bad forget rule {spec!r}: {str(error).rstrip('.')}. Valid forms: {valid_forms()}") from None


# --------------------------------------------------------------------------- built-in rules
def _int_list(text: str, what: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ForgetRuleSyntaxError(f"{what} must be comma-separated integers") from None


@register_forget_rule("random", "random:0.1 (fraction), random:200 (count)")
def _parse_random(argument: str, train: ArrayDataset, seed: int) -> ForgetSet:
    try:
        number = float(argument)
    except ValueError:
        raise ForgetRuleSyntaxError(f"{argument!r} is not a number") from None
    if "." in argument or number < 1:
        return random_forget(train, fraction=number, seed=seed)
    if not number.is_integer():
        raise ForgetRuleSyntaxError("a count must be a whole number")
    return random_forget(train, count=int(number), seed=seed)


@register_forget_rule("class", "class:3, class:3,5")
def _parse_class(argument: str, train: ArrayDataset, seed: int) -> ForgetSet:
    return class_forget(train, _int_list(argument, "classes"))


@register_forget_rule("subclass", "subclass:3, subclass:3:1 (class:cluster[:n_clusters])")
def _parse_subclass(argument: str, train: ArrayDataset, seed: int) -> ForgetSet:
    parts = _int_list(argument.replace(":", ","), "class, cluster and number of clusters")
    if len(parts) > 3:
        raise ForgetRuleSyntaxError("use subclass:CLASS[:CLUSTER[:N_CLUSTERS]]")
    options = dict(zip(("cluster", "n_clusters"), parts[1:]))
    return subclass_forget(train, parts[0], seed=seed, **options)


@register_forget_rule("ids", "ids:1,2,3, ids:@file.txt (one ID per line)")
def _parse_ids(argument: str, train: ArrayDataset, seed: int) -> ForgetSet:
    ids = read_id_file(argument[1:]) if argument.startswith("@") else _int_list(argument, "IDs")
    return ids_forget(train, ids)


@register_forget_rule("authors", "authors:0.05 (fraction of authors), authors:3,7 (author indices)")
def _parse_authors(argument: str, train: ArrayDataset, seed: int) -> ForgetSet:
    if "." in argument:
        try:
            fraction = float(argument)
        except ValueError:
            raise ForgetRuleSyntaxError(f"{argument!r} is not a fraction") from None
        return author_forget(train, fraction=fraction, seed=seed)
    return author_forget(train, authors=_int_list(argument, "authors"))


def read_id_file(path_text: str) -> list[int]:
    """IDs from a file: one per line (blank lines and ``#`` comments allowed; commas or spaces also
    separate IDs), or a JSON list. Used by ``ids:@FILE`` and ``expunge forget --ids @FILE``."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ExpungeError(f"ID file {path} does not exist")
    content = path.read_text()
    if content.lstrip().startswith("["):
        try:
            values = json.loads(content)
        except ValueError:
            raise ExpungeError(f"{path} starts with '[' but is not a JSON list of IDs") from None
        if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ExpungeError(f"{path}: the JSON list must hold integer IDs only")
        return values
    ids = []
    for number, line in enumerate(content.splitlines(), start=1):
        for text in line.split("#", 1)[0].replace(",", " ").split():
            try:
                ids.append(int(text))
            except ValueError:
                raise ExpungeError(f"{path}, line {number}: {text!r} is not an integer ID") from None
    return ids
