"""QARM: Quantitative Alignment Multi-Modal Recommendation (Kuaishou, arXiv 2411.11739).

QARM fixes two defects of feeding *cached* multimodal embeddings (the frozen output of a
pre-trained multimodal model) to a ranking model:

* **representation unmatching** — the content model was trained for content tasks, so items
  that users treat alike need not be close in its space. Fix: *item alignment*, a contrastive
  fine-tuning of the content encoder on item pairs mined from user behaviour.
* **representation unlearning** — a frozen embedding cannot be updated by the ranking loss.
  Fix: *quantitative codes*, discrete semantic IDs derived from the aligned embeddings (a VQ
  code and an RQ code) that become ordinary sparse ID features with their own trainable
  embedding tables, trained end to end by the ranking loss.

The paper has no public code; this module is reconstructed from the abstract and write-ups.
The pipeline, stage by stage, with every choice the paper leaves open:

1. **Cached embeddings** (:func:`cached_embeddings`): an item's pre-extracted content
   ``[text_features || image_features]`` (the modalities the dataset has), standing in for
   the paper's frozen MLLM output. Row 0 (padding) is zero.
2. **Behaviour-mined pairs** (:func:`mine_pairs`, pure NumPy), from the TRAINING part of each
   user's sequence only: the last ``holdout=2`` items (leave-one-out validation and test
   targets, as in :func:`jaxpapers.data.multimodal.ranking_samples`) are cut off first, so no
   held-out event shapes the codes.

   * *User2Item*: every training positive after the first is paired with the most similar
     (cosine of the cached embeddings) of the user's ``window`` previous positives; ties go
     to the most recent one.
   * *Item2Item*: unordered item pairs that co-occur within ``window`` positions in the
     training sequences of at least ``min_count`` distinct users (a co-occurrence "Swing"
     count without the Swing weighting); of these frequent pairs each item keeps its single
     most similar partner (cosine; ties to the smaller id), and the kept pairs are
     deduplicated. "Keep the most similar" is read as *per item*, so that every frequently
     co-consumed item contributes one stable positive.

3. **Item alignment** (:class:`ItemAligner`, :func:`train_aligner`): the "content encoder"
   that is fine-tuned is a small MLP head (standardise -> Linear -> GELU -> Linear to
   ``align.dim``) on top of the cached embedding (the MLLM itself is not available; its
   output is). Both sides of a pair go through the same tower; the loss is the symmetric
   InfoNCE (:func:`jaxpapers.nn.contrastive.info_nce`, cosine, in-batch negatives,
   ``align.temperature``) over a batch of pairs drawn uniformly with replacement from the
   union of User2Item and Item2Item pairs (a pair repeated in a batch is its own false
   negative; rare at these sizes, accepted). The batch indices are drawn up front with
   NumPy from ``config.seed`` and the whole loop (``align.steps`` Adam steps) is ONE
   ``jax.jit`` over a ``lax.scan``: deterministic, a single compile, no random-number
   kernels inside the loop. The aligned embeddings of all items are
   L2-normalised (the contrastive loss only sees directions) and saved to
   ``<workdir>/qarm/aligned.npy``; a rerun with the same settings loads them instead of
   retraining (settings are fingerprinted in ``qarm/meta.json``; a mismatch is an error).

4. **Quantitative codes** (:func:`quantize_items`), from the aligned embeddings of the real
   items (for the ``qarm_no_align`` ablation: from the L2-normalised cached embeddings, so
   both start from unit vectors):

   * *VQ code*: the ``vq_k`` most cosine-similar OTHER items of the item pool (all real
     items; the paper's K=25), via :func:`jaxpapers.nn.quantize.topk_codes` computed in row
     chunks (``k + 1`` neighbours, the item itself removed) so that the ``I x I`` similarity
     matrix is never built whole.
   * *RQ code*: residual k-means (:func:`jaxpapers.nn.quantize.residual_kmeans`), one
     codebook per level (the paper: 6 levels; the synthetic default uses 3 x 64), the
     k-means initial centroids drawn from ``config.seed``: codes are deterministic for a
     seed and change with it.

   Saved to ``<workdir>/qarm/codes_<source>.npz`` (source: ``aligned`` or ``cached``).

5. **Ranker** (:class:`QARMRanker`): :class:`jaxpapers.recsys.ranking.DIN` over the history,
   trained end to end with BCE by :func:`jaxpapers.recsys.ranking.run`. Each item is
   ``Linear([ID embedding || content features])`` (no activation) to ``model.dim``; padded
   history positions are zeroed (so padding rows of every table get no gradient).
   The content features by ``model.name``:

   * ``qarm`` — :class:`QuantitativeCodes` from aligned embeddings: the mean of the item's
     VQ-code embeddings (a trainable table over pool item ids, separate from the ID table)
     concatenated with the sum of its RQ-level embeddings (one trainable table per level).
     The codes are ADDED as new sparse ID features beside the feature the production ranker
     already had, the frozen cached embedding (:class:`CodesBesideCached`; the paper adds
     its codes to Kuaishou's existing rankers). ``model.keep_cached=False`` keeps the codes
     alone — measured on the default data, codes alone tie with the cached embedding
     (AUC 0.747 vs 0.746, three seeds) while codes beside it beat it (0.757);
   * ``qarm_no_align`` — the same codes computed from the CACHED embeddings (ablation:
     alignment off);
   * ``cached`` — :class:`FrozenContent`: ``Linear(frozen cached embedding)``; the embedding
     is a :class:`jaxpapers.recsys.ranking.Frozen` variable, never in the optimizer
     (the paper's baseline);
   * ``aligned_cached`` — the same with the frozen ALIGNED embedding (separates alignment
     from the codes);
   * ``id`` — no content, ID embedding only (a floor).

   The codes and frozen embeddings are model state (``Frozen``), so checkpoints carry them;
   the model factory builds them as zeros of the right shape and :func:`run` fills them
   through the trainer's ``pretrained`` hook, which keeps large tables out of the compiled
   initialisation.

Embedding tables are initialised ``N(0, 0.05^2)`` (a choice; DIN's MLPs use Xavier).
:func:`run` adds code statistics to the final metrics (pair counts, alignment loss, VQ pool
coverage, per-level codebook utilisation and mean residual norm) and draws
``plots/rq_residuals.png``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from jaxpapers.core.sharding import logical
from jaxpapers.data import multimodal
from jaxpapers.nn import quantize
from jaxpapers.nn.contrastive import info_nce
from jaxpapers.recsys import ranking

MODEL_NAMES = ("qarm", "qarm_no_align", "cached", "aligned_cached", "id")
EMBEDDING_INIT_STD = 0.05
HOLDOUT = 2  # leave-one-out: the last two items of a sequence are validation and test targets
_VQ_CHUNK = 2048  # rows of the item-by-pool similarity matrix computed at once


# --------------------------------------------------------------------------- cached embeddings


def cached_embeddings(data) -> np.ndarray:
    """``[I+1, F]`` float32: ``[text_features || image_features]`` of the present modalities."""
    parts = []
    if "text" in data.modalities:
        parts.append(np.asarray(data.text_features, np.float32))
    if "image" in data.modalities:
        parts.append(np.asarray(data.image_features, np.float32))
    if not parts:
        raise ValueError(f"data {data.name!r} has no text or image modality: {data.modalities}")
    out = np.concatenate(parts, axis=1)
    out[0] = 0.0
    return out


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def normalized_rows(x: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit L2 norm (zero rows stay zero)."""
    return _unit_rows(x).astype(np.float32)


