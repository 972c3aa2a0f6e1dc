"""FGCNN: Feature Generation by Convolutional Neural Network for CTR prediction.

Liu, Tang, Chen, Yu, Guo, Zhang. WWW 2019 (arXiv:1904.04447). Facts about shapes
and defaults were read from the open-benchmark implementation (FuxiCTR
``model_zoo/FGCNN``, BARS Criteo_x4/Avazu_x4 logs) and DeepCTR's ``FGCNNLayer``.

The model has two parts, named as in the paper:

* **Feature Generation** (:class:`FeatureGeneration`). The raw field embeddings
  ``E`` of shape ``(batch, n_f, k)`` are an image of height ``n_f``, width ``k``
  and one channel. Each stage ``i`` is a *Convolutional Layer* (kernel
  ``h_i x 1`` over neighbouring fields, ``same`` padding, ``c_i`` channels, tanh;
  FuxiCTR adds BatchNorm before tanh, ``conv_batch_norm``), a *Pooling Layer*
  (max over ``p_i x 1``) and a *Recombination Layer* (flatten -> dense ->
  tanh) that emits ``H_i * r_i`` new feature embeddings of size ``k`` (``H_i``
  is the pooled height). The next stage convolves the pooled maps (not the
  recombined features).
* **Deep Classifier** (:class:`InnerProductClassifier`): IPNN over the
  ``N = n_f + sum_i H_i r_i`` original and generated fields — an MLP over
  ``[flattened embeddings || all N(N-1)/2 pairwise inner products]``.

Two embedding tables, one for feature generation and one for the classifier
(``share_embedding=False``, the paper's and FuxiCTR's default).

Deliberate choices where references differ or are silent:

* ``pooling="ceil"`` (FuxiCTR: ``H_i = ceil(H_{i-1} / p_i)``; 39 Criteo fields
  -> 114 new features with p=2, r=3) pads ``(-H) mod p`` rows of -inf at the *top*
  of the map, which is exactly FuxiCTR's ``MaxPool2d(padding=H % p)`` for p=2
  (the first window holds field 0 alone) and extends it to any ``p`` (FuxiCTR's
  formula is only valid for p <= 2). ``pooling="floor"`` is DeepCTR's valid
  pooling (``H_i = floor(H_{i-1} / p_i)``; 102 new features).
* Even kernel heights use XLA ``SAME`` padding (one more row below), keeping
  the height; PyTorch's symmetric padding would shrink it.
* The convolution over fields is computed as one matmul with the kernel's
  banded matrix on ``(batch, k, fields, channels)`` maps (:class:`FieldConv`):
  same parameters and outputs as a ``(h, 1)`` convolution, faster on CPU.
* No convolution bias when BatchNorm follows (FuxiCTR keeps one): BN cancels it,
  so its gradient is pure rounding noise, which Adam rescales into lr-sized
  steps; the running mean then chases that drift and eval-mode outputs depend
  on float reduction order (1 vs 8 devices differed by 4% in a toy test).
* Initialisation follows FuxiCTR: embeddings ~ N(0, 1e-4^2); dense kernels
  Xavier-normal with zero bias; convolutions LeCun-normal (Flax's default).
* The MLP emits a logit; the sigmoid lives in the loss/prediction.

:class:`IPNN` (the classifier alone on the raw embeddings) and
:class:`LogisticRegression` are the baselines; an FGCNN with zero stages *is*
an IPNN (same parameters, same outputs — tested).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.core.sharding import logical

EMBEDDING_INIT_STD = 1e-4
_POOLING = ("ceil", "floor")


# --------------------------------------------------------------------------- shapes


def pooled_height(height: int, pool: int, mode: str = "ceil") -> int:
    """Height after a ``pool x 1`` max-pool with stride ``pool``."""
    if mode not in _POOLING:
        raise ValueError(f"pooling must be one of {_POOLING}, got {mode!r}")
    return math.ceil(height / pool) if mode == "ceil" else height // pool


def generated_feature_counts(
    num_fields: int,
    pooling_sizes: Sequence[int],
    recombined_channels: Sequence[int],
    mode: str = "ceil",
) -> list[int]:
    """New features per stage: ``H_i * r_i`` with ``H_i`` the pooled height.

    >>> generated_feature_counts(39, [2, 2, 2, 2], [3, 3, 3, 3], "ceil")
    [60, 30, 15, 9]
    >>> sum(generated_feature_counts(39, [2, 2, 2, 2], [3, 3, 3, 3], "floor"))
    102
    """
    if len(pooling_sizes) != len(recombined_channels):
        raise ValueError("pooling_sizes and recombined_channels differ in length")
    counts, height = [], num_fields
    for pool, r in zip(pooling_sizes, recombined_channels):
        height = pooled_height(height, pool, mode)
        if height <= 0:
            raise ValueError(
                f"{num_fields} fields pooled by {list(pooling_sizes)} ({mode}) leave no rows; "
                "use fewer stages or smaller pooling sizes"
            )
        counts.append(height * r)
    return counts


def num_pairs(n: int) -> int:
    """Number of unordered field pairs, ``n (n - 1) / 2``."""
    return n * (n - 1) // 2


def _dense(in_features: int, out_features: int, rngs: nnx.Rngs, *, axes=("embed", "mlp")):
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=logical(nnx.initializers.xavier_normal(), *axes),
        bias_init=logical(nnx.initializers.zeros_init(), axes[1]),
        rngs=rngs,
    )


# --------------------------------------------------------------------------- layers


class FieldEmbedding(nnx.Module):
    """One table for all fields: ``ids (batch, n_f)`` -> ``(batch, n_f, k)``.

    Field ``f``'s ids ``0 .. vocab_sizes[f]-1`` are offset into one concatenated
    table (one gather instead of ``n_f``); rows are padded to a multiple of
    ``pad_rows_to`` so the table can shard over a ``model`` axis (logical axis
    ``vocab``).
    """

    def __init__(
        self, vocab_sizes: Sequence[int], dim: int, *, rngs: nnx.Rngs, pad_rows_to: int = 8
    ):
        if not vocab_sizes or min(vocab_sizes) <= 0:
            raise ValueError(f"vocab_sizes must be positive, got {list(vocab_sizes)}")
        self.num_fields = len(vocab_sizes)
        self.dim = dim
        self.offsets = nnx.Variable(  # constants, not trained
            jnp.asarray(np.concatenate([[0], np.cumsum(vocab_sizes)[:-1]]), jnp.int32)
        )
        rows = int(sum(vocab_sizes))
        rows += (-rows) % pad_rows_to
        self.table = nnx.Embed(
            rows,
            dim,
            embedding_init=logical(nnx.initializers.normal(EMBEDDING_INIT_STD), "vocab", "embed"),
            rngs=rngs,
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        return self.table(ids + self.offsets[...])

    def l2(self) -> jax.Array:
        """FuxiCTR's embedding regularizer term ``||W||^2 / 2`` (times lambda outside)."""
        return 0.5 * jnp.sum(jnp.square(self.table.embedding[...]))


