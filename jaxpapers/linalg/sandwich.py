"""DeepAFL's sandwiched least squares: a closed-form residual layer.

DeepAFL (federated, gradient-free deep analytic learning) grows a network
layer by layer. Layer ``t`` adds ``F Δ`` to the hidden features, where
``F = φ(X_t Θ)`` (``n × p``) are random features and ``Δ`` (``p × D``) is
learned so that the *fixed* classifier ``W`` (``D × C``) explains the current
residual ``E = Y − X_t W`` (``n × C``)::

    min_Δ ‖E − F Δ W‖²_F + λ‖Δ‖²_F.

``Δ`` sits between ``F`` and ``W`` (the "sandwich"). Clients only send the
sums ``FᵀF`` (``p × p``) and ``W EᵀF`` (``D × p``), so the server's solve
depends on the data only through statistics, as in AFL.

Derivation. Setting the gradient to zero gives the Sylvester-type normal
equation ``FᵀF Δ WWᵀ + λΔ = FᵀE Wᵀ``. With eigendecompositions
``FᵀF = V diag(r) Vᵀ`` and ``WWᵀ = U diag(s) Uᵀ`` (orthogonal ``V``, ``U``),
write ``Δ = V Z Uᵀ``: the equation becomes
``V (diag(r) Z diag(s) + λZ) Uᵀ = FᵀEWᵀ``, i.e. elementwise
``Z_ij (λ + r_i s_j) = (Vᵀ FᵀEWᵀ U)_ij``, so::

    Δ = V [(Vᵀ (W EᵀF)ᵀ U) ⊘ (λ + r sᵀ)] Uᵀ.

The DeepAFL reference computes ``U [(Uᵀ WRF V) ⊘ (λ + s rᵀ)] Vᵀ`` and returns
its transpose, which is the same matrix. For ``λ > 0`` all denominators are
positive (``r, s ≥ 0``), so the solution is unique and this costs two
symmetric eigendecompositions (``O(p³ + D³)``) instead of the
``(pD) × (pD)`` Kronecker system.

Functions are pure and unbatched, matmuls at ``precision=HIGHEST``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.linalg.gram import float_dtype, matmul
from jaxpapers.linalg.ridge import check_scalar, check_square


def _check(ftf: jax.Array, w: jax.Array, other: jax.Array, other_name: str, transposed: bool):
    check_square(ftf, "ftf")
    if w.ndim != 2:
        raise ValueError(f"w must have shape (D, C); got {w.shape}")
    p, d = ftf.shape[0], w.shape[0]
    want = (d, p) if transposed else (p, d)
    if other.shape != want:
        raise ValueError(
            f"{other_name} must have shape {want} for ftf {ftf.shape} and w {w.shape}; "
            f"got {other.shape}"
        )


def sandwich_solve(
    ftf: jax.typing.ArrayLike,
    wrf: jax.typing.ArrayLike,
    w: jax.typing.ArrayLike,
    lam: jax.typing.ArrayLike,
) -> jax.Array:
    """Solves ``min_Δ ‖E − F Δ W‖² + λ‖Δ‖²`` from statistics.

    Args:
      ftf: ``FᵀF``, shape ``(p, p)``.
      wrf: ``W EᵀF``, shape ``(D, p)`` (summed over clients).
      w: the fixed classifier ``W``, shape ``(D, C)``.
      lam: ``λ > 0`` (scalar).

    Returns:
      ``Δ``, shape ``(p, D)``, satisfying ``FᵀF Δ WWᵀ + λΔ = (W EᵀF)ᵀ``.

    Example:
      >>> import jax.numpy as jnp
      >>> f, w, e = jnp.eye(3, 2), jnp.eye(4, 2), jnp.ones((3, 2))
      >>> delta = sandwich_solve(f.T @ f, w @ e.T @ f, w, 1.0)
      >>> delta.shape, [round(float(v), 6) for v in delta[0]]
      ((2, 4), [0.5, 0.5, 0.0, 0.0])
    """
    ftf, wrf, w = jnp.asarray(ftf), jnp.asarray(wrf), jnp.asarray(w)
    _check(ftf, w, wrf, "wrf", transposed=True)
    check_scalar(lam, "lam")
    dtype = float_dtype(ftf, wrf, w)
    ftf, wrf, w = ftf.astype(dtype), wrf.astype(dtype), w.astype(dtype)
    s, u = jnp.linalg.eigh(matmul(w, w.T))
    r, v = jnp.linalg.eigh(ftf)
    z = matmul(matmul(v.T, wrf.T), u) / (jnp.asarray(lam, dtype) + r[:, None] * s[None, :])
    return matmul(matmul(v, z), u.T)


def sandwich_residual(
    ftf: jax.typing.ArrayLike,
    fte_wt: jax.typing.ArrayLike,
    w: jax.typing.ArrayLike,
    delta: jax.typing.ArrayLike,
    lam: jax.typing.ArrayLike,
) -> jax.Array:
    """Residual of the normal equation, ``FᵀF Δ WWᵀ + λΔ − FᵀEWᵀ``.

    Args:
      ftf: ``FᵀF``, shape ``(p, p)``.
      fte_wt: ``FᵀEWᵀ`` (the transpose of ``wrf``), shape ``(p, D)``.
      w: the classifier ``W``, shape ``(D, C)``.
      delta: a candidate ``Δ``, shape ``(p, D)``.
      lam: ``λ`` (scalar).

    Returns:
      The residual, shape ``(p, D)``; zero at the minimiser.

    Example:
      >>> import jax.numpy as jnp
      >>> f, w, e = jnp.eye(3, 2), jnp.eye(4, 2), jnp.ones((3, 2))
      >>> wrf = w @ e.T @ f
      >>> res = sandwich_residual(f.T @ f, wrf.T, w, sandwich_solve(f.T @ f, wrf, w, 1.0), 1.0)
      >>> bool(jnp.abs(res).max() < 1e-6)
      True
    """
    ftf, fte_wt, w, delta = (jnp.asarray(a) for a in (ftf, fte_wt, w, delta))
    _check(ftf, w, fte_wt, "fte_wt", transposed=False)
    if delta.shape != fte_wt.shape:
        raise ValueError(f"delta must have shape {fte_wt.shape}; got {delta.shape}")
    check_scalar(lam, "lam")
    dtype = float_dtype(ftf, fte_wt, w, delta)
    ftf, fte_wt, w, delta = (a.astype(dtype) for a in (ftf, fte_wt, w, delta))
    lhs = matmul(matmul(ftf, delta), matmul(w, w.T)) + jnp.asarray(lam, dtype) * delta
    return lhs - fte_wt
