"""Galerkin-style linear attention (softmax-free in the token axis), in Flax NNX.

Linear attention of the Galerkin type (Cao, "Choose a Transformer: Fourier or Galerkin",
NeurIPS 2021) replaces ``softmax(QKᵀ)V`` by ``Q (KᵀV) / N``: the ``(C, C)`` matrix ``KᵀV`` is
formed first, so the cost is linear in the number of tokens and there is no softmax over
tokens. This module follows the variant that Fisale uses (therontau0054/Fisale
``model/attention.py``: ``Attention(attn_type="linear", linear_type="galerkin")`` inside
``AttentionLayer(experts_num=0)``), read line by line:

* :func:`galerkin_attention` — on head-split arrays ``q (..., Nq, H, C)``, ``k``/``v``
  ``(..., Nk, H, C)``::

      q, k = feature_map(q), feature_map(k)        # softmax over the C channels of a head
      out  = q @ (kᵀ @ v) / Nq                     # per head; Nq = number of *queries*

  Fisale's "galerkin" applies a softmax over each head's channels to q and k (so every
  row of q and k is a probability vector) and divides by the *query* count, also when the
  queries and keys differ in number (its solid/fluid updates have 2M queries and 3M keys).
  Both are kept as in the reference. ``feature_map="identity"`` gives Cao's original
  (no feature map; there the normalisation is a LayerNorm on K and V, see below).
* :class:`GalerkinAttention` — ``W_q``, ``W_k``, ``W_v`` without bias (the reference's
  ``bias=False`` default), heads split as ``(h c)`` (head-major, ``einops`` ``b n (h c)``),
  :func:`galerkin_attention`, then ``W_o`` with bias. ``kv_norm=True`` adds Cao's per-head
  LayerNorm of the projected K and V (learned scale/bias per head and channel); Fisale does
  not use it (default False).
* :class:`GalerkinAttentionLayer` — Fisale's ``AttentionLayer`` with ``experts_num=0``:
  separate pre-LayerNorms on the query, key and value inputs, attention, and a residual from
  the *un-normalised* query input: ``t = Attn(LN_x(x), LN_y(y), LN_z(z)) + x``. With
  ``experts_num=0`` the reference has no feed-forward sub-layer, so neither does this layer.
  (So K and V are layer-normalised, before their projections.)

Initialisation is PyTorch's ``nn.Linear`` default (the reference does not re-initialise):
kernel and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (:func:`torch_linear`); LayerNorm
scale 1, bias 0, epsilon 1e-5. Dropout is 0 in every Fisale config, so there is none.
Attention kernels carry the logical axes ``("embed", "heads")`` / ``("heads", "embed")``
(replicated by the default rules).

Example::

    layer = GalerkinAttentionLayer(64, 64, 64, 64, num_heads=8, rngs=nnx.Rngs(0))
    out = layer(x, y, y)          # x (B, Nq, 64), y (B, Nk, 64) -> (B, Nq, 64)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.core.sharding import logical

__all__ = [
    "GalerkinAttention",
    "GalerkinAttentionLayer",
    "galerkin_attention",
    "torch_linear",
]

LN_EPS = 1e-5  # PyTorch's LayerNorm default
FEATURE_MAPS = ("softmax", "identity")


def _torch_bias_init(fan_in: int):
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_linear(
    d_in: int,
    d_out: int,
    *,
    rngs: nnx.Rngs,
    use_bias: bool = True,
    axes: tuple[str | None, str | None] | None = None,
) -> nnx.Linear:
    """``nnx.Linear`` initialised like PyTorch's ``nn.Linear``: ``U(±1/sqrt(d_in))``."""
    kernel_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    if axes is not None:
        kernel_init = logical(kernel_init, *axes)
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=_torch_bias_init(d_in),
        rngs=rngs,
    )


def galerkin_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, *, feature_map: str = "softmax"
) -> jax.Array:
    """``feature_map(q) (feature_map(k)ᵀ v) / Nq`` per head.

    ``q (..., Nq, H, C)``, ``k (..., Nk, H, C)``, ``v (..., Nk, H, Cv)`` -> ``(..., Nq, H, Cv)``.
    ``feature_map`` is ``"softmax"`` (over the C channels of each head; Fisale's "galerkin")
    or ``"identity"`` (Cao's Galerkin attention).
    """
    if feature_map not in FEATURE_MAPS:
        raise ValueError(f"feature_map must be one of {FEATURE_MAPS}, got {feature_map!r}.")
    if q.ndim < 3 or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ValueError(
            "q, k, v must be (..., N, heads, channels) with the same rank, got shapes "
            f"{q.shape}, {k.shape}, {v.shape}."
        )
    if k.shape[-3] != v.shape[-3] or q.shape[-2] != k.shape[-2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"incompatible shapes q {q.shape}, k {k.shape}, v {v.shape}: k and v need the "
            "same token count, q and k the same heads and channels."
        )
    if feature_map == "softmax":
        q = jax.nn.softmax(q, axis=-1)
        k = jax.nn.softmax(k, axis=-1)
    kv = jnp.einsum("...nhc,...nhd->...hcd", k, v)
    return jnp.einsum("...nhc,...hcd->...nhd", q, kv) / q.shape[-3]


