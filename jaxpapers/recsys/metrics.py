"""Exact offline metrics for click-through-rate (CTR) prediction and full-ranking
next-item recommendation.

Two metrics are reported by essentially every CTR paper: ROC AUC and the
mean binary cross-entropy ("logloss"). Both are implemented here in plain
NumPy, in float64, for arrays of any size (tested up to ~10M elements).

Design choices:

* ``auc`` is *exact*: it is the Mann-Whitney U statistic computed from ranks,
  with tied scores receiving their average rank (midranks). This equals the
  probability that a random positive scores higher than a random negative,
  with ties counted as one half, and agrees with
  ``sklearn.metrics.roc_auc_score`` to floating-point precision. No binning
  or histogram approximation is used (unlike e.g. ``tf.keras.metrics.AUC``),
  because the differences between CTR models are often in the third or
  fourth decimal of the AUC.
* The rank sum is accumulated per group of tied scores (one ``argsort`` plus
  O(n) work), so the cost is O(n log n) time and O(n) memory.
* Inputs are validated up front: labels must be exactly 0/1 (bools, ints or
  floats), shapes must match, and AUC needs both classes to be present.
  Silent garbage (e.g. labels in {-1, 1} or NaN scores) raises ``ValueError``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

__all__ = ["auc", "full_ranks", "hit_rate", "hits", "logloss", "ndcg", "ndcg_gains"]


def _validate_labels(
    labels: npt.ArrayLike, other: npt.ArrayLike, other_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Returns flattened float64 (labels, other) after checking them."""
    labels_arr = np.asarray(labels)
    other_arr = np.asarray(other)
    if labels_arr.shape != other_arr.shape:
        raise ValueError(
            f"labels and {other_name} must have the same shape, got "
            f"{labels_arr.shape} and {other_arr.shape}."
        )
    if labels_arr.size == 0:
        raise ValueError(f"labels and {other_name} are empty.")
    if not (np.issubdtype(labels_arr.dtype, np.number) or labels_arr.dtype == np.bool_):
        raise ValueError(f"labels must be numeric or boolean, got dtype {labels_arr.dtype}.")
    if not (np.issubdtype(other_arr.dtype, np.number) or other_arr.dtype == np.bool_):
        raise ValueError(f"{other_name} must be numeric, got dtype {other_arr.dtype}.")
    y = labels_arr.reshape(-1).astype(np.float64)
    x = other_arr.reshape(-1).astype(np.float64)
    bad = (y != 0.0) & (y != 1.0)
    if bad.any():
        examples = np.unique(y[bad])[:5].tolist()
        raise ValueError(
            f"labels must be 0/1, found {int(bad.sum())} other value(s), e.g. {examples}."
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{other_name} contain NaN or infinite values.")
    return y, x


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Exact ROC AUC with midranks for tied scores.

    AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), where R_pos is the
    sum of the (1-based, tie-averaged) ranks of the positive examples among
    all scores.

    Args:
        labels: Array of 0/1 labels (any shape; flattened).
        scores: Array of real-valued scores with the same shape as ``labels``;
            larger means "more likely positive". Any monotone transformation
            (logits, probabilities) gives the same AUC.

    Returns:
        The AUC as a Python float in [0, 1].

    Raises:
        ValueError: on shape mismatch, empty input, labels other than 0/1,
            non-finite scores, or when only one class is present.
    """
    y, s = _validate_labels(labels, scores, "scores")
    n = y.size
    n_pos = float(y.sum())
    n_neg = float(n - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            "AUC is undefined when only one class is present "
            f"(got {int(n_pos)} positives and {int(n_neg)} negatives)."
        )
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    y_sorted = y[order]
    # Start offsets of each run of equal scores in sorted order.
    is_start = np.empty(n, dtype=bool)
    is_start[0] = True
    np.not_equal(s_sorted[1:], s_sorted[:-1], out=is_start[1:])
    starts = np.flatnonzero(is_start)
    ends = np.append(starts[1:], n)  # exclusive
    # Ranks starts+1 .. ends (1-based) average to (starts + 1 + ends) / 2.
    midranks = (starts + 1 + ends).astype(np.float64) / 2.0
    pos_per_group = np.add.reduceat(y_sorted, starts)
    rank_sum = float(np.dot(pos_per_group, midranks))
    u_stat = rank_sum - n_pos * (n_pos + 1.0) / 2.0
    return float(u_stat / (n_pos * n_neg))


def logloss(labels: npt.ArrayLike, probs: npt.ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy, with probabilities clipped to [eps, 1-eps].

    logloss = -mean(y log p + (1 - y) log(1 - p)), natural logarithm.

    Args:
        labels: Array of 0/1 labels (any shape; flattened).
        probs: Predicted click probabilities in [0, 1], same shape as
            ``labels``.
        eps: Clipping constant so that confident mistakes cost a finite
            amount (-log(eps)); must be in (0, 0.5).

    Returns:
        The mean logloss as a Python float.

    Raises:
        ValueError: on shape mismatch, empty input, labels other than 0/1,
            probabilities outside [0, 1] or non-finite, or a bad ``eps``.
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}.")
    y, p = _validate_labels(labels, probs, "probs")
    if (p < 0.0).any() or (p > 1.0).any():
        raise ValueError(f"probs must lie in [0, 1], got min {p.min()} and max {p.max()}.")
    p = np.clip(p, eps, 1.0 - eps)
    losses = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
    return float(losses.mean())


# ----------------------------------------------------------------- full-ranking top-K metrics
#
# Sequential recommendation is evaluated by ranking the held-out item against EVERY item of
# the catalogue (sampled-negative numbers are not comparable). Conventions (those of RecBole's
# full-sort evaluation): id 0 is padding and never ranked; items of the user's input history
# are removed from the candidates (they were already consumed), unless one is the target;
# ties count against the target (rank = number of other candidates scoring >= the target),
# so a constant scorer gets the worst rank, not the best.


def full_ranks(scores: jax.Array, target: jax.Array, exclude: jax.Array | None = None) -> jax.Array:
    """0-based rank of each target among all real items (jittable; one row per user).

    Args:
      scores: ``[U, I+1]`` scores of every item id (column 0 is the padding id, ignored).
      target: ``[U]`` held-out item ids in ``1..I``.
      exclude: optional ``[U, L]`` item ids removed from the candidates (the history;
        0 entries are padding and harmless).

    Returns:
      ``[U]`` int32: how many other candidates score at least as high as the target.
    """
    scores = jnp.asarray(scores)
    target = jnp.asarray(target)
    if scores.ndim != 2 or target.shape != scores.shape[:1]:
        raise ValueError(
            f"scores must be [U, I+1] and target [U], got {scores.shape} and {target.shape}"
        )
    num_users, num_ids = scores.shape
    rows = jnp.arange(num_users)
    candidate = jnp.ones((num_users, num_ids), bool).at[:, 0].set(False)
    if exclude is not None:
        exclude = jnp.asarray(exclude)
        if exclude.ndim != 2 or exclude.shape[0] != num_users:
            raise ValueError(f"exclude must be [U, L] with U={num_users}, got {exclude.shape}")
        candidate = candidate.at[rows[:, None], exclude].set(False)
    candidate = candidate.at[rows, target].set(False)  # the target is not its own competitor
    target_score = scores[rows, target]
    beats = candidate & (scores >= target_score[:, None])
    return beats.sum(axis=1).astype(jnp.int32)


def _ranks(ranks: npt.ArrayLike, k: int) -> np.ndarray:
    r = np.asarray(ranks)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {r.shape}")
    if (r < 0).any():
        raise ValueError("ranks are 0-based and must be >= 0")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return r.astype(np.float64)


def hits(ranks: npt.ArrayLike, k: int) -> np.ndarray:
    """Per-user HR@K: 1.0 where the 0-based rank is below ``k``, else 0.0."""
    r = _ranks(ranks, k)
    return (r < k).astype(np.float64)


def ndcg_gains(ranks: npt.ArrayLike, k: int) -> np.ndarray:
    """Per-user NDCG@K with one relevant item: ``1 / log2(rank + 2)`` below ``k``, else 0."""
    r = _ranks(ranks, k)
    return np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)


def hit_rate(ranks: npt.ArrayLike, k: int) -> float:
    """HR@K (= Recall@K with one held-out item): the fraction of ranks below ``k``."""
    return float(np.mean(hits(ranks, k)))


def ndcg(ranks: npt.ArrayLike, k: int) -> float:
    """NDCG@K with one relevant item: mean of ``1 / log2(rank + 2)`` over ranks below ``k``."""
    return float(np.mean(ndcg_gains(ranks, k)))