# --------------------------------------------------------------------------- pair mining


@dataclasses.dataclass(frozen=True)
class MinedPairs:
    """Behaviour-mined positive pairs of item ids (``[P, 2]`` int32 each)."""

    user2item: np.ndarray  # (training target, its most similar recent positive)
    item2item: np.ndarray  # (a, b), a < b: frequent co-occurrence, most similar partner

    def all(self) -> np.ndarray:
        return np.concatenate([self.user2item, self.item2item], axis=0)


def train_parts(sequences: Sequence[np.ndarray], holdout: int = HOLDOUT) -> list[np.ndarray]:
    """Each sequence without its last ``holdout`` items (the held-out targets)."""
    if holdout < 0:
        raise ValueError(f"holdout must be >= 0, got {holdout}")
    return [np.asarray(s)[: len(s) - holdout] if holdout else np.asarray(s) for s in sequences]


def _padded_chunks(
    parts: Sequence[np.ndarray], row_cost: int, budget: int
) -> Iterator[tuple[int, np.ndarray]]:
    """``(first user, right-padded [n, width] int64)`` blocks of consecutive users, each with
    ``n * width * row_cost <= budget`` (at least one user per block)."""
    lo = 0
    while lo < len(parts):
        hi, width = lo, 1
        while hi < len(parts):
            w = max(width, len(parts[hi]))
            if hi > lo and (hi + 1 - lo) * w * row_cost > budget:
                break
            hi, width = hi + 1, w
        block = np.zeros((hi - lo, width), np.int64)
        for row, p in enumerate(parts[lo:hi]):
            block[row, : len(p)] = p
        yield lo, block
        lo = hi


