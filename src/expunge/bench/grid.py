"""Benchmark grids: datasets x forget rules x methods x scenario seeds x N, from a TOML file.

A grid expands to **cells**. A cell is one method (with its hyperparameters) audited on
one scenario (dataset, forget rule, recipe, scenario seed) with N members per
population; its key is a content hash of everything that defines its result (the data's
fingerprint, the forget rule, the recipe, the user model's architecture, the method and
its hyperparameters, the seed, N, the audit's options, the device, the engine version
and expunge's version). The results store (:mod:`expunge.bench.store_results`) keeps
each finished cell once under that key, so rerunning a grid computes only the missing
cells. Running a cell is one :func:`~expunge.bench.audit.run_audit` call; oracle and
original populations are shared between cells through the population cache.

The TOML format (every key but ``datasets`` and ``methods`` is optional)::

    name = "tabular"                      # the grid's name, stored with each cell
    datasets = ["wine", "gaussians"]      # built-in names (`expunge datasets`) ...
    forget = ["random:0.1", "class:1"]    # forget-set rules (default ["random:0.1"])
    methods = [
        "finetune",                                  # a method with its defaults
        "retrain",                                   # the reference: only where the grid names it
        { name = "neggrad_plus", lr = 0.01 },        # explicit hyperparameters
        { name = "salun", tuned = true, trials = 10, tune_members = 8, budget = 0.1 },  # expunge.tune first
    ]
    seeds = [0, 1, 2, 3]                  # scenario seeds (default [0]), or a count: seeds = 4
    members = [8, 16]                     # N per population (default [8]); an integer for one
    shadow_members = 0                    # U-LiRA shadows (default 0: skipped; >= 8 to run it)
    metrics = ["klom", "accuracy"]        # registered metrics (default: all)
    retain_sample = 1000                  # retain examples the metrics use
    device = "cpu"

    [recipe]                              # overrides every scenario's recipe (optional)
    optimizer = "adam"                    # sgd | adam | adamw
    lr = 0.001
    schedule = "constant"                 # constant | cosine | step
    epochs = 3
    batch_size = 64

    [[datasets]]                          # a dataset as a table: options, its own recipe
    name = "gaussians"
    options = { n_train = 300 }
    recipe = { epochs = 2 }

    [[datasets]]                          # the user's own data and model, by import path
    name = "mine"
    data = "mypkg.data:load_split"        # returns a Split or (train, test) data as_dataset reads
    model = "mypkg.models:Net"            # an nn.Module class or factory (optional; default the recipe's)
    model_kwargs = { hidden = 64 }        # passed to it (input_shape / num_outputs too, if it takes them)

``datasets`` is one list: strings and tables may be mixed (TOML writes a list of tables
either inline or as ``[[datasets]]``). A method table's keys other than ``name``,
``tuned``, ``trials``, ``tune_members`` and ``budget`` are its hyperparameters. Scenario
seed ``s`` draws the forget set with seed ``s`` and gives the populations their own
member seeds (derived from the recipe's seed and ``s``), so seeds are independent
replicates. A cell that fails (its method raised or diverged) is stored as failed with
its error and is not rerun unless asked (``expunge bench --retry-failed``).
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from expunge._version import __version__
from expunge.errors import ExpungeError, unknown_name
from expunge.training.engine import ENGINE_VERSION
from expunge.training.recipe import Recipe, default_recipe
from expunge.training.seeds import derive_seed
from expunge.training.store import content_key

GRID_KEYS = ("name", "datasets", "forget", "methods", "seeds", "members", "shadow_members", "metrics",
             "retain_sample", "device", "recipe")
DATASET_KEYS = ("name", "options", "recipe", "data", "model", "model_kwargs")
METHOD_OPTION_KEYS = ("name", "tuned", "trials", "tune_members", "budget")
RECIPE_KEYS = ("model", "model_kwargs", "optimizer", "lr", "momentum", "betas", "weight_decay", "schedule", "epochs",
               "batch_size", "seed")
# Tests: a marker file path. The first cell to finish its audit creates the file and SIGKILLs its own process (a
# Ray worker dying mid-cell, before returning its result); the file exists from then on, so the retry completes.
CELL_CRASH_ENV = "EXPUNGE_CRASH_CELL_ONCE"
CELL_FORMAT = 1  # bump when what a cell computes changes without the engine or code version changing


def _check_keys(where: str, table: dict[str, Any], valid: tuple[str, ...]) -> None:
    unknown = [key for key in table if key not in valid]
    if unknown:
        raise ExpungeError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(valid)}")


def _as_list(where: str, value: Any, kind: type | tuple[type, ...]) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    for item in values:
        if not isinstance(item, kind) or isinstance(item, bool) and bool not in (kind if isinstance(kind, tuple)
                                                                                   else (kind,)):
            raise ExpungeError(f"{where}: {item!r} is a {type(item).__name__}; expected "
                               f"{' or '.join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))}")
    if not values:
        raise ExpungeError(f"{where}: the list is empty; give at least one value")
    return values


def import_object(path: str, what: str) -> Any:
    """The object named ``"package.module:attribute"`` (the user's data loader or model)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ExpungeError(f"{what} {path!r} must look like 'package.module:name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ExpungeError(f"{what} {path!r}: cannot import {module_name!r} ({error}); is it installed or on "
                           "PYTHONPATH?") from None
    try:
        found: Any = module
        for part in attribute.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise ExpungeError(f"{what} {path!r}: module {module_name!r} has no {attribute!r}") from None
    return found


def make_user_model(path: str, kwargs: dict[str, Any], input_shape: tuple[int, ...], num_outputs: int):
    """Instantiate the user's model class or factory; ``input_shape`` / ``num_outputs`` go to it if it takes them."""
    from torch import nn

    factory = import_object(path, "model")
    if isinstance(factory, nn.Module):
        return factory
    if not callable(factory):
        raise ExpungeError(f"model {path!r} is a {type(factory).__name__}, not an nn.Module class or factory")
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    extra = {k: v for k, v in (("input_shape", tuple(input_shape)), ("num_outputs", num_outputs))
             if k in parameters and k not in kwargs}
    model = factory(**kwargs, **extra)
    if not isinstance(model, nn.Module):
        raise ExpungeError(f"model {path!r} returned a {type(model).__name__}, not an nn.Module")
    return model


def load_user_split(path: str, name: str):
    """The user's data: ``loader()`` returning a :class:`~expunge.data.Split` or ``(train, test)``."""
    from expunge.data import Split, make_split

    loader = import_object(path, "data")
    value = loader() if callable(loader) else loader
    if isinstance(value, Split):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return make_split(value[0], value[1], name=name)
    raise ExpungeError(f"data {path!r} returned a {type(value).__name__}: return a Split or a (train, test) pair")


def parse_recipe(table: dict[str, Any], base: Recipe, where: str = "[recipe]") -> Recipe:
    """``base`` with the table's fields replaced (the TOML ``[recipe]`` table, or ``expunge audit --recipe``)."""
    if not isinstance(table, dict):
        raise ExpungeError(f"{where} must be a table of recipe fields ({', '.join(RECIPE_KEYS)})")
    _check_keys(where, table, RECIPE_KEYS)
    changes = dict(table)
    if "betas" in changes:
        changes["betas"] = tuple(changes["betas"])
    return base.with_(**changes)


def read_recipe_file(path: str | Path, base: Recipe) -> Recipe:
    """A recipe from a TOML file: its fields at the top level or under ``[recipe]``."""
    data = _read_toml(Path(path))
    return parse_recipe(data.get("recipe", data), base, f"{path}")


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ExpungeError(f"no such file: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ExpungeError(f"{path} is not valid TOML: {error}") from None


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of a grid: a built-in name with options, or the user's data (and model) by import path."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    model: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MethodEntry:
    """One method of a grid: its name, explicit hyperparameters, or tuning settings (``tuned``)."""

    name: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    tuned: dict[str, Any] | None = None  # {"trials", "members", "budget"} when expunge.tune picks the values

    @property
    def spec(self) -> dict[str, Any]:
        """What the grid asked for: the hyperparameters, or ``{"tuned": {...}}``."""
        return {"tuned": dict(self.tuned)} if self.tuned is not None else dict(self.hyperparameters)

    @property
    def label(self) -> str:
        if self.tuned is not None:
            return f"{self.name}[tuned]"
        if not self.hyperparameters:
            return self.name
        return f"{self.name}[{', '.join(f'{k}={v}' for k, v in sorted(self.hyperparameters.items()))}]"


@dataclass(frozen=True)
class Cell:
    """One (scenario, method, hyperparameters, seed, N): a plain, picklable description; :func:`run_cell` runs it."""

    key: str
    grid: str
    dataset: DatasetEntry
    forget_rule: str
    method: MethodEntry
    scenario_seed: int
    members: int
    shadow_members: int
    recipe: dict[str, Any]
    metrics: tuple[str, ...] | None
    retain_sample: int
    device: str
    parts: dict[str, Any]  # what the key hashes

    @property
    def label(self) -> str:
        return f"{self.dataset.name}/{self.forget_rule}/{self.method.label}/seed {self.scenario_seed}/N {self.members}"


@dataclass
class CellResult:
    """What running a cell gives: plain values only (result rows as dicts), so a remote worker can return it."""

    key: str
    status: str  # "ok" | "failed"
    error: str | None
    rows: list[dict[str, Any]]
    cost: dict[str, Any] | None
    hyperparameters_used: dict[str, Any]
    started: str
    finished: str
    wall_s: float
    machine: dict[str, Any]
    device: str
    timings: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None


@dataclass
class Grid:
    """A parsed grid file; :meth:`cells` expands it."""

    name: str
    datasets: list[DatasetEntry]
    forget: list[str]
    methods: list[MethodEntry]
    seeds: list[int]
    members: list[int]
    shadow_members: int = 0
    metrics: tuple[str, ...] | None = None
    retain_sample: int = 1000
    device: str = "cpu"
    recipe: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> Grid:
        path = Path(path)
        return cls.from_dict(_read_toml(path), default_name=path.stem)

    @classmethod
    def from_toml(cls, text: str, name: str = "grid") -> Grid:
        try:
            return cls.from_dict(tomllib.loads(text), default_name=name)
        except tomllib.TOMLDecodeError as error:
            raise ExpungeError(f"the grid is not valid TOML: {error}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any], default_name: str = "grid") -> Grid:
        from expunge.data import DATASETS
        from expunge.methods.registry import METHODS

        _check_keys("grid", data, GRID_KEYS)
        for required in ("datasets", "methods"):
            if required not in data:
                raise ExpungeError(f"grid: the key {required!r} is missing; a grid names its datasets and methods")
        datasets = [_dataset_entry(item, DATASETS.names())
                    for item in _as_list("datasets", data["datasets"], (str, dict))]
        names = [d.name for d in datasets]
        if len(set(names)) != len(names):
            raise ExpungeError(f"datasets: {sorted({n for n in names if names.count(n) > 1})[0]!r} appears twice; "
                               "give each dataset entry its own name")
        methods = [_method_entry(item, METHODS.names()) for item in _as_list("methods", data["methods"], (str, dict))]
        labels = [m.label for m in methods]
        if len(set(labels)) != len(labels):
            raise ExpungeError(f"methods: {sorted({n for n in labels if labels.count(n) > 1})[0]!r} appears twice")
        seeds = data.get("seeds", [0])
        seeds = list(range(seeds)) if isinstance(seeds, int) and not isinstance(seeds, bool) else \
            _as_list("seeds", seeds, int)
        members = _as_list("members", data.get("members", [8]), int)
        grid = cls(name=str(data.get("name", default_name)), datasets=datasets,
                   forget=_as_list("forget", data.get("forget", ["random:0.1"]), str),
                   methods=methods, seeds=seeds, members=members,
                   shadow_members=int(data.get("shadow_members", 0)),
                   metrics=tuple(_as_list("metrics", data["metrics"], str)) if "metrics" in data else None,
                   retain_sample=int(data.get("retain_sample", 1000)), device=str(data.get("device", "cpu")),
                   recipe=dict(data.get("recipe", {})))
        grid.validate()
        return grid

    def validate(self) -> None:
        """Check what can be checked before any work: recipes, metric names, sizes, forget-rule syntax."""
        from expunge.audit.evidence import MIN_MEMBERS, MIN_SHADOWS
        from expunge.audit.metric import METRICS
        for dataset in self.datasets:
            self.recipe_for(dataset)
        for name in self.metrics or ():
            METRICS.get(name)
        for n in self.members:
            if n < MIN_MEMBERS:
                raise ExpungeError(f"members: {n} is too few; an audit needs at least {MIN_MEMBERS} per population")
        if 0 < self.shadow_members < MIN_SHADOWS:
            raise ExpungeError(f"shadow_members: U-LiRA needs at least {MIN_SHADOWS} (or 0 to skip it); "
                               f"got {self.shadow_members}")
        if self.retain_sample < 1:
            raise ExpungeError(f"retain_sample must be positive, got {self.retain_sample}")

    def recipe_for(self, dataset: DatasetEntry) -> Recipe:
        base = default_recipe(dataset.name if dataset.data is None else "")
        recipe = parse_recipe(self.recipe, base) if self.recipe else base
        if dataset.recipe:
            recipe = parse_recipe(dataset.recipe, recipe, f"datasets.{dataset.name}.recipe")
        if dataset.model is not None:
            recipe = recipe.with_(model=dataset.model, model_kwargs=dict(dataset.model_kwargs))
        return recipe

    def cells(self) -> list[Cell]:
        """Every cell, in a stable order (dataset, forget rule, seed, N, method: a scenario's cells run together,
        so its populations are trained once and then loaded from the cache)."""
        from expunge.data import validate_forget_rule

        cells = []
        for dataset in self.datasets:
            split = _split(dataset)
            fingerprint = split.fingerprint()
            if dataset.model is not None:
                import_object(dataset.model, "model")  # a bad import path fails before any work
            recipe = self.recipe_for(dataset).to_json()
            for rule in self.forget:
                validate_forget_rule(rule, split.train, seed=self.seeds[0])  # a bad rule fails before any work
                for seed in self.seeds:
                    for members in self.members:
                        for method in self.methods:
                            parts = {"format": CELL_FORMAT, "data": fingerprint, "dataset": dataset.name,
                                     "options": dataset.options, "user_data": dataset.data, "model": dataset.model,
                                     "forget": rule, "recipe": recipe, "method": method.name,
                                     "hyperparameters": method.spec, "scenario_seed": seed, "members": members,
                                     "shadow_members": self.shadow_members,
                                     "metrics": sorted(self.metrics) if self.metrics else None,
                                     "retain_sample": self.retain_sample, "device": self.device,
                                     "engine": ENGINE_VERSION, "code": __version__}
                            cells.append(Cell(cell_key(parts), self.name, dataset, rule, method, seed, members,
                                              self.shadow_members, recipe, self.metrics, self.retain_sample,
                                              self.device, parts))
        return cells


def cell_key(parts: dict[str, Any]) -> str:
    """The content hash naming a cell (the plan's :func:`~expunge.training.store.content_key`)."""
    return content_key(parts)


def _split(dataset: DatasetEntry):
    from expunge.data import load_dataset

    if dataset.data is not None:
        return load_user_split(dataset.data, dataset.name)
    return load_dataset(dataset.name, **dataset.options)


def _dataset_entry(item: str | dict[str, Any], valid: list[str]) -> DatasetEntry:
    if isinstance(item, str):
        item = {"name": item}
    _check_keys(f"datasets entry {item.get('name', '?')!r}", item, DATASET_KEYS)
    if "name" not in item:
        raise ExpungeError("datasets: every dataset table needs a name")
    name = str(item["name"])
    if item.get("data") is None and name not in valid:
        raise unknown_name("dataset", name, valid)
    for key in ("options", "recipe", "model_kwargs"):
        if not isinstance(item.get(key, {}), dict):
            raise ExpungeError(f"datasets entry {name!r}: {key} must be a table")
    return DatasetEntry(name, dict(item.get("options", {})), dict(item.get("recipe", {})), item.get("data"),
                        item.get("model"), dict(item.get("model_kwargs", {})))


def _method_entry(item: str | dict[str, Any], valid: list[str]) -> MethodEntry:
    from expunge.methods.registry import get_method

    if isinstance(item, str):
        item = {"name": item}
    if "name" not in item:
        raise ExpungeError(f"methods: the table {item!r} needs a name")
    name = str(item["name"])
    if name not in valid:
        raise unknown_name("method", name, valid)
    hyperparameters = {k: v for k, v in item.items() if k not in METHOD_OPTION_KEYS}
    tuned = None
    if item.get("tuned", False):
        if hyperparameters:
            raise ExpungeError(f"method {name!r}: give hyperparameters or tuned = true, not both")
        if not get_method(name).search_space(None):
            raise ExpungeError(f"method {name!r} declares no search space: it cannot be tuned; drop tuned = true")
        tuned = {"trials": int(item.get("trials", 20)), "members": int(item.get("tune_members", 16)),
                 "budget": float(item.get("budget", 0.1))}
    else:
        extra = [k for k in ("trials", "tune_members", "budget") if k in item]
        if extra:
            raise ExpungeError(f"method {name!r}: {extra[0]!r} only applies with tuned = true")
        get_method(name).make_hyperparameters(**hyperparameters)  # unknown names and bad values fail now
    return MethodEntry(name, hyperparameters, tuned)


def build_scenario(cell: Cell):
    """The cell's :class:`~expunge.training.scenario.Scenario` (data loaded or imported, model built)."""
    from expunge.training.scenario import Scenario

    split = _split(cell.dataset)
    recipe = Recipe.from_json(cell.recipe)
    # Scenario seeds are independent replicates: their own forget set and their own member seeds.
    recipe = recipe.with_(seed=derive_seed(recipe.seed, "grid-scenario", cell.scenario_seed) % (2 ** 31))
    model = None
    if cell.dataset.model is not None:
        outputs = split.train.num_classes if split.train.task == "classification" else 1
        model = make_user_model(cell.dataset.model, cell.dataset.model_kwargs, split.train.input_shape, outputs)
    return Scenario.with_rule(split, cell.forget_rule, recipe, seed=cell.scenario_seed, device=cell.device,
                              model=model)


def run_cell(cell: Cell, progress=None) -> CellResult:
    """Audit the cell's method on its scenario: one :func:`~expunge.bench.audit.run_audit` call.

    Never raises for a failing method or scenario: the result says ``failed`` with the error.
    """
    import datetime
    import traceback

    from expunge.bench.audit import run_audit
    from expunge.bench.machine import describe

    def now() -> str:
        return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")

    started, start = now(), time.perf_counter()
    hyperparameters: dict[str, Any] = dict(cell.method.hyperparameters)
    rows, cost, status, error, trace, timings = [], None, "failed", None, None, {}
    try:
        scenario = build_scenario(cell)
        if cell.method.tuned is not None:
            from expunge.bench.tune import tune

            tuned = tune(scenario, cell.method.name, trials=cell.method.tuned["trials"],
                         members=cell.method.tuned["members"], budget=cell.method.tuned["budget"],
                         seed=cell.scenario_seed, progress=progress)
            method_spec: dict[str, Any] = {cell.method.name: tuned.hyperparameters}
        else:
            method_spec = {cell.method.name: dict(cell.method.hyperparameters)}
        report = run_audit(scenario, method_spec, members=cell.members, shadow_members=cell.shadow_members,
                           seed=cell.scenario_seed, retain_sample=cell.retain_sample, progress=progress,
                           metrics=list(cell.metrics) if cell.metrics else None)
        entry = report[cell.method.name]
        rows = [row.to_json() for row in report.rows]
        cost, status, error, trace = entry["cost"], entry["status"], entry["error"], entry.get("traceback")
        hyperparameters = dict(entry.get("hyperparameters") or {})
        timings = dict(report.data["timings"])
        timings["cache"] = report.data["populations"]["cache"]
        _crash_once()
    except Exception as failure:  # noqa: BLE001 - one failing cell must not stop the grid
        error = str(failure) if isinstance(failure, ExpungeError) else f"{type(failure).__name__}: {failure}"
        trace = None if isinstance(failure, ExpungeError) else traceback.format_exc()
    return CellResult(cell.key, "ok" if status == "ok" else "failed", error, rows, cost,
                      _plain(hyperparameters), started, now(), time.perf_counter() - start, describe(cell.device),
                      cell.device, _plain(timings), trace)


def _crash_once() -> None:
    marker = os.environ.get(CELL_CRASH_ENV)
    if not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _plain(value: Any) -> Any:
    """JSON-ready copy (tuples to lists, non-finite floats kept: the store writes them as text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
