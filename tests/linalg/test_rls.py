"""ACIL / G-ACIL recursive least squares: learning and unlearning are exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpapers.linalg import (
    IllConditionedError,
    RLSState,
    ensure_finite,
    gram_init,
    gram_stats,
    gram_update,
    one_hot,
    rls_downdate,
    rls_from_stats,
    rls_init,
    rls_update,
)

D, C, GAMMA = 6, 5, 0.7
# Jitted once per shape: far cheaper than compiling every primitive eagerly.
_update, _downdate = jax.jit(rls_update), jax.jit(rls_downdate)


def _ridge(x, y, gamma=GAMMA):
    """Known answer: (R, W) of ridge regression on all rows, float64 NumPy."""
    a = x.T @ x + gamma * np.eye(x.shape[1])
    return np.linalg.inv(a), np.linalg.solve(a, x.T @ y)


def _rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


def _learn(x, y, splits, gamma=GAMMA):
    state = rls_init(x.shape[1], 0, gamma, jnp.float64)
    for xc, yc in zip(np.split(x, splits), np.split(y, splits)):
        state = _update(state, xc, yc)
    return state


@settings(max_examples=20, deadline=None)
@given(
    cuts=st.lists(st.floats(0.0, 1.0), max_size=6),
    classes=st.permutations(range(C)),
    seed=st.integers(0, 2**16),
)
def test_any_chunking_and_class_order_equals_joint_ridge(cuts, classes, seed):
    n = 24
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D))
    # Classes appear over time in a random order; the last one never appears.
    labels = np.asarray(classes)[np.sort(rng.integers(0, C - 1, n))]
    bounds = [0, *sorted({int(f * n) for f in cuts} - {0, n}), n]
    with jax.enable_x64(True):
        state = rls_init(D, 0, GAMMA, jnp.float64)
        seen = 0
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            seen = max(seen, int(labels[lo:hi].max()) + 1)  # G-ACIL: columns = largest label + 1
            # Each chunk sits in a fixed (n, D) buffer, NaN-padded and masked (one compile).
            xc, mask = np.full_like(x, np.nan), np.zeros(n, bool)
            xc[: hi - lo], mask[: hi - lo] = x[lo:hi], True
            yc = one_hot(np.pad(labels[lo:hi], (0, n - hi + lo)), seen, jnp.float64)
            state = _update(state, xc, yc, mask)
        assert state.w.shape == (D, seen) and state.w.dtype == jnp.float64
        r, w = _ridge(x, np.eye(seen)[labels])
        assert _rel(state.r, r) < 1e-9 and _rel(state.w, w) < 1e-9
        unseen = np.setdiff1d(np.arange(seen), labels)
        assert np.all(np.asarray(state.w)[:, unseen] == 0.0)  # exactly zero, not just small


def test_unpadded_chunks_of_different_sizes():
    rng = np.random.default_rng(9)
    x, labels = rng.standard_normal((20, D)), rng.integers(0, C, 20)
    with jax.enable_x64(True):
        state = _learn(x, np.eye(C)[labels], [1, 4, 12])
        r, w = _ridge(x, np.eye(C)[labels])
        assert _rel(state.r, r) < 1e-9 and _rel(state.w, w) < 1e-9


def test_stats_path_equals_recursion_and_continues():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, D)), rng.standard_normal((40, 3))
    with jax.enable_x64(True):
        stats = gram_update(gram_stats(x[:15], y[:15]), x[15:30], y[15:30])
        state = rls_from_stats(stats, GAMMA)
        r, w = _ridge(x[:30], y[:30])
        assert _rel(state.r, r) < 1e-9 and _rel(state.w, w) < 1e-9
        np.testing.assert_array_equal(state.r, state.r.T)
        state = _update(state, x[30:], y[30:])  # the recursion continues from the solve
        r, w = _ridge(x, y)
        assert _rel(state.r, r) < 1e-9 and _rel(state.w, w) < 1e-9


def test_downdate_equals_retraining_without_rows():
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((50, D)), rng.integers(0, C, 50)
    y = np.eye(C)[labels]
    forget = rng.permutation(50)[:12]
    keep = np.setdiff1d(np.arange(50), forget)
    with jax.enable_x64(True):
        for state in (_learn(x, y, [7, 20, 33]), rls_from_stats(gram_stats(x, y), GAMMA)):
            after = _downdate(state, x[forget], y[forget])
            r, w = _ridge(x[keep], y[keep])
            assert _rel(after.r, r) < 1e-9 and _rel(after.w, w) < 1e-9
            # Sequential downdates of parts equal the one-shot downdate of the union.
            seq = state
            for part in np.array_split(forget, 4):
                seq = _downdate(seq, x[part], y[part])
            assert _rel(seq.r, after.r) < 1e-9 and _rel(seq.w, after.w) < 1e-9
        # A padded, masked batch removes only its unmasked rows.
        mask = np.arange(12) < 5
        masked = _downdate(state, x[forget], y[forget], mask)
        exact = _downdate(state, x[forget[:5]], y[forget[:5]])
        assert _rel(masked.r, np.asarray(exact.r)) < 1e-9
        assert _rel(masked.w, np.asarray(exact.w)) < 1e-9


def test_update_then_downdate_restores_state():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((30, D)), rng.standard_normal((30, 4))
    new_x, new_y = rng.standard_normal((9, D)), rng.standard_normal((9, 4))
    with jax.enable_x64(True):
        state = _learn(x, y, [10])
        back = _downdate(_update(state, new_x, new_y), new_x, new_y)
        assert _rel(back.r, np.asarray(state.r)) < 1e-9
        assert _rel(back.w, np.asarray(state.w)) < 1e-9


def test_downdate_rows_learned_before_new_classes():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, D))
    with jax.enable_x64(True):
        state = _update(rls_init(D, 0, GAMMA, jnp.float64), x[:10], np.eye(2)[np.arange(10) % 2])
        state = _update(state, x[10:], np.eye(4)[2 + np.arange(10) % 2])
        # Old rows carry only the two classes they were learned with: padded with zeros.
        after = _downdate(state, x[:10], np.eye(2)[np.arange(10) % 2])
        r, w = _ridge(x[10:], np.eye(4)[2 + np.arange(10) % 2])
        assert _rel(after.w, w) < 1e-9 and _rel(after.r, r) < 1e-9
        assert np.all(np.asarray(after.w)[:, :2] == pytest.approx(0.0, abs=1e-12))


def test_unlearning_rows_never_learned_is_caught():
    with jax.enable_x64(True):
        state = rls_init(D, 2, 1.0, jnp.float64)  # R = I: a row's leverage is its squared norm
        x = np.zeros((1, D))
        x[0, 0] = 1.5  # leverage 2.25 >= 1: I − XRXᵀ is not positive definite
        bad = _downdate(state, x, np.array([[1.0, 0.0]]))
        assert np.isnan(np.asarray(bad.r)).any()
        with pytest.raises(IllConditionedError, match="increase gamma") as info:
            ensure_finite(bad, "RLS state after unlearning")
        assert "RLS state after unlearning" in str(info.value)
        assert "jax_enable_x64" in str(info.value)
        # Leverage below 1 is removable algebra (a "negative" row), and stays finite.
        ensure_finite(_downdate(state, 0.5 * x, np.array([[1.0, 0.0]])), "state")


def test_vmap_over_problems():
    rng = np.random.default_rng(4)
    xs, ys = rng.standard_normal((3, 2, 8, D)), rng.standard_normal((3, 2, 8, 2))
    with jax.enable_x64(True):
        init = jax.vmap(lambda _: rls_init(D, 2, GAMMA, jnp.float64))(jnp.arange(3))
        step = jax.jit(jax.vmap(rls_update))
        state = step(step(init, xs[:, 0], ys[:, 0]), xs[:, 1], ys[:, 1])
        assert isinstance(state, RLSState) and state.w.shape == (3, D, 2)
        undone = jax.vmap(rls_downdate)(state, xs[:, 1], ys[:, 1])
        for i in range(3):
            r, w = _ridge(xs[i].reshape(16, D), ys[i].reshape(16, 2))
            assert _rel(state.r[i], r) < 1e-9 and _rel(state.w[i], w) < 1e-9
            _, w = _ridge(xs[i, 0], ys[i, 0])
            assert _rel(undone.w[i], w) < 1e-9


def test_errors():
    state = rls_init(D, 3, GAMMA)
    x = np.ones((2, D))
    with pytest.raises(ValueError, match="pad y"):
        rls_update(state, x, np.ones((2, 2)))
    with pytest.raises(ValueError, match="never learned"):
        rls_downdate(state, x, np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"x must have shape \(n, 6\)"):
        rls_update(state, np.ones((2, D + 1)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="y must have shape"):
        rls_update(state, x, np.ones((3, 3)))
    with pytest.raises(ValueError, match="gamma must be > 0"):
        rls_init(D, 3, 0.0)
    with pytest.raises(ValueError, match="state.r"):
        rls_update(RLSState(r=jnp.ones((D, D + 1)), w=state.w), x, np.ones((2, 3)))


def test_float32_recursion_drifts_statistics_path_does_not():
    """Many float32 Woodbury steps drift; float32 statistics + one Cholesky do not.

    Measured on CPU with this problem (n=4096 rows in 128 chunks of 32, d=256,
    ReLU random features of 32 latent factors, γ=1e-3), relative error of W vs
    the float64 answer: recursion ~3e-3, statistics + Cholesky ~2e-5. At
    d=2048 (32768 rows, chunks of 256) the recursion reached 1e-3 (γ=0.1),
    1e-2 (γ=0.01) and NaN (γ=1e-3), the statistics path ~5e-5 throughout.
    """
    n, d, c, k, chunk, gamma = 4096, 256, 10, 32, 32, 1e-3
    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, k))
    x = np.maximum(z @ rng.standard_normal((k, d)) / np.sqrt(k), 0.0)
    y = np.eye(c)[np.argmax(z @ rng.standard_normal((k, c)), axis=1)]
    want = np.linalg.solve(x.T @ x + gamma * np.eye(d), x.T @ y)
    xs = jnp.asarray(x.reshape(-1, chunk, d), jnp.float32)
    ys = jnp.asarray(y.reshape(-1, chunk, c), jnp.float32)

    @jax.jit
    def recursion(xs, ys):
        step = lambda s, b: (rls_update(s, *b), None)  # noqa: E731
        return jax.lax.scan(step, rls_init(d, c, gamma), (xs, ys))[0].w

    @jax.jit
    def statistics(xs, ys):
        step = lambda s, b: (gram_update(s, *b), None)  # noqa: E731
        return rls_from_stats(jax.lax.scan(step, gram_init(d, c), (xs, ys))[0], gamma).w

    w_rec, w_stats = recursion(xs, ys), statistics(xs, ys)
    assert w_rec.dtype == w_stats.dtype == jnp.float32
    err_rec, err_stats = _rel(w_rec, want), _rel(w_stats, want)
    print(f"float32 relative error vs float64: recursion {err_rec:.2e}, stats {err_stats:.2e}")
    assert err_stats < 1e-4
