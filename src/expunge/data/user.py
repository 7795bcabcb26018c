"""Turn the user's own data into expunge datasets.

Users hold tensors, numpy arrays or a ``torch.utils.data.Dataset``; :func:`as_dataset`
converts any of these into an in-memory :class:`ArrayDataset` with stable IDs, and
:func:`make_split` pairs a training and a test set into a :class:`Split`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from expunge.data.base import ArrayDataset, Split
from expunge.errors import ExpungeError

_TASKS = ("classification", "regression")


def _to_tensor(value: Any, what: str) -> torch.Tensor:
    """A numeric tensor from a tensor, numpy array, list or scalar; anything else is an error."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
    else:
        array = np.asarray(value)
        if array.dtype == object or array.dtype.kind not in "biuf":
            raise ExpungeError(
                f"{what} must be numeric (a tensor or a numpy array of numbers), got {type(value).__name__} "
                f"with dtype {array.dtype}: encode text or categorical values as numbers first"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.is_complex():
        raise ExpungeError(f"{what} must be real numbers, got dtype {tensor.dtype}")
    return tensor


def _materialise(dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack every (x, y) pair a ``torch.utils.data.Dataset`` yields."""
    if isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__len__"):
        items = list(iter(dataset))
    else:
        items = [dataset[i] for i in range(len(dataset))]
    if not items:
        raise ExpungeError(f"the dataset {type(dataset).__name__} yields no examples")
    xs, ys = [], []
    for index, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ExpungeError(
                f"item {index} of {type(dataset).__name__} is a {type(item).__name__}, not an (x, y) pair: "
                "make __getitem__ return (features, label)"
            )
        xs.append(_to_tensor(item[0], "features"))
        ys.append(_to_tensor(item[1], "labels").reshape(-1))
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise ExpungeError(f"the examples of {type(dataset).__name__} have different shapes {sorted(shapes)[:3]}: resize them to one shape")
    if any(y.numel() != 1 for y in ys):
        raise ExpungeError(f"each label of {type(dataset).__name__} must be a single number")
    return torch.stack(xs), torch.cat(ys)


def _from_loader(loader: torch.utils.data.DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every ``(x, y)`` batch a ``DataLoader`` yields (one pass, in its order)."""
    xs, ys = [], []
    for index, batch in enumerate(loader):
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ExpungeError(f"batch {index} of the DataLoader is a {type(batch).__name__}, not an (x, y) pair: "
                               "make its dataset return (features, label)")
        xs.append(_to_tensor(batch[0], "features"))
        ys.append(_to_tensor(batch[1], "labels").reshape(-1))
    if not xs:
        raise ExpungeError("the DataLoader yields no batches")
    shapes = {tuple(x.shape[1:]) for x in xs}
    if len(shapes) > 1:
        raise ExpungeError(f"the DataLoader's batches have different example shapes {sorted(shapes)[:3]}")
    return torch.cat(xs), torch.cat(ys)


def _infer_task(y: torch.Tensor) -> str:
    return "regression" if y.is_floating_point() else "classification"


def as_dataset(
    data: Any,
    labels: Any = None,
    ids: Any = None,
    task: str | None = None,
    num_classes: int | None = None,
) -> ArrayDataset:
    """Convert user data into an :class:`ArrayDataset`.

    ``data`` may be an ``ArrayDataset`` (returned as is), features (tensor or array)
    with ``labels``, a tuple ``(x, y)``, a ``torch.utils.data.Dataset`` yielding
    ``(x, y)`` pairs, or a ``torch.utils.data.DataLoader`` yielding ``(x, y)`` batches
    (materialised in memory; a shuffling loader's order is whatever one pass gives). The task is inferred from the labels
    (integers: classification with ``num_classes = max label + 1``; floats: regression)
    unless given. ``ids`` default to ``0 .. N-1`` and must be unique integers.

    >>> ds = as_dataset(np.zeros((3, 2)), np.array([0, 1, 1]))
    >>> ds.task, ds.num_classes, ds.ids.tolist()
    ('classification', 2, [0, 1, 2])
    """
    if isinstance(data, ArrayDataset):
        if labels is not None or ids is not None or task is not None:
            raise ExpungeError("an ArrayDataset already carries labels, IDs, task and num_classes: pass it alone")
        if num_classes is not None and data.num_classes is not None and num_classes != data.num_classes:
            raise ExpungeError(f"num_classes={num_classes} but the ArrayDataset says {data.num_classes}")
        if num_classes is not None and data.num_classes is None and data.task == "classification":
            return dataclasses.replace(data, num_classes=num_classes)
        return data
    if task is not None and task not in _TASKS:
        raise ExpungeError(f"task={task!r} is not valid: use 'classification' or 'regression'")

    if labels is None:
        if isinstance(data, tuple) and len(data) == 2:
            x, y = _to_tensor(data[0], "features"), _to_tensor(data[1], "labels")
        elif isinstance(data, torch.utils.data.DataLoader):
            x, y = _from_loader(data)
        elif isinstance(data, torch.utils.data.Dataset):
            x, y = _materialise(data)
        else:
            raise ExpungeError(
                f"cannot read labels from a {type(data).__name__}: pass labels=..., a tuple (x, y), "
                "a torch Dataset yielding (x, y) pairs or a DataLoader yielding (x, y) batches"
            )
    else:
        x, y = _to_tensor(data, "features"), _to_tensor(labels, "labels")

    if x.ndim == 0 or x.shape[0] == 0:
        raise ExpungeError(f"features have shape {tuple(x.shape)}: need at least one example, shaped [N, ...]")
    if x.ndim == 1:
        x = x.reshape(-1, 1)  # one feature per example
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise ExpungeError(f"labels must be one number per example, shaped [N], got shape {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ExpungeError(f"features have {x.shape[0]} examples but labels have {y.shape[0]}: they must match")
    x = x.to(torch.float32)
    finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()
        raise ExpungeError(
            f"{bad.numel()} examples have NaN or infinite features (first at row {int(bad[0])}): "
            "drop or impute them first"
        )

    task = task or _infer_task(y)
    if task == "classification":
        if y.is_floating_point():
            if not bool(torch.isfinite(y).all()) or not bool((y == torch.round(y)).all()):
                raise ExpungeError("classification labels must be whole numbers: pass task='regression' for real-valued targets")
        y = y.to(torch.int64)
        if bool((y < 0).any()):
            raise ExpungeError(f"classification labels must be >= 0, found {int(y.min())}: map classes to 0..C-1")
        needed = int(y.max()) + 1
        if num_classes is None:
            num_classes = needed
        elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < needed:
            raise ExpungeError(f"num_classes={num_classes!r} is too small: the labels go up to {needed - 1}")
        num_classes = int(num_classes)
    else:
        if num_classes is not None:
            raise ExpungeError("num_classes only applies to classification: leave it out for task='regression'")
        y = y.to(torch.float32)
        if not bool(torch.isfinite(y).all()):
            raise ExpungeError("regression targets contain NaN or infinite values: drop or impute them first")

    n = x.shape[0]
    if ids is None:
        ids = torch.arange(n, dtype=torch.int64)
    else:
        ids = _to_tensor(ids, "ids").reshape(-1)
        if ids.is_floating_point() or ids.dtype == torch.bool:
            raise ExpungeError(f"ids must be integers, got dtype {ids.dtype}")
        ids = ids.to(torch.int64)
        if ids.numel() != n:
            raise ExpungeError(f"got {ids.numel()} ids for {n} examples: give exactly one ID per example")
        values, counts = torch.unique(ids, return_counts=True)
        if bool((counts > 1).any()):
            raise ExpungeError(f"ids must be unique; repeated: {values[counts > 1][:5].tolist()}")
    return ArrayDataset(x.contiguous(), y.contiguous(), ids.contiguous(), task, num_classes)  # type: ignore[arg-type]


def make_split(train: Any, test: Any, name: str = "user", *, task: str | None = None, num_classes: int | None = None) -> Split:
    """Pair user training and test data into a :class:`Split`.

    ``train`` and ``test`` take anything :func:`as_dataset` accepts. Test IDs that are
    not given continue after the largest training ID, so train and test never share an
    ID. For classification, ``num_classes`` is inferred from both sets' labels.
    """
    given_train, given_test = isinstance(train, ArrayDataset), isinstance(test, ArrayDataset)
    train_ds = train if given_train else as_dataset(*_unpack(train), task=task)
    offset = int(train_ds.ids.max()) + 1
    if given_test:
        test_ds = test
    else:
        test_x, test_y = _unpack(test)
        probe = as_dataset(test_x, test_y, task=task or train_ds.task)
        test_ds = dataclasses.replace(probe, ids=torch.arange(offset, offset + len(probe), dtype=torch.int64))

    if train_ds.task != test_ds.task:
        raise ExpungeError(f"the training set is {train_ds.task} but the test set is {test_ds.task}: use one task")
    if train_ds.input_shape != test_ds.input_shape:
        raise ExpungeError(
            f"training examples have shape {train_ds.input_shape} but test examples {test_ds.input_shape}: they must match"
        )
    shared = np.intersect1d(train_ds.ids.numpy(), test_ds.ids.numpy())
    if shared.size:
        raise ExpungeError(
            f"train and test share IDs {shared[:5].tolist()}: give test examples their own IDs "
            "(or pass raw data and let make_split number them)"
        )
    if train_ds.task == "classification":
        labels_need = max(int(train_ds.y.max()), int(test_ds.y.max())) + 1
        wanted = max(labels_need, train_ds.num_classes, test_ds.num_classes)
        if num_classes is not None:
            if num_classes < labels_need:
                raise ExpungeError(f"num_classes={num_classes} is too small: the labels go up to {labels_need - 1}")
            wanted = int(num_classes)
        for given, ds, role in ((given_train, train_ds, "training"), (given_test, test_ds, "test")):
            if given and ds.num_classes != wanted:
                raise ExpungeError(
                    f"the {role} set has num_classes={ds.num_classes} but the split needs {wanted} "
                    f"(training {train_ds.num_classes}, test {test_ds.num_classes}, labels): build both with num_classes={wanted}"
                )
        train_ds = dataclasses.replace(train_ds, num_classes=wanted)
        test_ds = dataclasses.replace(test_ds, num_classes=wanted)
    elif num_classes is not None:
        raise ExpungeError("num_classes only applies to classification: leave it out for regression")
    return Split(name, train_ds, test_ds, {"dataset": name, "source": "user data"})


def _unpack(data: Any) -> tuple[Any, Any]:
    """(x, y) from a tuple, or (dataset, None) for a torch Dataset; for :func:`make_split`."""
    if isinstance(data, tuple) and len(data) == 2:
        return data[0], data[1]
    if isinstance(data, torch.utils.data.Dataset):
        return data, None
    raise ExpungeError(
        f"make_split takes an ArrayDataset, a tuple (x, y) or a torch Dataset for train and test, "
        f"got {type(data).__name__}"
    )
