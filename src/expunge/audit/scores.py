"""Per-example scores computed from logits: phi, margin, true-class confidence.

These are the raw statistics every audit metric consumes (see METRICS.md,
"Logit-scaled confidence and margin"):

- ``phi(x) = log p_y(x) - log(sum_{j != y} p_j(x))``, the logit-scaled confidence of
  LiRA (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022)
  and of the NeurIPS 2023 unlearning competition;
- ``margin(x) = z_y - logsumexp_{j != y} z_j``, the margin of KLoM (Georgiev et al.,
  "Attribute-to-Delete: Machine Unlearning via Datamodel Matching", 2024).

For softmax outputs the two are mathematically equal; both names are kept because the
papers use both. Both are computed in float64 from log-probabilities, so they stay
finite where ``p_y`` rounds to 1 in float32.

Shapes: ``logits`` is ``[..., n_examples, n_classes]`` (usually
``[n_models, n_examples, n_classes]`` for a population) and ``labels`` is
``[n_examples]``; every function returns ``logits.shape[:-1]``.

Example:
    >>> import numpy as np
    >>> logits = np.array([[2.0, 0.0, 0.0]])
    >>> round(float(phi(logits, np.array([0]))[0]), 4)
    1.3069
"""
from __future__ import annotations

from typing import Any

import numpy as np

from expunge.errors import ExpungeError

DEFINITION = "phi@log-odds-true-class"
DEFINITIONS = {
    "phi": "phi@log-odds-true-class",
    "margin": "margin@logit-minus-logsumexp-others",
    "true_class_confidence": "confidence@softmax-true-class",
}


def as_float_array(values: Any, name: str, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``values`` (numpy array, torch tensor or nested list) as a float64 array.

    Raises :class:`ExpungeError` if the array has the wrong number of dimensions, is
    empty, or holds NaN or infinite values.
    """
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # torch.Tensor, no import needed
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ExpungeError(f"{name} must be a numeric array; got {type(values).__name__} ({exc}).") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if array.ndim not in allowed:
            wanted = " or ".join(str(d) for d in allowed)
            raise ExpungeError(f"{name} must have {wanted} dimensions; got shape {array.shape}.")
    if array.size == 0:
        raise ExpungeError(f"{name} is empty (shape {array.shape}); it needs at least one value.")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ExpungeError(
            f"{name} contains {int(bad.sum())} NaN or infinite values (of {array.size}); "
            "remove or fix them before auditing."
        )
    return array


def as_label_array(labels: Any, n_examples: int, n_classes: int, name: str = "labels") -> np.ndarray:
    """Return integer labels of shape ``[n_examples]`` with values in ``[0, n_classes)``."""
    if hasattr(labels, "detach") and hasattr(labels, "cpu"):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n_examples:
        raise ExpungeError(
            f"{name} must have shape [{n_examples}] (one label per example); got shape {labels.shape}."
        )
    if labels.dtype.kind not in "iub":
        rounded = np.round(labels)
        if labels.dtype.kind != "f" or not np.array_equal(rounded, labels):
            raise ExpungeError(f"{name} must hold integer class indices; got dtype {labels.dtype}.")
        labels = rounded
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ExpungeError(
            f"{name} must lie in [0, {n_classes}) for {n_classes} classes; "
            f"got values from {labels.min()} to {labels.max()}."
        )
    return labels


def _logits_and_labels(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    z = as_float_array(logits, "logits")
    if z.ndim < 2:
        raise ExpungeError(f"logits must be shaped [..., n_examples, n_classes]; got shape {z.shape}.")
    if z.shape[-1] < 2:
        raise ExpungeError(f"logits need at least 2 classes (the last axis); got {z.shape[-1]}.")
    y = as_label_array(labels, z.shape[-2], z.shape[-1])
    return z, y


def _logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Stable log(sum(exp(x))) along ``axis``; entries may be -inf (but not all)."""
    peak = np.max(x, axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - peak), axis=axis, keepdims=True)) + peak
    return np.squeeze(out, axis=axis)


def log_softmax(logits: Any) -> np.ndarray:
    """Log-probabilities ``z - logsumexp(z)`` over the last axis, in float64."""
    z = as_float_array(logits, "logits")
    return z - _logsumexp(z)[..., None]


def _true_and_others(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split the last axis into the true-class entry and a copy with it set to -inf."""
    index = np.broadcast_to(labels[:, None], values.shape[:-1] + (1,))
    true = np.take_along_axis(values, index, axis=-1)[..., 0]
    others = values.copy()
    np.put_along_axis(others, index, -np.inf, axis=-1)
    return true, others


def phi(logits: Any, labels: Any) -> np.ndarray:
    """Logit-scaled confidence ``log p_y - log(sum_{j != y} p_j)`` (LiRA's statistic).

    Computed as ``log_softmax_y - logsumexp_{j != y}(log_softmax_j)``, which never
    forms ``1 - p_y`` and so does not lose precision when the model is confident.
    """
    z, y = _logits_and_labels(logits, labels)
    log_p = z - _logsumexp(z)[..., None]
    true, others = _true_and_others(log_p, y)
    return true - _logsumexp(others)


def margin(logits: Any, labels: Any) -> np.ndarray:
    """Margin ``z_y - logsumexp_{j != y} z_j`` (KLoM's statistic; equals :func:`phi`)."""
    z, y = _logits_and_labels(logits, labels)
    true, others = _true_and_others(z, y)
    return true - _logsumexp(others)


def true_class_confidence(logits: Any, labels: Any) -> np.ndarray:
    """Softmax probability of the true class, ``p_y(x)``, in [0, 1]."""
    z, y = _logits_and_labels(logits, labels)
    log_p = z - _logsumexp(z)[..., None]
    true, _ = _true_and_others(log_p, y)
    return np.exp(true)


def predictions(logits: Any) -> np.ndarray:
    """Predicted class (argmax over the last axis; the first one on ties)."""
    z = as_float_array(logits, "logits")
    if z.ndim < 1 or z.shape[-1] < 1:
        raise ExpungeError(f"logits must be shaped [..., n_classes]; got shape {z.shape}.")
    return np.argmax(z, axis=-1)
