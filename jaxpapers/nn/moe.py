"""Attentive mixture of experts: MLP experts, a query-conditioned attention gate and the
weighted sum that fuses them.

CAMMSR's CAMoE (issue 4) represents an item from several expert "perspectives" (one expert per
modality and per modality combination) and fuses them with attention weights; EM3 and other
multimodal recommenders reuse the same three pieces:

* :class:`Expert` — ``Linear -> GELU -> Linear`` (with optional dropout after the activation).
  The paper gives no expert architecture; a two-layer MLP is the usual MoE expert. The hidden
  width defaults to ``out_dim``.
* :class:`AttentiveGate` — ``weights_k = softmax_k(<W_q q, W_k e_k> / sqrt(d_k))``: scaled
  dot-product attention of one query (for CAMMSR, the item's ID embedding or a category
  representation) over the ``K`` expert outputs. Both projections are bias-free: a key bias
  adds the same ``<W_q q, b_k>`` to every expert and cancels in the softmax, and a query bias
  would add a query-independent prior per expert, which the paper does not describe.
  ``key_dim`` defaults to ``expert_dim``. An optional boolean ``mask`` removes experts (a
  missing modality); a row with no expert left gets all-zero weights instead of NaN.
* :func:`mixture` — ``sum_k weights_k * experts_k``.

Leading dimensions broadcast, so one gate handles ``[B, K, D]`` items or ``[B, L, K, D]``
sequences alike.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.nn.transformer import MASK_VALUE, apply_dropout, dense, maybe_dropout


class Expert(nnx.Module):
    """An MLP expert: ``Linear(in_dim, hidden_dim) -> GELU -> [dropout] -> Linear(.., out_dim)``."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        hidden_dim = out_dim if hidden_dim is None else hidden_dim
        self.fc1 = dense(in_dim, hidden_dim, ("embed", "mlp"), rngs=rngs)
        self.fc2 = dense(hidden_dim, out_dim, ("mlp", "embed"), rngs=rngs)
        self.dropout = maybe_dropout(dropout, rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        h = apply_dropout(self.dropout, jax.nn.gelu(self.fc1(x)), deterministic)
        return self.fc2(h)


class AttentiveGate(nnx.Module):
    """Softmax attention weights of a query over ``K`` experts (see module docstring)."""

    def __init__(
        self,
        query_dim: int,
        expert_dim: int,
        *,
        key_dim: int | None = None,
        rngs: nnx.Rngs,
    ):
        key_dim = expert_dim if key_dim is None else key_dim
        self.query_dim = query_dim
        self.expert_dim = expert_dim
        self.key_dim = key_dim
        self.query = dense(query_dim, key_dim, ("embed", "heads"), rngs=rngs, use_bias=False)
        self.key = dense(expert_dim, key_dim, ("embed", "heads"), rngs=rngs, use_bias=False)

    def logits(self, query: jax.Array, experts: jax.Array) -> jax.Array:
        """Unnormalised scores ``<W_q q, W_k e_k> / sqrt(key_dim)``, shape ``[..., K]``."""
        if query.shape[-1] != self.query_dim:
            raise ValueError(f"query must be [..., {self.query_dim}], got shape {query.shape}")
        if experts.ndim < 2 or experts.shape[-1] != self.expert_dim:
            raise ValueError(
                f"experts must be [..., K, {self.expert_dim}], got shape {experts.shape}"
            )
        q = self.query(query)  # [..., d]
        k = self.key(experts)  # [..., K, d]
        return jnp.sum(k * q[..., None, :], axis=-1) / math.sqrt(self.key_dim)

    def __call__(
        self, query: jax.Array, experts: jax.Array, mask: jax.Array | None = None
    ) -> jax.Array:
        """Weights ``[..., K]`` summing to 1 over the (unmasked) experts."""
        scores = self.logits(query, experts).astype(jnp.float32)
        if mask is None:
            return jax.nn.softmax(scores, axis=-1)
        mask = mask.astype(bool)
        weights = jax.nn.softmax(jnp.where(mask, scores, MASK_VALUE), axis=-1)
        return weights * mask


def mixture(weights: jax.Array, experts: jax.Array) -> jax.Array:
    """``sum_k weights[..., k] * experts[..., k, :]``: ``[..., K]`` x ``[..., K, D]`` -> ``[..., D]``."""
    if experts.ndim < 2 or weights.shape[-1] != experts.shape[-2]:
        raise ValueError(
            f"weights [..., K] and experts [..., K, D] disagree: {weights.shape} vs {experts.shape}"
        )
    return jnp.sum(weights[..., None].astype(experts.dtype) * experts, axis=-2)