class _HeadLayerNorm(nnx.Module):
    """LayerNorm over each head's channels with its own scale and bias per head (Cao)."""

    def __init__(self, num_heads: int, head_dim: int):
        self.scale = nnx.Param(jnp.ones((num_heads, head_dim), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_heads, head_dim), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + LN_EPS) * self.scale[...] + self.bias[...]


class GalerkinAttention(nnx.Module):
    """Multi-head Galerkin attention with Fisale's projections (Q/K/V no bias, O with bias)."""

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        value_dim: int,
        output_dim: int,
        *,
        num_heads: int,
        feature_map: str = "softmax",
        kv_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        if num_heads < 1 or output_dim % num_heads:
            raise ValueError(
                f"output_dim ({output_dim}) must be a positive multiple of num_heads ({num_heads})."
            )
        if feature_map not in FEATURE_MAPS:
            raise ValueError(f"feature_map must be one of {FEATURE_MAPS}, got {feature_map!r}.")
        self.num_heads = num_heads
        self.feature_map = feature_map
        ax_in, ax_out = ("embed", "heads"), ("heads", "embed")
        self.W_q = torch_linear(query_dim, output_dim, use_bias=False, axes=ax_in, rngs=rngs)
        self.W_k = torch_linear(key_dim, output_dim, use_bias=False, axes=ax_in, rngs=rngs)
        self.W_v = torch_linear(value_dim, output_dim, use_bias=False, axes=ax_in, rngs=rngs)
        self.W_o = torch_linear(output_dim, output_dim, axes=ax_out, rngs=rngs)
        head_dim = output_dim // num_heads
        self.norm_k = _HeadLayerNorm(num_heads, head_dim) if kv_norm else None
        self.norm_v = _HeadLayerNorm(num_heads, head_dim) if kv_norm else None

    def _heads(self, x: jax.Array) -> jax.Array:
        return x.reshape(*x.shape[:-1], self.num_heads, x.shape[-1] // self.num_heads)

    def __call__(self, x: jax.Array, y: jax.Array, z: jax.Array) -> jax.Array:
        """``x (..., Nq, query_dim)``, ``y (..., Nk, key_dim)``, ``z (..., Nk, value_dim)``."""
        q = self._heads(self.W_q(x))
        k = self._heads(self.W_k(y))
        v = self._heads(self.W_v(z))
        if self.norm_k is not None:
            k, v = self.norm_k(k), self.norm_v(v)
        out = galerkin_attention(q, k, v, feature_map=self.feature_map)
        return self.W_o(out.reshape(*out.shape[:-2], -1))


class GalerkinAttentionLayer(nnx.Module):
    """Fisale's ``AttentionLayer`` (no FFN): ``Attn(LN(x), LN(y), LN(z)) + x``."""

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        value_dim: int,
        output_dim: int,
        *,
        num_heads: int,
        feature_map: str = "softmax",
        kv_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        if query_dim != output_dim:
            raise ValueError(
                f"the residual needs query_dim == output_dim, got {query_dim} and {output_dim}."
            )
        self.attn_layer = GalerkinAttention(
            query_dim,
            key_dim,
            value_dim,
            output_dim,
            num_heads=num_heads,
            feature_map=feature_map,
            kv_norm=kv_norm,
            rngs=rngs,
        )
        self.ln_x = nnx.LayerNorm(query_dim, epsilon=LN_EPS, rngs=rngs)
        self.ln_y = nnx.LayerNorm(key_dim, epsilon=LN_EPS, rngs=rngs)
        self.ln_z = nnx.LayerNorm(value_dim, epsilon=LN_EPS, rngs=rngs)

    def __call__(self, x: jax.Array, y: jax.Array, z: jax.Array) -> jax.Array:
        return self.attn_layer(self.ln_x(x), self.ln_y(y), self.ln_z(z)) + x