def mine_pairs(
    sequences: Sequence[np.ndarray],
    embeddings: np.ndarray,
    *,
    window: int,
    min_count: int,
    holdout: int = HOLDOUT,
    budget: int = 2**24,
) -> MinedPairs:
    """User2Item and Item2Item pairs from the training part of ``sequences``.

    Args:
      sequences: per user, item ids (1..I) in time order; the last ``holdout`` are held out.
      embeddings: ``[I+1, F]`` cached embeddings (row 0 = padding) for the cosine.
      window: how many previous positives a target looks back at (User2Item) and the largest
        position gap of a co-occurrence (Item2Item).
      min_count: distinct users a co-occurring pair needs to count as Item2Item.
      holdout: items cut off the end of each sequence before mining.
      budget: float32 elements of gathered embeddings held at once (users go in blocks).

    Returns:
      :class:`MinedPairs`; User2Item in (user, time) order, Item2Item sorted.
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be [num_items + 1, dim], got {embeddings.shape}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    num_items = embeddings.shape[0] - 1
    parts = train_parts(sequences, holdout)
    for p in parts:
        if len(p) and (p.min() < 1 or p.max() > num_items):
            raise ValueError(
                f"item ids must be in [1, {num_items}] (embeddings has {num_items + 1} rows)"
            )
    base = num_items + 1
    if len(parts) * base * base >= 2**62:
        raise ValueError("too many users x items to key co-occurrences in int64")
    unit = _unit_rows(embeddings).astype(np.float32)
    unit[0] = 0.0

    u2i, keys = [], []
    for lo, m in _padded_chunks(parts, 2 * embeddings.shape[1], budget):
        width = m.shape[1]
        here = unit[m]  # [n, L, F]
        # User2Item: per target position t, the most similar of positions t-1 .. t-window.
        best_sim = np.full(m.shape, -np.inf, np.float32)
        partner = np.zeros_like(m)
        for d in range(1, min(window, width - 1) + 1):
            prev = np.pad(m, ((0, 0), (d, 0)))[:, :width]  # prev[:, t] = m[:, t - d]
            sim = np.einsum("nlf,nlf->nl", here, unit[prev])
            better = (prev != 0) & (m != 0) & (sim > best_sim)  # strict: the most recent wins ties
            best_sim = np.where(better, sim, best_sim)
            partner = np.where(better, prev, partner)
            # Item2Item keys: unordered pairs d positions apart, with their user.
            a, b = m[:, :-d], m[:, d:]
            ok = (a != 0) & (b != 0) & (a != b)
            users = np.broadcast_to(np.arange(lo, lo + len(m))[:, None], a.shape)[ok]
            pair = np.minimum(a, b)[ok] * base + np.maximum(a, b)[ok]
            keys.append(users * base * base + pair)
        has = partner != 0
        u2i.append(np.stack([m[has], partner[has]], axis=1))
    user2item = np.concatenate(u2i, axis=0) if u2i else np.zeros((0, 2), np.int64)

    # Item2Item: pairs of >= min_count distinct users; each item keeps its most similar one.
    item2item = np.zeros((0, 2), np.int64)
    if keys:
        per_user = np.unique(np.concatenate(keys)) % (base * base)  # one count per user
        pair_keys, counts = np.unique(per_user, return_counts=True)
        frequent = pair_keys[counts >= min_count]
        if frequent.size:
            a, b = np.divmod(frequent, base)
            sim = np.sum(unit[a] * unit[b], axis=1)
            item = np.concatenate([a, b])
            other = np.concatenate([b, a])
            s = np.concatenate([sim, sim])
            order = np.lexsort((other, -s, item))  # by item, then most similar, then id
            item, other = item[order], other[order]
            first = np.concatenate([[True], item[1:] != item[:-1]])
            kept = np.stack([np.minimum(item, other), np.maximum(item, other)], axis=1)[first]
            item2item = np.unique(kept, axis=0)
    return MinedPairs(user2item.astype(np.int32), item2item.astype(np.int32))


# --------------------------------------------------------------------------- item alignment


class ItemAligner(nnx.Module):
    """The fine-tuned content encoder head: standardise -> Linear -> GELU -> Linear.

    The per-feature mean/std of the cached embeddings are constants (``Frozen``).
    """

    def __init__(
        self,
        mean: np.ndarray,
        std: np.ndarray,
        *,
        hidden: int,
        dim: int,
        rngs: nnx.Rngs,
    ):
        in_dim = int(np.shape(mean)[-1])
        self.mean = ranking.Frozen(jnp.asarray(mean, jnp.float32))
        self.std = ranking.Frozen(jnp.asarray(std, jnp.float32))
        init = nnx.initializers.xavier_uniform()
        self.hidden = nnx.Linear(in_dim, hidden, kernel_init=init, rngs=rngs)
        self.out = nnx.Linear(hidden, dim, kernel_init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        z = (x - self.mean[...]) / self.std[...]
        return self.out(jax.nn.gelu(self.hidden(z)))


def train_aligner(
    seed: int,
    cached: np.ndarray,
    pairs: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    temperature: float,
    hidden: int,
    dim: int,
    learning_rate: float,
    rng_impl: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fits an :class:`ItemAligner` on ``pairs`` with symmetric InfoNCE.

    ``seed`` draws the initial weights (PRNG implementation ``rng_impl``; None: JAX's
    default) and, through NumPy, the batches: row indices into ``pairs``, uniform with
    replacement, drawn up front (``[steps, batch_size]``) so the compiled loop holds no
    random-number kernels (threefry in a scan took seconds to compile on a CPU).

    Returns:
      ``(aligned [I+1, dim] float32, L2-normalised with row 0 zero, losses [steps])``.
    """
    cached = np.asarray(cached, np.float32)
    pairs = np.asarray(pairs)
    if steps < 1 or batch_size < 2:
        raise ValueError(
            f"align.steps must be >= 1 and align.batch_size >= 2, got {steps}, {batch_size}"
        )
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
        raise ValueError(
            f"need a non-empty [P, 2] array of mined pairs, got shape {pairs.shape}; lower "
            "align.min_count or raise align.window"
        )
    batches = np.random.default_rng(seed).integers(0, len(pairs), (steps, batch_size))
    key = jax.random.key(seed, impl=rng_impl) if rng_impl else jax.random.key(seed)
    aligned, losses = _fit_aligner(
        key,
        jnp.asarray(cached),
        jnp.asarray(pairs[batches], jnp.int32),
        temperature=float(temperature),
        hidden=int(hidden),
        dim=int(dim),
        learning_rate=float(learning_rate),
    )
    return np.asarray(aligned, np.float32), np.asarray(losses, np.float32)


