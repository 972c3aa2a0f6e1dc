"""Sufficient statistics of a least-squares problem: Gram matrices.

Every closed-form learner in this package (ridge, ACIL/G-ACIL, AFL, DeepAFL)
needs the data only through ``XᵀX`` (``d × d``), ``XᵀY`` (``d × c``) and the
row count. Those sums are *exact* to accumulate in any order: over chunks of a
stream, over devices, over federated clients. :class:`GramStats` holds them and
the functions here add, merge and subtract them; the solvers in
:mod:`jaxpapers.linalg.ridge` turn them into weights with one Cholesky solve.

Design choices:

* Pure, unbatched functions on arrays (optax ``_src`` style): one problem per
  call, ``jax.vmap`` outside for many problems, everything jit-able.
* Row masks (``mask`` of shape ``(n,)``, nonzero = keep) let fixed-shape,
  padded batches run under ``jit`` without recompiling; masked rows are
  *selected away* with ``jnp.where`` rather than multiplied by zero, so
  padding that holds NaN or Inf contributes nothing either.
* The number of target columns may grow (class-incremental learning: new
  classes appear over time). :func:`gram_update`, :func:`gram_downdate` and
  :func:`gram_merge` pad the narrower ``xty`` with zero columns
  (:func:`pad_columns`), which is exact: a class never seen has an all-zero
  column in ``XᵀY``. A batch with *fewer* columns than the statistics is an
  error, so a mismatched label encoding is not silently accepted.
* Matmuls use ``precision=HIGHEST``: on GPUs/TPUs the default precision may
  round float32 inputs to bfloat16/TF32, which would wreck the
  sufficient statistics long before the solve does.
* Statistics take the floating dtype of ``x`` and ``y`` combined
  (``jnp.result_type``); integer targets (e.g. one-hot labels as ints) are
  converted to it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


class GramStats(NamedTuple):
    """Sufficient statistics of rows ``(X, Y)`` for least squares.

    Attributes:
      xtx: ``Σ XᵀX``, shape ``(d, d)``.
      xty: ``Σ XᵀY``, shape ``(d, c)``.
      count: number of (unmasked) rows, a scalar of the same float dtype.
    """

    xtx: jax.Array
    xty: jax.Array
    count: jax.Array


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` at full precision (shared by the modules of this package)."""
    return jnp.matmul(a, b, precision=HIGHEST)


def matmul_tn(a: jax.Array, b: jax.Array) -> jax.Array:
    """``aᵀ @ b`` at full precision (Gram matrices: ``matmul_tn(x, x) = XᵀX``).

    XLA:CPU folds the transpose into the GEMM; in float64 that path ran at half
    the speed of a plain GEMM (66 vs 132 GFLOP/s for a 2048 x 4096 x 2048
    product on the development machine), so float64 operands are transposed
    into a fresh buffer first (an optimisation barrier stops XLA from folding
    it back). Float32 keeps the folded form (it was the faster one).
    """
    at = a.T
    if a.dtype == jnp.float64:
        at = jax.lax.optimization_barrier(at)
    return matmul(at, b)


def float_dtype(*arrays: jax.typing.ArrayLike) -> jnp.dtype:
    """The common floating dtype of ``arrays`` (integers/bools promote to float)."""
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jnp.result_type(dtype, float)
    return dtype


