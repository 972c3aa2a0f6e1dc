"""The implicit baseline: one Transolver over all points of all objects together.

Unisoma (ICML 2025) and Fisale (ICLR 2026) compare their explicit, per-object models with
*implicit* ones that see a multi-solid or fluid–solid system as a single point cloud. Here
that is Transolver (Wu et al., ICML 2024; thuml/Transolver, ``Transolver_1D`` /
``Car-Design-ShapeNetCar/models/Transolver.py``, the irregular-mesh model):

* ``preprocess``: :class:`~jaxpapers.nn.slicing.FFN` ``in_dim -> 2E -> E``, plus a learnable
  ``placeholder`` (``uniform[0, 1) / E``) added to every point.
* ``blocks`` (``num_layers`` x ``Transolver_block``, pre-LN)::

      fx = Attn(ln_1(fx)) + fx          # Physics-Attention (jaxpapers.nn.slicing)
      fx = mlp(ln_2(fx)) + fx           # FFN E -> E*mlp_ratio -> E
      last block only: return mlp2(ln_3(fx))   # Linear E -> out_dim

* Initialisation as the reference (trunc-normal 0.02 kernels, zero biases, LayerNorm 1/0).

Defaults (``emb_dim=128, num_layers=4, num_heads=8, slice_num=32, mlp_ratio=2``) are the
project's interface for the baseline, sized near Unisoma; Transolver's own ``Model`` defaults
are ``n_hidden=256, n_layers=5, slice_num=32, mlp_ratio=1`` and its benchmark scripts use
various widths (e.g. 128 wide, 8 layers).

:func:`concat_objects` builds the implicit input: each object's ``(B, N_o, d_o)`` features are
zero-padded to ``dim`` features and get a one-hot object id, then all points are concatenated
(``(B, sum N_o, dim + num_objects)``); :func:`split_objects` cuts a per-point output back into
objects. The one-hot tells the model which object a point belongs to (without it a load point
and a deformable point with the same coordinates would be indistinguishable); the model stays
permutation equivariant over all points, hence over each object's points.

Padded objects (datasets whose samples differ in their number of points, batched by padding;
see :mod:`jaxpapers.physics.multisolid`): ``Transolver(x, mask=m)`` with ``m`` ``(B, N)`` (1
real, 0 padding) passes the mask to every block's Physics-Attention, which leaves padded points
out of every slice token; everything else in the model is per point, so the outputs at the
real points do not depend on the padding (outputs at padded points are don't-care).
:func:`concat_masks` concatenates per-object masks like the points (an object without a mask
is all real points); ``ObjectsTransolver(objects, masks)`` does both. No mask runs exactly the
unmasked computation.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.nn.slicing import FFN, PhysicsAttention, dense, layer_norm, place_holder_param


class TransolverBlock(nnx.Module):
    """Transolver's pre-LN block; the last one also maps to ``out_dim`` (``ln_3``, ``mlp2``)."""

    def __init__(
        self,
        emb_dim: int,
        *,
        num_heads: int,
        slice_num: int,
        mlp_ratio: int,
        last_layer: bool,
        out_dim: int,
        rngs: nnx.Rngs,
    ):
        self.last_layer = last_layer
        self.ln_1 = layer_norm(emb_dim, rngs=rngs)
        self.Attn = PhysicsAttention(emb_dim, num_heads=num_heads, slice_num=slice_num, rngs=rngs)
        self.ln_2 = layer_norm(emb_dim, rngs=rngs)
        self.mlp = FFN(emb_dim, emb_dim * mlp_ratio, emb_dim, rngs=rngs)
        if last_layer:
            self.ln_3 = layer_norm(emb_dim, rngs=rngs)
            self.mlp2 = dense(emb_dim, out_dim, ("embed", None), rngs=rngs)

    def __call__(self, fx: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Returns the block output and its slice weights ``(B, heads, N, G)``.

        ``mask`` ``(B, N)`` (1 real, 0 padded point) or None: see the module docstring.
        """
        attn, weights = self.Attn(self.ln_1(fx), mask=mask, return_weights=True)
        fx = attn + fx
        fx = self.mlp(self.ln_2(fx)) + fx
        if self.last_layer:
            fx = self.mlp2(self.ln_3(fx))
        return fx, weights


class Transolver(nnx.Module):
    """Transolver on an irregular point set: ``(B, N, in_dim) -> (B, N, out_dim)``.

    ``__call__(x, return_weights=True)`` also returns the list of each block's slice weights;
    ``__call__(x, mask=m)`` (``m`` ``(B, N)``, 1 real / 0 padded point) ignores padded points.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int,
        emb_dim: int = 128,
        num_layers: int = 4,
        num_heads: int = 8,
        slice_num: int = 32,
        mlp_ratio: int = 2,
        rngs: nnx.Rngs,
    ):
        if min(in_dim, out_dim, emb_dim, num_layers, mlp_ratio) < 1:
            raise ValueError(
                "in_dim, out_dim, emb_dim, num_layers and mlp_ratio must all be >= 1, got "
                f"{in_dim}, {out_dim}, {emb_dim}, {num_layers}, {mlp_ratio}"
            )
        self.in_dim = in_dim
        self.preprocess = FFN(in_dim, emb_dim * 2, emb_dim, rngs=rngs)
        self.placeholder = place_holder_param((emb_dim,), emb_dim, rngs)
        self.blocks = nnx.List(
            [
                TransolverBlock(
                    emb_dim,
                    num_heads=num_heads,
                    slice_num=slice_num,
                    mlp_ratio=mlp_ratio,
                    last_layer=i == num_layers - 1,
                    out_dim=out_dim,
                    rngs=rngs,
                )
                for i in range(num_layers)
            ]
        )

    def __call__(
        self,
        x: jax.Array,
        *,
        mask: jax.Array | None = None,
        return_weights: bool = False,
    ) -> jax.Array | tuple[jax.Array, list[jax.Array]]:
        if x.ndim != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"Transolver expects (B, N, {self.in_dim}) inputs, got {x.shape}")
        if mask is not None and jnp.shape(mask) != x.shape[:2]:
            raise ValueError(f"mask {jnp.shape(mask)} must be (B, N) = {x.shape[:2]}")
        fx = self.preprocess(x) + self.placeholder[...]
        weights = []
        for block in self.blocks:
            fx, w = block(fx, mask)
            weights.append(w)
        return (fx, weights) if return_weights else fx


