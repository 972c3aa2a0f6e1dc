"""Unisoma: a unified Transformer for multi-solid systems (ICML 2025), in Flax NNX.

Faithful to the reference code (therontau0054/Unisoma, ``model/unisoma.py``, ``slice.py``,
``processor.py``, ``attention.py``); components keep the reference's names. A scene is three
lists of point sets, each object with its own number of points:

* ``loads[k]``  ``(B, L_k, load_dim)``   — e.g. load application points and their motion,
* ``rigids[j]`` ``(B, Q_j, rigid_dim)``  — rigid bodies (never updated),
* ``deformables[i]`` ``(B, P_i, deformable_in_dim)`` — the solids whose response is predicted.

Data flow (``Unisoma.__call__``)::

    load_ffn[k]        Linear load_dim -> E         -> load_slice_blocks[k]        -> tokens
    rigid_ffn[j]       Linear rigid_dim -> E        -> rigid_slice_blocks[j]       -> tokens
    deformable_ffn[i]  FFN in -> 2E -> E  = feat_i  -> deformable_slice_blocks[i]  -> tokens, w_i
    processors (x num_processors), each:
        contact_module: for each pair (a, b) of contact_pairs over [deformables..., rigids...]:
            ContactBlock: z = LN_x(a) + LN_y(b); c = AttentionLayer(z, z, z)   (no FFN)
        load_module: for each deformable i, LoadBlock:
            load    = InteractionAllocation("load")(load tokens)      if num_loads > 1
            contact = InteractionAllocation("contact")(contacts)      if num_contacts > 1
            z = LN_load(load) + LN_contact_constraint(contact) + LN_deformable_solid(tokens_i)
            tokens_i <- AttentionLayer(z, z, z)                       (with FFN)
    out_i = deformable_ffn_out[i](DesliceBlock(tokens_i, w_i, feat_i) + feat_i)
            FFN E -> E*mlp_ratio -> deformable_out_dim

Padded objects (``load_masks``, ``rigid_masks``, ``deformable_masks``): datasets whose samples
differ in their number of points are batched by padding each object to a common count (see
:mod:`jaxpapers.physics.multisolid`). Each mask is ``(B, N_o)``, 1 for a real point and 0 for
padding, and goes to that object's :class:`~jaxpapers.nn.slicing.SliceBlock`, which gives
padded points zero slice weight. Everything else acts per point (encoders, de-slicing, output
FFN) or on slice tokens, so the outputs at the real points equal those of the unpadded scene;
the outputs at padded points are don't-care. Without masks the computation is unchanged.

Only the deformables' tokens are updated; loads and rigids keep their tokens through all
processors; each processor recomputes the contacts from the current deformable tokens.

Components (facts from the reference):

* Slicing (:class:`~jaxpapers.nn.slicing.SliceBlock`): single head, one learnable temperature
  per slice (init 0.5, clamped to [0.01, 5]); tokens are slice-weighted averages of
  ``in_project_fx(x)``. Every object has its own encoder and slicing weights.
* :class:`Attention`: ``W_q, W_k, W_v`` without bias (``bias=False`` in every config), ``W_o``
  with bias; heads split the width; the softmax scale is ``output_dim ** -0.5`` — the full
  width, not the head width, as the reference writes it (kept for faithfulness).
* :class:`AttentionLayer`: ``t = attn(ln_x(x), ln_y(y), ln_z(z)) + x``; with an FFN (load
  blocks, ``experts_num=1``) then ``t = ffn(ln_t(t)) + t`` with FFN ``E -> E*mlp_ratio -> E``.
  The residual is the *summed* triplet ``z``, not the deformable's previous tokens.
* :class:`InteractionAllocation` (adaptive interaction allocation): the ``K`` interactions
  ``I_k (B, G, E)``; ``fc_weight`` (Linear E -> E) of each gives logits ``(B, G, E, K)``,
  softmax over ``K`` — a separate mixture per token and per channel; ``x = sum_k w_k I_k``;
  for contacts ``x = fc(x) + x`` with ``fc = LN -> FFN(E -> E*mlp_ratio -> E)``, for loads
  ``x`` alone. With one interaction the allocation is skipped (as the reference).
* :class:`~jaxpapers.nn.slicing.DesliceBlock`: ``out = w @ tokens + place_holder + feat``,
  ``fc_out(out) + out``; the model adds ``feat`` once more before ``deformable_ffn_out``
  (the reference does both).
* Initialisation: trunc-normal(0.02) Linear kernels, zero biases, LayerNorm 1/0 (eps 1e-5);
  GELU exact. Dropout is 0 in every reference config and is left out.

Exposed weights: ``__call__(..., return_weights=True)`` returns ``(outputs, weights)`` with
``weights["slice"]`` = ``{"loads": [(B, L_k, G)], "rigids": [(B, Q_j, G)], "deformables":
[(B, P_i, G)]}`` (zero on padded points' rows) and ``weights["allocation"]`` = one list per processor of one dict per
deformable ``{"load": (B, G, E, num_loads) | None, "contact": (B, G, E, num_contacts) |
None}`` (None where that allocation is skipped).

Choices where the reference is silent or we depart:

* The reference's optional kNN edge features of the deformables (``use_edge``) are not
  implemented (see :mod:`jaxpapers.nn.slicing`); configs with ``use_edge=true`` are therefore
  approximated by point features only.
* The reference's mixture-of-experts FFN (``experts_num > 1``) is never used by Unisoma and is
  left out.
* Validation the reference does by ``assert`` is a ``ValueError`` here, and contact pairs are
  checked at construction (indices over deformables first, then rigids, as ``contact_id``).

Parameter count (trainable ``nnx.Param`` scalars, :func:`count_params`) at the defaults
(E=128, G=32, 8 heads, mlp_ratio 4, 2 processors), with the reference configs' layouts:
deforming plate (load 6, rigid 3, in 3 -> out 4; 1 load, 1 rigid, 1 deformable, 1 pair):
879,428 (hand-counted in the tests); cavity grasping (2 loads, 2 rigids, 1 deformable,
2 pairs, out 3): 1,418,819; bilateral stamping (2 loads, 2 rigids, 2 deformables, 5 pairs,
out 5): 2,821,514.

Example::

    model = Unisoma(load_dim=4, rigid_dim=2, deformable_in_dim=2, deformable_out_dim=3,
                    num_loads=1, num_rigids=2, num_deformables=1,
                    contact_pairs=((0, 1), (0, 2)), rngs=nnx.Rngs(0))
    [out] = model([load], [die, punch], [block])     # out: (B, P, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.nn.slicing import FFN, DesliceBlock, SliceBlock, dense, layer_norm

INTERACTION_TYPES = ("contact", "load")


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param`` leaves) of a module."""
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


