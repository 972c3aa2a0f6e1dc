"""Transformer pieces for the sequential recommenders: DynamicTanh, masked multi-head
attention and SASRec's causal user encoder.

* :class:`DyT` — DynamicTanh (Zhu et al., CVPR 2025, "Transformers without Normalization"):
  ``y = weight * tanh(alpha * x) + bias`` with one learnable scalar ``alpha`` (init 0.5, the
  paper's default for non-LLM models), ``weight`` ones and ``bias`` zeros per feature. It is a
  drop-in replacement for LayerNorm (CAMMSR reports using it in its user encoder);
  :func:`make_norm` builds either by name.
* :func:`attention` / :class:`MultiHeadAttention` — scaled dot-product attention with a boolean
  mask, written as two einsums. Scores and the softmax are float32 whatever the input dtype;
  masked scores are the most negative float32 (not ``-inf``) and the weights are multiplied
  by the mask after the softmax, so a query that may attend to nothing (a fully padded row)
  gets exactly zero attention output instead of NaN or a uniform average over padding. The
  projections are four plain :class:`flax.nnx.Linear` attributes (``query``, ``key``,
  ``value``, ``out``) so :func:`jaxpapers.nn.lora.add_lora` can wrap them.
* :class:`CausalTransformer` — the SASRec block (Kang & McAuley, ICDM 2018), following the
  reference PyTorch port pmixer/SASRec.pytorch layer by layer::

      x = scale * x + P;  x = dropout(x);  x = x * valid
      for each block:
          q = attention_norm(x)
          x = q + MHA(q, x, x)            # causal + key-padding mask; q is the *normed* x
          x = ffn_norm(x)
          x = x + FFN(x)                  # Linear -> ReLU/GELU -> dropout -> Linear -> dropout
          x = x * valid                   # padded positions back to zero
      return final_norm(x) * valid

  Choices where the reference or the interface leaves room:

  - The input is already an item representation (``[B, L, D]``), not ids: the caller owns the
    item table. With ``scale_input=True`` (default, as SASRec) it is multiplied by
    ``sqrt(D)`` before the positional embedding is added.
  - Learned positional embeddings ``P`` have ``max_len`` rows and are **right-aligned**: a
    sequence of length ``L <= max_len`` uses rows ``max_len - L .. max_len - 1``, so the most
    recent item always gets the last row. For ``L == max_len`` this is SASRec's absolute
    position; it also makes a left-padded sequence and its unpadded tail produce identical
    outputs at the valid positions (padding is excluded from attention by the key mask).
  - The reference masks only causally and lets padded keys (zero vectors) be attended; here
    padded keys are masked as well (the interface asks for causal + key-padding attention),
    so padding cannot leak into valid outputs.
  - The final norm's output is zeroed at padded positions too (otherwise a padded row would
    equal the norm's bias), so callers can pool or read ``[:, -1]`` without re-masking.
  - LayerNorm epsilon is 1e-8 as in the reference; kernels and positional embeddings use
    Xavier-normal initialisation (the reference re-initialises every matrix with it).
  - ``ffn_dim`` defaults to ``dim`` (SASRec's point-wise FFN is ``hidden -> hidden``) and the
    activation to ReLU; ``activation="gelu"`` is offered.

Weights carry logical axis names (``embed``, ``heads``, ``mlp``) via
:func:`jaxpapers.core.sharding.logical`; all of them are replicated by the default rules.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.core.sharding import LOGICAL_AXES, logical

NORMS = ("layernorm", "dyt")
ACTIVATIONS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu}
LAYERNORM_EPS = 1e-8  # pmixer/SASRec.pytorch
MASK_VALUE = float(np.finfo(np.float32).min)


def dense(
    in_features: int,
    out_features: int,
    axes: tuple[str | None, str | None],
    *,
    rngs: nnx.Rngs,
    use_bias: bool = True,
) -> nnx.Linear:
    """An ``nnx.Linear`` with Xavier-normal kernel, zero bias and logical axis names."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=logical(nnx.initializers.xavier_normal(), *axes),
        bias_init=logical(nnx.initializers.zeros_init(), axes[1]),
        rngs=rngs,
    )


def maybe_dropout(rate: float, rngs: nnx.Rngs) -> nnx.Dropout | None:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {rate}")
    return nnx.Dropout(rate, rngs=rngs) if rate > 0 else None


def apply_dropout(layer: nnx.Dropout | None, x: jax.Array, deterministic: bool) -> jax.Array:
    return x if layer is None else layer(x, deterministic=deterministic)


