"""Ridge solves by Cholesky, and the host-level checks that guard them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.linalg import (
    DEFAULT_ADVICE,
    IllConditionedError,
    condition_number,
    ensure_finite,
    ensure_positive_definite,
    ridge_inverse,
    ridge_objective,
    ridge_solve,
)


def _problem(n=40, d=7, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, c))


def _rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


@pytest.mark.parametrize("n", [3, 40])  # fewer rows than features, and more
def test_ridge_solve_matches_numpy(n):
    x, y = _problem(n=n)
    want = np.linalg.solve(x.T @ x + 0.5 * np.eye(7), x.T @ y)
    with jax.enable_x64(True):
        w = ridge_solve(x.T @ x, x.T @ y, 0.5)
        assert w.dtype == jnp.float64
        assert _rel(w, want) < 1e-9
        assert _rel(ridge_solve(x.T @ x, x.T @ y[:, 0], 0.5), want[:, 0]) < 1e-9
    w32 = ridge_solve(jnp.asarray(x.T @ x, jnp.float32), jnp.asarray(x.T @ y, jnp.float32), 0.5)
    assert w32.dtype == jnp.float32
    assert _rel(w32, want) < 1e-4


def test_ridge_inverse_symmetric_and_correct():
    x, _ = _problem()
    want = np.linalg.inv(x.T @ x + 0.1 * np.eye(7))
    with jax.enable_x64(True):
        r = np.asarray(ridge_inverse(x.T @ x, 0.1))
    np.testing.assert_array_equal(r, r.T)
    assert _rel(r, want) < 1e-9
    r32 = np.asarray(ridge_inverse(jnp.asarray(x.T @ x, jnp.float32), 0.1))
    np.testing.assert_array_equal(r32, r32.T)
    assert _rel(r32, want) < 1e-4


def test_solution_minimises_objective():
    x, y = _problem()
    with jax.enable_x64(True):
        w = ridge_solve(x.T @ x, x.T @ y, 2.0)
        grad = jax.grad(ridge_objective, argnums=2)(x, y, w, 2.0)
        scale = np.linalg.norm(2 * x.T @ y)  # size of the gradient's terms
        assert np.linalg.norm(grad) < 1e-9 * scale
        best = float(ridge_objective(x, y, w, 2.0))
        rng = np.random.default_rng(1)
        for _ in range(5):
            assert best < float(ridge_objective(x, y, w + 1e-3 * rng.standard_normal(w.shape), 2.0))
        want = np.sum((y - x @ np.asarray(w)) ** 2) + 2.0 * np.sum(np.asarray(w) ** 2)
        assert abs(best - want) < 1e-9 * want


def test_traced_gamma_vmap_and_jit():
    x, y = _problem()
    gammas = np.array([0.01, 0.1, 1.0, 10.0])
    with jax.enable_x64(True):
        ws = jax.jit(jax.vmap(ridge_solve, in_axes=(None, None, 0)))(x.T @ x, x.T @ y, gammas)
        for g, w in zip(gammas, ws):
            assert _rel(w, np.linalg.solve(x.T @ x + g * np.eye(7), x.T @ y)) < 1e-9


def test_shape_errors():
    x, y = _problem()
    with pytest.raises(ValueError, match="square"):
        ridge_solve(x.T @ x[:, :3], x.T @ y, 1.0)
    with pytest.raises(ValueError, match="xty"):
        ridge_solve(x.T @ x, y, 1.0)
    with pytest.raises(ValueError, match="gamma"):
        ridge_inverse(x.T @ x, np.ones(2))
    with pytest.raises(ValueError, match="inconsistent"):
        ridge_objective(x, y, np.zeros((7, 2)), 1.0)


# Host-level checks.


def test_rank_deficient_float32_is_caught():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((5, 3)) @ rng.standard_normal((3, 8))).astype(np.float32)  # rank 3
    xtx = jnp.asarray(x.T @ x)
    with pytest.raises(IllConditionedError, match="increase gamma") as info:
        ensure_positive_definite(xtx, "XᵀX + γI (γ = 0)")
    assert "XᵀX + γI (γ = 0)" in str(info.value) and DEFAULT_ADVICE in str(info.value)
    assert isinstance(info.value, ValueError)
    # A healthy ridge term fixes it, and the estimate is returned.
    cond = ensure_positive_definite(xtx + jnp.eye(8, dtype=jnp.float32), "XᵀX + I")
    assert 1.0 < cond < 1e6 and cond == pytest.approx(condition_number(xtx + np.eye(8)), rel=1e-3)


def test_ensure_positive_definite_limits_and_errors():
    a = np.diag([1.0, 1e-9]).astype(np.float32)  # PD on paper, hopeless in float32
    with pytest.raises(IllConditionedError, match="condition number"):
        ensure_positive_definite(a, "C")
    with jax.enable_x64(True):
        assert ensure_positive_definite(jnp.asarray(a, jnp.float64), "C") == pytest.approx(1e9)
    assert ensure_positive_definite(np.eye(2), "C", max_condition=2.0) == 1.0
    with pytest.raises(IllConditionedError, match="Cholesky"):
        ensure_positive_definite(np.array([[1.0, 2.0], [2.0, 1.0]]), "C", advice="custom")
    with pytest.raises(IllConditionedError, match="NaN"):
        ensure_positive_definite(np.array([[np.nan, 0.0], [0.0, 1.0]]), "C")
    with pytest.raises(ValueError, match="square"):
        ensure_positive_definite(np.ones((2, 3)), "C")
    assert condition_number(np.diag([2.0, 0.0])) == float("inf")
    assert condition_number(np.diag([4.0, 2.0])) == 2.0


def test_ensure_finite_names_what_failed():
    tree = {"r": jnp.eye(2), "labels": jnp.arange(3), "w": jnp.array([[1.0, jnp.nan]])}
    with pytest.raises(IllConditionedError, match=r"RLS state is not finite.*'w'.*1 NaN"):
        ensure_finite(tree, "RLS state")
    with pytest.raises(IllConditionedError, match="use float64"):
        ensure_finite(jnp.array([jnp.inf]), "weights", advice="use float64")
    ok = {"r": jnp.eye(2), "n": jnp.arange(2)}
    assert ensure_finite(ok, "state") is ok
    # Not for traced values: the guard needs a value on the host.
    with pytest.raises(TypeError, match="outside jax.jit"):
        jax.jit(lambda a: ensure_finite(a, "w"))(jnp.ones(2))
    # A solve that fails inside jit surfaces as NaN, which the guard reports.
    w = jax.jit(ridge_solve)(jnp.array([[1.0, 2.0], [2.0, 1.0]]), jnp.ones((2, 1)), 0.0)
    with pytest.raises(IllConditionedError, match="increase gamma"):
        ensure_finite(w, "ridge weights")