class Attention(nnx.Module):
    """Multi-head attention as the reference: scale ``output_dim**-0.5``, q/k/v without bias."""

    def __init__(self, dim: int, num_heads: int, *, bias: bool = False, rngs: nnx.Rngs):
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"emb_dim ({dim}) must be a positive multiple of heads ({num_heads})")
        self.num_heads = num_heads
        self.scale = dim**-0.5
        self.W_q = dense(dim, dim, ("embed", "heads"), rngs=rngs, use_bias=bias)
        self.W_k = dense(dim, dim, ("embed", "heads"), rngs=rngs, use_bias=bias)
        self.W_v = dense(dim, dim, ("embed", "heads"), rngs=rngs, use_bias=bias)
        self.W_o = dense(dim, dim, ("heads", "embed"), rngs=rngs)

    def _heads(self, x: jax.Array) -> jax.Array:  # (B, N, H*C) -> (B, H, N, C)
        return jnp.swapaxes(x.reshape(*x.shape[:-1], self.num_heads, -1), -2, -3)

    def __call__(self, x: jax.Array, y: jax.Array, z: jax.Array) -> jax.Array:
        q, k, v = self._heads(self.W_q(x)), self._heads(self.W_k(y)), self._heads(self.W_v(z))
        attn = jax.nn.softmax(jnp.einsum("...ic,...jc->...ij", q, k) * self.scale, axis=-1)
        out = jnp.swapaxes(attn @ v, -2, -3)
        return self.W_o(out.reshape(*out.shape[:-2], -1))