# --------------------------------------------------------------------------- norms


class DyT(nnx.Module):
    """DynamicTanh: ``weight * tanh(alpha * x) + bias`` over the last axis.

    ``alpha`` is one learnable scalar (init ``alpha_init``); ``weight`` (ones) and ``bias``
    (zeros) have one entry per feature. ``rngs`` is accepted for a uniform signature and
    unused (the initialisation is deterministic).
    """

    def __init__(self, dim: int, *, alpha_init: float = 0.5, rngs: nnx.Rngs | None = None):
        del rngs
        self.dim = dim
        self.alpha = nnx.Param(jnp.asarray(alpha_init, jnp.float32))
        self.weight = nnx.Param(jnp.ones((dim,), jnp.float32), **{LOGICAL_AXES: ("embed",)})
        self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32), **{LOGICAL_AXES: ("embed",)})

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] != self.dim:
            raise ValueError(f"DyT expects last dimension {self.dim}, got shape {x.shape}")
        return self.weight[...] * jnp.tanh(self.alpha[...] * x) + self.bias[...]


def make_norm(kind: str, dim: int, *, rngs: nnx.Rngs, epsilon: float = LAYERNORM_EPS) -> nnx.Module:
    """``"layernorm"`` (``epsilon`` default 1e-8, as SASRec) or ``"dyt"`` (:class:`DyT`)."""
    if kind == "layernorm":
        return nnx.LayerNorm(
            dim,
            epsilon=epsilon,
            scale_metadata={LOGICAL_AXES: ("embed",)},
            bias_metadata={LOGICAL_AXES: ("embed",)},
            rngs=rngs,
        )
    if kind == "dyt":
        return DyT(dim, rngs=rngs)
    raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")


# --------------------------------------------------------------------------- attention


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array | None = None,
    *,
    dropout: nnx.Dropout | None = None,
    deterministic: bool = True,
) -> jax.Array:
    """Scaled dot-product attention over heads.

    Args:
      q: ``[B, Lq, H, Dh]`` queries.
      k: ``[B, Lk, H, Dh]`` keys.
      v: ``[B, Lk, H, Dv]`` values.
      mask: boolean, broadcastable to ``[B, H, Lq, Lk]``; True where a query may attend.
      dropout: optional dropout on the attention weights.
      deterministic: disables dropout.

    Returns:
      ``[B, Lq, H, Dv]``; rows whose mask is all False are exactly zero.
    """
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    scores = scores / math.sqrt(q.shape[-1])
    if mask is not None:
        mask = mask.astype(bool)
        scores = jnp.where(mask, scores, MASK_VALUE)
    weights = jax.nn.softmax(scores, axis=-1)
    if mask is not None:
        weights = weights * mask  # a fully masked row: uniform softmax -> zeros
    weights = apply_dropout(dropout, weights, deterministic).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


