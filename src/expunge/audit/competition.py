"""The NeurIPS 2023 Machine Unlearning competition score (forgetting quality F).

Triantafillou et al., "Are we making progress in unlearning? Findings from the first
NeurIPS unlearning competition", 2024; metric write-up at
https://unlearning-challenge.github.io/assets/data/Machine_Unlearning_Metric.pdf.
The released scorer is ``metric.py`` (with ``main.py`` for the final score) in
github.com/google-deepmind/unlearning_evaluation; this module reproduces it on CPU.

Definition (METRICS.md, "NeurIPS 2023 unlearning competition score"). For each forget
example s, take ``phi(s)`` under N oracle models and N unlearned models:

1. "Positive" is the sample with the larger median (the oracle's only if its median is
   strictly larger). If (range of the narrower sample) / (range of the wider sample)
   < 0.01, ``eps(s) = 50``.
2. Otherwise two families of decision rules try to tell the samples apart, on grids of
   100 points per unit of phi:

   - single threshold: ``t`` on ``ceil(100 * (max - min))`` evenly spaced points from
     the min to the max of both samples; predict positive when ``phi >= t``;
   - two-sided interval ``[l, r]`` predicting "narrower sample" when ``l <= phi <= r``:
     ``r`` on ``ceil(100 * (hi - lo))`` points from ``lo = min(narrower) + width - 2``
     to ``hi = max(narrower) + 2``, and for each ``r``, ``l`` on 400 points from
     ``r - width - 2`` to ``r - width + 2`` (width = range of the narrower sample).

   Each rule with rates FPR, FNR gives
   ``eps = max(log(1 - delta - FPR) - log(FNR), log(1 - delta - FNR) - log(FPR))``
   clipped below at 0, ``delta = 1e-5``; both rates 0 gives infinity; exactly one rate
   0 drops the rule.
3. ``eps(s)`` = the largest over surviving rules, capped at 50.
4. Bins of width 0.5 from 0 up to the ceiling ``ceil(ln(N - 1))``; the n-th bin
   (n = 1 for [0, 0.5)) scores ``H = 2 / 2^n``; eps at or above the ceiling scores 0.
5. ``F = mean_s H(s)``; final score ``F * (RA_u / RA_o) * (TA_u / TA_o)`` with
   population-mean accuracies.

Always report N and the ceiling with F, and F's noise floor (an independent oracle
population scored against the oracle population; about 0.2 at N = 64).

Two implementations of step 1-3 give identical eps:

- :func:`epsilons_reference` evaluates every rule on every model, as the released
  scorer does (slow: ~160,000 interval rules x N models per example);
- :func:`epsilons` sorts the two samples of an example together once. A rule's
  false-positive and false-negative counts then depend only on which gap between
  consecutive sorted values each of its thresholds falls in, so it finds, per grid,
  which gaps some grid point falls in (a binary search of the sorted values in the
  single-threshold grid; for each interval rule's 400-point left-end grid, the gap read
  off the grid's step and checked against the exact grid point where floating-point
  error could matter), and looks the resulting counts up in a table of eps values
  precomputed per N. Work per example is O(grid x 2N) small integer operations instead
  of O(grid x 400 x N) comparisons, vectorised over batches of examples.

Where the released scorer and METRICS.md differ, or where the released code is
ambiguous, this module follows the released scorer's behaviour and says so:

- *Equal ranges.* METRICS.md says "the narrower sample"; with equal ranges the released
  code (``if pos_diff >= neg_diff: pos, neg = neg, pos``) treats the *negative*
  (smaller-median) sample as the narrower one, which fixes where the ``r`` grid lies.
- *Both ranges zero.* ``smallest / largest`` is ``0 / 0 = nan`` in the released code,
  and ``nan < 0.01`` is false, so the 0.01 shortcut is *not* taken; the rules run.
- *FPR = FNR = 1.* Both candidate terms are ``log`` of a negative number (nan) and
  ``np.nanmax`` of two nans is nan, so the released code drops the rule (METRICS.md is
  silent). With FPR = 1 alone, that term is ignored and the other one used.
- *Single-threshold grid precision.* The released code builds it with
  ``torch.linspace(min_val, max_val, n)``, which uses the default dtype (float32) even
  for float64 inputs; the thresholds here are built the same way (float32 values,
  compared with float64 phi). Interval-rule grids are float64 ``np.linspace``, as there.
- *Rates.* The released code averages float32 0/1 tensors on a GPU and evaluates the
  logs in float32; here rates are exact ``count / N`` in float64. Individual eps can
  differ from a GPU run in about the 7th significant digit, which changes F only if an
  eps lies that close to a multiple of 0.5.
- *No surviving rule.* When every rule is dropped (as when both samples are one and
  the same constant) the released code fails its ``assert thr_eps``. Here eps is 0
  (nothing tells the samples apart). (That ``assert`` on a NumPy array would raise
  "truth value ... is ambiguous" whenever more than one rule survives, so the released
  code only runs with assertions disabled; we read it as "at least one rule survives".)
- *Equal N.* Oracle and unlearned populations must have the same number of models, as
  in the released code (``np.where`` over both arrays); ``N`` in the ceiling is that
  number.

Example:
    >>> import numpy as np
    >>> oracle = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> unlearned = oracle + 1.5
    >>> eps = epsilons(oracle, unlearned)
    >>> round(float(eps[0]), 4), forgetting_quality(eps, n_models=4)
    (1.0986, ForgettingQuality(F=0.25, ceiling=2.0))
"""
from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import torch

