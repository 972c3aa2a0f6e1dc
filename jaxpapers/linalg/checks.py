"""Host-level guards for the closed-form solvers, and label helpers.

The solvers in this package are jit-able, so they cannot raise on a *value*:
a matrix that is not numerically positive definite makes its Cholesky factor,
and everything computed from it, NaN. The functions here run on the host,
after the computation, and turn such results into an
:class:`IllConditionedError` (a ``ValueError``) whose message says what failed
and what to do about it: increase the ridge term, or compute in float64.
They pull values to the host (a device sync), so call them at the boundaries
(after a fit, after merging clients, before saving), never inside ``jit``;
given a tracer they raise ``TypeError``.

:func:`check_labels` is the host-side check for integer labels (out-of-range
labels would silently become all-zero rows in :func:`one_hot`);
:func:`one_hot` itself is pure and jit-able.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_ADVICE = (
    "increase gamma (the ridge term), or run in float64 with "
    "jax.config.update('jax_enable_x64', True)"
)


class IllConditionedError(ValueError):
    """A closed-form solve failed: a matrix was not numerically positive definite."""


def _to_host(value: Any, what: str) -> np.ndarray:
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{what}: host-level checks need concrete values; call them outside jax.jit/vmap"
        )
    return np.asarray(jax.device_get(value))


def ensure_finite(tree: Any, what: str, advice: str = DEFAULT_ADVICE) -> Any:
    """Raises ``IllConditionedError`` if any floating leaf of ``tree`` has NaN/Inf.

    Args:
      tree: a pytree of arrays (e.g. an ``RLSState`` or the weights).
      what: what the tree is, for the message (e.g. ``"RLS state after unlearning"``).
      advice: what the user should do about it.

    Returns:
      ``tree`` unchanged, so the check can wrap a result.

    Raises:
      IllConditionedError: naming ``what``, the offending leaf and ``advice``.
      TypeError: if called on traced values (inside ``jit``).

    Example:
      >>> import jax.numpy as jnp
      >>> ensure_finite({"w": jnp.ones(3)}, "weights")["w"].shape
      (3,)
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    for path, leaf in leaves:
        array = _to_host(leaf, what)
        if not np.issubdtype(array.dtype, np.inexact):
            continue
        finite = np.isfinite(array)
        if not finite.all():
            where = jax.tree_util.keystr(path) or "(root)"
            n_nan = int(np.isnan(array).sum())
            n_inf = int(array.size - finite.sum() - n_nan)
            raise IllConditionedError(
                f"{what} is not finite: leaf {where} ({array.dtype}, shape {array.shape}) has "
                f"{n_nan} NaN and {n_inf} Inf entries. A Cholesky factorisation most likely "
                f"failed because its matrix is not numerically positive definite; {advice}."
            )
    return tree


def condition_number(matrix: jax.typing.ArrayLike) -> float:
    """2-norm condition number of a symmetric matrix, on the host in float64.

    Args:
      matrix: a symmetric ``(d, d)`` matrix (only its symmetric part is used).

    Returns:
      ``λ_max / λ_min`` of the eigenvalues; ``inf`` if ``λ_min <= 0`` (not
      positive definite) or the matrix is not finite.

    Example:
      >>> import jax.numpy as jnp
      >>> condition_number(jnp.diag(jnp.array([1.0, 4.0])))
      4.0
    """
    a = _to_host(matrix, "condition_number").astype(np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"condition_number needs a square matrix; got shape {a.shape}")
    if not np.isfinite(a).all():
        return float("inf")
    eig = np.linalg.eigvalsh(0.5 * (a + a.T))
    if eig[0] <= 0:
        return float("inf")
    return float(eig[-1] / eig[0])