class MLP(nnx.Module):
    """Dense -> [BatchNorm] -> ReLU -> [Dropout] per hidden layer, then one logit."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        *,
        rngs: nnx.Rngs,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ):
        dims = [in_features, *hidden]
        self.layers = nnx.List([_dense(a, b, rngs) for a, b in zip(dims[:-1], dims[1:])])
        self.norms = nnx.List([nnx.BatchNorm(b, rngs=rngs) for b in hidden] if batch_norm else [])
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None
        self.out = _dense(dims[-1], 1, rngs, axes=("mlp", None))

    def __call__(self, *parts: jax.Array) -> jax.Array:
        """Applies the MLP to the concatenation of ``parts`` (along the last axis).

        The first layer multiplies each part by its rows of the kernel and sums,
        which equals one dense layer over the concatenation without building it
        (on XLA:CPU the concatenation and its backward split cost ~10% of a small
        FGCNN step).
        """
        layers = [*self.layers, self.out]
        x = _dense_over_parts(layers[0], parts)
        for i, layer in enumerate(layers):
            if i:
                x = layer(x)
            if i < len(self.layers):
                if self.norms:
                    x = self.norms[i](x)
                x = jax.nn.relu(x)
                if self.dropout is not None:
                    x = self.dropout(x)
        return x[..., 0]


def _dense_over_parts(layer: nnx.Linear, parts: Sequence[jax.Array]) -> jax.Array:
    """``layer(concatenate(parts, -1))`` computed part by part."""
    kernel = layer.kernel[...]
    bounds = np.cumsum([0, *(p.shape[-1] for p in parts)])
    if bounds[-1] != kernel.shape[0]:
        raise ValueError(f"expected {kernel.shape[0]} input features, got {bounds[-1]}")
    x = layer.bias[...]
    for part, lo, hi in zip(parts, bounds[:-1], bounds[1:]):
        x = x + part @ kernel[lo:hi]
    return x


def inner_products(emb: jax.Array) -> jax.Array:
    """All pairwise inner products ``<e_i, e_j>``, ``i < j``, in row-major order.

    ``(batch, n, k) -> (batch, n (n - 1) / 2)``: one batched Gram matrix (a matmul)
    and a static gather of its strict upper triangle.
    """
    n = emb.shape[-2]
    gram = jnp.einsum("...ik,...jk->...ij", emb, emb)
    rows, cols = np.triu_indices(n, k=1)
    return gram[..., rows, cols]


class InnerProductClassifier(nnx.Module):
    """IPNN's classifier: MLP over ``[flatten(E) || inner products of E]`` -> logit."""

    def __init__(
        self,
        num_features: int,
        dim: int,
        hidden: Sequence[int],
        *,
        rngs: nnx.Rngs,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ):
        self.num_features = num_features
        self.mlp = MLP(
            num_features * dim + num_pairs(num_features),
            hidden,
            rngs=rngs,
            dropout=dropout,
            batch_norm=batch_norm,
        )

    def __call__(self, emb: jax.Array) -> jax.Array:
        return self.mlp(emb.reshape(emb.shape[0], -1), inner_products(emb))


