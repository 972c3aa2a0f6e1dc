"""Analytic federated learning: aggregation is exact and split-invariant."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.linalg import (
    afl_clean,
    afl_local,
    afl_merge,
    check_labels,
    one_hot,
)
from jaxpapers.linalg.afl import afl_merge_paper

D, C, GAMMA = 8, 4, 0.3


def _rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


def _ridge(x, y, gamma):
    return np.linalg.solve(x.T @ x + gamma * np.eye(x.shape[1]), x.T @ y)


def _clients(k, seed):
    """``k`` clients of random sizes, including tiny ones (1 or 2 rows)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, k)
    sizes[: k // 2] = rng.integers(1, 3, k // 2)
    labels = rng.integers(0, C, sizes.sum())
    check_labels(labels, C)
    x, y = rng.standard_normal((sizes.sum(), D)), np.asarray(one_hot(labels, C, jnp.float64))
    bounds = np.cumsum(sizes)[:-1]
    return x, y, list(zip(np.split(x, bounds), np.split(y, bounds)))


def _tree(items, merge):
    while len(items) > 1:
        pairs = [merge(*a, *b) for a, b in zip(items[::2], items[1::2])]
        items = pairs + ([items[-1]] if len(items) % 2 else [])
    return items[0]


@pytest.mark.parametrize("k", [1, 2, 5, 20])
def test_merging_clients_equals_joint_ridge(k):
    with jax.enable_x64(True):
        x, y, clients = _clients(k, seed=k)
        local = [afl_local(xc, yc, GAMMA) for xc, yc in clients]
        want = _ridge(x, y, k * GAMMA)
        merge = jax.jit(afl_merge)
        w_seq, c_seq = local[0]
        for w_k, c_k in local[1:]:
            w_seq, c_seq = merge(w_seq, c_seq, w_k, c_k)
        w_tree, c_tree = _tree(local, merge)
        assert _rel(w_seq, want) < 1e-9 and _rel(w_tree, want) < 1e-9
        c_want = x.T @ x + k * GAMMA * np.eye(D)
        assert _rel(c_seq, c_want) < 1e-12 and _rel(c_tree, c_want) < 1e-12
        if k > 1:  # the paper's literal law gives the same model
            w_paper, _ = _tree(local, afl_merge_paper)
            assert _rel(w_paper, want) < 1e-9


def test_paper_form_agrees_with_statistics_form():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        a = afl_local(rng.standard_normal((3, D)), rng.standard_normal((3, C)), GAMMA)
        b = afl_local(rng.standard_normal((50, D)), rng.standard_normal((50, C)), GAMMA)
        w, c = afl_merge(*a, *b)
        w_paper, c_paper = afl_merge_paper(*a, *b)
        assert _rel(w_paper, np.asarray(w)) < 1e-9
        np.testing.assert_array_equal(c, c_paper)
        want = np.asarray(w)
    # In float32 both are accurate for a well-conditioned pair.
    a32, b32 = (tuple(jnp.asarray(v, jnp.float32) for v in t) for t in (a, b))
    assert _rel(afl_merge(*a32, *b32)[0], want) < 1e-4
    assert _rel(afl_merge_paper(*a32, *b32)[0], want) < 1e-4


def test_cleaning_removes_the_regularisation():
    k = 5
    with jax.enable_x64(True):
        x, y, clients = _clients(k, seed=7)
        assert x.shape[0] > D  # enough rows in all for least squares to be unique
        w, c = _tree([afl_local(xc, yc, GAMMA) for xc, yc in clients], afl_merge)
        w_ls = np.linalg.lstsq(x, y, rcond=None)[0]
        assert _rel(afl_clean(w, c, k * GAMMA), w_ls) < 1e-9
        assert _rel(afl_clean(w, c, k * GAMMA, keep_gamma=GAMMA), _ridge(x, y, GAMMA)) < 1e-9
        assert _rel(afl_clean(w, c, k * GAMMA, keep_gamma=k * GAMMA), np.asarray(w)) < 1e-12
        cleaned = jax.jit(afl_clean)(w, c, k * GAMMA, 0.0)
        assert cleaned.dtype == jnp.float64 and _rel(cleaned, w_ls) < 1e-9


def test_clients_with_fewer_classes_are_padded():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, D))
    labels = np.concatenate([rng.integers(0, 2, 10), rng.integers(0, C, 20)])
    with jax.enable_x64(True):
        a = afl_local(x[:10], np.eye(2)[labels[:10]], GAMMA)  # has seen 2 classes only
        b = afl_local(x[10:], np.eye(C)[labels[10:]], GAMMA)
        w, _ = afl_merge(*a, *b)
        assert w.shape == (D, C)
        assert _rel(w, _ridge(x, np.eye(C)[labels], 2 * GAMMA)) < 1e-9


