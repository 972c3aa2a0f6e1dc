"""Deep-learning baselines for stretch bending on LaDEEP's inputs and outputs (Flax NNX).

Both take LaDEEP's inputs — ``strip``, ``mould`` ``(B, L, 3)`` scaled differences, ``section``
``(B, H, W, 1)``, ``params`` ``(B, 6)`` — and return LaDEEP's output triple
``(section_recon, loaded, unloaded)`` with ``section_recon = None``: they have no auxiliary
section decoder, and :func:`jaxpapers.physics.ladeep.ladeep_loss` drops the section term for
None. Curves come out of a sigmoid, in (0, 1) like LaDEEP's.

* :class:`MLPBaseline` — one flat vector ``[strip ‖ mould ‖ params ‖ pooled section]``, an MLP
  (ReLU hidden layers, 512 and 512 by default) and one Linear to both curves.
* :class:`TransformerBaseline` — a plain pre-LN Transformer encoder over point tokens: each
  token is ``Linear([strip_i ‖ mould_i])`` (or a patch of ``patch_size`` consecutive points,
  a shared Linear — no per-region weights) plus a learned positional embedding plus
  ``Linear(params)`` and ``Linear(pooled section)`` broadcast to every token; ``num_layers``
  self-attention layers (6 by default, LaDEEP's 3 + 3); a final LayerNorm and one shared Linear
  head per token giving both curves. No region tokens, no global token, no loading/unloading
  split, no cross-attention.

Choices (the LaDEEP paper names its DL baselines but their code is not released):

* The section image is reduced to a fixed ``section_pool`` = 16x8 grid by anti-aliased linear
  resizing (``jax.image.resize``), flattened (128 numbers), so the baselines see the section
  without a CNN and work for any ``(H, W)``.
* Flax default initialisation (LeCun-normal kernels, zero biases); positional embedding
  N(0, 0.02^2); FFN width ``ffn_dim`` (128 by default, LaDEEP's ``emb_dim * heads / 2``) with
  ReLU; LayerNorm epsilon 1e-5; no dropout.

Example::

    mlp = MLPBaseline(rngs=nnx.Rngs(0))
    recon, loaded, unloaded = mlp(strip, mould, section, params)   # None, (B,300,3), (B,300,3)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.physics import ladeep


def _pool_section(section: jax.Array, pool: tuple[int, int]) -> jax.Array:
    b = section.shape[0]
    small = jax.image.resize(section, (b, pool[0], pool[1], section.shape[-1]), "linear")
    return small.reshape(b, -1)


def _check(strip, mould, section, params, length: int, shape, degrees: int) -> None:
    ladeep._check_curve(strip, "strip", length)
    ladeep._check_curve(mould, "mould", length)
    if section.ndim != 4 or tuple(section.shape[1:]) != (*shape, 1):
        raise ValueError(
            f"section must have shape (batch, {shape[0]}, {shape[1]}, 1), got {section.shape}."
        )
    if params.ndim != 2 or params.shape[1] != degrees:
        raise ValueError(f"params must have shape (batch, {degrees}), got {params.shape}.")


class MLPBaseline(nnx.Module):
    """Flat MLP from all inputs to both curves; returns ``(None, loaded, unloaded)``.

    Example::

        m = MLPBaseline(input_length=300, section_shape=(64, 32), rngs=nnx.Rngs(0))
    """

    def __init__(
        self,
        *,
        input_length: int = 300,
        motion_degrees: int = 6,
        section_shape: tuple[int, int] = (64, 32),
        hidden: Sequence[int] = (512, 512),
        section_pool: tuple[int, int] = (16, 8),
        rngs: nnx.Rngs,
    ):
        if not hidden:
            raise ValueError("hidden needs at least one layer width.")
        self.input_length, self.motion_degrees = input_length, motion_degrees
        self.section_shape, self.section_pool = tuple(section_shape), tuple(section_pool)
        d_in = 6 * input_length + motion_degrees + section_pool[0] * section_pool[1]
        layers = []
        for h in hidden:
            layers.append(nnx.Linear(d_in, h, rngs=rngs))
            d_in = h
        self.layers = nnx.List(layers)
        self.head = nnx.Linear(d_in, 6 * input_length, rngs=rngs)

    def __call__(self, strip, mould, section, params):
        _check(
            strip, mould, section, params, self.input_length, self.section_shape,
            self.motion_degrees,
        )  # fmt: skip
        b = strip.shape[0]
        x = jnp.concatenate(
            [
                strip.reshape(b, -1),
                mould.reshape(b, -1),
                params,
                _pool_section(section, self.section_pool),
            ],
            axis=-1,
        )
        for layer in self.layers:
            x = jax.nn.relu(layer(x))
        y = jax.nn.sigmoid(self.head(x)).reshape(b, 2, self.input_length, 3)
        return None, y[:, 0], y[:, 1]


class _EncoderLayer(nnx.Module):
    """Pre-LN self-attention + FFN block."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, *, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
        self.attention = ladeep.MultiHeadAttention(
            query_dim=dim, kv_dim=dim, feature_dims=dim, num_heads=heads, rngs=rngs
        )
        self.ln2 = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
        self.fc = ladeep.PositionWiseFFN(dim, ffn_dim, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.ln1(x)
        x = x + self.attention(h, h)
        return x + self.fc(self.ln2(x))


class TransformerBaseline(nnx.Module):
    """Plain Transformer over point (or patch) tokens; returns ``(None, loaded, unloaded)``.

    Example::

        m = TransformerBaseline(patch_size=5, rngs=nnx.Rngs(0))   # 60 tokens of 5 points
    """

    def __init__(
        self,
        *,
        input_length: int = 300,
        motion_degrees: int = 6,
        section_shape: tuple[int, int] = (64, 32),
        emb_dim: int = 64,
        num_layers: int = 6,
        num_heads: int = 4,
        ffn_dim: int = 128,
        patch_size: int = 1,
        section_pool: tuple[int, int] = (16, 8),
        rngs: nnx.Rngs,
    ):
        if patch_size < 1 or input_length % patch_size:
            raise ValueError(
                f"patch_size ({patch_size}) must be >= 1 and divide input_length ({input_length})."
            )
        self.input_length, self.motion_degrees = input_length, motion_degrees
        self.section_shape, self.section_pool = tuple(section_shape), tuple(section_pool)
        self.patch_size = patch_size
        n_tokens = input_length // patch_size
        self.token_emb = nnx.Linear(6 * patch_size, emb_dim, rngs=rngs)
        self.pos_embedding = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (n_tokens, emb_dim), jnp.float32)
        )
        self.params_emb = nnx.Linear(motion_degrees, emb_dim, rngs=rngs)
        self.section_emb = nnx.Linear(section_pool[0] * section_pool[1], emb_dim, rngs=rngs)
        self.layers = nnx.List(
            [_EncoderLayer(emb_dim, num_heads, ffn_dim, rngs=rngs) for _ in range(num_layers)]
        )
        self.ln_out = nnx.LayerNorm(emb_dim, epsilon=1e-5, rngs=rngs)
        self.head = nnx.Linear(emb_dim, 6 * patch_size, rngs=rngs)

    def __call__(self, strip, mould, section, params):
        _check(
            strip, mould, section, params, self.input_length, self.section_shape,
            self.motion_degrees,
        )  # fmt: skip
        b, n = strip.shape[0], self.input_length // self.patch_size
        tokens = jnp.concatenate(
            [strip.reshape(b, n, -1), mould.reshape(b, n, -1)], axis=-1
        )  # (B, N, 6 * patch)
        cond = self.params_emb(params) + self.section_emb(_pool_section(section, self.section_pool))
        x = self.token_emb(tokens) + self.pos_embedding[...] + cond[:, None, :]
        for layer in self.layers:
            x = layer(x)
        y = jax.nn.sigmoid(self.head(self.ln_out(x)))  # (B, N, 6 * patch)
        y = y.reshape(b, n, 2, self.patch_size, 3)
        loaded = y[:, :, 0].reshape(b, self.input_length, 3)
        unloaded = y[:, :, 1].reshape(b, self.input_length, 3)
        return None, loaded, unloaded