@functools.partial(jax.jit, static_argnames=("temperature", "hidden", "dim", "learning_rate"))
def _fit_aligner(
    key: jax.Array,
    x: jax.Array,
    batches: jax.Array,
    *,
    temperature: float,
    hidden: int,
    dim: int,
    learning_rate: float,
) -> tuple[jax.Array, jax.Array]:
    """Initialisation, the Adam loop over ``batches [steps, B, 2]`` and the final embedding,
    in one compiled program."""
    real = x[1:]
    aligner = ItemAligner(
        real.mean(axis=0),
        real.std(axis=0) + 1e-6,
        hidden=hidden,
        dim=dim,
        rngs=nnx.Rngs(params=key),
    )
    graphdef, params, rest = nnx.split(aligner, nnx.Param, ...)
    optimizer = optax.adam(learning_rate)

    def step(carry, batch):
        params, opt_state = carry

        def loss_fn(p):
            model = nnx.merge(graphdef, p, rest)
            q, v = model(x[batch[:, 0]]), model(x[batch[:, 1]])
            return info_nce(q, v, temperature=temperature, symmetric=True)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    carry = (params, optimizer.init(params))
    (params, _), losses = jax.lax.scan(step, carry, batches)
    out = nnx.merge(graphdef, params, rest)(x)
    out = out / jnp.maximum(jnp.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.at[0].set(0.0), losses


# --------------------------------------------------------------------------- codes


@dataclasses.dataclass(frozen=True)
class Codes:
    """Quantitative codes of every item (row 0 = padding, all zeros).

    Attributes:
      vq: ``[I+1, K]`` int32 pool item ids (1..I) of each item's ``K`` nearest other items.
      rq: ``[I+1, L]`` int32 codeword index per RQ level.
      rq_sizes: codebook size of each level.
      rq_codebooks: ``L`` arrays ``[rq_sizes[l], d]``.
      residual_norms: ``[L+1]`` mean L2 norm of what is left after ``0..L`` levels (entry 0
        is the embedding itself), over the real items.
    """

    vq: np.ndarray
    rq: np.ndarray
    rq_sizes: tuple[int, ...]
    rq_codebooks: tuple[np.ndarray, ...]
    residual_norms: np.ndarray

    def stats(self) -> dict[str, float]:
        """VQ pool coverage, and utilisation and mean residual norm of every RQ level."""
        out = {"vq_pool_coverage": float(np.unique(self.vq[1:]).size / (self.vq.shape[0] - 1))}
        for level, size in enumerate(self.rq_sizes):
            out[f"rq_utilisation_l{level}"] = float(np.unique(self.rq[1:, level]).size / size)
        for level, norm in enumerate(self.residual_norms):
            out[f"rq_residual_l{level}"] = float(norm)
        return out

    def save(self, path: str) -> None:
        arrays = {f"codebook_{i}": c for i, c in enumerate(self.rq_codebooks)}
        np.savez(path, vq=self.vq, rq=self.rq, residual_norms=self.residual_norms, **arrays)

    @classmethod
    def load(cls, path: str) -> Codes:
        with np.load(path) as f:
            books = tuple(f[f"codebook_{i}"] for i in range(f["rq"].shape[1]))
            return cls(
                vq=f["vq"],
                rq=f["rq"],
                rq_sizes=tuple(int(b.shape[0]) for b in books),
                rq_codebooks=books,
                residual_norms=f["residual_norms"],
            )


@functools.partial(jax.jit, static_argnames=("k",))
def _topk_chunk(x: jax.Array, pool: jax.Array, k: int) -> jax.Array:
    return quantize.topk_codes(x, pool, k)


_residual_kmeans = jax.jit(quantize.residual_kmeans, static_argnames=("levels", "iters"))


def vq_codes(embeddings: np.ndarray, k: int, *, chunk: int = _VQ_CHUNK) -> np.ndarray:
    """``[N, k]`` 0-based indices of each row's ``k`` most cosine-similar OTHER rows.

    Same answer as ``topk_codes(x, x, k, exclude_self=True)`` without the ``N x N`` matrix:
    ``k + 1`` neighbours per row chunk, then the row itself (or, if a tie pushed it out, the
    last neighbour) is dropped.
    """
    x = jnp.asarray(embeddings, jnp.float32)
    n = x.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"codes.vq_k must be in [1, {n - 1}] (items - 1), got {k}")
    chunk = min(chunk, n)
    out = []
    for lo in range(0, n, chunk):
        rows = x[lo : lo + chunk]
        size = rows.shape[0]
        if size < chunk:  # one compiled shape for every chunk
            rows = jnp.pad(rows, ((0, chunk - size), (0, 0)))
        cand = np.asarray(_topk_chunk(rows, x, k + 1))[:size]
        is_self = cand == np.arange(lo, lo + size)[:, None]
        keep = ~is_self
        keep[~is_self.any(axis=1), -1] = False
        out.append(cand[keep].reshape(size, k))
    return np.concatenate(out, axis=0).astype(np.int32)