def test_vmap_over_groups_of_clients():
    rng = np.random.default_rng(5)
    xs, ys = rng.standard_normal((3, 2, 12, D)), rng.standard_normal((3, 2, 12, C))
    with jax.enable_x64(True):
        local = jax.vmap(jax.vmap(afl_local, in_axes=(0, 0, None)), in_axes=(0, 0, None))
        w, c = local(xs, ys, GAMMA)
        merged, _ = jax.vmap(afl_merge)(w[:, 0], c[:, 0], w[:, 1], c[:, 1])
        for i in range(3):
            want = _ridge(xs[i].reshape(24, D), ys[i].reshape(24, C), 2 * GAMMA)
            assert _rel(merged[i], want) < 1e-9


def test_shape_errors():
    w, c = afl_local(np.ones((3, D)), np.ones((3, C)), GAMMA)
    with pytest.raises(ValueError, match="need x"):
        afl_local(np.ones((3, D)), np.ones((2, C)), GAMMA)
    with pytest.raises(ValueError, match="same shape"):
        afl_merge(w, c, w[:5], c[:5, :5])
    with pytest.raises(ValueError, match="w_b must have shape"):
        afl_merge(w, c, w.T, c)
    with pytest.raises(ValueError, match="square"):
        afl_clean(w, c[:, :3], GAMMA)
    with pytest.raises(ValueError, match="keep_gamma"):
        afl_clean(w, c, GAMMA, keep_gamma=np.ones(2))


def test_labels():
    check_labels(np.array([0, 3, 2]), 4)
    check_labels(np.zeros((0,), np.int64), 4)
    with pytest.raises(ValueError, match=r"\[0, 4\).*max 4"):
        check_labels(np.array([0, 4]), 4)
    with pytest.raises(ValueError, match="min -1"):
        check_labels(jnp.array([-1, 2]), 4)
    with pytest.raises(ValueError, match="integers"):
        check_labels(np.array([0.0, 1.5]), 4)
    with pytest.raises(ValueError, match="num_classes"):
        check_labels(np.array([0]), 0)
    y = one_hot(jnp.array([2, 0]), 3, jnp.int32)
    assert y.dtype == jnp.int32 and y.tolist() == [[0, 0, 1], [1, 0, 0]]
    assert jax.jit(one_hot, static_argnums=1)(jnp.array([5]), 3).tolist() == [[0.0, 0.0, 0.0]]


def test_statistics_form_is_more_accurate_in_float32():
    """Tiny clients make each C_k ill-conditioned; only the paper's law feels it.

    Measured (d=64, clients of 1, 2, 200, 3, 500 rows, γ=0.01, float32 vs the
    float64 answer): statistics form ~4e-7, the paper's law ~1e-3.
    """
    rng = np.random.default_rng(0)
    d, c, gamma = 64, 10, 1e-2
    clients = [
        (rng.standard_normal((m, d)), np.eye(c)[rng.integers(0, c, m)]) for m in (1, 2, 200, 3, 500)
    ]
    x, y = (np.concatenate(parts) for parts in zip(*clients))
    want = _ridge(x, y, len(clients) * gamma)
    local = [afl_local(jnp.float32(a), jnp.float32(b), gamma) for a, b in clients]
    errors = {}
    for name, merge in (("statistics", afl_merge), ("paper", afl_merge_paper)):
        w, cc = local[0]
        for w_k, c_k in local[1:]:
            w, cc = merge(w, cc, w_k, c_k)
        errors[name] = _rel(w, want)
    print(f"float32 relative error vs float64: {errors}")
    assert errors["statistics"] < 1e-5