def concat_objects(objects: Sequence[jax.Array], dim: int) -> jax.Array:
    """All points of all objects as one set: pad features to ``dim``, add a one-hot object id.

    Args:
      objects: ``K`` arrays ``(B, N_o, d_o)`` with ``d_o <= dim`` and one batch size.
      dim: the common feature width before the one-hot.

    Returns:
      ``(B, sum_o N_o, dim + K)``, objects in the given order.
    """
    if not objects:
        raise ValueError("concat_objects needs at least one object")
    batch = objects[0].shape[0]
    parts = []
    for o, x in enumerate(objects):
        if x.ndim != 3 or x.shape[0] != batch or x.shape[-1] > dim:
            raise ValueError(
                f"object {o} has shape {x.shape}; every object must be (B={batch}, N_o, d_o) "
                f"with d_o <= dim={dim}"
            )
        padded = jnp.pad(x, ((0, 0), (0, 0), (0, dim - x.shape[-1])))
        one_hot = jnp.broadcast_to(
            jax.nn.one_hot(o, len(objects), dtype=x.dtype), (*x.shape[:2], len(objects))
        )
        parts.append(jnp.concatenate([padded, one_hot], axis=-1))
    return jnp.concatenate(parts, axis=1)


def concat_masks(
    objects: Sequence[jax.Array], masks: Sequence[jax.Array | None] | None
) -> jax.Array | None:
    """The point masks of :func:`concat_objects`'s output: ``(B, sum_o N_o)`` or None.

    Args:
      objects: the ``K`` arrays ``(B, N_o, d_o)`` given to :func:`concat_objects`.
      masks: None, or ``K`` entries, each ``(B, N_o)`` (1 real, 0 padded point) or None for
        an object without padding (all ones).

    Returns:
      None when there are no masks at all (the unmasked computation), else the masks
      concatenated like the points (float32).
    """
    if masks is None or all(m is None for m in masks):
        return None
    if len(masks) != len(objects):
        raise ValueError(f"got {len(masks)} masks for {len(objects)} objects (None: no padding)")
    parts = []
    for o, (x, m) in enumerate(zip(objects, masks)):
        if m is None:
            parts.append(jnp.ones(x.shape[:2], jnp.float32))
        elif jnp.shape(m) != x.shape[:2]:
            raise ValueError(f"mask {o} has shape {jnp.shape(m)}; object {o} needs {x.shape[:2]}")
        else:
            parts.append(jnp.asarray(m, jnp.float32))
    return jnp.concatenate(parts, axis=1)


def split_objects(x: jax.Array, sizes: Sequence[int]) -> list[jax.Array]:
    """Cut ``(B, sum sizes, C)`` back into ``[(B, sizes[o], C), ...]`` (inverse of the concat)."""
    if any(n < 0 for n in sizes) or sum(sizes) != x.shape[1]:
        raise ValueError(
            f"sizes {tuple(sizes)} must be non-negative and sum to the {x.shape[1]} points of "
            f"{x.shape}"
        )
    out, start = [], 0
    for n in sizes:
        out.append(x[:, start : start + n])
        start += n
    return out


class ObjectsTransolver(nnx.Module):
    """The implicit model over a list of objects: one :class:`Transolver` over all their points.

    ``__call__(objects)`` takes ``num_objects`` arrays ``(B, N_o, d_o)`` with ``d_o <= in_dim``
    (:func:`concat_objects` pads them and appends the one-hot object id) and returns the
    per-object outputs ``(B, N_o, out_dim)`` (:func:`split_objects`). ``masks`` (optional,
    one ``(B, N_o)`` 1/0 array or None per object, :func:`concat_masks`) leaves padded points
    out of the slicing; outputs at padded points are don't-care.
    """

    def __init__(
        self, *, num_objects: int, in_dim: int, out_dim: int, rngs: nnx.Rngs, **transolver_kwargs
    ):
        self.in_dim = in_dim
        self.transolver = Transolver(
            in_dim=in_dim + num_objects, out_dim=out_dim, rngs=rngs, **transolver_kwargs
        )

    def __call__(
        self,
        objects: Sequence[jax.Array],
        masks: Sequence[jax.Array | None] | None = None,
    ) -> list[jax.Array]:
        mask = concat_masks(objects, masks)
        x = concat_objects(objects, self.in_dim)
        out = self.transolver(x) if mask is None else self.transolver(x, mask=mask)
        return list(split_objects(out, [o.shape[1] for o in objects]))
