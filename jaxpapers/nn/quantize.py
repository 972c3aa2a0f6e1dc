"""Codebook quantisers for content embeddings: k-means, residual k-means (RQ) and top-K
pool codes (VQ), as pure, jittable functions.

These are the shared pieces QARM-style recommenders use to turn frozen content embeddings
into discrete, trainable ID features (issue 4):

* :func:`kmeans` — Lloyd's algorithm from ``k`` distinct data points chosen by ``key``;
  a cluster that empties keeps its previous centroid (no NaN, shapes static).
* :func:`residual_kmeans` — one k-means per level on what the previous levels left
  (residual quantisation). With ``iters >= 1`` each centroid ends as the mean of a set of
  residuals and every point takes its nearest centroid, so the mean squared residual never
  grows from one level to the next (the mean beats the zero vector on its own set).
* :func:`rq_encode` / :func:`rq_decode` — greedy level-by-level nearest-centroid codes for
  new embeddings, and their reconstruction (the sum of the chosen centroids).
* :func:`topk_codes` — the ``k`` most similar items of a reference pool (cosine), QARM's
  "VQ" codes: an item is described by the ids of its nearest pool items.

Distances use ``precision=HIGHEST`` matmuls so that codes agree across backends. Everything
takes explicit keys; the same key gives the same codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


def _check_points(x: jax.Array, name: str = "x") -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must be [num_points, dim], got shape {x.shape}")


def squared_distances(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """``[N, K]`` squared Euclidean distances (``|x|^2 - 2 x.c + |c|^2``, clipped at 0)."""
    cross = jnp.matmul(x, centroids.T, precision=HIGHEST)
    d = jnp.sum(x * x, axis=1, keepdims=True) - 2.0 * cross + jnp.sum(centroids**2, axis=1)
    return jnp.maximum(d, 0.0)


def assign(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """Index of the nearest centroid of each row (ties to the lowest index)."""
    return jnp.argmin(squared_distances(x, centroids), axis=1).astype(jnp.int32)


def kmeans(key: jax.Array, x: jax.Array, k: int, *, iters: int = 20) -> tuple[jax.Array, jax.Array]:
    """Lloyd's k-means.

    Args:
      key: PRNG key choosing the ``k`` initial centroids among the rows of ``x``.
      x: ``[N, D]`` points, ``N >= k``.
      k: number of clusters.
      iters: Lloyd iterations (fixed, so the function jits with static shapes).

    Returns:
      ``(centroids [k, D], codes [N])``.
    """
    _check_points(x)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the number of points), got {k}")
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    init = x[jax.random.choice(key, n, (k,), replace=False)]

    def step(centroids, _):
        codes = assign(x, centroids)
        one_hot = jax.nn.one_hot(codes, k, dtype=x.dtype)
        counts = one_hot.sum(axis=0)
        sums = jnp.matmul(one_hot.T, x, precision=HIGHEST)
        updated = sums / jnp.maximum(counts, 1.0)[:, None]
        return jnp.where((counts > 0)[:, None], updated, centroids), None

    centroids, _ = jax.lax.scan(step, init, None, length=iters)
    return centroids, assign(x, centroids)


def residual_kmeans(
    key: jax.Array, x: jax.Array, levels: Sequence[int], *, iters: int = 20
) -> tuple[list[jax.Array], jax.Array]:
    """Residual k-means: level ``l`` clusters what levels ``< l`` left unexplained.

    Args:
      key: PRNG key (split once per level).
      x: ``[N, D]`` embeddings.
      levels: codebook size of each level, e.g. ``(256, 256, 256)``.
      iters: Lloyd iterations per level.

    Returns:
      ``(codebooks, codes)``: one ``[levels[l], D]`` array per level and ``[N, L]`` codes.
    """
    _check_points(x)
    if not levels:
        raise ValueError("levels must name at least one codebook size")
    residual = x
    codebooks, codes = [], []
    for level_key, k in zip(jax.random.split(key, len(levels)), levels):
        centroids, code = kmeans(level_key, residual, int(k), iters=iters)
        codebooks.append(centroids)
        codes.append(code)
        residual = residual - centroids[code]
    return codebooks, jnp.stack(codes, axis=1)


def rq_encode(x: jax.Array, codebooks: Sequence[jax.Array]) -> jax.Array:
    """``[N, L]`` greedy residual codes of ``x`` against fitted ``codebooks``."""
    _check_points(x)
    residual, codes = x, []
    for centroids in codebooks:
        code = assign(residual, centroids)
        codes.append(code)
        residual = residual - centroids[code]
    return jnp.stack(codes, axis=1)


def rq_decode(codes: jax.Array, codebooks: Sequence[jax.Array]) -> jax.Array:
    """The reconstruction ``sum_l codebooks[l][codes[:, l]]``."""
    if codes.ndim != 2 or codes.shape[1] != len(codebooks):
        raise ValueError(f"codes must be [N, {len(codebooks)}], got shape {codes.shape}")
    return sum(c[codes[:, level]] for level, c in enumerate(codebooks))


def topk_codes(x: jax.Array, pool: jax.Array, k: int, *, exclude_self: bool = False) -> jax.Array:
    """``[N, k]`` indices of the ``k`` pool rows most cosine-similar to each row of ``x``.

    With ``exclude_self`` (``x`` is the pool itself), row ``i`` never lists ``i``.
    Ties go to the lowest index (``jax.lax.top_k``).
    """
    _check_points(x)
    _check_points(pool, "pool")
    limit = pool.shape[0] - (1 if exclude_self else 0)
    if not 1 <= k <= limit:
        raise ValueError(f"k must be in [1, {limit}], got {k}")
    if exclude_self and x.shape[0] != pool.shape[0]:
        raise ValueError("exclude_self needs x to be the pool itself")

    def unit(a):
        return a / jnp.maximum(jnp.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    sim = jnp.matmul(unit(x), unit(pool).T, precision=HIGHEST)
    if exclude_self:
        sim = jnp.where(jnp.eye(x.shape[0], dtype=bool), -jnp.inf, sim)
    return jax.lax.top_k(sim, k)[1].astype(jnp.int32)