def max_pool_fields(x: jax.Array, pool: int, mode: str = "ceil", axis: int = 1) -> jax.Array:
    """Max-pool over the field axis ``axis`` with window = stride = ``pool``.

    ``ceil`` pads ``(-height) mod pool`` rows of -inf on top (FuxiCTR for p=2);
    ``floor`` drops the last ``height mod pool`` rows (valid pooling, DeepCTR).
    Written as pad + reshape + an elementwise ``maximum`` over the ``pool``
    slices: on XLA:CPU, ``lax.reduce_window`` (gradient: select-and-scatter)
    and ``max`` over a reshaped axis (gradient: equality mask, count, divide)
    were each several times slower in a train step. Exactly tied maxima share
    the gradient (``jnp.maximum``'s rule) instead of one of them taking it.
    """
    if mode not in _POOLING:
        raise ValueError(f"pooling must be one of {_POOLING}, got {mode!r}")
    axis = axis % x.ndim
    height = x.shape[axis]
    if mode == "ceil":
        pad = [(0, 0)] * x.ndim
        pad[axis] = ((-height) % pool, 0)
        x = jnp.pad(x, pad, constant_values=-jnp.inf)
    else:
        x = jax.lax.slice_in_dim(x, 0, height - height % pool, axis=axis)
    shape = x.shape[:axis] + (x.shape[axis] // pool, pool) + x.shape[axis + 1 :]
    windows = x.reshape(shape)
    taps = [jax.lax.index_in_dim(windows, i, axis=axis + 1, keepdims=False) for i in range(pool)]
    return functools.reduce(jnp.maximum, taps)


def banded_kernel(kernel: jax.Array, num_fields: int) -> jax.Array:
    """The ``(F*c_in, F*c_out)`` matrix of a 'same' convolution over ``F`` fields.

    ``kernel`` is ``(h, c_in, c_out)``; tap ``t`` of output field ``g`` reads
    input field ``g + t - (h - 1) // 2`` (XLA's ``SAME`` padding; zero outside).
    """
    h, c_in, c_out = kernel.shape
    tap = np.arange(num_fields)[None, :] - np.arange(num_fields)[:, None] + (h - 1) // 2
    inside = (tap >= 0) & (tap < h)  # [g, f]
    band = kernel[np.clip(tap, 0, h - 1)] * inside[:, :, None, None]  # (g, f, c_in, c_out)
    return band.transpose(1, 2, 0, 3).reshape(num_fields * c_in, num_fields * c_out)


class FieldConv(nnx.Module):
    """FGCNN's Convolutional Layer: an ``h x 1`` convolution over neighbouring fields.

    Works on ``(batch, k, fields, channels)`` — the embedding axis ``k`` leading,
    so the field and channel axes are contiguous — and computes the convolution
    as ONE matmul with the banded (Toeplitz) matrix of the kernel
    (:func:`banded_kernel`). Same parameters (``h, c_in, c_out``) and same
    outputs as ``lax.conv`` with a ``(h, 1)`` kernel and ``SAME`` padding
    (tested), but on XLA:CPU it ran 2-3x faster for the multi-channel stages and
    needs no layout transposes; the band's zeros cost ``F/h`` times the direct
    FLOPs, which are cheap next to the classifier. Benchmarks count only the
    direct convolution's FLOPs.
    """

    def __init__(
        self, in_channels: int, out_channels: int, height: int, *, use_bias: bool, rngs: nnx.Rngs
    ):
        init = nnx.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)  # fan_in = h * c_in
        self.kernel = nnx.Param(init(rngs.params(), (height, in_channels, out_channels)))
        self.bias = nnx.Param(jnp.zeros((out_channels,))) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        *lead, fields, _ = x.shape
        band = banded_kernel(self.kernel[...], fields)
        y = x.reshape(-1, band.shape[0]) @ band
        y = y.reshape(*lead, fields, -1)
        return y if self.bias is None else y + self.bias[...]