from expunge.audit.metric import Closeness, Metric, Plot, Row, register
from expunge.audit.results import Measurement
from expunge.audit.scores import as_float_array
from expunge.errors import ExpungeError

DEFINITION = "competition_f@neurips2023"

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
BUFFER = 2.0  # the released scorer's margin around the narrower sample, in phi units
NARROW_RATIO = 0.01
_BATCH_ELEMENTS = 2_000_000  # (examples x right ends x gaps) per vectorised batch
N_LEFT = int(np.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT))  # left ends per right end: 400
BIN_WIDTH = 0.5


class ForgettingQuality(NamedTuple):
    """Forgetting quality F in [0, 1] and the eps ceiling it could resolve."""

    F: float
    ceiling: float


# ---------------------------------------------------------------------------------------
# Input handling and the pieces both implementations share.


def _populations(phi_oracle: Any, phi_unlearned: Any) -> tuple[np.ndarray, np.ndarray]:
    oracle = as_float_array(phi_oracle, "phi_oracle", ndim=2)
    unlearned = as_float_array(phi_unlearned, "phi_unlearned", ndim=2)
    if oracle.shape != unlearned.shape:
        raise ExpungeError(
            f"phi_oracle {oracle.shape} and phi_unlearned {unlearned.shape} must have the same shape "
            "[n_models, n_forget_examples]: the competition score compares N oracle with N unlearned models."
        )
    if oracle.shape[0] < 2:
        raise ExpungeError(
            f"the competition score needs at least 2 models per population (512 in the competition); "
            f"got {oracle.shape[0]}."
        )
    return oracle, unlearned