class AttentionLayer(nnx.Module):
    """``t = attn(ln_x(x), ln_y(y), ln_z(z)) + x``; with ``use_ffn``: ``t = ffn(ln_t(t)) + t``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, *, use_ffn: bool, rngs: nnx.Rngs):
        self.attn_layer = Attention(dim, num_heads, rngs=rngs)
        self.ln_x = layer_norm(dim, rngs=rngs)
        self.ln_y = layer_norm(dim, rngs=rngs)
        self.ln_z = layer_norm(dim, rngs=rngs)
        self.use_ffn = use_ffn
        if use_ffn:
            self.ffn = FFN(dim, dim * mlp_ratio, dim, rngs=rngs)
            self.ln_t = layer_norm(dim, rngs=rngs)

    def __call__(self, x: jax.Array, y: jax.Array, z: jax.Array) -> jax.Array:
        t = self.attn_layer(self.ln_x(x), self.ln_y(y), self.ln_z(z)) + x
        if self.use_ffn:
            t = self.ffn(self.ln_t(t)) + t
        return t


class ContactBlock(nnx.Module):
    """One contacting pair: self-attention over ``LN(a) + LN(b)`` tokens (no FFN)."""

    def __init__(self, dim: int, num_heads: int, *, rngs: nnx.Rngs):
        self.attention_layer = AttentionLayer(dim, num_heads, 0, use_ffn=False, rngs=rngs)
        self.ln_x = layer_norm(dim, rngs=rngs)
        self.ln_y = layer_norm(dim, rngs=rngs)

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        z = self.ln_x(x) + self.ln_y(y)
        return self.attention_layer(z, z, z)


class ContactModule(nnx.Module):
    """A :class:`ContactBlock` per pair of ``contact_id`` over ``[deformables..., rigids...]``."""

    def __init__(
        self, dim: int, contact_id: Sequence[tuple[int, int]], num_heads: int, *, rngs: nnx.Rngs
    ):
        self.contact_id = tuple((int(a), int(b)) for a, b in contact_id)
        self.contact_blocks = nnx.List(
            [ContactBlock(dim, num_heads, rngs=rngs) for _ in self.contact_id]
        )

    def __call__(self, solids_tokens: Sequence[jax.Array]) -> list[jax.Array]:
        return [
            block(solids_tokens[a], solids_tokens[b])
            for (a, b), block in zip(self.contact_id, self.contact_blocks)
        ]


class InteractionAllocation(nnx.Module):
    """Adaptive interaction allocation: per token and channel, a softmax over the interactions.

    ``__call__(interactions)`` returns ``(x, weights)``, ``weights`` ``(B, G, E, K)``.
    """

    def __init__(
        self, dim: int, mlp_ratio: int, interaction_type: str = "contact", *, rngs: nnx.Rngs
    ):
        if interaction_type not in INTERACTION_TYPES:
            raise ValueError(
                f"interaction_type must be one of {INTERACTION_TYPES}, got {interaction_type!r}"
            )
        self.interaction_type = interaction_type
        self.fc_weight = dense(dim, dim, ("embed", None), rngs=rngs)
        if interaction_type == "contact":
            self.fc = nnx.Sequential(
                layer_norm(dim, rngs=rngs), FFN(dim, dim * mlp_ratio, dim, rngs=rngs)
            )

    def __call__(self, interactions: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
        stack = jnp.stack(interactions, axis=-1)  # (B, G, E, K)
        logits = jnp.moveaxis(self.fc_weight(jnp.moveaxis(stack, -1, -3)), -3, -1)
        weights = jax.nn.softmax(logits, axis=-1)
        x = jnp.sum(weights * stack, axis=-1)
        if self.interaction_type == "contact":
            x = self.fc(x) + x
        return x, weights


class LoadBlock(nnx.Module):
    """The (loads, contacts, deformable) triplet -> attention + FFN: new deformable tokens."""

    def __init__(
        self,
        dim: int,
        *,
        load_num: int,
        contact_num: int,
        num_heads: int,
        mlp_ratio: int,
        rngs: nnx.Rngs,
    ):
        self.load_num = load_num
        self.contact_num = contact_num
        if load_num > 1:
            self.loads_allocation = InteractionAllocation(dim, mlp_ratio, "load", rngs=rngs)
        if contact_num > 1:
            self.contact_constraints_allocation = InteractionAllocation(
                dim, mlp_ratio, "contact", rngs=rngs
            )
        self.attention_layer = AttentionLayer(dim, num_heads, mlp_ratio, use_ffn=True, rngs=rngs)
        self.ln_load = layer_norm(dim, rngs=rngs)
        self.ln_contact_constraint = layer_norm(dim, rngs=rngs)
        self.ln_deformable_solid = layer_norm(dim, rngs=rngs)

    def __call__(
        self,
        loads: Sequence[jax.Array],
        deformable_solid: jax.Array,
        contact_constraints: Sequence[jax.Array],
    ) -> tuple[jax.Array, dict[str, jax.Array | None]]:
        weights: dict[str, jax.Array | None] = {"load": None, "contact": None}
        if self.load_num > 1:
            load, weights["load"] = self.loads_allocation(loads)
        else:
            load = loads[0]
        if self.contact_num > 1:
            contact, weights["contact"] = self.contact_constraints_allocation(contact_constraints)
        else:
            contact = contact_constraints[0]
        z = (
            self.ln_load(load)
            + self.ln_contact_constraint(contact)
            + self.ln_deformable_solid(deformable_solid)
        )
        return self.attention_layer(z, z, z), weights


class LoadModule(nnx.Module):
    """One :class:`LoadBlock` per deformable solid."""

    def __init__(
        self,
        dim: int,
        *,
        load_num: int,
        contact_num: int,
        deformable_num: int,
        num_heads: int,
        mlp_ratio: int,
        rngs: nnx.Rngs,
    ):
        self.load_blocks = nnx.List(
            [
                LoadBlock(
                    dim,
                    load_num=load_num,
                    contact_num=contact_num,
                    num_heads=num_heads,
                    mlp_ratio=mlp_ratio,
                    rngs=rngs,
                )
                for _ in range(deformable_num)
            ]
        )

    def __call__(self, loads, deformable_solids, contact_constraints):
        outs = [
            block(loads, deformable_solids[i], contact_constraints)
            for i, block in enumerate(self.load_blocks)
        ]
        return [o for o, _ in outs], [w for _, w in outs]


class Processor(nnx.Module):
    """Contacts from the current tokens, then a load block per deformable."""

    def __init__(
        self,
        dim: int,
        *,
        load_num: int,
        deformable_num: int,
        contact_id: Sequence[tuple[int, int]],
        num_heads: int,
        mlp_ratio: int,
        rngs: nnx.Rngs,
    ):
        self.contact_module = ContactModule(dim, contact_id, num_heads, rngs=rngs)
        self.load_module = LoadModule(
            dim,
            load_num=load_num,
            contact_num=len(contact_id),
            deformable_num=deformable_num,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            rngs=rngs,
        )

    def __call__(self, loads_tokens, rigid_tokens, deformable_tokens):
        contacts = self.contact_module([*deformable_tokens, *rigid_tokens])
        return self.load_module(loads_tokens, deformable_tokens, contacts)


def _check_config(num_loads: int, num_rigids: int, num_deformables: int, pairs) -> None:
    if num_loads < 1 or num_deformables < 1 or num_rigids < 0:
        raise ValueError(
            "Unisoma needs num_loads >= 1, num_deformables >= 1 and num_rigids >= 0, got "
            f"{num_loads}, {num_deformables}, {num_rigids}"
        )
    num_solids = num_deformables + num_rigids
    if not pairs:
        raise ValueError("contact_pairs must name at least one contacting pair")
    for pair in pairs:
        if len(pair) != 2 or not all(0 <= int(p) < num_solids for p in pair) or pair[0] == pair[1]:
            raise ValueError(
                f"contact pair {tuple(pair)} is invalid: each pair is two distinct object "
                f"indices in [0, {num_solids}) (deformables 0..{num_deformables - 1} first, "
                f"then rigids)"
            )


class Unisoma(nnx.Module):
    """Unisoma (see the module docstring); returns one ``(B, P_i, out)`` per deformable."""

    def __init__(
        self,
        *,
        load_dim: int,
        rigid_dim: int,
        deformable_in_dim: int,
        deformable_out_dim: int,
        num_loads: int,
        num_rigids: int,
        num_deformables: int,
        contact_pairs: Sequence[tuple[int, int]],
        emb_dim: int = 128,
        slice_num: int = 32,
        num_processors: int = 2,
        num_heads: int = 8,
        mlp_ratio: int = 4,
        rngs: nnx.Rngs,
    ):
        _check_config(num_loads, num_rigids, num_deformables, contact_pairs)
        if num_heads < 1 or emb_dim % num_heads:
            raise ValueError(f"emb_dim ({emb_dim}) must be a positive multiple of {num_heads=}")
        if min(load_dim, rigid_dim, deformable_in_dim, deformable_out_dim, mlp_ratio) < 1:
            raise ValueError("feature dims and mlp_ratio must all be >= 1")
        if num_processors < 0:
            raise ValueError(f"num_processors must be >= 0, got {num_processors}")
        self.dims = (load_dim, rigid_dim, deformable_in_dim)
        self.counts = (num_loads, num_rigids, num_deformables)
        self.contact_pairs = tuple((int(a), int(b)) for a, b in contact_pairs)
        e = emb_dim
        self.load_ffn = nnx.List(
            [dense(load_dim, e, (None, "embed"), rngs=rngs) for _ in range(num_loads)]
        )
        self.rigid_ffn = nnx.List(
            [dense(rigid_dim, e, (None, "embed"), rngs=rngs) for _ in range(num_rigids)]
        )
        self.deformable_ffn = nnx.List(
            [FFN(deformable_in_dim, e * 2, e, rngs=rngs) for _ in range(num_deformables)]
        )
        self.load_slice_blocks = nnx.List(
            [SliceBlock(e, slice_num, rngs=rngs) for _ in range(num_loads)]
        )
        self.rigid_slice_blocks = nnx.List(
            [SliceBlock(e, slice_num, rngs=rngs) for _ in range(num_rigids)]
        )
        self.deformable_slice_blocks = nnx.List(
            [SliceBlock(e, slice_num, rngs=rngs) for _ in range(num_deformables)]
        )
        self.processors = nnx.List(
            [
                Processor(
                    e,
                    load_num=num_loads,
                    deformable_num=num_deformables,
                    contact_id=self.contact_pairs,
                    num_heads=num_heads,
                    mlp_ratio=mlp_ratio,
                    rngs=rngs,
                )
                for _ in range(num_processors)
            ]
        )
        self.deformable_deslice_blocks = nnx.List(
            [DesliceBlock(e, mlp_ratio, rngs=rngs) for _ in range(num_deformables)]
        )
        self.deformable_ffn_out = nnx.List(
            [FFN(e, e * mlp_ratio, deformable_out_dim, rngs=rngs) for _ in range(num_deformables)]
        )

    def _check_inputs(self, loads, rigids, deformables) -> None:
        names = ("loads", "rigids", "deformables")
        batch = None
        for name, objs, count, dim in zip(
            names, (loads, rigids, deformables), self.counts, self.dims
        ):
            if len(objs) != count:
                raise ValueError(f"expected {count} {name}, got {len(objs)}")
            for o, x in enumerate(objs):
                batch = x.shape[0] if batch is None else batch
                if x.ndim != 3 or x.shape[-1] != dim or x.shape[0] != batch or x.shape[1] < 1:
                    raise ValueError(
                        f"{name}[{o}] has shape {x.shape}; expected (B={batch}, N >= 1, {dim})"
                    )

    @staticmethod
    def _masks(
        name: str, masks: Sequence[jax.Array | None] | None, objs: Sequence[jax.Array]
    ) -> list[jax.Array | None]:
        if masks is None:
            return [None] * len(objs)
        if len(masks) != len(objs):
            raise ValueError(
                f"expected {len(objs)} {name} masks (None for an unpadded object), got {len(masks)}"
            )
        for o, (m, x) in enumerate(zip(masks, objs)):
            if m is not None and jnp.shape(m) != x.shape[:2]:
                raise ValueError(
                    f"{name} mask {o} has shape {jnp.shape(m)}; expected (B, N) = {x.shape[:2]}"
                )
        return list(masks)

    def __call__(
        self,
        loads: Sequence[jax.Array],
        rigids: Sequence[jax.Array],
        deformables: Sequence[jax.Array],
        *,
        load_masks: Sequence[jax.Array | None] | None = None,
        rigid_masks: Sequence[jax.Array | None] | None = None,
        deformable_masks: Sequence[jax.Array | None] | None = None,
        return_weights: bool = False,
    ) -> list[jax.Array] | tuple[list[jax.Array], dict[str, Any]]:
        """Per-deformable outputs ``(B, P_i, out)``.

        ``*_masks``: None, or one entry per object of that kind, ``(B, N_o)`` 1/0 (real /
        padded points) or None (no padding); see the module docstring.
        """
        self._check_inputs(loads, rigids, deformables)
        load_masks = self._masks("load", load_masks, loads)
        rigid_masks = self._masks("rigid", rigid_masks, rigids)
        deformable_masks = self._masks("deformable", deformable_masks, deformables)
        load_features = [f(x) for f, x in zip(self.load_ffn, loads)]
        rigid_features = [f(x) for f, x in zip(self.rigid_ffn, rigids)]
        deformable_features = [f(x) for f, x in zip(self.deformable_ffn, deformables)]

        load_sliced = [
            s(x, m) for s, x, m in zip(self.load_slice_blocks, load_features, load_masks)
        ]
        rigid_sliced = [
            s(x, m) for s, x, m in zip(self.rigid_slice_blocks, rigid_features, rigid_masks)
        ]
        deformable_sliced = [
            s(x, m)
            for s, x, m in zip(self.deformable_slice_blocks, deformable_features, deformable_masks)
        ]
        loads_tokens = [t for t, _ in load_sliced]
        rigid_tokens = [t for t, _ in rigid_sliced]
        deformable_tokens = [t for t, _ in deformable_sliced]
        deformable_weights = [w for _, w in deformable_sliced]

        allocation = []
        for processor in self.processors:
            deformable_tokens, alloc = processor(loads_tokens, rigid_tokens, deformable_tokens)
            allocation.append(alloc)

        outputs = [
            ffn_out(deslice(tokens, weights, feature) + feature)
            for ffn_out, deslice, tokens, weights, feature in zip(
                self.deformable_ffn_out,
                self.deformable_deslice_blocks,
                deformable_tokens,
                deformable_weights,
                deformable_features,
            )
        ]
        if not return_weights:
            return outputs
        slices = {
            "loads": [w for _, w in load_sliced],
            "rigids": [w for _, w in rigid_sliced],
            "deformables": deformable_weights,
        }
        return outputs, {"slice": slices, "allocation": allocation}
