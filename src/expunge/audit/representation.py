"""Representation-level audits: linear CKA and a k-NN probe on frozen features.

A method that only moves the last layer can match the oracle's outputs while its
features still encode the forget set ("shallow" forgetting). These two statistics look
at penultimate-layer features instead (METRICS.md, "Representation-level"):

- **Linear CKA** (Kornblith et al., "Similarity of Neural Network Representations
  Revisited", ICML 2019) between the unlearned model's features and the oracle's (or
  the original's) on the same examples: ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``
  with linear kernels on column-centred features, i.e.
  ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``. 1 for identical features and
  for features that differ by an orthogonal transform or an isotropic scaling.
- **k-NN probe** (k = 5, cosine similarity): each query example takes the majority
  label among its k most similar training examples; a tie in votes goes to the tied
  label whose best-ranked neighbour is nearest (so the nearest neighbour's label wins
  whenever it is among the tied). Forget-set accuracy of the probe, in percent.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(200, 16))
    >>> round(linear_cka(x, 3.0 * x), 6)
    1.0
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from expunge.audit.metric import Closeness, Metric, Row, population_mean, register
from expunge.audit.results import Measurement
from expunge.audit.scores import as_float_array
from expunge.errors import ExpungeError

DEFINITION = "cka@linear"
DEFINITIONS = {
    "cka": "cka@linear",
    "knn_probe": "knn_probe@k5-cosine",
}

_QUERY_CHUNK = 2048  # query rows per similarity block: bounds memory to chunk x n_train


def linear_cka(features_a: Any, features_b: Any) -> float:
    """Linear CKA between two feature matrices of the same examples, in [0, 1].

    Args:
        features_a: ``[n_examples, d1]`` features (e.g. of the unlearned model).
        features_b: ``[n_examples, d2]`` features of the same examples, same order.
    """
    x = as_float_array(features_a, "features_a", ndim=2)
    y = as_float_array(features_b, "features_b", ndim=2)
    if x.shape[0] != y.shape[0]:
        raise ExpungeError(
            f"features_a has {x.shape[0]} examples but features_b has {y.shape[0]}; "
            "CKA compares two representations of the same examples."
        )
    if x.shape[0] < 2:
        raise ExpungeError(f"linear CKA needs at least 2 examples; got {x.shape[0]}.")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    if x.shape[0] < max(x.shape[1], y.shape[1]):
        # Fewer examples than features: work with the n x n Gram matrices instead.
        gram_x, gram_y = x @ x.T, y @ y.T
        cross = np.sum(gram_x * gram_y)
        norm_x, norm_y = np.linalg.norm(gram_x), np.linalg.norm(gram_y)
    else:
        cross = np.linalg.norm(y.T @ x) ** 2
        norm_x, norm_y = np.linalg.norm(x.T @ x), np.linalg.norm(y.T @ y)
    if norm_x == 0 or norm_y == 0:
        which = "features_a" if norm_x == 0 else "features_b"
        raise ExpungeError(f"{which} is constant across examples; CKA is undefined for features with no variance.")
    return float(cross / (norm_x * norm_y))


def _unit_rows(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    # An all-zero feature vector has cosine 0 with everything rather than NaN.
    return features / np.maximum(norms, 1e-12)


def knn_predict(train_features: Any, train_labels: Any, query_features: Any, k: int = 5) -> np.ndarray:
    """Labels the k-NN probe (cosine similarity, majority vote) assigns to the queries.

    Neighbours with equal similarity are ranked by training index. Vote ties go to the
    tied label with the nearest neighbour.
    """
    train = as_float_array(train_features, "train_features", ndim=2)
    query = as_float_array(query_features, "query_features", ndim=2)
    if hasattr(train_labels, "detach") and hasattr(train_labels, "cpu"):
        train_labels = train_labels.detach().cpu().numpy()
    labels = np.asarray(train_labels).reshape(-1)
    if labels.size != train.shape[0]:
        raise ExpungeError(f"train_labels has {labels.size} entries but train_features has {train.shape[0]} rows.")
    if train.shape[1] != query.shape[1]:
        raise ExpungeError(
            f"train_features have {train.shape[1]} dimensions but query_features have {query.shape[1]}; "
            "use features from the same layer of the same model."
        )
    if int(k) != k or not 1 <= k <= train.shape[0]:
        raise ExpungeError(
            f"k must be an integer from 1 to the number of training examples ({train.shape[0]}); got {k}."
        )
    k = int(k)
    classes, label_index = np.unique(labels, return_inverse=True)
    train_unit = torch.from_numpy(_unit_rows(train))
    query_unit = torch.from_numpy(_unit_rows(query))
    predicted = np.empty(query.shape[0], dtype=np.int64)
    for first in range(0, query.shape[0], _QUERY_CHUNK):
        similarity = query_unit[first : first + _QUERY_CHUNK] @ train_unit.T
        top_similarity, candidates = torch.topk(similarity, k, dim=1)
        top_similarity, candidates = top_similarity.numpy(), candidates.numpy()
        # Nearest first; equal similarities by training index (topk leaves them unordered).
        order = np.lexsort((candidates, -top_similarity), axis=1)
        neighbours = np.take_along_axis(candidates, order, axis=1)
        # Where several examples tie for the k-th place, topk picks among them
        # arbitrarily; redo those rows with a full stable sort.
        kth = torch.from_numpy(top_similarity[:, -1:].copy())
        boundary_tie = ((similarity >= kth).sum(dim=1) > k).numpy()
        for row in np.flatnonzero(boundary_tie):
            neighbours[row] = np.argsort(-similarity[row].numpy(), kind="stable")[:k]
        neighbour_labels = label_index[neighbours]  # [chunk, k], nearest first
        one_hot = neighbour_labels[:, :, None] == np.arange(classes.size)[None, None, :]
        votes = one_hot.sum(axis=1)
        first_rank = np.where(one_hot.any(axis=1), one_hot.argmax(axis=1), k)
        # Votes dominate (first_rank <= k < k + 1); among equal votes the nearest wins.
        predicted[first : first + _QUERY_CHUNK] = np.argmax(votes * (k + 1) - first_rank, axis=1)
    return classes[predicted]


def knn_probe_accuracy(
    train_features: Any,
    train_labels: Any,
    query_features: Any,
    query_labels: Any,
    k: int = 5,
) -> float:
    """Accuracy (percent) of a k-NN probe with cosine similarity on frozen features.

    Args:
        train_features: ``[n_train, d]`` features of the probe's labelled examples
            (typically the retain set, or a held-out set).
        train_labels: ``[n_train]`` their labels.
        query_features: ``[n_query, d]`` features of the examples to classify (the
            forget set, for the forgetting audit).
        query_labels: ``[n_query]`` their true labels.
        k: number of neighbours (5 in METRICS.md).
    """
    predicted = knn_predict(train_features, train_labels, query_features, k=k)
    if hasattr(query_labels, "detach") and hasattr(query_labels, "cpu"):
        query_labels = query_labels.detach().cpu().numpy()
    truth = np.asarray(query_labels).reshape(-1)
    if truth.size != predicted.size:
        raise ExpungeError(f"query_labels has {truth.size} entries but query_features has {predicted.size} rows.")
    return 100.0 * float(np.mean(predicted == truth))


# ----------------------------------------------------------------------------- registered metrics
CKA_SPLITS = ("forget", "test")


def member_cka(mine, other, split: str, members: int) -> np.ndarray:
    """Linear CKA of penultimate features, member ``i`` of one population against member ``i`` of another."""
    a, b = mine.features(split), other.features(split)
    return np.array([linear_cka(a[i], b[i]) for i in range(members)])


@register
class CKAToOracle(Metric):
    """Linear CKA of penultimate features against the oracle's, beside two independent oracles' CKA."""

    name = "cka_oracle"
    summary = "linear CKA of penultimate features, unlearned vs oracle"
    description = ("Linear CKA between penultimate-layer features of the unlearned model and of the oracle (member "
                   "i against member i), mean over members; 1 = the same representation up to rotation and scale. "
                   "Noise floor: the CKA of two independent oracle populations (the level of two retrained models).")
    definition = DEFINITION
    reference_kind = "noise_floor"
    needs = frozenset({"features"})
    # Higher is better: at least 95% of two independent oracles' CKA.
    rows = tuple(Row("cka_oracle", split, f"CKA vs oracle ({split})", closeness=Closeness("at_least_fraction", 0.95))
                 for split in CKA_SPLITS)

    def measure(self, candidate, context) -> dict[str, Measurement]:
        n = context.common_members(candidate.evidence)
        return {f"cka_oracle/{split}": population_mean(member_cka(candidate.evidence, context.oracle, split, n))
                for split in CKA_SPLITS}


@register
class CKAToOriginal(Metric):
    """Linear CKA of penultimate features against the original's, beside the oracle's."""

    name = "cka_original"
    summary = "linear CKA of penultimate features, unlearned vs original"
    description = ("Linear CKA between penultimate-layer features of the unlearned model and of the original "
                   "(member i against member i), mean over members, beside the oracle's CKA to the original. A "
                   "method that only moves the last layer keeps its features close to the original's.")
    definition = DEFINITION
    reference_kind = "oracle"
    needs = frozenset({"features"})
    separates_original = False  # the original's CKA to itself is 1 by construction; nothing to separate
    rows = tuple(Row("cka_original", split, f"CKA vs original ({split})") for split in CKA_SPLITS)

    def measure(self, candidate, context) -> dict[str, Measurement]:
        n = min(candidate.evidence.members, context.original.members)
        return {f"cka_original/{split}": population_mean(member_cka(candidate.evidence, context.original, split, n))
                for split in CKA_SPLITS}


@register
class KNNProbe(Metric):
    """Forget-set accuracy of a k-NN probe on frozen penultimate features, beside the oracle's."""

    name = "knn_probe"
    summary = "forget accuracy of a 5-NN cosine probe on frozen features"
    description = ("k-NN probe (k = 5, cosine) on frozen penultimate features fitted on a sample of retain "
                   "examples: accuracy (%) on the forget set, mean over members. Shows forgetting deeper than the "
                   "last layer.")
    definition = DEFINITIONS["knn_probe"]
    reference_kind = "oracle"
    needs = frozenset({"features", "correct"})
    rows = (Row("knn_probe", "forget", "k-NN forget accuracy", "%", digits=1, closeness=Closeness("band", 2.0, 1.0)),)

    def applicable(self, statistics: tuple[str, ...], categorical: bool) -> str | None:
        if not categorical:  # the probe predicts one class label per example
            return "needs one class label per example, which this task does not have"
        return super().applicable(statistics, categorical)

    def measure(self, candidate, context) -> dict[str, Measurement]:
        evidence, data = candidate.evidence, context.data
        _, reference_labels = data.examples("retain_sample")
        _, forget_labels = data.examples("forget")
        reference, forget = evidence.features("retain_sample"), evidence.features("forget")
        values = [knn_probe_accuracy(reference[i], reference_labels.numpy(), forget[i], forget_labels.numpy())
                  for i in range(evidence.members)]
        return {"knn_probe/forget": population_mean(values)}