def residual_norms(x: np.ndarray, codebooks: Sequence[np.ndarray], codes: np.ndarray) -> np.ndarray:
    """``[L+1]`` mean norm of the residual after ``0..L`` levels (float64)."""
    residual = np.asarray(x, np.float64)
    norms = [np.linalg.norm(residual, axis=1).mean()]
    for level, book in enumerate(codebooks):
        residual = residual - np.asarray(book, np.float64)[codes[:, level]]
        norms.append(np.linalg.norm(residual, axis=1).mean())
    return np.asarray(norms)


def quantize_items(
    embeddings: np.ndarray, *, vq_k: int, rq_levels: Sequence[int], kmeans_iters: int, seed: int
) -> Codes:
    """VQ and RQ codes of the real items of ``embeddings`` (``[I+1, d]``, row 0 padding)."""
    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be [num_items + 1, dim], got {embeddings.shape}")
    real = embeddings[1:]
    n = real.shape[0]
    levels = tuple(int(s) for s in rq_levels)
    if not levels or min(levels) < 1 or max(levels) > n:
        raise ValueError(
            f"codes.rq_levels must be a non-empty list of codebook sizes in [1, {n}] (the number "
            f"of items), got {tuple(rq_levels)}"
        )
    if kmeans_iters < 1:
        raise ValueError(f"codes.kmeans_iters must be >= 1, got {kmeans_iters}")
    vq = vq_codes(real, vq_k) + 1  # pool index -> item id
    books, rq = _residual_kmeans(
        jax.random.key(seed), jnp.asarray(real), levels=levels, iters=int(kmeans_iters)
    )
    books = tuple(np.asarray(b, np.float32) for b in books)
    rq = np.asarray(rq, np.int32)
    return Codes(
        vq=np.concatenate([np.zeros((1, vq_k), np.int32), vq], axis=0),
        rq=np.concatenate([np.zeros((1, len(levels)), np.int32), rq], axis=0),
        rq_sizes=levels,
        rq_codebooks=books,
        residual_norms=residual_norms(real, books, rq),
    )


# --------------------------------------------------------------------------- ranker


def _constant(x: np.ndarray | jax.ShapeDtypeStruct, dtype) -> jax.Array:
    """An array from ``x``, or zeros of its shape when ``x`` is a ``ShapeDtypeStruct``."""
    if isinstance(x, jax.ShapeDtypeStruct):
        return jnp.zeros(x.shape, dtype)
    return jnp.asarray(x, dtype)


def _embed(rows: int, dim: int, rngs: nnx.Rngs) -> nnx.Embed:
    init = logical(nnx.initializers.normal(EMBEDDING_INIT_STD), "vocab", "embed")
    return nnx.Embed(rows, dim, embedding_init=init, rngs=rngs)


