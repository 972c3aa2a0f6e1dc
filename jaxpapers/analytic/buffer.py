"""The random buffer layer of analytic learning (ACIL's ``RandomBuffer``).

``x = ReLU(phi @ W_b)`` with a fixed random ``W_b`` of shape ``(d_in, d_out)``
drawn from U(-1/sqrt(d_in), 1/sqrt(d_in)) (PyTorch's ``nn.Linear`` default, which
the reference keeps), no bias. It lifts the backbone's features to a wider space
(8192 for CIFAR-100 in ACIL) where a linear ridge head separates more classes.
The buffer is never trained: every client and the server can regenerate it
from its seed, so it costs nothing to communicate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def buffer_weights(key: jax.Array, d_in: int, d_out: int, dtype=jnp.float32) -> jax.Array:
    """``W_b ~ U(-1/sqrt(d_in), 1/sqrt(d_in))`` of shape ``(d_in, d_out)``.

    >>> buffer_weights(jax.random.key(0), 64, 1024).shape
    (64, 1024)
    """
    if d_in <= 0 or d_out <= 0:
        raise ValueError(f"buffer sizes must be positive, got {d_in} -> {d_out}")
    bound = 1.0 / float(d_in) ** 0.5
    # Drawn in float32 whatever ``dtype``: the same seed gives the same buffer in
    # float32 and float64 runs, so their results are comparable.
    return jax.random.uniform(key, (d_in, d_out), jnp.float32, -bound, bound).astype(dtype)


def expand(phi: jax.Array, w: jax.Array | None) -> jax.Array:
    """``ReLU(phi @ w)`` (``w=None``: the features unchanged).

    >>> expand(jnp.ones((2, 3)), -jnp.ones((3, 4))).max()
    Array(0., dtype=float32)
    """
    if w is None:
        return phi
    if phi.shape[-1] != w.shape[0]:
        raise ValueError(f"features of width {phi.shape[-1]} do not match a buffer of {w.shape}")
    return jax.nn.relu(jnp.matmul(phi.astype(w.dtype), w, precision=jax.lax.Precision.HIGHEST))