def _positive_negative(oracle: np.ndarray, unlearned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per example, the sample with the larger median is positive (ties: unlearned)."""
    oracle_is_positive = np.median(oracle, axis=0) > np.median(unlearned, axis=0)
    positive = np.where(oracle_is_positive, oracle, unlearned)
    negative = np.where(oracle_is_positive, unlearned, oracle)
    return positive, negative


def _ratio_shortcut(pos_range: float, neg_range: float) -> bool:
    """True when the narrower range is under 1% of the wider one (eps = cap)."""
    largest = pos_range if pos_range > neg_range else neg_range
    smallest = neg_range if pos_range > neg_range else pos_range
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.float64(smallest) / np.float64(largest)  # 0/0 is nan: no shortcut
    return bool(ratio < NARROW_RATIO)


def _narrow_first(pos_range: float, neg_range: float) -> bool:
    """True when the positive sample plays "narrower" in the interval family.

    The released code swaps when ``pos_diff >= neg_diff``, so on equal ranges the
    negative sample is the narrower one.
    """
    return not pos_range >= neg_range


def _single_thresholds(low: float, high: float) -> np.ndarray:
    """Single-threshold grid: float32 ``torch.linspace`` as in the released scorer."""
    count = int(np.ceil((high - low) * THRESHOLDS_PER_UNIT))
    grid = torch.linspace(float(low), float(high), count, dtype=torch.float32)
    return grid.numpy().astype(np.float64)


def _right_thresholds(narrow_min: float, narrow_max: float, width: float) -> np.ndarray:
    low = narrow_min + width - BUFFER
    high = narrow_max + BUFFER
    count = int(np.ceil((high - low) * THRESHOLDS_PER_UNIT))
    return np.linspace(low, high, num=count)


def _left_thresholds(right: np.ndarray, width: float) -> np.ndarray:
    """``[len(right), 400]`` left ends; row j equals ``np.linspace`` for ``right[j]``.

    NumPy's linspace with array endpoints applies the same element-wise arithmetic as
    one call per endpoint (no step is zero here: every row spans 4 phi units).
    """
    start = right - width - BUFFER
    stop = right - width + BUFFER
    return np.ascontiguousarray(np.linspace(start, stop, num=N_LEFT, axis=-1))


def _rule_epsilons(fpr: np.ndarray, fnr: np.ndarray, tpr: np.ndarray, tnr: np.ndarray) -> np.ndarray:
    """eps of each rule exactly as the released scorer computes it; nan = dropped rule."""
    eps = np.zeros(fpr.shape)
    eps[(fpr + fnr == 0) & (tpr + tnr == 2)] = np.inf
    eps[(eps == 0) & (fpr * fnr == 0)] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns in nanmax
        both = np.nanmax(
            [
                np.log(1 - DELTA - fpr) - np.log(fnr),
                np.log(1 - DELTA - fnr) - np.log(fpr),
            ],
            axis=0,
        )
    return np.where(eps == 0, np.clip(both, 0, None), eps)


# ---------------------------------------------------------------------------------------
# Reference implementation: every rule evaluated on every model.


def _reference_one(positive: np.ndarray, negative: np.ndarray) -> float:
    pos_range = positive.max() - positive.min()
    neg_range = negative.max() - negative.min()
    if _ratio_shortcut(pos_range, neg_range):
        return EPSILON_CAP

    # Two-sided intervals, predicting "narrower sample" inside [l, r].
    if _narrow_first(pos_range, neg_range):
        narrow, wide, width = positive, negative, pos_range
    else:
        narrow, wide, width = negative, positive, neg_range
    right = _right_thresholds(narrow.min(), narrow.max(), width)
    left = np.concatenate([np.linspace(r - width - BUFFER, r - width + BUFFER, num=N_LEFT) for r in right])
    right = np.repeat(right, N_LEFT)

    def inside(sample: np.ndarray) -> np.ndarray:
        return (left[None, :] <= sample[:, None]) & (sample[:, None] <= right[None, :])

    narrow_in, wide_in = inside(narrow), inside(wide)
    tpr_d, fnr_d = narrow_in.mean(axis=0), (~narrow_in).mean(axis=0)
    fpr_d, tnr_d = wide_in.mean(axis=0), (~wide_in).mean(axis=0)

    # Single threshold, predicting "positive sample" when phi >= t.
    both = np.concatenate([positive, negative])
    thresholds = _single_thresholds(both.min(), both.max())
    tpr_s = (positive[:, None] >= thresholds[None, :]).mean(axis=0)
    fnr_s = (positive[:, None] < thresholds[None, :]).mean(axis=0)
    fpr_s = (negative[:, None] >= thresholds[None, :]).mean(axis=0)
    tnr_s = (negative[:, None] < thresholds[None, :]).mean(axis=0)

    eps = _rule_epsilons(
        np.concatenate([fpr_d, fpr_s]),
        np.concatenate([fnr_d, fnr_s]),
        np.concatenate([tpr_d, tpr_s]),
        np.concatenate([tnr_d, tnr_s]),
    )
    kept = eps[~np.isnan(eps)]
    if kept.size == 0:  # no rule survives (e.g. both samples one constant): eps 0
        return 0.0
    return float(min(kept.max(), EPSILON_CAP))


def epsilons_reference(phi_oracle: Any, phi_unlearned: Any) -> np.ndarray:
    """Per-example eps, evaluating every decision rule on every model (slow).

    A line-by-line CPU re-implementation of the released scorer's ``_get_epsilons``;
    use it to check :func:`epsilons`, not for real audits (about 0.1 s per example at
    N = 64).

    Args:
        phi_oracle: ``[N, n_forget]`` phi of each forget example under N oracle models.
        phi_unlearned: ``[N, n_forget]`` the same under N unlearned models.

    Returns:
        ``[n_forget]`` eps in [0, 50].
    """
    oracle, unlearned = _populations(phi_oracle, phi_unlearned)
    positive, negative = _positive_negative(oracle, unlearned)
    return np.array([_reference_one(positive[:, s], negative[:, s]) for s in range(oracle.shape[1])])


# ---------------------------------------------------------------------------------------
# Fast implementation: sort once, binary-search the grids, look rates up in a table.


@lru_cache(maxsize=16)
def _eps_table(n_models: int) -> np.ndarray:
    """``table[fp, fn]``: eps of a rule with fp false positives and fn false negatives.

    Uses the same float arithmetic as :func:`_rule_epsilons` on rates ``count / N``, so
    values are bit-identical to the reference; dropped rules hold ``-inf``.
    """
    counts = np.arange(n_models + 1, dtype=np.float64)
    fpr = np.repeat(counts, n_models + 1) / n_models
    fnr = np.tile(counts, n_models + 1) / n_models
    table = _rule_epsilons(fpr, fnr, 1 - fnr, 1 - fpr).reshape(n_models + 1, n_models + 1)
    table[np.isnan(table)] = -np.inf
    table.setflags(write=False)
    return table


def _attained(below: np.ndarray, n_grid: int) -> np.ndarray:
    """Which numbers of sample values strictly below a grid point some grid point attains.

    ``below[..., m]`` is the number of grid points ``<= values[m]`` (values sorted, 2N of
    them). A grid point t has exactly m values strictly below it iff
    ``values[m-1] < t <= values[m]``, so m is attained iff ``below[m] > below[m-1]``,
    with ``below[-1] = 0`` and ``below[2N] = n_grid``. Returns ``[..., 2N + 1]`` bools.
    """
    pad = below.shape[:-1] + (1,)
    upper = np.concatenate([below, np.full(pad, n_grid, dtype=below.dtype)], axis=-1)
    lower = np.concatenate([np.zeros(pad, dtype=below.dtype), below], axis=-1)
    return upper > lower


def _single_family_best(values: np.ndarray, positive_below: np.ndarray, table: np.ndarray, n_models: int) -> float:
    """Largest eps over single-threshold rules for one example (-inf if none survives).

    ``values`` are both samples sorted together; ``positive_below[m]`` counts positive
    values among the first m. A threshold t with m values below it predicts positive for
    the rest, so false negatives are the positive values below t and false positives
    the negative values at or above it.
    """
    thresholds = np.sort(_single_thresholds(values[0], values[-1]))
    if thresholds.size == 0:
        return -np.inf
    attained = _attained(np.searchsorted(thresholds, values, side="right"), thresholds.size)
    gaps = np.flatnonzero(attained)
    false_neg = positive_below[gaps]
    false_pos = n_models - (gaps - false_neg)
    return float(table[false_pos, false_neg].max())


def _linspace_rows(start: np.ndarray, stop: np.ndarray, count: np.ndarray, width: int) -> np.ndarray:
    """Row b is ``np.linspace(start[b], stop[b], count[b])``, padded to ``width`` columns.

    Same arithmetic as NumPy: ``i * ((stop - start) / (count - 1)) + start`` with the
    last point set to ``stop`` (padding columns hold extrapolated values).
    """
    index = np.arange(width, dtype=np.float64)
    div = np.maximum(count - 1, 1)
    step = np.where(count > 1, (stop - start) / div, 0.0)
    rows = index[None, :] * step[:, None] + start[:, None]
    last = count > 1
    rows[np.flatnonzero(last), count[last] - 1] = stop[last]
    return rows


def _left_counts(values: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Number of points of ``np.linspace(start, stop, 400)`` that are ``<= values``.

    ``values`` ``[B, 1, 2N]``; ``start``, ``stop`` ``[B, J, 1]``: one left grid per right
    end. Instead of materialising the 400-point grids, read each count off the grid's
    step; where a value lies within floating-point error of a grid point, settle it by
    comparing with that grid point computed exactly as NumPy does
    (``i * step + start``, last point ``stop``). The result equals a binary search in
    the real grid.
    """
    step = (stop - start) / (N_LEFT - 1)
    position = (values - start) / step  # fractional grid index of each value
    count = np.clip(np.floor(position) + 1.0, 0, N_LEFT)
    # Error of `position` and of the NumPy grid points, in grid steps, is below
    # ~1e-15 * (|value| + |start| + 4) / step; 1e-12 leaves a wide margin.
    tolerance = 1e-12 * (np.abs(values).max() + np.abs(start).max() + 2 * BUFFER) / step.min()
    unsure = np.nonzero(np.abs(position - np.rint(position)) <= tolerance)
    if unsure[0].size:
        x = values[unsure[0], 0, unsure[2]]
        lo, hi = start[unsure[0], unsure[1], 0], stop[unsure[0], unsure[1], 0]
        st = step[unsure[0], unsure[1], 0]
        k = count[unsure]

        def point(i: np.ndarray) -> np.ndarray:
            return np.where(i >= N_LEFT - 1, hi, i * st + lo)

        while True:
            up = (k < N_LEFT) & (point(np.minimum(k, N_LEFT - 1)) <= x)
            down = (k > 0) & (point(np.maximum(k - 1, 0)) > x)
            if not (up.any() or down.any()):
                break
            k = k + up - down
        count[unsure] = k
    return count.astype(np.int64)


def _interval_family_best(
    values: np.ndarray,
    narrow_below: np.ndarray,
    narrow_min: np.ndarray,
    narrow_max: np.ndarray,
    width: np.ndarray,
    table: np.ndarray,
    n_models: int,
) -> np.ndarray:
    """Largest eps over two-sided interval rules for a batch of examples (-inf if none).

    Args:
        values: ``[B, 2N]`` both samples of each example, sorted together.
        narrow_below: ``[B, 2N + 1]`` narrower-sample values among the first m.
        narrow_min, narrow_max, width: ``[B]`` the narrower sample's min, max, range.
    """
    n_values = values.shape[1]
    low = narrow_min + width - BUFFER
    high = narrow_max + BUFFER
    n_right = np.ceil((high - low) * THRESHOLDS_PER_UNIT).astype(np.int64)
    width_right = int(n_right.max())
    if width_right == 0:
        return np.full(values.shape[0], -np.inf)
    right = _linspace_rows(low, high, n_right, width_right)  # [B, J]
    row_valid = np.arange(width_right)[None, :] < n_right[:, None]

    # Per right end r: how many narrow / wide values are <= r.
    upto_right = (values[:, None, :] <= right[:, :, None]).sum(axis=-1)  # [B, J]
    narrow_upto = np.take_along_axis(narrow_below, upto_right, axis=1)
    wide_upto = upto_right - narrow_upto

    # Per (right end, gap m): is some left end l in gap m, i.e. values[m-1] < l <= values[m]?
    start = (right - width[:, None] - BUFFER)[:, :, None]
    stop = (right - width[:, None] + BUFFER)[:, :, None]
    attained = _attained(_left_counts(values[:, None, :], start, stop), N_LEFT)
    attained &= row_valid[:, :, None]

    # Inside [l, r] = (values <= r) minus (values < l), never negative.
    gaps = np.arange(n_values + 1)
    narrow_in = np.maximum(narrow_upto[:, :, None] - narrow_below[:, None, :], 0)
    wide_in = np.maximum(wide_upto[:, :, None] - (gaps - narrow_below)[:, None, :], 0)
    eps = np.take(table, wide_in * (n_models + 1) + (n_models - narrow_in))
    eps[~attained] = -np.inf
    return eps.reshape(eps.shape[0], -1).max(axis=1)


def epsilons(phi_oracle: Any, phi_unlearned: Any) -> np.ndarray:
    """Per-example eps of the competition metric (fast; equal to :func:`epsilons_reference`).

    Args:
        phi_oracle: ``[N, n_forget]`` phi of each forget example under N oracle models.
        phi_unlearned: ``[N, n_forget]`` the same under N unlearned models.

    Returns:
        ``[n_forget]`` eps in [0, 50]; 50 means "perfectly told apart" (or the 0.01
        range-ratio shortcut fired).
    """
    oracle, unlearned = _populations(phi_oracle, phi_unlearned)
    n_models, n_examples = oracle.shape
    table = _eps_table(n_models)
    positive, negative = _positive_negative(oracle, unlearned)
    pos_min, pos_max = positive.min(axis=0), positive.max(axis=0)
    neg_min, neg_max = negative.min(axis=0), negative.max(axis=0)
    pos_range, neg_range = pos_max - pos_min, neg_max - neg_min

    # Sort each example's two samples together, once; remember where values came from.
    merged = np.concatenate([positive, negative], axis=0).T  # [S, 2N]
    order = np.argsort(merged, axis=1, kind="stable")
    values = np.take_along_axis(merged, order, axis=1)
    zero = np.zeros((n_examples, 1), dtype=np.int64)
    positive_below = np.concatenate([zero, np.cumsum(order < n_models, axis=1)], axis=1)  # [S, 2N + 1]
    gaps = np.arange(2 * n_models + 1)

    shortcut = np.array([_ratio_shortcut(pos_range[s], neg_range[s]) for s in range(n_examples)], dtype=bool)
    best = np.full(n_examples, -np.inf)
    for s in np.flatnonzero(~shortcut):
        best[s] = _single_family_best(values[s], positive_below[s], table, n_models)

    # Interval family: the narrower sample is the positive one only if strictly narrower.
    narrow_is_positive = ~(pos_range >= neg_range)
    narrow_below = np.where(narrow_is_positive[:, None], positive_below, gaps[None, :] - positive_below)
    narrow_min = np.where(narrow_is_positive, pos_min, neg_min)
    narrow_max = np.where(narrow_is_positive, pos_max, neg_max)
    width = np.where(narrow_is_positive, pos_range, neg_range)
    todo = np.flatnonzero(~shortcut)
    batch = max(1, _BATCH_ELEMENTS // (N_LEFT * (2 * n_models + 1)))
    for first in range(0, todo.size, batch):
        idx = todo[first : first + batch]
        interval_best = _interval_family_best(
            values[idx], narrow_below[idx], narrow_min[idx], narrow_max[idx], width[idx], table, n_models
        )
        best[idx] = np.maximum(best[idx], interval_best)

    # No surviving rule (e.g. two identical constant samples): eps 0, see the module notes.
    eps = np.where(best == -np.inf, 0.0, np.minimum(best, EPSILON_CAP))
    eps[shortcut] = EPSILON_CAP
    return eps


# ---------------------------------------------------------------------------------------
# From eps to scores.


def eps_ceiling(n_models: int) -> float:
    """``ceil(ln(N - 1))``: eps at or above it scores 0 (it cannot be resolved with N models)."""
    if n_models < 2:
        raise ExpungeError(f"the competition score needs at least 2 models per population; got {n_models}.")
    return float(math.ceil(math.log(n_models - 1)))


def bin_scores(eps: Any, n_models: int) -> np.ndarray:
    """Per-example score ``H``: 1 for eps in [0, 0.5), 0.5 for [0.5, 1), ..., 0 at or above the ceiling."""
    values = as_float_array(eps, "eps", ndim=1)
    if values.min() < 0:
        raise ExpungeError(f"eps must be non-negative; got a minimum of {values.min():g}.")
    ceiling = eps_ceiling(n_models)
    bins = np.floor(values / BIN_WIDTH)  # bin n - 1 holds [0.5 (n - 1), 0.5 n)
    return np.where(values < ceiling, 0.5**bins, 0.0)


def forgetting_quality(eps: Any, n_models: int) -> ForgettingQuality:
    """Forgetting quality ``F = mean_s H(s)`` and the ceiling ``ceil(ln(N - 1))``.

    Args:
        eps: ``[n_forget]`` per-example eps (from :func:`epsilons`).
        n_models: N, the number of models in each population.
    """
    scores = bin_scores(eps, n_models)
    return ForgettingQuality(F=float(scores.mean()), ceiling=eps_ceiling(n_models))


def _mean_accuracy(value: Any, name: str) -> float:
    mean = float(as_float_array(value, name).mean())
    if mean < 0:
        raise ExpungeError(f"{name} must be a non-negative accuracy; got {mean:g}.")
    return mean


def competition_score(F: float, ra_unlearned: Any, ra_oracle: Any, ta_unlearned: Any, ta_oracle: Any) -> float:
    """Final score ``F * (RA_unlearned / RA_oracle) * (TA_unlearned / TA_oracle)``.

    Accuracies are population means (arrays of per-model values are averaged first),
    all on the same scale (percent or fraction). Not clipped: an unlearned population
    more accurate than the oracle scores above F, as in the released ``main.py``.
    """
    quality = float(F)
    if not 0.0 <= quality <= 1.0:
        raise ExpungeError(f"F must lie in [0, 1]; got {quality:g}.")
    ra_u, ra_o = _mean_accuracy(ra_unlearned, "ra_unlearned"), _mean_accuracy(ra_oracle, "ra_oracle")
    ta_u, ta_o = _mean_accuracy(ta_unlearned, "ta_unlearned"), _mean_accuracy(ta_oracle, "ta_oracle")
    if ra_o == 0 or ta_o == 0:
        raise ExpungeError(
            f"oracle accuracies must be positive to normalise the score; got RA {ra_o:g}, TA {ta_o:g}."
        )
    return quality * (ra_u / ra_o) * (ta_u / ta_o)


def competition_report(
    phi_oracle: Any,
    phi_unlearned: Any,
    *,
    ra_unlearned: Any = None,
    ra_oracle: Any = None,
    ta_unlearned: Any = None,
    ta_oracle: Any = None,
    phi_oracle_independent: Any = None,
) -> dict[str, Any]:
    """Everything the competition metric reports for one method, in one dict.

    Args:
        phi_oracle, phi_unlearned: ``[N, n_forget]`` phi under the two populations.
        ra_unlearned, ra_oracle, ta_unlearned, ta_oracle: retain / test accuracies (means
            or per-model arrays); when all four are given, ``score`` is added.
        phi_oracle_independent: ``[N, n_forget]`` phi under a second, independent oracle
            population; when given, ``F_noise_floor`` (that population scored as if it
            were the unlearned one) is added. Always report it: at small N two samples
            of the same distribution score well below 1.

    Returns:
        dict with ``definition``, ``eps`` (``[n_forget]``), ``F``, ``N``, ``ceiling`` and,
        when their inputs are given, ``score`` and ``F_noise_floor``.
    """
    eps = epsilons(phi_oracle, phi_unlearned)
    n_models = np.shape(phi_oracle)[0]
    quality = forgetting_quality(eps, n_models)
    report: dict[str, Any] = {
        "definition": DEFINITION,
        "eps": eps,
        "F": quality.F,
        "N": int(n_models),
        "ceiling": quality.ceiling,
    }
    accuracies = (ra_unlearned, ra_oracle, ta_unlearned, ta_oracle)
    if any(a is not None for a in accuracies):
        if any(a is None for a in accuracies):
            raise ExpungeError(
                "give all four of ra_unlearned, ra_oracle, ta_unlearned, ta_oracle for the final score, or none."
            )
        report["score"] = competition_score(quality.F, *accuracies)
    if phi_oracle_independent is not None:
        floor_eps = epsilons(phi_oracle, phi_oracle_independent)
        report["F_noise_floor"] = forgetting_quality(floor_eps, n_models).F
    return report


# ----------------------------------------------------------------------------- registered metric
WORST_EXAMPLES = 6
F_RULE = Closeness("at_least_fraction", 0.8)  # F at least 80% of its noise floor


def _epsilons_and_quality(candidate, context) -> tuple[np.ndarray, ForgettingQuality, int]:
    """Per-example eps of the candidate against the oracle at their common N, and F (computed once per candidate)."""
    n = context.common_members(candidate.evidence)

    def compute():
        eps = epsilons(context.oracle.scores("forget")["phi"][:n], candidate.evidence.scores("forget")["phi"][:n])
        return eps, forgetting_quality(eps, n)

    eps, quality = candidate.evidence.cached(("competition_eps", context.oracle.role, n), compute)
    return eps, quality, n


@register
class CompetitionForgettingQuality(Metric):
    """The NeurIPS 2023 competition's forgetting quality F, with its noise floor."""

    name = "competition_f"
    summary = "NeurIPS 2023 competition forgetting quality F"
    description = ("F: NeurIPS 2023 competition forgetting quality. Per forget example, eps = the best "
                   "(ε, δ = 1e-5) separation of phi under N unlearned vs N oracle models; bins of 0.5 score "
                   "2 / 2^n, eps at or above the ceiling ceil(ln(N − 1)) scores 0; F = mean. Noise floor: a second, "
                   "independent oracle population scored the same way.")
    definition = DEFINITION
    reference_kind = "noise_floor"
    needs = frozenset({"phi"})
    rows = (Row("competition_f", "forget", "F", headline=6, verdict=True, closeness=F_RULE),)
    extra_definitions = {
        "margin@logit-minus-logsumexp-others": "Margin: z_y − logsumexp_{j≠y} z_j of the logits z (equals phi for "
                                               "softmax outputs).",
    }

    def measure(self, candidate, context) -> dict[str, Measurement]:
        eps, quality, n = _epsilons_and_quality(candidate, context)
        return {"competition_f/forget": Measurement(quality.F, None, n, {"ceiling": quality.ceiling, "_eps": eps})}

    def plots(self, candidate, context, measurements) -> list[Plot]:
        f = measurements.get("competition_f/forget")
        if f is None:
            return []
        eps = np.asarray(f.details["_eps"])
        worst = np.argsort(-eps, kind="stable")[:WORST_EXAMPLES]
        ids = context.data.ids("forget")
        margins_u = candidate.evidence.scores("forget")["margin"]
        margins_o = context.oracle.scores("forget")["margin"]
        return [
            Plot("eps_histogram", f"{candidate.name}: per-example eps",
                 {"eps": [float(e) for e in eps], "ceiling": f.details["ceiling"], "F": f.value,
                  "definition": DEFINITION}),
            Plot("worst_margins", f"{candidate.name}: margins of the forget examples with the largest eps",
                 {"examples": [{"id": int(ids[i]), "eps": float(eps[i]),
                                "margins_unlearned": margins_u[:, i].tolist(),
                                "margins_oracle": margins_o[:, i].tolist()} for i in worst],
                  "definition": "margin@logit-minus-logsumexp-others"}),
        ]


@register
class CompetitionScore(Metric):
    """The competition's final score F · (RA_u / RA_o) · (TA_u / TA_o), with its noise floor."""

    name = "competition_score"
    summary = "NeurIPS 2023 competition final score (F scaled by retain and test accuracy)"
    description = ("Competition final score: F · (RA_unlearned / RA_oracle) · (TA_unlearned / TA_oracle), "
                   "population means; noise floor: the second oracle's score.")
    definition = "competition_score@neurips2023"
    reference_kind = "noise_floor"
    needs = frozenset({"phi", "correct"})
    rows = (Row("competition_score", "forget", "score", closeness=F_RULE),)

    def measure(self, candidate, context) -> dict[str, Measurement]:
        from expunge.audit.accuracy import member_accuracy

        _, quality, n = _epsilons_and_quality(candidate, context)
        details: dict[str, Any] = {"ceiling": quality.ceiling}
        ta_u, ta_o = member_accuracy(candidate.evidence, "test"), member_accuracy(context.oracle, "test")
        if float(np.mean(ta_o)) == 0.0:
            # Nothing in the test split can be right without training on it (a language model's unseen authors):
            # the test factor is undefined, so the score is F x retain factor, and the row says so.
            ta_u = ta_o = np.ones(1)
            details["test_factor"] = "omitted: the oracle's test accuracy is 0 (nothing to normalise by)"
        score = competition_score(quality.F, member_accuracy(candidate.evidence, "retain"),
                                  member_accuracy(context.oracle, "retain"), ta_u, ta_o)
        return {"competition_score/forget": Measurement(score, None, n, details)}
