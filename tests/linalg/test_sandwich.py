"""DeepAFL's sandwiched least squares against brute force."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.linalg import sandwich_residual, sandwich_solve

# Deliberately all different, so a transposition anywhere fails loudly.
N, P, DH, NC = 30, 5, 4, 3  # rows, random features p, hidden width D, classes C


def _problem(seed=0, n=N, p=P, d=DH, c=NC):
    rng = np.random.default_rng(seed)
    f = np.tanh(rng.standard_normal((n, p)))
    w = rng.standard_normal((d, c))
    e = rng.standard_normal((n, c))
    return f, w, e


def _objective(f, w, e, delta, lam):
    return np.sum((e - f @ delta @ w) ** 2) + lam * np.sum(delta**2)


def _kronecker(f, w, e, lam):
    """vec(Δ) = (WWᵀ ⊗ FᵀF + λI)⁻¹ vec(FᵀEWᵀ), column-major vec."""
    p, d = f.shape[1], w.shape[0]
    lhs = np.kron(w @ w.T, f.T @ f) + lam * np.eye(p * d)
    rhs = (f.T @ e @ w.T).reshape(-1, order="F")
    return np.linalg.solve(lhs, rhs).reshape(p, d, order="F")


def _rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


@pytest.mark.parametrize("lam", [1e-3, 0.1, 10.0])
def test_matches_kronecker_solve_and_normal_equation(lam):
    f, w, e = _problem()
    want = _kronecker(f, w, e, lam)
    wrf = w @ e.T @ f
    with jax.enable_x64(True):
        delta = sandwich_solve(f.T @ f, wrf, w, lam)
        assert delta.shape == (P, DH) and delta.dtype == jnp.float64
        assert _rel(delta, want) < 1e-9
        res = np.asarray(sandwich_residual(f.T @ f, wrf.T, w, delta, lam))
    d = np.asarray(delta)
    scale = (
        np.linalg.norm(f.T @ f @ d @ w @ w.T)
        + lam * np.linalg.norm(d)
        + np.linalg.norm(f.T @ e @ w.T)
    )
    assert np.linalg.norm(res) < 1e-10 * scale


def test_matches_reference_formula():
    # The DeepAFL reference: U [(Uᵀ WRF V) ⊘ (λ + s rᵀ)] Vᵀ, transposed.
    f, w, e = _problem(seed=1)
    lam, wrf = 0.05, w @ e.T @ f
    s, u = np.linalg.eigh(w @ w.T)
    r, v = np.linalg.eigh(f.T @ f)
    want = (u @ ((u.T @ wrf @ v) / (lam + s[:, None] * r[None, :])) @ v.T).T
    with jax.enable_x64(True):
        assert _rel(sandwich_solve(f.T @ f, wrf, w, lam), want) < 1e-9


def test_objective_is_minimised():
    f, w, e = _problem(seed=2)
    lam = 0.1
    with jax.enable_x64(True):
        delta = np.asarray(sandwich_solve(f.T @ f, w @ e.T @ f, w, lam))
    best = _objective(f, w, e, delta, lam)
    assert best <= _objective(f, w, e, np.zeros_like(delta), lam)
    rng = np.random.default_rng(0)
    for scale in (1e-4, 1e-2, 1.0):
        for _ in range(5):
            bumped = delta + scale * rng.standard_normal(delta.shape)
            assert best <= _objective(f, w, e, bumped, lam)


def test_float32_and_statistics_summed_over_clients():
    f, w, e = _problem(seed=3, n=60)
    want = _kronecker(f, w, e, 0.1)
    # Clients send FᵀF and W EᵀF; the server sums them.
    ftf = sum(f[i : i + 20].T @ f[i : i + 20] for i in range(0, 60, 20))
    wrf = sum(w @ e[i : i + 20].T @ f[i : i + 20] for i in range(0, 60, 20))
    delta = jax.jit(sandwich_solve)(
        jnp.float32(ftf), jnp.float32(wrf), jnp.float32(w), jnp.float32(0.1)
    )
    assert delta.dtype == jnp.float32
    assert _rel(delta, want) < 1e-4


def test_vmap_over_problems():
    problems = [_problem(seed=s) for s in range(3)]
    ftf = np.stack([f.T @ f for f, _, _ in problems])
    wrf = np.stack([w @ e.T @ f for f, w, e in problems])
    ws = np.stack([w for _, w, _ in problems])
    with jax.enable_x64(True):
        deltas = jax.vmap(sandwich_solve, in_axes=(0, 0, 0, None))(ftf, wrf, ws, 0.2)
        for (f, w, e), delta in zip(problems, deltas):
            assert _rel(delta, _kronecker(f, w, e, 0.2)) < 1e-9


def test_shape_errors():
    f, w, e = _problem()
    wrf = w @ e.T @ f
    with pytest.raises(ValueError, match=r"wrf must have shape \(4, 5\)"):
        sandwich_solve(f.T @ f, wrf.T, w, 0.1)  # passing FᵀEWᵀ instead of W EᵀF
    with pytest.raises(ValueError, match="square"):
        sandwich_solve(f.T, wrf, w, 0.1)
    with pytest.raises(ValueError, match="lam"):
        sandwich_solve(f.T @ f, wrf, w, np.ones(2))
    with pytest.raises(ValueError, match="delta"):
        sandwich_residual(f.T @ f, wrf.T, w, np.zeros((DH, P)), 0.1)
