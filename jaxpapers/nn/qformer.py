"""Q-Former: a fixed set of trainable queries that read a variable-length context.

BLIP-2's Querying Transformer (Li et al., 2023), as EM3's Fusion-Q-Former uses it (issue 4): the
item's image patch tokens and text tokens, concatenated, form the context; ``num_queries``
learned query vectors go through ``num_layers`` layers of

    q = q + dropout(SelfAttention(norm(q)))                       # queries talk to each other
    q = q + dropout(CrossAttention(norm(q), context, mask))       # queries read the context
    q = q + FFN(norm(q))                                          # Linear -> GELU -> Linear

and come out as ``[B, num_queries, dim]`` whatever the context length ``T``.

Reconstruction choices (EM3 publishes no code; BLIP-2 starts from BERT weights, we do not):

* **Pre-LN** with a final LayerNorm, instead of BERT's post-LN: the Q-Former here is trained
  from scratch, end to end with the ranking model, where pre-LN is the stable choice.
* **Context projection per layer**: like BLIP-2's cross-attention, each layer's key and value
  projections map ``context_dim`` straight to ``dim``; the context is first normalised by one
  LayerNorm over ``context_dim`` (BLIP-2 feeds the ViT's final ``ln_vision`` output).
* Cross-attention happens in every layer (BLIP-2 uses every other layer; with the few layers a
  recommender affords, every layer is the simpler and stronger default).
* Masked context tokens (``context_mask`` False) are removed from the cross-attention; a row
  whose context is entirely masked reads nothing (zero attention output) rather than NaN.
* Queries are initialised from N(0, 0.02^2) (BERT's initializer range); kernels Xavier-normal.
* LayerNorm epsilon 1e-6 everywhere.
* ``ffn_dim`` defaults to ``4 * dim`` (BERT). Dropout (one rate) acts on attention weights,
  attention outputs and the FFN.

Every projection is a plain :class:`flax.nnx.Linear` attribute (``query``/``key``/``value``/
``out`` of each :class:`~jaxpapers.nn.transformer.MultiHeadAttention`, ``fc1``/``fc2`` of each
FFN), so :func:`jaxpapers.nn.lora.add_lora` can wrap them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.core.sharding import LOGICAL_AXES, logical
from jaxpapers.nn.transformer import (
    MultiHeadAttention,
    PointWiseFeedForward,
    apply_dropout,
    make_norm,
    maybe_dropout,
)

QUERY_INIT_STD = 0.02
LAYERNORM_EPS = 1e-6


class QFormerLayer(nnx.Module):
    """One pre-LN layer: self-attention over queries, cross-attention to context, FFN."""

    def __init__(
        self,
        dim: int,
        context_dim: int,
        *,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        self.self_norm = make_norm("layernorm", dim, epsilon=LAYERNORM_EPS, rngs=rngs)
        self.self_attention = MultiHeadAttention(dim, num_heads, dropout=dropout, rngs=rngs)
        self.cross_norm = make_norm("layernorm", dim, epsilon=LAYERNORM_EPS, rngs=rngs)
        self.cross_attention = MultiHeadAttention(
            dim, num_heads, kv_dim=context_dim, dropout=dropout, rngs=rngs
        )
        self.ffn_norm = make_norm("layernorm", dim, epsilon=LAYERNORM_EPS, rngs=rngs)
        self.ffn = PointWiseFeedForward(dim, ffn_dim, activation="gelu", dropout=dropout, rngs=rngs)
        self.dropout = maybe_dropout(dropout, rngs)

    def __call__(
        self,
        queries: jax.Array,
        context: jax.Array,
        cross_mask: jax.Array | None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        h = self.self_norm(queries)
        h = self.self_attention(h, deterministic=deterministic)
        queries = queries + apply_dropout(self.dropout, h, deterministic)
        h = self.cross_norm(queries)
        h = self.cross_attention(h, context, cross_mask, deterministic=deterministic)
        queries = queries + apply_dropout(self.dropout, h, deterministic)
        return queries + self.ffn(self.ffn_norm(queries), deterministic=deterministic)


class QFormer(nnx.Module):
    """Trainable queries that cross-attend over a context of any length.

    Args:
      num_queries: number of learned queries (output tokens).
      dim: query / output width.
      context_dim: width of the context tokens.
      num_layers: number of :class:`QFormerLayer`.
      num_heads: attention heads (``dim`` must be a multiple).
      ffn_dim: FFN hidden width (default ``4 * dim``).
      dropout: one dropout rate for attention weights, residual branches and FFN.
      rngs: initialisation (and dropout) randomness.
    """

    def __init__(
        self,
        *,
        num_queries: int,
        dim: int,
        context_dim: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if num_queries < 1 or num_layers < 1:
            raise ValueError(
                f"num_queries ({num_queries}) and num_layers ({num_layers}) must be >= 1"
            )
        self.num_queries = num_queries
        self.dim = dim
        self.context_dim = context_dim
        ffn_dim = 4 * dim if ffn_dim is None else ffn_dim
        init = logical(nnx.initializers.normal(QUERY_INIT_STD), None, "embed")
        self.queries = nnx.Param(init(rngs.params(), (num_queries, dim)))
        self.context_norm = nnx.LayerNorm(
            context_dim,
            epsilon=LAYERNORM_EPS,
            scale_metadata={LOGICAL_AXES: ("embed",)},
            bias_metadata={LOGICAL_AXES: ("embed",)},
            rngs=rngs,
        )
        self.layers = nnx.List(
            [
                QFormerLayer(
                    dim,
                    context_dim,
                    num_heads=num_heads,
                    ffn_dim=ffn_dim,
                    dropout=dropout,
                    rngs=rngs,
                )
                for _ in range(num_layers)
            ]
        )
        self.final_norm = make_norm("layernorm", dim, epsilon=LAYERNORM_EPS, rngs=rngs)

    def __call__(
        self,
        context: jax.Array,
        context_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        """``context [B, T, context_dim]``, ``context_mask [B, T]`` (True = real token)
        -> ``[B, num_queries, dim]``."""
        if context.ndim != 3 or context.shape[-1] != self.context_dim:
            raise ValueError(
                f"context must be [batch, tokens, {self.context_dim}], got shape {context.shape}"
            )
        cross_mask = None
        if context_mask is not None:
            if context_mask.shape != context.shape[:2]:
                raise ValueError(
                    f"context_mask must be {context.shape[:2]}, got shape {context_mask.shape}"
                )
            cross_mask = context_mask.astype(bool)[:, None, None, :]  # [B, 1, 1, T]
        context = self.context_norm(context)
        batch = context.shape[0]
        queries = jnp.broadcast_to(
            self.queries[...].astype(context.dtype), (batch, self.num_queries, self.dim)
        )
        for layer in self.layers:
            queries = layer(queries, context, cross_mask, deterministic=deterministic)
        return self.final_norm(queries)
