"""InfoNCE with in-batch negatives, as a pure function (one example per row).

``info_nce(queries, keys)``: row ``i`` of ``queries`` should match row ``i`` of ``keys``
against every other row of ``keys`` (the in-batch negatives):

.. math:: L = -\\frac{1}{B} \\sum_i \\log
          \\frac{\\exp(s(q_i, k_i)/\\tau)}{\\sum_j \\exp(s(q_i, k_j)/\\tau)}

with ``s`` the cosine similarity (``normalize=True``) or the dot product, and ``tau`` the
temperature. ``symmetric=True`` averages it with the keys-to-queries direction (CLIP's
form). On identical embeddings every logit is equal and the loss is ``log B``: the batch
carries no information. Used by the multimodal recommenders' content-ID and
modality-swap contrastive losses (issue 4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def info_nce(
    queries: jax.Array,
    keys: jax.Array,
    *,
    temperature: float = 0.07,
    normalize: bool = True,
    symmetric: bool = False,
) -> jax.Array:
    """Mean InfoNCE loss over the batch (see the module docstring)."""
    if queries.ndim != 2 or queries.shape != keys.shape:
        raise ValueError(
            f"queries and keys must both be [batch, dim], got {queries.shape} and {keys.shape}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if normalize:
        queries = queries / jnp.maximum(jnp.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        keys = keys / jnp.maximum(jnp.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
    logits = jnp.matmul(queries, keys.T, precision=jax.lax.Precision.HIGHEST) / temperature
    labels = jnp.arange(queries.shape[0])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    if symmetric:
        loss = 0.5 * (
            loss + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
        )
    return loss