class QuantitativeCodes(nnx.Module):
    """Codes as sparse ID features: ids ``[...]`` -> ``[..., 2 * dim]``.

    ``[mean_k vq_table[vq[id, k]] || sum_l rq_tables[l][rq[id, l]]]``; the code arrays are
    ``Frozen`` (constants), the tables trainable.
    """

    def __init__(
        self,
        vq: np.ndarray | jax.ShapeDtypeStruct,
        rq: np.ndarray | jax.ShapeDtypeStruct,
        rq_sizes: Sequence[int],
        dim: int,
        *,
        rngs: nnx.Rngs,
    ):
        if len(vq.shape) != 2 or len(rq.shape) != 2 or rq.shape[1] != len(rq_sizes):
            raise ValueError(
                f"vq must be [I+1, K] and rq [I+1, {len(rq_sizes)}], got {vq.shape}, {rq.shape}"
            )
        self.vq = ranking.Frozen(_constant(vq, jnp.int32))
        self.rq = ranking.Frozen(_constant(rq, jnp.int32))
        self.vq_table = _embed(vq.shape[0], dim, rngs)  # over pool item ids (0 unused)
        self.rq_tables = nnx.List([_embed(int(s), dim, rngs) for s in rq_sizes])
        self.out_dim = 2 * dim

    def __call__(self, ids: jax.Array) -> jax.Array:
        vq = self.vq_table(self.vq[...][ids]).mean(axis=-2)
        codes = self.rq[...][ids]
        rq = sum(table(codes[..., level]) for level, table in enumerate(self.rq_tables))
        return jnp.concatenate([vq, rq], axis=-1)


class FrozenContent(nnx.Module):
    """``Linear(frozen embedding[id])``: the cached-embedding baseline's content feature."""

    def __init__(self, embeddings: np.ndarray | jax.ShapeDtypeStruct, dim: int, *, rngs):
        if len(embeddings.shape) != 2:
            raise ValueError(f"embeddings must be [I+1, F], got {embeddings.shape}")
        self.embeddings = ranking.Frozen(_constant(embeddings, jnp.float32))
        self.proj = nnx.Linear(
            embeddings.shape[1],
            dim,
            kernel_init=logical(nnx.initializers.xavier_uniform(), "embed", "mlp"),
            rngs=rngs,
        )
        self.out_dim = dim

    def __call__(self, ids: jax.Array) -> jax.Array:
        return self.proj(self.embeddings[...][ids])


class CodesBesideCached(nnx.Module):
    """``[codes(id) || Linear(frozen cached embedding[id])]``: codes added as new features."""

    def __init__(self, codes: QuantitativeCodes, cached: FrozenContent):
        self.codes = codes
        self.cached = cached
        self.out_dim = codes.out_dim + cached.out_dim

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.concatenate([self.codes(ids), self.cached(ids)], axis=-1)


class QARMRanker(nnx.Module):
    """DIN over items represented as ``Linear([ID embedding || content(id)])``."""

    def __init__(
        self,
        num_items: int,
        content: nnx.Module | None,
        *,
        dim: int,
        id_dim: int,
        hidden: Sequence[int],
        attention_hidden: Sequence[int],
        rngs: nnx.Rngs,
    ):
        self.id_embed = _embed(num_items + 1, id_dim, rngs)
        self.content = content
        in_dim = id_dim + (content.out_dim if content is not None else 0)
        self.project = nnx.Linear(
            in_dim,
            dim,
            kernel_init=logical(nnx.initializers.xavier_uniform(), "embed", "mlp"),
            rngs=rngs,
        )
        self.din = ranking.DIN(
            dim, hidden=tuple(hidden), attention_hidden=tuple(attention_hidden), rngs=rngs
        )

    def item(self, ids: jax.Array) -> jax.Array:
        """``[..., dim]`` representation of item ids; padding (0) -> zeros."""
        parts = [self.id_embed(ids)]
        if self.content is not None:
            parts.append(self.content(ids))
        x = self.project(jnp.concatenate(parts, axis=-1))
        return x * (ids != 0)[..., None].astype(x.dtype)

    def __call__(self, batch: Mapping[str, jax.Array], *, deterministic: bool = True):
        history = batch["history"]
        logits = self.din(
            self.item(history),
            history != 0,
            self.item(batch["target"]),
            deterministic=deterministic,
        )
        return logits, {}


# --------------------------------------------------------------------------- experiment


def _ranker(cfg, num_items: int, content, rngs: nnx.Rngs) -> QARMRanker:
    return QARMRanker(
        num_items,
        content,
        dim=cfg.dim,
        id_dim=cfg.id_dim,
        hidden=tuple(cfg.hidden),
        attention_hidden=tuple(cfg.attention_hidden),
        rngs=rngs,
    )


def _spec(x: np.ndarray) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(x.shape, x.dtype)


