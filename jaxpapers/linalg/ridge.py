"""Ridge regression from sufficient statistics, solved by Cholesky.

``W = (XᵀX + γI)⁻¹ XᵀY`` is the closed form behind ACIL, AFL and DeepAFL's
classifiers. Design choices:

* **Cholesky, never ``inv``.** ``XᵀX + γI`` is symmetric positive definite for
  ``γ > 0``; its Cholesky factor ``L`` (``LLᵀ = A``) gives the solve with two
  triangular solves, half the flops of LU and backward stable, whereas forming
  ``A⁻¹`` and multiplying squares the rounding error's dependence on the
  condition number. Even :func:`ridge_inverse` (needed by the RLS recursion,
  which carries ``R = A⁻¹`` as state) is built from the factor.
* **Failure is NaN, not an exception.** Inside ``jit`` nothing can raise on a
  value: a matrix that is not numerically positive definite (``γ = 0`` with
  rank-deficient ``X``, or too small ``γ`` in float32) makes the Cholesky factor
  NaN, which propagates to the result. Host-level guards that turn this into a
  clear error live in :mod:`jaxpapers.linalg.checks`.
* ``γ`` may be a Python number or a traced scalar (so ``jax.vmap`` over a grid
  of ``γ`` works); it is cast to the matrix dtype.
* All matmuls run at ``precision=HIGHEST`` (see :mod:`jaxpapers.linalg.gram`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular

from jaxpapers.linalg.gram import float_dtype, matmul, matmul_tn


def check_square(a: jax.Array, name: str) -> None:
    """Raises ``ValueError`` unless ``a`` is a square matrix (internal helper)."""
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square (d, d) matrix; got shape {a.shape}")


def check_scalar(value: jax.typing.ArrayLike, name: str) -> None:
    """Raises ``ValueError`` unless ``value`` is a scalar (internal helper)."""
    if jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar; got shape {jnp.shape(value)}")


def shifted(a: jax.Array, shift: jax.typing.ArrayLike) -> jax.Array:
    """``a + shift·I`` in the dtype of ``a`` (internal helper)."""
    shift = jnp.asarray(shift, a.dtype)
    return a + shift * jnp.eye(a.shape[0], dtype=a.dtype)


def cholesky(a: jax.Array) -> jax.Array:
    """Lower Cholesky factor of a symmetric matrix; NaN if it is not PD (internal).

    ``jnp.linalg.cholesky`` reads ``(a + aᵀ)/2``, so tiny asymmetries from
    rounding (``XᵀX`` computed by a matmul, ``R`` after many updates) are
    harmless.
    """
    return jnp.linalg.cholesky(a)


def _prepare(xtx: jax.typing.ArrayLike, gamma: jax.typing.ArrayLike) -> jax.Array:
    xtx = jnp.asarray(xtx)
    check_square(xtx, "xtx")
    check_scalar(gamma, "gamma")
    return shifted(xtx.astype(float_dtype(xtx)), gamma)


def ridge_solve(
    xtx: jax.typing.ArrayLike, xty: jax.typing.ArrayLike, gamma: jax.typing.ArrayLike
) -> jax.Array:
    """Ridge weights ``W = (XᵀX + γI)⁻¹ XᵀY`` by a Cholesky solve.

    Args:
      xtx: ``XᵀX``, shape ``(d, d)``.
      xty: ``XᵀY``, shape ``(d, c)`` (or ``(d,)`` for a single target).
      gamma: the ridge term ``γ`` (scalar, may be traced).

    Returns:
      ``W`` with the shape of ``xty``, in the common floating dtype. NaN when
      ``XᵀX + γI`` is not numerically positive definite.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
      >>> y = jnp.array([[1.0], [2.0], [2.0]])
      >>> w = ridge_solve(x.T @ x, x.T @ y, 1e-6)
      >>> [round(float(v), 4) for v in w[:, 0]]
      [1.0, 1.0]
    """
    xty = jnp.asarray(xty)
    a = _prepare(xtx, gamma)
    if xty.ndim not in (1, 2) or xty.shape[0] != a.shape[0]:
        raise ValueError(f"xty must have shape ({a.shape[0]}, c) to match xtx; got {xty.shape}")
    dtype = float_dtype(a, xty)
    return cho_solve((cholesky(a.astype(dtype)), True), xty.astype(dtype))


def inverse_from_cholesky(factor: jax.Array) -> jax.Array:
    """``(LLᵀ)⁻¹ = L⁻ᵀL⁻¹`` from a lower factor, exactly symmetric (internal)."""
    eye = jnp.eye(factor.shape[0], dtype=factor.dtype)
    linv = solve_triangular(factor, eye, lower=True)
    r = matmul_tn(linv, linv)
    return 0.5 * (r + r.T)


def ridge_inverse(xtx: jax.typing.ArrayLike, gamma: jax.typing.ArrayLike) -> jax.Array:
    """``R = (XᵀX + γI)⁻¹`` from the Cholesky factor, exactly symmetric.

    Only the RLS recursion (ACIL) needs ``R`` itself; to get weights prefer
    :func:`ridge_solve`, which never forms it.

    Args:
      xtx: ``XᵀX``, shape ``(d, d)``.
      gamma: the ridge term ``γ`` (scalar, may be traced).

    Returns:
      ``R``, shape ``(d, d)``, with ``R == R.T`` bit for bit. NaN when
      ``XᵀX + γI`` is not numerically positive definite.

    Example:
      >>> import jax.numpy as jnp
      >>> r = ridge_inverse(jnp.array([[3.0, 1.0], [1.0, 3.0]]), 1.0)
      >>> bool(jnp.allclose(r @ jnp.array([[4.0, 1.0], [1.0, 4.0]]), jnp.eye(2), atol=1e-6))
      True
    """
    return inverse_from_cholesky(cholesky(_prepare(xtx, gamma)))


def ridge_objective(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    w: jax.typing.ArrayLike,
    gamma: jax.typing.ArrayLike,
) -> jax.Array:
    """The ridge objective ``‖Y − XW‖²_F + γ‖W‖²_F``.

    Used by tests (the solution is its minimiser) and by DeepAFL's checks that
    each added layer does not increase the training objective.

    Args:
      x: features, shape ``(n, d)``.
      y: targets, shape ``(n, c)``.
      w: weights, shape ``(d, c)``.
      gamma: the ridge term ``γ`` (scalar).

    Returns:
      The objective, a scalar in the common floating dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> float(ridge_objective(jnp.eye(2), jnp.ones((2, 1)), jnp.zeros((2, 1)), 0.5))
      2.0
    """
    x, y, w = jnp.asarray(x), jnp.asarray(y), jnp.asarray(w)
    if x.ndim != 2 or y.ndim != 2 or w.ndim != 2:
        raise ValueError(
            f"need x (n, d), y (n, c), w (d, c); got shapes {x.shape}, {y.shape}, {w.shape}"
        )
    if x.shape[0] != y.shape[0] or x.shape[1] != w.shape[0] or y.shape[1] != w.shape[1]:
        raise ValueError(
            f"inconsistent shapes: x {x.shape}, y {y.shape}, w {w.shape} "
            "(need x (n, d), y (n, c), w (d, c))"
        )
    check_scalar(gamma, "gamma")
    dtype = float_dtype(x, y, w)
    x, y, w = x.astype(dtype), y.astype(dtype), w.astype(dtype)
    residual = y - matmul(x, w)
    return jnp.sum(residual**2) + jnp.asarray(gamma, dtype) * jnp.sum(w**2)
