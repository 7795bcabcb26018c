"""Tests of the data layer: built-in datasets, user data and forget-set rules."""
from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch

from expunge.data import (
    DATASETS,
    ArrayDataset,
    ForgetSet,
    as_dataset,
    class_forget,
    dataset_info,
    ids_forget,
    load_dataset,
    make_split,
    parse_forget_rule,
    predicate_forget,
    random_forget,
    subclass_forget,
)
from expunge.errors import ExpungeError

LOCAL = [name for name in DATASETS if name != "cifar10"]


def _same(a: ArrayDataset, b: ArrayDataset) -> bool:
    return all(torch.equal(s, t) for s, t in ((a.x, b.x), (a.y, b.y), (a.ids, b.ids)))


def _nearest_centroid_accuracy(split) -> float:
    """Test accuracy of a nearest-class-mean classifier: checks features still match labels."""
    x_train, x_test = split.train.x.flatten(1), split.test.x.flatten(1)
    centroids = torch.stack([x_train[split.train.y == c].mean(0) for c in range(split.num_classes)])
    predictions = torch.cdist(x_test, centroids).argmin(1)
    return float((predictions == split.test.y).float().mean())


# --------------------------------------------------------------------------- built-in datasets
@pytest.mark.parametrize("name", LOCAL)
def test_builtin_dataset_shapes_sizes_and_ids(name):
    split = load_dataset(name)
    spec = DATASETS[name]
    n_train, n_test = len(split.train), len(split.test)
    assert (n_train, n_test) == (spec.n_train, spec.n_test)
    assert split.input_shape == spec.input_shape == split.test.input_shape
    assert split.task == spec.task and split.num_classes == spec.num_classes
    assert split.train.x.dtype == (torch.int64 if spec.task == "causal_lm" else torch.float32)  # token ids
    assert split.train.y.dtype == (torch.float32 if spec.task == "regression" else torch.int64)
    assert torch.equal(split.train.ids, torch.arange(n_train))
    assert torch.equal(split.test.ids, torch.arange(n_train, n_train + n_test))
    assert torch.isfinite(split.train.x).all() and torch.isfinite(split.test.x).all()
    if spec.task == "classification":
        assert set(split.train.y.tolist()) == set(range(spec.num_classes))
        first = split.train.y[: len(split.train) // 10]
        assert len(torch.unique(first)) > 1  # IDs are not in class order, even where the source file is


@pytest.mark.parametrize(
    "name, threshold",
    [("mnist1d", 0.2), ("mnist5k", 0.7), ("digits", 0.85), ("breast_cancer", 0.85), ("wine", 0.85), ("gaussians", 0.85)],
)
def test_builtin_dataset_features_match_labels(name, threshold):
    assert _nearest_centroid_accuracy(load_dataset(name)) > threshold


def test_image_datasets_are_scaled_to_unit_interval():
    for name in ("mnist5k", "digits"):
        x = load_dataset(name).train.x
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0


@pytest.mark.parametrize(
    "name, kwargs",
    [("mnist1d", {"num_samples": 300}), ("mnist5k", {}), ("digits", {}), ("breast_cancer", {}), ("wine", {}),
     ("diabetes", {}), ("gaussians", {"n_train": 100, "n_test": 20})],
)
def test_builtin_datasets_are_deterministic(name, kwargs):
    loader = DATASETS[name].loader  # bypasses the in-process cache: really regenerates
    first, second = loader(**kwargs), loader(**kwargs)
    assert _same(first.train, second.train) and _same(first.test, second.test)


def test_seeds_change_the_data():
    a = DATASETS["gaussians"].loader(n_train=50, n_test=10, seed=0)
    b = DATASETS["gaussians"].loader(n_train=50, n_test=10, seed=1)
    assert not torch.equal(a.train.x, b.train.x)
    c = DATASETS["digits"].loader(seed=1)
    assert not torch.equal(load_dataset("digits").train.y, c.train.y)


def test_gaussians_options_and_test_size_leaves_training_set_alone():
    split = load_dataset("gaussians", n_train=40, n_test=12, dim=3, num_classes=2, separation=5.0, seed=3)
    assert split.train.x.shape == (40, 3) and split.test.x.shape == (12, 3) and split.num_classes == 2
    assert torch.bincount(split.train.y).tolist() == [20, 20]
    other = load_dataset("gaussians", n_train=40, n_test=30, dim=3, num_classes=2, separation=5.0, seed=3)
    assert _same(split.train, other.train)


def test_loads_are_cached_per_arguments():
    assert load_dataset("digits") is load_dataset("digits", test_fraction=0.2, seed=0)
    assert load_dataset("digits", seed=1) is not load_dataset("digits")


def test_mnist1d_sizes_are_configurable():
    split = load_dataset("mnist1d", num_samples=400, train_split=0.5)
    assert (len(split.train), len(split.test)) == (200, 200)
    assert split.input_shape == (40,)
    with pytest.raises(ExpungeError, match="multiple of 10"):
        load_dataset("mnist1d", num_samples=405)
    with pytest.raises(ExpungeError, match="train_split"):
        load_dataset("mnist1d", train_split=1.5)


def test_mnist1d_leaves_global_rng_state_untouched():
    np.random.seed(1234)
    random.seed(99)
    expected_numpy, expected_python = np.random.random(3), random.random()
    np.random.seed(1234)
    random.seed(99)
    DATASETS["mnist1d"].loader(num_samples=100)  # uncached: the generator really runs
    assert np.array_equal(np.random.random(3), expected_numpy)
    assert random.random() == expected_python


def test_tabular_standardised_with_training_statistics_only():
    from sklearn.datasets import load_breast_cancer

    split = load_dataset("breast_cancer")
    assert torch.allclose(split.train.x.mean(0), torch.zeros(30), atol=1e-4)
    assert torch.allclose(split.train.x.std(0, unbiased=False), torch.ones(30), atol=1e-3)
    assert split.test.x.mean(0).abs().max() > 1e-3  # the test set was not used to standardise
    raw = load_breast_cancer().data
    train_raw = split.train.x.double().numpy() * np.array(split.info["feature_std"]) + np.array(split.info["feature_mean"])
    gap = np.abs(train_raw[:, None, :] - raw[None, :, :]).max(-1).min(1)
    assert gap.max() < 1e-2  # each training row, un-standardised, is a real row of the original data
    assert np.allclose(split.info["feature_mean"], train_raw.mean(0))  # the statistics are the training rows'
    assert not np.allclose(split.info["feature_mean"], raw.mean(0))  # ... not those of all rows


def test_diabetes_is_regression_with_standardised_targets():
    from sklearn.datasets import load_diabetes

    split = load_dataset("diabetes")
    assert split.task == "regression" and split.num_classes is None
    assert abs(float(split.train.y.mean())) < 1e-5
    assert abs(float(split.train.y.std(unbiased=False)) - 1.0) < 1e-4
    targets = torch.cat([split.train.y, split.test.y]).double() * split.info["target_std"] + split.info["target_mean"]
    assert np.allclose(np.sort(targets.numpy()), np.sort(load_diabetes().target), atol=1e-3)
    # a least-squares fit explains part of the variance: features still line up with targets
    x = torch.cat([split.train.x, torch.ones(len(split.train), 1)], 1).double()
    w = torch.linalg.lstsq(x, split.train.y.double().unsqueeze(1)).solution
    xt = torch.cat([split.test.x, torch.ones(len(split.test), 1)], 1).double()
    residual = ((xt @ w).squeeze(1) - split.test.y.double()).pow(2).mean()
    assert residual < split.test.y.double().var() * 0.9


def test_unknown_dataset_name_lists_valid_ones():
    with pytest.raises(ExpungeError) as error:
        load_dataset("mnist1", num_samples=10)
    message = str(error.value)
    assert "'mnist1'" in message and "mnist1d" in message and "gaussians" in message and "\n" not in message


def test_unknown_dataset_option_lists_valid_options():
    with pytest.raises(ExpungeError, match="no option 'size'.*num_samples, train_split, seed"):
        load_dataset("mnist1d", size=10)


def test_dataset_info_describes_every_dataset_without_loading():
    rows = dataset_info()
    assert [row["name"] for row in rows] == list(DATASETS)
    for row in rows:
        assert {"name", "task", "n_train", "n_test", "input_shape", "num_classes", "description"} <= set(row)
    assert next(r for r in rows if r["name"] == "cifar10")["source"].startswith("local folder")


# --------------------------------------------------------------------------- cifar10
def _write_batch(path, n, rng, label_offset=0, protocol=pickle.HIGHEST_PROTOCOL):
    batch = {
        b"batch_label": f"batch {path.name}".encode(),
        b"labels": [int((i + label_offset) % 10) for i in range(n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=protocol)
    return batch


@pytest.fixture
def cifar_root(tmp_path):
    """A tiny CIFAR-10 folder in the original format: 5 training batches of 3 images, a test batch of 4."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar"
    folder.mkdir()
    batches = [_write_batch(folder / f"data_batch_{i}", 3, rng, label_offset=3 * i) for i in range(1, 6)]
    test = _write_batch(folder / "test_batch", 4, rng)
    return folder, batches, test


def test_cifar10_loads_the_original_format(cifar_root):
    folder, batches, test = cifar_root
    split = load_dataset("cifar10", root=str(folder))
    assert split.train.x.shape == (15, 3, 32, 32) and split.test.x.shape == (4, 3, 32, 32)
    assert split.num_classes == 10 and split.train.x.dtype == torch.float32
    assert torch.equal(split.train.ids, torch.arange(15)) and torch.equal(split.test.ids, torch.arange(15, 19))
    expected = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32) / 255.0
    assert np.allclose(split.train.x.numpy(), expected)
    assert split.train.y.tolist() == sum((b[b"labels"] for b in batches), [])
    assert split.test.y.tolist() == test[b"labels"]
    assert 0.0 <= float(split.train.x.min()) and float(split.train.x.max()) <= 1.0
    assert load_dataset("cifar10", root=folder) is split  # a Path and its string share the cache entry


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_reads_every_pickle_protocol(tmp_path, protocol):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _write_batch(tmp_path / name, 2, rng, protocol=protocol)
    assert len(load_dataset("cifar10", root=tmp_path).train) == 10


def test_cifar10_reads_files_written_by_numpy_1(tmp_path):
    # numpy < 2 (and the official archive) name the array rebuilder numpy.core.multiarray._reconstruct
    rng = np.random.default_rng(2)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = _write_batch(tmp_path / name, 2, rng, protocol=2)
        payload = (tmp_path / name).read_bytes()
        assert b"numpy._core.multiarray" in payload
        (tmp_path / name).write_bytes(payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    split = load_dataset("cifar10", root=tmp_path)
    assert np.array_equal(split.test.x.numpy(), batch[b"data"].reshape(-1, 3, 32, 32) / np.float32(255))


def test_cifar10_truncation_normalisation_and_archive_folder(cifar_root):
    folder, _, _ = cifar_root
    split = load_dataset("cifar10", root=folder, max_train=4, max_test=2)
    assert (len(split.train), len(split.test)) == (4, 2)
    normalised = load_dataset("cifar10", root=folder, normalize=True).train.x
    assert torch.allclose(normalised.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    parent = folder.parent / "archive"
    (parent).mkdir()
    folder.rename(parent / "cifar-10-batches-py")
    assert len(load_dataset("cifar10", root=parent).train) == 15


def test_cifar10_needs_a_root():
    with pytest.raises(ExpungeError, match="root="):
        load_dataset("cifar10")


def test_cifar10_missing_batch_names_the_file(cifar_root):
    folder, _, _ = cifar_root
    (folder / "data_batch_3").unlink()
    with pytest.raises(ExpungeError) as error:
        load_dataset("cifar10", root=folder)
    assert str(folder / "data_batch_3") in str(error.value)


class _Exploit:
    """Unpickling this runs a shell command: exactly what a poisoned download would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_a_malicious_pickle_without_running_it(cifar_root):
    folder, _, _ = cifar_root
    marker = folder.parent / "pwned"
    with open(folder / "data_batch_1", "wb") as handle:
        pickle.dump({b"data": _Exploit(marker), b"labels": [0]}, handle)
    with pytest.raises(ExpungeError, match="refusing to load .*data_batch_1.*system"):
        load_dataset("cifar10", root=folder)
    assert not marker.exists()


def test_cifar10_rejects_a_file_that_is_not_a_batch(cifar_root):
    folder, _, _ = cifar_root
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ExpungeError, match="test_batch"):
        load_dataset("cifar10", root=folder)


# --------------------------------------------------------------------------- user data
def test_as_dataset_from_numpy_infers_classification():
    x, y = np.random.default_rng(0).normal(size=(10, 2, 3)), np.array([0, 1, 2, 2, 1, 0, 4, 1, 0, 0])
    ds = as_dataset(x, y)
    assert ds.task == "classification" and ds.num_classes == 5
    assert ds.x.dtype == torch.float32 and ds.x.shape == (10, 2, 3) and ds.y.dtype == torch.int64
    assert torch.equal(ds.ids, torch.arange(10))
    assert as_dataset(ds) is ds


def test_as_dataset_from_tensors_tuple_and_regression():
    x, y = torch.randn(6, 4), torch.randn(6)
    ds = as_dataset((x, y), ids=[10, 11, 12, 13, 14, 15])
    assert ds.task == "regression" and ds.num_classes is None and ds.y.dtype == torch.float32
    assert ds.ids.tolist() == [10, 11, 12, 13, 14, 15]
    forced = as_dataset(x, torch.tensor([0.0, 1.0, 1.0, 0.0, 2.0, 2.0]), task="classification", num_classes=4)
    assert forced.y.dtype == torch.int64 and forced.num_classes == 4


def test_as_dataset_from_torch_datasets():
    x, y = torch.randn(7, 3), torch.arange(7) % 3
    ds = as_dataset(torch.utils.data.TensorDataset(x, y))
    assert torch.equal(ds.x, x) and torch.equal(ds.y, y) and ds.num_classes == 3

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return np.full((2, 2), i, dtype=np.float64), i % 2

    ds = as_dataset(Pairs())
    assert ds.x.shape == (4, 2, 2) and ds.y.tolist() == [0, 1, 0, 1]

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter([(torch.ones(2), 1), (torch.zeros(2), 0)])

    assert as_dataset(Stream()).y.tolist() == [1, 0]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: as_dataset(np.zeros((3, 2)), np.array([0, 1])), "3 examples but labels have 2"),
        (lambda: as_dataset(np.array([[0.0], [np.nan]]), np.array([0, 1])), "NaN"),
        (lambda: as_dataset(np.array([["a"], ["b"]]), np.array([0, 1])), "numeric"),
        (lambda: as_dataset(np.zeros((2, 1)), np.array(["cat", "dog"])), "numeric"),
        (lambda: as_dataset(np.zeros((2, 1)), np.array([0, 1]), ids=[5, 5]), "unique"),
        (lambda: as_dataset(np.zeros((2, 1)), np.array([0, 1]), ids=[5]), "one ID per example"),
        (lambda: as_dataset(np.zeros((2, 1)), np.array([0, -1])), ">= 0"),
        (lambda: as_dataset(np.zeros((2, 1)), np.array([0.5, 1.0]), task="classification"), "whole numbers"),
        (lambda: as_dataset(np.zeros((2, 1)), np.array([0, 3]), num_classes=2), "too small"),
        (lambda: as_dataset(np.zeros((2, 1)), np.array([0, 1]), task="ranking"), "task="),
        (lambda: as_dataset(np.zeros((2, 1))), "labels"),
    ],
)
def test_as_dataset_rejects_bad_input(call, message):
    with pytest.raises(ExpungeError, match=message):
        call()