def make_factory(
    name: str,
    *,
    cached: np.ndarray,
    aligned: np.ndarray | None,
    codes: Codes | None,
    keep_cached: bool = False,
) -> tuple[Callable[[Any, Any, nnx.Rngs], nnx.Module], dict[tuple[str, ...], np.ndarray]]:
    """``(model_factory, frozen values by state path)`` for ``model.name``.

    The factory builds the ``Frozen`` arrays as zeros of the right shape; the values go in
    through :func:`fill_frozen` (the trainer's ``pretrained`` hook).
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"model.name must be one of {MODEL_NAMES}, got {name!r}")
    num_items = cached.shape[0] - 1
    values: dict[tuple[str, ...], np.ndarray] = {}
    if name in ("qarm", "qarm_no_align"):
        if codes is None:
            raise ValueError(f"model {name!r} needs codes")
        values = {("content", "vq"): codes.vq, ("content", "rq"): codes.rq}

        def code_features(cfg, rngs):
            return QuantitativeCodes(
                _spec(codes.vq), _spec(codes.rq), codes.rq_sizes, cfg.code_dim, rngs=rngs
            )

        def content(cfg, rngs):
            if not keep_cached:
                return code_features(cfg, rngs)
            return CodesBesideCached(
                code_features(cfg, rngs), FrozenContent(_spec(cached), cfg.code_dim, rngs=rngs)
            )

        if keep_cached:
            values = {
                ("content", "codes", "vq"): codes.vq,
                ("content", "codes", "rq"): codes.rq,
                ("content", "cached", "embeddings"): cached,
            }
    elif name in ("cached", "aligned_cached"):
        table = cached if name == "cached" else aligned
        if table is None:
            raise ValueError(f"model {name!r} needs aligned embeddings")
        values = {("content", "embeddings"): table}

        def content(cfg, rngs):
            return FrozenContent(_spec(table), cfg.code_dim, rngs=rngs)
    else:

        def content(cfg, rngs):
            del cfg, rngs
            return None

    def factory(cfg, data, rngs):
        if data is not None and data.num_items != num_items:
            raise ValueError(f"data has {data.num_items} items, the codes {num_items}")
        return _ranker(cfg, num_items, content(cfg, rngs), rngs)

    return factory, values


def fill_frozen(values: Mapping[tuple[str, ...], np.ndarray]) -> Callable[[Any], Any]:
    """A ``pretrained`` hook that writes ``values`` into the model's ``Frozen`` leaves."""

    def pretrained(state):
        seen = set()

        def put(path, leaf):
            keys = tuple(str(p.key) for p in path if isinstance(p, jax.tree_util.DictKey))
            if keys[:1] == ("model",) and keys[1:] in values:
                seen.add(keys[1:])
                new = values[keys[1:]]
                if new.shape != leaf.shape:
                    raise ValueError(f"{keys}: shape {new.shape} != {leaf.shape}")
                return jnp.asarray(new, leaf.dtype)
            return leaf

        out = jax.tree_util.tree_map_with_path(put, state)
        missing = set(values) - seen
        if missing:
            raise ValueError(f"no model state at {sorted(missing)}")
        return out

    return pretrained


def _fingerprint(config) -> dict:
    return {
        "seed": int(config.seed),
        "data": json.loads(config.data.to_json_best_effort(sort_keys=True)),
        "align": json.loads(config.align.to_json_best_effort(sort_keys=True)),
        "codes": json.loads(config.codes.to_json_best_effort(sort_keys=True)),
    }


def check_meta(workdir: str, config) -> str:
    """``<workdir>/qarm``, after checking its stage outputs were made with these settings."""
    stage_dir = os.path.join(workdir, "qarm")
    os.makedirs(stage_dir, exist_ok=True)
    path = os.path.join(stage_dir, "meta.json")
    meta = _fingerprint(config)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
        if stored != meta:
            raise ValueError(
                f"{stage_dir} holds alignment/codes made with other data/align/codes/seed "
                f"settings ({hashlib.sha1(json.dumps(stored).encode()).hexdigest()[:8]}); use a "
                "new --workdir"
            )
    else:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
    return stage_dir