class FeatureGeneration(nnx.Module):
    """CNN + recombination stages: ``(batch, n_f, k)`` -> ``(batch, sum H_i r_i, k)``.

    Internally the maps are ``(batch, k, height, channels)`` (see
    :class:`FieldConv`); BatchNorm normalises each channel over batch, height
    and ``k`` like PyTorch's ``BatchNorm2d``. The Recombination Layer flattens
    a stage's pooled maps and maps them densely to ``H_i * r_i`` features of
    size ``k`` — the flattening order differs from FuxiCTR's NCHW one only by a
    fixed permutation of the dense layer's inputs.
    """

    def __init__(
        self,
        num_fields: int,
        dim: int,
        *,
        channels: Sequence[int],
        kernel_heights: Sequence[int],
        pooling_sizes: Sequence[int],
        recombined_channels: Sequence[int],
        pooling: str = "ceil",
        batch_norm: bool = True,
        rngs: nnx.Rngs,
    ):
        lengths = {len(channels), len(kernel_heights), len(pooling_sizes), len(recombined_channels)}
        if len(lengths) != 1:
            raise ValueError(
                "channels, kernel_heights, pooling_sizes and recombined_channels must have the same "
                f"length, got {list(channels)}, {list(kernel_heights)}, {list(pooling_sizes)}, "
                f"{list(recombined_channels)}"
            )
        if min([*channels, *kernel_heights, *pooling_sizes, *recombined_channels], default=1) <= 0:
            raise ValueError(
                "FGCNN channel, kernel, pooling and recombination sizes must be positive"
            )
        self.num_generated = sum(  # also rejects pooling that leaves no rows
            generated_feature_counts(num_fields, pooling_sizes, recombined_channels, pooling)
        )
        self.dim = dim
        self.pooling = pooling
        self.pooling_sizes = tuple(pooling_sizes)
        convs, norms, recombinations = [], [], []
        height, in_ch = num_fields, 1
        for out_ch, kh, pool, r in zip(
            channels, kernel_heights, pooling_sizes, recombined_channels
        ):
            convs.append(FieldConv(in_ch, out_ch, kh, use_bias=not batch_norm, rngs=rngs))
            norms.append(nnx.BatchNorm(out_ch, rngs=rngs) if batch_norm else None)
            height = pooled_height(height, pool, pooling)
            recombinations.append(_dense(height * dim * out_ch, height * dim * r, rngs))
            in_ch = out_ch
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        self.recombinations = nnx.List(recombinations)

    def __call__(self, emb: jax.Array) -> jax.Array:
        batch = emb.shape[0]
        x = jnp.swapaxes(emb, 1, 2)[..., None]  # (batch, k, n_f, 1): one input channel
        new = []
        for conv, norm, pool, recombine in zip(
            self.convs, self.norms, self.pooling_sizes, self.recombinations
        ):
            x = conv(x)
            if norm is not None:
                x = norm(x)
            x = max_pool_fields(jnp.tanh(x), pool, self.pooling, axis=2)
            features = jnp.tanh(recombine(x.reshape(batch, -1)))
            new.append(features.reshape(batch, -1, self.dim))
        if not new:
            return jnp.zeros((batch, 0, self.dim), emb.dtype)
        return jnp.concatenate(new, axis=1)


# --------------------------------------------------------------------------- models


