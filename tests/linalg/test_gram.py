"""Gram statistics: chunked, masked, merged and downdated sums are exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpapers.linalg import (
    GramStats,
    gram_downdate,
    gram_init,
    gram_merge,
    gram_stats,
    gram_update,
    pad_columns,
)


def _data(n, d=5, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, c))


def _assert_stats(stats, x, y, rtol=1e-9):
    np.testing.assert_allclose(stats.xtx, x.T @ x, rtol=rtol, atol=rtol * np.abs(x.T @ x).max())
    np.testing.assert_allclose(stats.xty, x.T @ y, rtol=rtol, atol=rtol * np.abs(x.T @ y).max())
    assert float(stats.count) == x.shape[0]


_update = jax.jit(gram_update)  # one compilation per shape instead of per primitive


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.floats(0.0, 1.0), max_size=6), seed=st.integers(0, 2**16))
def test_chunked_stats_equal_one_shot(cuts, seed):
    n = 32
    x, y = _data(n, seed=seed)
    bounds = [0, *sorted({int(f * n) for f in cuts} - {0, n}), n]
    with jax.enable_x64(True):
        stats = gram_init(x.shape[1], y.shape[1], jnp.float64)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            # Each chunk sits in a fixed-size buffer, padded with garbage and masked.
            xc, yc = np.full_like(x, np.nan), np.full_like(y, np.nan)
            xc[: hi - lo], yc[: hi - lo] = x[lo:hi], y[lo:hi]
            stats = _update(stats, xc, yc, np.arange(n) < hi - lo)
        assert stats.xtx.dtype == jnp.float64 and stats.count.dtype == jnp.float64
        _assert_stats(stats, x, y)


def test_unpadded_chunks_of_different_sizes():
    x, y = _data(20)
    with jax.enable_x64(True):
        stats = gram_init(x.shape[1], y.shape[1], jnp.float64)
        for xc, yc in zip(np.split(x, [1, 4, 12]), np.split(y, [1, 4, 12])):
            stats = _update(stats, xc, yc)
        _assert_stats(stats, x, y)
        _assert_stats(gram_stats(x, y), x, y)


def test_float32_stats_keep_dtype_and_precision():
    x, y = _data(64, d=8, c=4)
    stats = gram_stats(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    assert all(leaf.dtype == jnp.float32 for leaf in stats)
    _assert_stats(stats, x, y, rtol=1e-4)


@pytest.mark.parametrize("as_bool", [False, True])
def test_mask_ignores_padded_rows(as_bool):
    x, y = _data(10)
    with jax.enable_x64(True):
        xp = np.concatenate([x, np.full((4, x.shape[1]), np.nan)])  # padding may be garbage
        yp = np.concatenate([y, np.full((4, y.shape[1]), np.inf)])
        mask = np.array([1] * 10 + [0] * 4)
        stats = gram_stats(xp, yp, mask.astype(bool) if as_bool else mask.astype(np.float64))
        _assert_stats(stats, x, y)
        stats = gram_update(gram_stats(x[:3], y[:3]), xp[3:], yp[3:], mask[3:])
        _assert_stats(stats, x, y)


def test_mask_under_jit_with_fixed_shapes():
    x, y = _data(12)
    with jax.enable_x64(True):
        step = jax.jit(gram_update)
        stats = gram_init(5, 3, jnp.float64)
        for start in range(0, 12, 5):  # chunks of 5, the last one padded
            xc, yc = np.zeros((5, 5)), np.zeros((5, 3))
            rows = min(5, 12 - start)
            xc[:rows], yc[:rows] = x[start : start + rows], y[start : start + rows]
            stats = step(stats, xc, yc, np.arange(5) < rows)
        _assert_stats(stats, x, y)


def test_merge_and_downdate():
    x, y = _data(30)
    with jax.enable_x64(True):
        a, b = gram_stats(x[:11], y[:11]), gram_stats(x[11:], y[11:])
        _assert_stats(gram_merge(a, b), x, y)
        _assert_stats(gram_merge(b, a), x, y)
        full = gram_stats(x, y)
        _assert_stats(gram_downdate(full, x[11:], y[11:]), x[:11], y[:11])
        mask = np.arange(19) % 2 == 0  # remove only every other row of the tail
        rest = np.concatenate([np.arange(11), 11 + np.flatnonzero(~mask)])
        _assert_stats(gram_downdate(full, x[11:], y[11:], mask), x[rest], y[rest])


def test_new_classes_pad_columns():
    x, y = _data(20, c=5)
    with jax.enable_x64(True):
        old = gram_stats(x[:8], pad_columns(y[:8, :2], 2))
        stats = gram_update(old, x[8:], y[8:])  # three classes appear
        y_all = np.concatenate([np.pad(y[:8, :2], ((0, 0), (0, 3))), y[8:]])
        _assert_stats(stats, x, y_all)
        merged = gram_merge(old, gram_stats(x[8:], y[8:]))
        _assert_stats(merged, x, y_all)
        with pytest.raises(ValueError, match="columns"):
            gram_update(stats, x[:2], y[:2, :3])


def test_pad_columns():
    a = jnp.ones((2, 3, 2))
    padded = pad_columns(a, 5)
    assert padded.shape == (2, 3, 5)
    assert float(padded[..., 2:].sum()) == 0.0 and float(padded[..., :2].sum()) == 12.0
    assert pad_columns(a, 2) is a
    with pytest.raises(ValueError, match="more"):
        pad_columns(a, 1)
    with pytest.raises(ValueError):
        pad_columns(jnp.float32(1.0), 3)


def test_shape_errors():
    x, y = _data(6)
    with pytest.raises(ValueError, match="x must have shape"):
        gram_stats(x[0], y)
    with pytest.raises(ValueError, match="y must have shape"):
        gram_stats(x, y[:, 0])
    with pytest.raises(ValueError, match="same number of rows"):
        gram_stats(x, y[:5])
    with pytest.raises(ValueError, match="mask"):
        gram_stats(x, y, np.ones(5))
    with pytest.raises(ValueError, match="features"):
        gram_update(gram_init(4, 3), x, y)
    with pytest.raises(ValueError, match="merge"):
        gram_merge(gram_init(4, 3), gram_init(5, 3))


def test_vmap_over_problems_and_int_targets():
    x, _ = _data(24, d=4)
    labels = np.arange(24) % 3
    y_int = np.eye(3, dtype=np.int32)[labels]
    batched = jax.vmap(gram_stats)(x.reshape(3, 8, 4).astype(np.float32), y_int.reshape(3, 8, 3))
    assert isinstance(batched, GramStats) and batched.xtx.shape == (3, 4, 4)
    assert batched.xty.dtype == jnp.float32
    for i in range(3):
        _assert_stats(
            jax.tree.map(lambda v, i=i: v[i], batched),
            x[8 * i : 8 * i + 8],
            y_int[8 * i : 8 * i + 8],
            rtol=1e-5,
        )