def align_stage(config, data, cached: np.ndarray, stage_dir: str) -> tuple[np.ndarray, dict]:
    """Stages 2-3: mine pairs, fit the aligner; loads ``aligned.npy`` when it exists."""
    path = os.path.join(stage_dir, "aligned.npy")
    stats_path = os.path.join(stage_dir, "align_stats.json")
    if os.path.exists(path) and os.path.exists(stats_path):
        logging.info("loading aligned embeddings from %s", path)
        with open(stats_path, encoding="utf-8") as f:
            return np.load(path), json.load(f)
    a = config.align
    pairs = mine_pairs(data.sequences, cached, window=a.window, min_count=a.min_count)
    aligned, losses = train_aligner(
        int(config.seed),
        cached,
        pairs.all(),
        steps=a.steps,
        batch_size=a.batch_size,
        temperature=a.temperature,
        hidden=a.hidden,
        dim=a.dim,
        learning_rate=a.learning_rate,
        rng_impl=config.get("rng_impl") or None,
    )
    tail = max(1, len(losses) // 10)
    stats = {
        "num_user2item": len(pairs.user2item),
        "num_item2item": len(pairs.item2item),
        "align_loss_first": float(losses[:tail].mean()),
        "align_loss_last": float(losses[-tail:].mean()),
    }
    logging.info("item alignment: %s", stats)
    np.save(path, aligned)
    with open(stats_path, "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2)
    return aligned, stats


def codes_stage(config, embeddings: np.ndarray, source: str, stage_dir: str) -> Codes:
    """Stage 4: VQ and RQ codes of ``embeddings``; loads ``codes_<source>.npz`` if present."""
    path = os.path.join(stage_dir, f"codes_{source}.npz")
    if os.path.exists(path):
        logging.info("loading codes from %s", path)
        return Codes.load(path)
    c = config.codes
    codes = quantize_items(
        embeddings,
        vq_k=c.vq_k,
        rq_levels=tuple(c.rq_levels),
        kmeans_iters=c.kmeans_iters,
        seed=int(config.seed),
    )
    codes.save(path)
    return codes


def plot_residuals(codes: Codes, path: str, title: str) -> str:
    """``plots/rq_residuals.png``: mean residual norm after 0..L RQ levels."""
    from matplotlib.backends.backend_agg import (  # pylint: disable=g-import-not-at-top
        FigureCanvasAgg,
    )
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

    fig = Figure(figsize=(5, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    levels = np.arange(len(codes.residual_norms))
    ax.plot(levels, codes.residual_norms, marker="o")
    ax.set_xticks(levels)
    ax.set_xlabel("RQ levels applied")
    ax.set_ylabel("mean residual L2 norm")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def validate(config) -> None:
    """Raises ``ValueError`` for settings the stages cannot use (before any work)."""
    name = config.model.name
    if name not in MODEL_NAMES:
        raise ValueError(f"model.name must be one of {MODEL_NAMES}, got {name!r}")
    a, c = config.align, config.codes
    checks = [
        (a.steps >= 1, f"align.steps must be >= 1, got {a.steps}"),
        (a.batch_size >= 2, f"align.batch_size must be >= 2, got {a.batch_size}"),
        (a.temperature > 0, f"align.temperature must be > 0, got {a.temperature}"),
        (a.window >= 1, f"align.window must be >= 1, got {a.window}"),
        (a.min_count >= 1, f"align.min_count must be >= 1, got {a.min_count}"),
        (a.dim >= 1 and a.hidden >= 1, f"align.dim/hidden must be >= 1: {a.dim}, {a.hidden}"),
        (c.vq_k >= 1, f"codes.vq_k must be >= 1, got {c.vq_k}"),
        (
            len(c.rq_levels) >= 1 and min(c.rq_levels) >= 1,
            f"codes.rq_levels must be a non-empty list of sizes >= 1, got {tuple(c.rq_levels)}",
        ),
        (c.kmeans_iters >= 1, f"codes.kmeans_iters must be >= 1, got {c.kmeans_iters}"),
        (
            min(config.model.dim, config.model.id_dim, config.model.code_dim) >= 1,
            "model.dim, model.id_dim and model.code_dim must be >= 1",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def run(config, workdir: str) -> dict:
    """Registry entry: QARM's stages, then the DIN ranker named by ``config.model.name``."""
    validate(config)
    name = config.model.name
    data = multimodal.load(config.data)
    cached = cached_embeddings(data)
    extra: dict[str, float] = {}
    aligned = codes = None
    if name != "id" and name != "cached":
        stage_dir = check_meta(workdir, config)
        if name in ("qarm", "aligned_cached"):
            aligned, stats = align_stage(config, data, cached, stage_dir)
            extra.update(stats)
        if name in ("qarm", "qarm_no_align"):
            source = "aligned" if name == "qarm" else "cached"
            source_embeddings = aligned if name == "qarm" else normalized_rows(cached)
            codes = codes_stage(config, source_embeddings, source, stage_dir)
            extra.update(codes.stats())
            plot_residuals(
                codes,
                os.path.join(workdir, "plots", "rq_residuals.png"),
                f"RQ residuals ({source} embeddings, {data.name})",
            )
    factory, values = make_factory(
        name, cached=cached, aligned=aligned, codes=codes, keep_cached=config.model.keep_cached
    )
    final = ranking.run(
        config,
        workdir,
        data,
        factory,
        pretrained=fill_frozen(values) if values else None,
    )
    final.update(extra)
    return final