def ensure_positive_definite(
    matrix: jax.typing.ArrayLike,
    what: str,
    advice: str = DEFAULT_ADVICE,
    max_condition: float | None = None,
) -> float:
    """Checks that a solver's matrix is positive definite *at its own precision*.

    Runs the same Cholesky factorisation as the solvers (in the matrix's
    dtype) and checks it is finite, and computes the condition number in
    float64 on the host. A float32 matrix that is positive definite on paper
    but has condition number beyond ``1/eps(float32) ≈ 8e6`` gives a solution
    with no correct digits, so it is rejected too.

    Args:
      matrix: a symmetric ``(d, d)`` matrix (e.g. ``XᵀX + γI``).
      what: what the matrix is, for the message.
      advice: what the user should do about it.
      max_condition: largest acceptable condition number; default
        ``1 / eps`` of the matrix dtype.

    Returns:
      The condition number (float64 estimate from ``eigvalsh``).

    Raises:
      IllConditionedError: if the matrix is not finite, its Cholesky factor is
        not finite, or its condition number exceeds ``max_condition``.

    Example:
      >>> import jax.numpy as jnp
      >>> ensure_positive_definite(jnp.array([[2.0, 0.0], [0.0, 1.0]]), "C")
      2.0
    """
    host = _to_host(matrix, what)
    a = jnp.asarray(matrix)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{what} must be a square matrix; got shape {a.shape}")
    if not jnp.issubdtype(a.dtype, jnp.inexact):
        a = a.astype(jnp.result_type(float))
    if max_condition is None:
        max_condition = 1.0 / float(jnp.finfo(a.dtype).eps)
    if not np.isfinite(host).all():
        raise IllConditionedError(f"{what} has NaN or Inf entries; {advice}.")
    factor_ok = bool(jnp.isfinite(jnp.linalg.cholesky(a)).all())
    cond = condition_number(a)
    if not factor_ok or cond > max_condition:
        reason = (
            f"its Cholesky factorisation in {a.dtype} failed"
            if not factor_ok
            else f"its condition number {cond:.3g} exceeds {max_condition:.3g} "
            f"(1/eps of {a.dtype} by default), so a solve keeps no correct digits"
        )
        raise IllConditionedError(
            f"{what} ({a.shape[0]}x{a.shape[0]}, {a.dtype}) is not numerically positive "
            f"definite: {reason} (condition number {cond:.3g}); {advice}."
        )
    return cond


def check_labels(labels: jax.typing.ArrayLike, num_classes: int) -> None:
    """Raises ``ValueError`` unless ``labels`` are integers in ``[0, num_classes)``.

    Args:
      labels: integer class labels, any shape.
      num_classes: the number of classes.

    Raises:
      ValueError: for a non-integer dtype, or a label out of range (the message
        gives the smallest and largest label found).
      TypeError: if called on traced values (inside ``jit``).

    Example:
      >>> import numpy as np
      >>> check_labels(np.array([0, 2, 1]), 3)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise ValueError(f"num_classes must be an int; got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1; got {num_classes}")
    array = _to_host(labels, "check_labels")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"labels must be integers; got dtype {array.dtype} (cast with .astype(int) if the "
            "values are whole numbers)"
        )
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}); found min {array.min()} and max {array.max()}"
        )


def one_hot(
    labels: jax.typing.ArrayLike, num_classes: int, dtype: jax.typing.DTypeLike = jnp.float32
) -> jax.Array:
    """One-hot targets ``Y`` for integer labels (pure, jit-able).

    Labels outside ``[0, num_classes)`` give all-zero rows; validate them on
    the host with :func:`check_labels` first.

    Args:
      labels: integer labels, shape ``(n,)`` (any shape works; a class axis is
        appended).
      num_classes: the number of classes (columns).
      dtype: dtype of the result.

    Returns:
      ``Y`` of shape ``labels.shape + (num_classes,)``.

    Example:
      >>> import jax.numpy as jnp
      >>> one_hot(jnp.array([1, 0]), 3).tolist()
      [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    return jax.nn.one_hot(labels, num_classes, dtype=dtype)
