"""Quantisers (k-means, residual k-means, top-K codes) and InfoNCE, against hand answers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.nn import contrastive, quantize


def _clusters(seed=0, per=30, dim=4):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [10, 0, 0, 0], [0, 10, 0, 0]], np.float32)[:, :dim]
    x = np.concatenate([c + 0.1 * rng.standard_normal((per, dim)) for c in centres])
    return jnp.asarray(x, jnp.float32), centres


def test_kmeans_finds_separated_clusters_and_is_deterministic():
    x, centres = _clusters()
    found = None
    for seed in range(5):  # random inits from data points; any that hits all 3 clusters
        c, codes = quantize.kmeans(jax.random.key(seed), x, 3, iters=10)
        if len(set(np.asarray(codes).tolist())) == 3:
            found = (c, codes)
            break
    c, codes = found
    order = np.argsort(np.asarray(c)[:, 0] + 2 * np.asarray(c)[:, 1])
    np.testing.assert_allclose(np.asarray(c)[order], centres, atol=0.1)
    codes = np.asarray(codes)
    assert all(len(set(codes[i * 30 : (i + 1) * 30])) == 1 for i in range(3))
    again = quantize.kmeans(jax.random.key(seed), x, 3, iters=10)
    np.testing.assert_array_equal(np.asarray(again[1]), codes)


def test_residual_norms_shrink_level_by_level_and_codes_round_trip():
    x = jax.random.normal(jax.random.key(1), (200, 8))
    books, codes = quantize.residual_kmeans(jax.random.key(2), x, (16, 16, 16), iters=8)
    assert codes.shape == (200, 3) and [b.shape for b in books] == [(16, 8)] * 3
    errors = [float(jnp.mean(jnp.sum(x**2, axis=1)))]
    for level in range(1, 4):
        recon = quantize.rq_decode(codes[:, :level], books[:level])
        errors.append(float(jnp.mean(jnp.sum((x - recon) ** 2, axis=1))))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    # Encoding the training points again gives their codes; the same key, the same codes.
    np.testing.assert_array_equal(np.asarray(quantize.rq_encode(x, books)), np.asarray(codes))
    _, again = quantize.residual_kmeans(jax.random.key(2), x, (16, 16, 16), iters=8)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(codes))
    with pytest.raises(ValueError, match="k must be in"):
        quantize.kmeans(jax.random.key(0), x[:3], 4)


def test_topk_codes_match_numpy():
    x = jax.random.normal(jax.random.key(3), (12, 5))
    codes = np.asarray(quantize.topk_codes(x, x, 3, exclude_self=True))
    a = np.asarray(x, np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    sim = a @ a.T
    np.fill_diagonal(sim, -np.inf)
    np.testing.assert_array_equal(codes, np.argsort(-sim, axis=1, kind="stable")[:, :3])
    assert not np.any(codes == np.arange(12)[:, None])


def test_info_nce_hand_computed_and_identical_embeddings():
    same = jnp.ones((6, 4))
    assert float(contrastive.info_nce(same, same)) == pytest.approx(math.log(6), rel=1e-6)
    q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    k = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    # cosines: row 0 (1, 1/sqrt2), row 1 (0, 1/sqrt2); tau = 1
    s = 1 / math.sqrt(2)
    l0 = -math.log(math.exp(1) / (math.exp(1) + math.exp(s)))
    l1 = -math.log(math.exp(s) / (math.exp(0) + math.exp(s)))
    got = contrastive.info_nce(q, k, temperature=1.0)
    assert float(got) == pytest.approx((l0 + l1) / 2, rel=1e-6)
    # keys -> queries: column j of the same logits
    c0 = -math.log(math.exp(1) / (math.exp(1) + math.exp(0)))
    c1 = -math.log(math.exp(s) / (math.exp(s) + math.exp(s)))
    sym = contrastive.info_nce(q, k, temperature=1.0, symmetric=True)
    assert float(sym) == pytest.approx(((l0 + l1) / 2 + (c0 + c1) / 2) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        contrastive.info_nce(q, k, temperature=0.0)