class MultiHeadAttention(nnx.Module):
    """Multi-head attention with plain ``nnx.Linear`` projections (LoRA-wrappable).

    ``dim`` is the query (and output) width; keys and values are projected from
    ``kv_dim`` (default ``dim``) to ``dim``. Dropout acts on the attention weights.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        kv_dim: int | None = None,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        kv_dim = dim if kv_dim is None else kv_dim
        self.num_heads = num_heads
        self.query = dense(dim, dim, ("embed", "heads"), rngs=rngs)
        self.key = dense(kv_dim, dim, ("embed", "heads"), rngs=rngs)
        self.value = dense(kv_dim, dim, ("embed", "heads"), rngs=rngs)
        self.out = dense(dim, dim, ("heads", "embed"), rngs=rngs)
        self.dropout = maybe_dropout(dropout, rngs)

    def _heads(self, x: jax.Array) -> jax.Array:
        return x.reshape(*x.shape[:-1], self.num_heads, x.shape[-1] // self.num_heads)

    def __call__(
        self,
        x: jax.Array,
        context: jax.Array | None = None,
        mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        """``x [B, Lq, dim]`` attends over ``context [B, Lk, kv_dim]`` (default ``x``).

        ``mask`` is boolean, broadcastable to ``[B, num_heads, Lq, Lk]``.
        """
        context = x if context is None else context
        q = self._heads(self.query(x))
        k = self._heads(self.key(context))
        v = self._heads(self.value(context))
        y = attention(q, k, v, mask, dropout=self.dropout, deterministic=deterministic)
        return self.out(y.reshape(*y.shape[:-2], -1))


class PointWiseFeedForward(nnx.Module):
    """SASRec's FFN without its residual: Linear -> act -> dropout -> Linear -> dropout."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        self.activation = activation
        self.fc1 = dense(dim, hidden_dim, ("embed", "mlp"), rngs=rngs)
        self.fc2 = dense(hidden_dim, dim, ("mlp", "embed"), rngs=rngs)
        self.dropout = maybe_dropout(dropout, rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        h = ACTIVATIONS[self.activation](self.fc1(x))
        h = apply_dropout(self.dropout, h, deterministic)
        return apply_dropout(self.dropout, self.fc2(h), deterministic)


# --------------------------------------------------------------------------- SASRec encoder


class CausalTransformer(nnx.Module):
    """SASRec-style causal user encoder (see the module docstring for the exact block).

    Args:
      dim: model width ``D``.
      num_layers: number of blocks.
      num_heads: attention heads (``dim`` must be a multiple).
      max_len: rows of the positional table; inputs may be shorter (right-aligned).
      ffn_dim: FFN hidden width (default ``dim``, as SASRec).
      dropout: rate for the input, attention weights and FFN (SASRec uses one rate).
      norm: ``"layernorm"`` or ``"dyt"``.
      activation: FFN activation, ``"relu"`` (SASRec) or ``"gelu"``.
      scale_input: multiply the input by ``sqrt(dim)`` before adding positions (SASRec).
      rngs: initialisation (and dropout) randomness.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_layers: int,
        num_heads: int,
        max_len: int,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
        norm: str = "layernorm",
        activation: str = "relu",
        scale_input: bool = True,
        rngs: nnx.Rngs,
    ):
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
        if num_layers < 1 or max_len < 1:
            raise ValueError(f"num_layers ({num_layers}) and max_len ({max_len}) must be >= 1")
        self.dim = dim
        self.max_len = max_len
        self.scale_input = scale_input
        ffn_dim = dim if ffn_dim is None else ffn_dim
        init = logical(nnx.initializers.xavier_normal(), None, "embed")
        self.pos_embedding = nnx.Param(init(rngs.params(), (max_len, dim)))
        self.input_dropout = maybe_dropout(dropout, rngs)
        self.attention_norms = nnx.List(
            [make_norm(norm, dim, rngs=rngs) for _ in range(num_layers)]
        )
        self.attentions = nnx.List(
            [
                MultiHeadAttention(dim, num_heads, dropout=dropout, rngs=rngs)
                for _ in range(num_layers)
            ]
        )
        self.ffn_norms = nnx.List([make_norm(norm, dim, rngs=rngs) for _ in range(num_layers)])
        self.ffns = nnx.List(
            [
                PointWiseFeedForward(
                    dim, ffn_dim, activation=activation, dropout=dropout, rngs=rngs
                )
                for _ in range(num_layers)
            ]
        )
        self.final_norm = make_norm(norm, dim, rngs=rngs)

    def __call__(
        self, x: jax.Array, mask: jax.Array | None = None, *, deterministic: bool = True
    ) -> jax.Array:
        """Encodes ``x [B, L, D]``; ``mask [B, L]`` is True at real (non-padding) positions.

        Returns ``[B, L, D]`` states; position ``t`` depends only on valid positions
        ``<= t``; padded positions are exactly zero.
        """
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be [batch, length, {self.dim}], got shape {x.shape}")
        length = x.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len {self.max_len}")
        if mask is None:
            mask = jnp.ones(x.shape[:2], bool)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask must be {x.shape[:2]}, got shape {mask.shape}")
        mask = mask.astype(bool)
        valid = mask[..., None].astype(x.dtype)

        if self.scale_input:
            x = x * math.sqrt(self.dim)
        x = x + self.pos_embedding[self.max_len - length :].astype(x.dtype)
        x = apply_dropout(self.input_dropout, x, deterministic) * valid

        causal = jnp.tril(jnp.ones((length, length), bool))
        attn_mask = causal[None, None] & mask[:, None, None, :]  # [B, 1, Lq, Lk]
        for attn_norm, attn, ffn_norm, ffn in zip(
            self.attention_norms, self.attentions, self.ffn_norms, self.ffns
        ):
            q = attn_norm(x)
            x = q + attn(q, x, attn_mask, deterministic=deterministic)
            x = ffn_norm(x)
            x = x + ffn(x, deterministic=deterministic)
            x = x * valid
        return self.final_norm(x) * valid