def test_make_split_numbers_test_ids_after_training_ids():
    split = make_split((np.zeros((5, 2)), np.array([0, 1, 0, 1, 0])), (np.ones((3, 2)), np.array([0, 2, 1])))
    assert split.train.ids.tolist() == [0, 1, 2, 3, 4] and split.test.ids.tolist() == [5, 6, 7]
    assert split.num_classes == split.test.num_classes == 3  # a class only seen in the test set counts
    assert split.name == "user"
    custom = make_split(as_dataset(np.zeros((2, 2)), np.array([0, 1]), ids=[100, 200]), (np.ones((2, 2)), np.array([1, 0])))
    assert custom.test.ids.tolist() == [201, 202]


def test_make_split_rejects_inconsistent_sets():
    train = as_dataset(np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    with pytest.raises(ExpungeError, match="share IDs"):
        make_split(train, as_dataset(np.ones((2, 2)), np.array([0, 1])))
    with pytest.raises(ExpungeError, match="shape"):
        make_split(train, (np.ones((2, 3)), np.array([0, 1])))


# --------------------------------------------------------------------------- forget rules
@pytest.fixture(scope="module")
def digits_train():
    return load_dataset("digits").train


def test_random_forget_sizes_determinism_and_rule(digits_train):
    n = len(digits_train)
    forget = random_forget(digits_train, fraction=0.1, seed=3)
    assert isinstance(forget, ForgetSet) and len(forget) == round(0.1 * n)
    assert forget.rule == "random:0.1@seed3"
    assert torch.equal(forget.forget_ids, random_forget(digits_train, fraction=0.1, seed=3).forget_ids)
    assert not torch.equal(forget.forget_ids, random_forget(digits_train, fraction=0.1, seed=4).forget_ids)
    by_count = random_forget(digits_train, count=200)
    assert len(by_count) == 200 and by_count.rule == "random:200@seed0"
    assert len(by_count.retain_ids) == n - 200
    assert set(by_count.retain_ids.tolist()).isdisjoint(by_count.forget_ids.tolist())


@pytest.mark.parametrize(
    "kwargs, message",
    [({}, "exactly one"), ({"fraction": 0.1, "count": 5}, "exactly one"), ({"fraction": 1.0}, "between 0 and 1"),
     ({"fraction": 0.0001}, "selects none"), ({"count": 0}, ">= 1"), ({"count": 10**6}, "nothing would be retained")],
)
def test_random_forget_rejects_bad_sizes(digits_train, kwargs, message):
    with pytest.raises(ExpungeError, match=message):
        random_forget(digits_train, **kwargs)


def test_class_forget_selects_whole_classes(digits_train):
    forget = class_forget(digits_train, 3)
    assert (digits_train.y[forget.forget_mask] == 3).all() and (digits_train.y[~forget.forget_mask] != 3).all()
    assert forget.rule == "class:3"
    several = class_forget(digits_train, [5, 3])
    assert set(digits_train.y[several.forget_mask].tolist()) == {3, 5} and several.rule == "class:3,5"
    assert len(several) == int(((digits_train.y == 3) | (digits_train.y == 5)).sum())


def test_class_forget_unknown_class_lists_existing_ones(digits_train):
    with pytest.raises(ExpungeError, match=r"class 12 has no training examples; existing classes: \[0, 1, 2"):
        class_forget(digits_train, 12)


def test_forgetting_the_whole_training_set_is_refused():
    train = load_dataset("wine").train
    with pytest.raises(ExpungeError, match="whole training set"):
        class_forget(train, [0, 1, 2])


def test_subclass_forget_is_a_deterministic_cluster_of_one_class(digits_train):
    in_class = int((digits_train.y == 3).sum())
    clusters = [subclass_forget(digits_train, 3, cluster=c, n_clusters=4, seed=0) for c in range(4)]
    sizes = [len(c) for c in clusters]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == in_class  # cluster 0 is the largest
    ids = [set(c.forget_ids.tolist()) for c in clusters]
    assert all(ids[i].isdisjoint(ids[j]) for i in range(4) for j in range(i + 1, 4))
    for forget in clusters:
        assert (digits_train.y[forget.forget_mask] == 3).all()
    again = subclass_forget(digits_train, 3, cluster=0, n_clusters=4, seed=0)
    assert torch.equal(again.forget_ids, clusters[0].forget_ids)
    assert clusters[1].rule == "subclass:3:1:4@seed0"
    with pytest.raises(ExpungeError, match="existing classes"):
        subclass_forget(digits_train, 11)
    with pytest.raises(ExpungeError, match="cluster=4"):
        subclass_forget(digits_train, 3, cluster=4)


def test_ids_forget_and_its_errors(digits_train):
    forget = ids_forget(digits_train, [5, 1, 9])
    assert sorted(forget.forget_ids.tolist()) == [1, 5, 9] and forget.rule == "ids:5,1,9"
    assert forget.forget_mask.sum() == 3 and forget.forget_mask[[1, 5, 9]].all()
    with pytest.raises(ExpungeError, match=r"example IDs \[5000\] are not in this dataset"):
        ids_forget(digits_train, [1, 5000])
    with pytest.raises(ExpungeError, match=r"duplicated example IDs \[4\]"):
        ids_forget(digits_train, [4, 4])
    with pytest.raises(ExpungeError, match="empty"):
        ids_forget(digits_train, [])
    with pytest.raises(ExpungeError, match="integers"):
        ids_forget(digits_train, [1.5])


def test_predicate_forget(digits_train):
    forget = predicate_forget(digits_train, lambda x, y: (y == 2) & (x.flatten(1).mean(1) > 0.3), description="bright twos")
    expected = (digits_train.y == 2) & (digits_train.x.flatten(1).mean(1) > 0.3)
    assert torch.equal(forget.forget_mask, expected) and forget.rule == "predicate:bright twos"
    with pytest.raises(ExpungeError, match="one bool per example"):
        predicate_forget(digits_train, lambda x, y: y)


def test_forget_rules_refuse_regression_data():
    train = load_dataset("diabetes").train
    with pytest.raises(ExpungeError, match="regression"):
        class_forget(train, 0)
    assert len(random_forget(train, fraction=0.2)) == round(0.2 * len(train))


def test_parse_forget_rule_forms(digits_train, tmp_path):
    assert len(parse_forget_rule("random:0.1", digits_train)) == round(0.1 * len(digits_train))
    assert len(parse_forget_rule("random:200", digits_train)) == 200
    assert parse_forget_rule("class:3", digits_train).rule == "class:3"
    assert parse_forget_rule("class:3,5", digits_train).rule == "class:3,5"
    assert parse_forget_rule("subclass:3", digits_train).rule == "subclass:3:0:4@seed0"
    assert parse_forget_rule("subclass:3:1", digits_train, seed=2).rule == "subclass:3:1:4@seed2"
    assert parse_forget_rule("ids:1,2,3", digits_train).forget_ids.tolist() == [1, 2, 3]
    id_file = tmp_path / "ids.txt"
    id_file.write_text("7\n\n# deletion request 42\n8\n")
    assert parse_forget_rule(f"ids:@{id_file}", digits_train).forget_ids.tolist() == [7, 8]
    seeded = parse_forget_rule("random:0.1", digits_train, seed=5)
    assert torch.equal(parse_forget_rule("random:0.1", digits_train, seed=5).forget_ids, seeded.forget_ids)


@pytest.mark.parametrize("rule", ["random:0.05@seed7", "random:30@seed1", "class:1,4", "subclass:2:1:3@seed4", "ids:3,9"])
def test_recorded_rules_parse_back_to_the_same_forget_set(digits_train, rule):
    first = parse_forget_rule(rule, digits_train)
    again = parse_forget_rule(first.rule, digits_train)
    assert first.rule == again.rule and torch.equal(first.forget_ids, again.forget_ids)


@pytest.mark.parametrize("rule", ["", "random", "random:abc", "random:2.5e", "forget:3", "class:a", "class:", "subclass:1:2:3:4", "ids:1,x"])
def test_parse_forget_rule_rejects_bad_specs(digits_train, rule):
    with pytest.raises(ExpungeError) as error:
        parse_forget_rule(rule, digits_train)
    message = str(error.value)
    assert "Valid forms: random:0.1" in message and "\n" not in message


def test_parse_forget_rule_missing_id_file(digits_train, tmp_path):
    with pytest.raises(ExpungeError, match="does not exist"):
        parse_forget_rule(f"ids:@{tmp_path / 'nope.txt'}", digits_train)
    bad = tmp_path / "bad.txt"
    bad.write_text("1\ntwo\n")
    with pytest.raises(ExpungeError, match="line 2"):
        parse_forget_rule(f"ids:@{bad}", digits_train)


# ---- the dataset and forget-rule registries ---------------------------------------------------------
def test_a_registered_forget_rule_parses_and_joins_the_valid_forms(digits_train):
    from expunge.data import FORGET_RULES, ForgetRuleSyntaxError, register_forget_rule

    @register_forget_rule("first", "first:100 (the first 100 training examples)")
    def parse_first(argument, train, seed):
        if not argument.isdigit():
            raise ForgetRuleSyntaxError(f"{argument!r} is not a count.")
        return ids_forget(train, train.ids[: int(argument)])

    try:
        assert FORGET_RULES.origin("first") == "expunge" and "first" in FORGET_RULES
        assert parse_forget_rule("first:5@seed3", digits_train).forget_ids.tolist() == [0, 1, 2, 3, 4]
        with pytest.raises(ExpungeError) as error:
            parse_forget_rule("first:x", digits_train)
        message = str(error.value)
        assert message.startswith("bad forget rule 'first:x': 'x' is not a count. Valid forms: random:0.1")
        assert "first:100 (the first 100 training examples)" in message  # the new rule joins the valid forms
        assert message.endswith("; append @seedN to set the seed")
        with pytest.raises(ExpungeError, match="unknown kind 'frist'. Did you mean 'first'"):
            parse_forget_rule("frist:3", digits_train)
    finally:
        FORGET_RULES.unregister("first")
    with pytest.raises(ExpungeError, match="unknown kind 'first'"):
        parse_forget_rule("first:5", digits_train)


@pytest.mark.parametrize("rule,message", [
    (lambda: None, "must be registered as an expunge.data.forget.ForgetRule"),
    (("a:b", "a:b:1", lambda argument, train, seed: None), "must be lower case"),
    (("nothing", " ", lambda argument, train, seed: None), "needs its forms"),
    (("lonely", "lonely:1", lambda argument: None), r"parse must be a function \(argument, train, seed\)"),
    (("random", "random:1", lambda argument, train, seed: None), "two forget rules are registered as 'random'"),
])
def test_forget_rule_registry_refuses_bad_entries(rule, message):
    from expunge.data import FORGET_RULES, ForgetRule

    entry = ForgetRule(*rule) if isinstance(rule, tuple) else rule
    before = FORGET_RULES.names()
    with pytest.raises(ExpungeError, match=message):
        FORGET_RULES.register(entry)
    assert FORGET_RULES.names() == before and {"class", "ids", "random", "subclass"} <= set(before)


def test_a_registered_dataset_loads_and_is_listed():
    from expunge.data import register_dataset
    from expunge.data.datasets import _split_from_arrays

    @register_dataset("tiny_xor", task="classification", n_train=16, n_test=4, input_shape=(2,), num_classes=2,
                      description="XOR corners", source="synthetic")
    def load_tiny_xor(n_train: int = 16, n_test: int = 4):
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * ((n_train + n_test) // 4), dtype=np.float32)
        y = (x[:, 0] != x[:, 1]).astype(np.int64)
        return _split_from_arrays("tiny_xor", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                                  "classification", 2, {"dataset": "tiny_xor"})

    try:
        assert "tiny_xor" in DATASETS and DATASETS["tiny_xor"].defaults == {"n_train": 16, "n_test": 4}
        split = load_dataset("tiny_xor", n_train=8)
        assert len(split.train) == 8 and int(split.test.ids[0]) == 8
        assert "tiny_xor" in [row["name"] for row in dataset_info()]
        with pytest.raises(ExpungeError, match="no option 'size'; valid options: n_train, n_test"):
            load_dataset("tiny_xor", size=3)
    finally:
        DATASETS.unregister("tiny_xor")
    with pytest.raises(ExpungeError, match="unknown dataset 'tiny_xor'"):
        load_dataset("tiny_xor")


def test_dataset_registry_refuses_bad_entries():
    from expunge.data import DatasetSpec

    def needs_a_path(path):  # no default: load_dataset could not call it
        raise AssertionError("never called")

    common = dict(task="classification", n_train=1, n_test=1, input_shape=(1,), num_classes=2, description="",
                  source="")
    with pytest.raises(ExpungeError, match="'path' does not"):
        DATASETS.register(DatasetSpec("needs_a_path", needs_a_path, **common))
    with pytest.raises(ExpungeError, match="two datasets are registered as 'gaussians'"):
        DATASETS.register(DatasetSpec("gaussians", lambda seed=0: None, **common))
    with pytest.raises(ExpungeError, match="must be registered as an expunge.data.datasets.DatasetSpec"):
        DATASETS.register({"name": "dict"})
    assert "needs_a_path" not in DATASETS and DATASETS["gaussians"].loader.__name__ == "_load_gaussians"