def _check_xy(x: jax.Array, y: jax.Array, mask: jax.Array | None) -> None:
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d); got shape {x.shape}")
    if y.ndim != 2:
        raise ValueError(
            f"y must have shape (n, c) (use y[:, None] for a single target); got shape {y.shape}"
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of rows; got {x.shape} and {y.shape}")
    if mask is not None and mask.shape != (x.shape[0],):
        raise ValueError(f"mask must have shape ({x.shape[0]},) to match x; got {mask.shape}")


def _check_stats(stats: GramStats, name: str = "stats") -> None:
    xtx, xty, count = stats
    if xtx.ndim != 2 or xtx.shape[0] != xtx.shape[1]:
        raise ValueError(f"{name}.xtx must be square (d, d); got shape {xtx.shape}")
    if xty.ndim != 2 or xty.shape[0] != xtx.shape[0]:
        raise ValueError(f"{name}.xty must have shape ({xtx.shape[0]}, c); got shape {xty.shape}")
    if jnp.ndim(count) != 0:
        raise ValueError(f"{name}.count must be a scalar; got shape {jnp.shape(count)}")


def pad_columns(a: jax.typing.ArrayLike, c: int) -> jax.Array:
    """Pads the last axis of ``a`` with zeros up to ``c`` columns.

    Used when new classes appear: weights ``W`` (``d × c_old``), ``XᵀY`` or
    one-hot targets ``Y`` gain all-zero columns for the classes not seen yet.

    Args:
      a: an array of rank >= 1 (``W``, ``XᵀY`` or ``Y``).
      c: the number of columns wanted.

    Returns:
      ``a`` with ``c - a.shape[-1]`` zero columns appended (``a`` itself when
      it already has ``c``).

    Raises:
      ValueError: if ``a`` is a scalar or already has more than ``c`` columns.

    Example:
      >>> import jax.numpy as jnp
      >>> pad_columns(jnp.ones((3, 2)), 4).shape
      (3, 4)
    """
    a = jnp.asarray(a)
    if a.ndim < 1:
        raise ValueError("pad_columns needs an array of rank >= 1; got a scalar")
    have = a.shape[-1]
    if have > c:
        raise ValueError(f"cannot pad {have} columns down to {c}: the array already has more")
    if have == c:
        return a
    widths = [(0, 0)] * (a.ndim - 1) + [(0, c - have)]
    return jnp.pad(a, widths)


def gram_init(d: int, c: int, dtype: jax.typing.DTypeLike = jnp.float32) -> GramStats:
    """All-zero statistics for ``d`` features and ``c`` targets.

    Args:
      d: number of features.
      c: number of target columns (may be 0 and grow later).
      dtype: floating dtype of the statistics.

    Returns:
      ``GramStats`` of zeros with ``count = 0``.

    Example:
      >>> stats = gram_init(4, 3)
      >>> stats.xtx.shape, stats.xty.shape, float(stats.count)
      ((4, 4), (4, 3), 0.0)
    """
    if d < 1 or c < 0:
        raise ValueError(f"need d >= 1 and c >= 0; got d={d}, c={c}")
    return GramStats(
        xtx=jnp.zeros((d, d), dtype),
        xty=jnp.zeros((d, c), dtype),
        count=jnp.zeros((), dtype),
    )


def gram_stats(
    x: jax.typing.ArrayLike, y: jax.typing.ArrayLike, mask: jax.typing.ArrayLike | None = None
) -> GramStats:
    """Statistics ``XᵀX``, ``XᵀY`` and the row count of one batch.

    Args:
      x: features, shape ``(n, d)``.
      y: targets, shape ``(n, c)``.
      mask: optional ``(n,)`` row mask; rows where it is 0 (or False) are left
        out entirely (even if they hold NaN), so padded batches are exact.

    Returns:
      ``GramStats`` in the floating dtype of ``x`` and ``y``.

    Example:
      >>> import jax.numpy as jnp
      >>> x, y = jnp.ones((5, 3)), jnp.ones((5, 2))
      >>> stats = gram_stats(x, y, mask=jnp.array([1, 1, 1, 0, 0]))
      >>> float(stats.count), float(stats.xtx[0, 0])
      (3.0, 3.0)
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    mask = None if mask is None else jnp.asarray(mask)
    _check_xy(x, y, mask)
    dtype = float_dtype(x, y)
    x, y = x.astype(dtype), y.astype(dtype)
    if mask is None:
        count = jnp.asarray(x.shape[0], dtype)
    else:
        keep = mask != 0
        x = jnp.where(keep[:, None], x, jnp.zeros((), dtype))
        y = jnp.where(keep[:, None], y, jnp.zeros((), dtype))
        count = jnp.sum(keep, dtype=dtype)
    return GramStats(xtx=matmul_tn(x, x), xty=matmul_tn(x, y), count=count)


def _aligned(stats: GramStats, batch: GramStats, op: str) -> tuple[GramStats, GramStats]:
    """Checks ``batch`` against ``stats`` and pads ``stats.xty`` for new columns."""
    _check_stats(stats)
    d, c = stats.xty.shape
    if batch.xtx.shape[0] != d:
        raise ValueError(f"{op}: x has {batch.xtx.shape[0]} features but the statistics have {d}")
    cb = batch.xty.shape[1]
    if cb < c:
        raise ValueError(
            f"{op}: y has {cb} columns but the statistics have {c}; pad y with "
            f"pad_columns(y, {c}) if its classes are the first {cb} of {c}"
        )
    return stats._replace(xty=pad_columns(stats.xty, cb)), batch


def gram_update(
    stats: GramStats,
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    mask: jax.typing.ArrayLike | None = None,
) -> GramStats:
    """Adds the rows ``(x, y)`` to ``stats`` (``stats + gram_stats(x, y, mask)``).

    If ``y`` has more columns than ``stats.xty`` (new classes), ``stats.xty`` is
    padded with zero columns first; fewer columns is an error.

    Args:
      stats: accumulated statistics.
      x: features, shape ``(n, d)``.
      y: targets, shape ``(n, c')`` with ``c' >= c``.
      mask: optional ``(n,)`` row mask (0 = padding).

    Returns:
      The updated statistics.

    Example:
      >>> import jax.numpy as jnp
      >>> stats = gram_update(gram_init(3, 2), jnp.ones((4, 3)), jnp.ones((4, 5)))
      >>> stats.xty.shape, float(stats.count)
      ((3, 5), 4.0)
    """
    stats, batch = _aligned(stats, gram_stats(x, y, mask), "gram_update")
    return jax.tree.map(jnp.add, stats, batch)


def gram_downdate(
    stats: GramStats,
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    mask: jax.typing.ArrayLike | None = None,
) -> GramStats:
    """Subtracts rows ``(x, y)`` that were added before (exact unlearning).

    Subtraction is exact algebra but not a check: rows that were never added
    give statistics of no data set (``xtx`` may stop being positive
    semi-definite). Column padding follows :func:`gram_update`.

    Args:
      stats: accumulated statistics.
      x: features of the rows to remove, shape ``(n, d)``.
      y: their targets, shape ``(n, c')`` with ``c' >= c``.
      mask: optional ``(n,)`` row mask (0 = padding).

    Returns:
      The statistics without those rows.

    Example:
      >>> import jax.numpy as jnp
      >>> x, y = jnp.ones((4, 3)), jnp.ones((4, 2))
      >>> stats = gram_downdate(gram_stats(x, y), x[:1], y[:1])
      >>> float(stats.count), float(stats.xtx[0, 0])
      (3.0, 3.0)
    """
    stats, batch = _aligned(stats, gram_stats(x, y, mask), "gram_downdate")
    return jax.tree.map(jnp.subtract, stats, batch)


def gram_merge(a: GramStats, b: GramStats) -> GramStats:
    """Statistics of the union of two disjoint sets of rows (``a + b``).

    The narrower ``xty`` is padded with zero columns, so clients or chunks that
    have seen different numbers of classes merge exactly.

    Args:
      a: statistics of one set of rows.
      b: statistics of another set with the same number of features.

    Returns:
      The summed statistics.

    Example:
      >>> import jax.numpy as jnp
      >>> x, y = jnp.ones((4, 3)), jnp.ones((4, 2))
      >>> merged = gram_merge(gram_stats(x[:1], y[:1]), gram_stats(x[1:], y[1:]))
      >>> bool(jnp.allclose(merged.xtx, gram_stats(x, y).xtx))
      True
    """
    _check_stats(a, "a")
    _check_stats(b, "b")
    if a.xtx.shape != b.xtx.shape:
        raise ValueError(f"cannot merge statistics with xtx {a.xtx.shape} and {b.xtx.shape}")
    c = max(a.xty.shape[1], b.xty.shape[1])
    a = a._replace(xty=pad_columns(a.xty, c))
    b = b._replace(xty=pad_columns(b.xty, c))
    return jax.tree.map(jnp.add, a, b)