class FGCNN(nnx.Module):
    """Feature Generation (CNN) + Deep Classifier (IPNN) over original+new features."""

    def __init__(
        self,
        vocab_sizes: Sequence[int],
        *,
        embedding_dim: int = 10,
        channels: Sequence[int] = (14, 16, 18, 20),
        kernel_heights: Sequence[int] = (7, 7, 7, 7),
        pooling_sizes: Sequence[int] = (2, 2, 2, 2),
        recombined_channels: Sequence[int] = (2, 2, 2, 2),
        pooling: str = "ceil",
        conv_batch_norm: bool = True,
        share_embedding: bool = False,
        hidden: Sequence[int] = (4096, 2048, 1024, 512),
        dropout: float = 0.0,
        dnn_batch_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        n_f = len(vocab_sizes)
        self.embedding = FieldEmbedding(vocab_sizes, embedding_dim, rngs=rngs)
        self.generation = FeatureGeneration(
            n_f,
            embedding_dim,
            channels=channels,
            kernel_heights=kernel_heights,
            pooling_sizes=pooling_sizes,
            recombined_channels=recombined_channels,
            pooling=pooling,
            batch_norm=conv_batch_norm,
            rngs=rngs,
        )
        has_stages = bool(channels)
        self.generation_embedding = (
            FieldEmbedding(vocab_sizes, embedding_dim, rngs=rngs)
            if has_stages and not share_embedding
            else None
        )
        self.num_features = n_f + self.generation.num_generated
        self.classifier = InnerProductClassifier(
            self.num_features,
            embedding_dim,
            hidden,
            rngs=rngs,
            dropout=dropout,
            batch_norm=dnn_batch_norm,
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        emb = self.embedding(ids)
        source = emb if self.generation_embedding is None else self.generation_embedding(ids)
        combined = jnp.concatenate([emb, self.generation(source)], axis=1)
        return self.classifier(combined)

    def embedding_l2(self) -> jax.Array:
        total = self.embedding.l2()
        if self.generation_embedding is not None:
            total += self.generation_embedding.l2()
        return total


class IPNN(nnx.Module):
    """Product-based NN with inner products (Qu et al. 2016): FGCNN without generation."""

    def __init__(
        self,
        vocab_sizes: Sequence[int],
        *,
        embedding_dim: int = 10,
        hidden: Sequence[int] = (4096, 2048, 1024, 512),
        dropout: float = 0.0,
        dnn_batch_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        self.embedding = FieldEmbedding(vocab_sizes, embedding_dim, rngs=rngs)
        self.classifier = InnerProductClassifier(
            len(vocab_sizes),
            embedding_dim,
            hidden,
            rngs=rngs,
            dropout=dropout,
            batch_norm=dnn_batch_norm,
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        return self.classifier(self.embedding(ids))

    def embedding_l2(self) -> jax.Array:
        return self.embedding.l2()


class LogisticRegression(nnx.Module):
    """First-order baseline: ``logit = b + sum_f w_f[x_f]``."""

    def __init__(self, vocab_sizes: Sequence[int], *, rngs: nnx.Rngs):
        self.weights = FieldEmbedding(vocab_sizes, 1, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros(()))

    def __call__(self, ids: jax.Array) -> jax.Array:
        return self.weights(ids)[..., 0].sum(-1) + self.bias[...]

    def embedding_l2(self) -> jax.Array:
        return self.weights.l2()


# --------------------------------------------------------------------------- experiment


def _fgcnn(cfg, vocab_sizes, rngs):
    return FGCNN(
        vocab_sizes,
        embedding_dim=cfg.embedding_dim,
        channels=tuple(cfg.channels),
        kernel_heights=tuple(cfg.kernel_heights),
        pooling_sizes=tuple(cfg.pooling_sizes),
        recombined_channels=tuple(cfg.recombined_channels),
        pooling=cfg.pooling,
        conv_batch_norm=cfg.conv_batch_norm,
        share_embedding=cfg.share_embedding,
        hidden=tuple(cfg.hidden),
        dropout=cfg.dropout,
        dnn_batch_norm=cfg.dnn_batch_norm,
        rngs=rngs,
    )


def _ipnn(cfg, vocab_sizes, rngs):
    return IPNN(
        vocab_sizes,
        embedding_dim=cfg.embedding_dim,
        hidden=tuple(cfg.hidden),
        dropout=cfg.dropout,
        dnn_batch_norm=cfg.dnn_batch_norm,
        rngs=rngs,
    )


def _logistic_regression(cfg, vocab_sizes, rngs):
    del cfg
    return LogisticRegression(vocab_sizes, rngs=rngs)


MODELS = {"fgcnn": _fgcnn, "ipnn": _ipnn, "lr": _logistic_regression}


def run(config, workdir: str) -> dict:
    """Registry entry: trains ``config.model.name`` (fgcnn | ipnn | lr) on CTR data."""
    from jaxpapers.recsys import ctr  # pylint: disable=g-import-not-at-top

    return ctr.run(config, workdir, MODELS)
