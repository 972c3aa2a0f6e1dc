"""Transolver-style slicing: points -> slice tokens -> points, and Physics-Attention.

A *slice* is a soft cluster of points learned from their features. Each point ``n`` gets slice
weights ``w[n, g] = softmax_g(logits[n, g] / tau_g)`` (a distribution over the ``G`` slices,
sharpened or flattened by a learnable temperature ``tau``); a *slice token* is the weighted
average of the point features, ``z[g] = sum_n w[n, g] f[n] / (sum_n w[n, g] + eps)``; and
*de-slicing* maps tokens back to points, ``y[n] = sum_g w[n, g] z[g]``. Slicing is invariant to
the order of the points and de-slicing is equivariant, so any model that only mixes tokens in
between is point-permutation equivariant and accepts any number of points.

Pure functions (any leading axes): :func:`slice_weights`, :func:`slice_tokens`,
:func:`deslice`, :func:`mask_weights`. Modules:

* :class:`FFN` — ``Linear -> GELU -> Linear``, the ``MLP(layer_num=0)`` that Unisoma's ``FFN``
  and Transolver's ``MLP(n_layers=0)`` both reduce to (attributes ``fc_pre`` / ``fc_post``).
* :class:`SliceBlock` — Unisoma's single-head slicing (therontau0054/Unisoma,
  ``model/slice.py``): ``fx = in_project_fx(x)``, ``x_mid = in_project_x(x) +
  place_holder_x``, ``w = softmax(in_project_slice(x_mid) / clip(temperature_x, 0.01, 5))``
  with one temperature per slice (init 0.5); returns ``(tokens, weights)``.
* :class:`DesliceBlock` — Unisoma's ``out = w @ tokens + place_holder + feature``, then
  ``fc_out(out) + out`` (``fc_out`` an FFN ``E -> E*mlp_ratio -> E``).
* :class:`PhysicsAttention` — Transolver's ``Physics_Attention_1D`` (thuml/Transolver,
  irregular meshes): per head (``dim_head = dim / heads``) project ``x`` and ``fx`` to
  ``heads * dim_head``, slice weights from a ``Linear(dim_head, slice_num)`` shared by the
  heads with one temperature per head (init 0.5, not clamped, as the 1D version; the 2D/3D
  versions clamp to [0.1, 5] — ``temperature_clip`` offers that), slice tokens, softmax
  attention among the tokens (``to_q/to_k/to_v`` without bias, scale ``dim_head**-0.5``),
  de-slice, ``to_out``.

Initialisation as both references' ``_init_weights``: every Linear kernel truncated-normal with
std 0.02, biases 0 (so Transolver's ``orthogonal_`` init of ``in_project_slice``, which its
model's ``initialize_weights`` overwrites afterwards, is not used here either). PyTorch's
``trunc_normal_(std=0.02)`` truncates at +-2 absolute (a plain normal in practice); Flax's
truncates at +-2 std and rescales to std 0.02, which we accept. Place-holders are
``uniform[0, 1) / emb_dim`` as the references. Dropout is 0 in both references' configs and is
left out. GELU is the exact (erf) form, PyTorch's ``nn.GELU()`` default.

Padded point sets (``mask``): datasets whose samples differ in their number of points are
batched by padding every sample to a common ``N`` (the references train those with batch 1).
``slice_tokens``, :class:`SliceBlock` and :class:`PhysicsAttention` take an optional ``mask``
``(B, N)`` (1 = a real point, 0 = padding): a padded point gets zero slice weight, in the
token's numerator and in its normaliser ``sum_n w[n, g]``, and its features are zeroed before
the sum (``jnp.where``, so even non-finite garbage in the padding cannot reach a token). The
tokens, and so every output at the real points, are then those of the unpadded set up to
float32 summation order. The returned weights are zero on padded rows (they no longer sum to
1 there), and de-sliced outputs at padded points are don't-care values. ``mask=None`` runs
exactly the unmasked computation (no extra operations).

Unisoma's optional kNN edge features (``use_edge``: edge lengths projected and sliced with the
mean slice weight of their two end points) are not implemented: our generators give point sets
without a shared edge layout in every dataset, and the model is complete without them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.core.sharding import LOGICAL_AXES, logical

INIT_STD = 0.02
SLICE_EPS = 1e-5  # both references: tokens / (slice_norm + 1e-5)
UNISOMA_TEMPERATURE_CLIP = (0.01, 5.0)  # Unisoma's temperature_x.clamp(min=0.01, max=5)

Axes = tuple[str | None, str | None]


def dense(
    in_features: int,
    out_features: int,
    axes: Axes,
    *,
    rngs: nnx.Rngs,
    use_bias: bool = True,
) -> nnx.Linear:
    """A Linear as the references initialise it: trunc-normal(0.02) kernel, zero bias."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=logical(nnx.initializers.truncated_normal(INIT_STD), *axes),
        bias_init=logical(nnx.initializers.zeros_init(), axes[1]),
        rngs=rngs,
    )


def layer_norm(dim: int, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """PyTorch's ``nn.LayerNorm(dim)``: epsilon 1e-5, scale 1, bias 0."""
    return nnx.LayerNorm(
        dim,
        epsilon=1e-5,
        scale_metadata={LOGICAL_AXES: ("embed",)},
        bias_metadata={LOGICAL_AXES: ("embed",)},
        rngs=rngs,
    )


def gelu(x: jax.Array) -> jax.Array:
    """PyTorch's default ``nn.GELU()`` (exact, erf-based)."""
    return jax.nn.gelu(x, approximate=False)


def place_holder_param(shape: tuple[int, ...], dim: int, rngs: nnx.Rngs) -> nnx.Param:
    """``torch.rand(shape) / dim``, the references' learnable offsets."""
    value = jax.random.uniform(rngs.params(), shape, jnp.float32) / dim
    return nnx.Param(value)


# --------------------------------------------------------------------------- pure functions


def slice_weights(
    logits: jax.Array, temperature: jax.Array, clip: tuple[float, float] | None = None
) -> jax.Array:
    """``softmax(logits / tau)`` over the last (slice) axis; ``tau`` broadcasts.

    ``clip`` clamps the temperature first (Unisoma: (0.01, 5)); None leaves it as is.
    """
    if clip is not None:
        temperature = jnp.clip(temperature, clip[0], clip[1])
    return jax.nn.softmax(logits / temperature, axis=-1)


def _point_mask(mask: jax.Array, points_shape: tuple[int, ...]) -> jax.Array:
    """``mask > 0`` broadcast to ``points_shape`` (``(..., N)``), or a ValueError."""
    try:
        return jnp.broadcast_to(jnp.asarray(mask) > 0, points_shape)
    except ValueError:
        raise ValueError(
            f"mask {jnp.shape(mask)} must broadcast to the points' shape {points_shape} (..., N)"
        ) from None


def mask_weights(weights: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Slice weights ``(..., N, G)`` with the rows of padded points (``mask`` 0) set to 0.

    ``mask`` ``(..., N)`` (1/0 or bool, broadcast to the weights' leading axes); None returns
    ``weights`` unchanged.
    """
    if mask is None:
        return weights
    keep = _point_mask(mask, weights.shape[:-1])
    return jnp.where(keep[..., None], weights, jnp.zeros((), weights.dtype))


def slice_tokens(
    weights: jax.Array,
    features: jax.Array,
    eps: float = SLICE_EPS,
    *,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Slice tokens: weighted averages of the point features.

    Args:
      weights: ``(..., N, G)`` slice weights (each row sums to 1 over ``G``).
      features: ``(..., N, C)`` point features.
      eps: added to each slice's total weight before dividing (the references' 1e-5).
      mask: optional ``(..., N)`` (broadcastable), 1 for real points and 0 for padding:
        padded points get weight 0 and features 0, so they add nothing to either sum.

    Returns:
      ``(..., G, C)``: ``sum_n w[n, g] f[n] / (sum_n w[n, g] + eps)``.
    """
    if weights.shape[:-1] != features.shape[:-1]:
        raise ValueError(
            f"weights {weights.shape} and features {features.shape} must agree on all but the "
            "last axis (..., N)"
        )
    if mask is not None:
        keep = _point_mask(mask, weights.shape[:-1])[..., None]
        weights = jnp.where(keep, weights, jnp.zeros((), weights.dtype))
        features = jnp.where(keep, features, jnp.zeros((), features.dtype))
    total = jnp.einsum("...ng,...nc->...gc", weights, features)
    norm = jnp.sum(weights, axis=-2)[..., None]
    return total / (norm + eps)


def deslice(weights: jax.Array, tokens: jax.Array) -> jax.Array:
    """Back to points: ``(..., N, G) @ (..., G, C) -> (..., N, C)``."""
    if weights.shape[-1] != tokens.shape[-2]:
        raise ValueError(
            f"weights {weights.shape} have {weights.shape[-1]} slices but tokens {tokens.shape} "
            f"have {tokens.shape[-2]}"
        )
    return jnp.einsum("...ng,...gc->...nc", weights, tokens)


# --------------------------------------------------------------------------- modules


class FFN(nnx.Module):
    """``fc_post(gelu(fc_pre(x)))``: the references' MLP with no hidden layers."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, *, rngs: nnx.Rngs):
        self.fc_pre = dense(input_dim, hidden_dim, ("embed", "mlp"), rngs=rngs)
        self.fc_post = dense(hidden_dim, output_dim, ("mlp", "embed"), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc_post(gelu(self.fc_pre(x)))


class SliceBlock(nnx.Module):
    """Unisoma's slicing of one object: ``(B, N, E) -> tokens (B, G, E), weights (B, N, G)``."""

    def __init__(self, emb_dim: int, slice_num: int, *, rngs: nnx.Rngs):
        if emb_dim < 1 or slice_num < 1:
            raise ValueError(
                f"emb_dim and slice_num must be >= 1, got emb_dim={emb_dim}, slice_num={slice_num}"
            )
        self.emb_dim = emb_dim
        self.slice_num = slice_num
        self.in_project_x = dense(emb_dim, emb_dim, ("embed", "mlp"), rngs=rngs)
        self.in_project_fx = dense(emb_dim, emb_dim, ("embed", "mlp"), rngs=rngs)
        self.in_project_slice = dense(emb_dim, slice_num, ("mlp", None), rngs=rngs)
        self.temperature_x = nnx.Param(jnp.full((slice_num,), 0.5, jnp.float32))
        self.place_holder_x = place_holder_param((emb_dim,), emb_dim, rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """``x`` ``(B, N, E)``; ``mask`` ``(B, N)`` 1/0 for real/padded points, or None.

        With a mask the returned weights are zero on padded rows (see the module docstring).
        """
        if x.shape[-1] != self.emb_dim:
            raise ValueError(f"SliceBlock expects {self.emb_dim} features, got shape {x.shape}")
        fx_mid = self.in_project_fx(x)
        x_mid = self.in_project_x(x) + self.place_holder_x[...]
        weights = slice_weights(
            self.in_project_slice(x_mid), self.temperature_x[...], UNISOMA_TEMPERATURE_CLIP
        )
        if mask is None:
            return slice_tokens(weights, fx_mid), weights
        return slice_tokens(weights, fx_mid, mask=mask), mask_weights(weights, mask)


class DesliceBlock(nnx.Module):
    """Unisoma's de-slicing: ``out = w @ tokens + place_holder + feature; fc_out(out) + out``."""

    def __init__(self, emb_dim: int, mlp_ratio: int, *, rngs: nnx.Rngs):
        self.fc_out = FFN(emb_dim, emb_dim * mlp_ratio, emb_dim, rngs=rngs)
        self.place_holder = place_holder_param((emb_dim,), emb_dim, rngs)

    def __call__(self, tokens: jax.Array, weights: jax.Array, feature: jax.Array) -> jax.Array:
        out = deslice(weights, tokens) + self.place_holder[...] + feature
        return self.fc_out(out) + out


class PhysicsAttention(nnx.Module):
    """Transolver's Physics-Attention over an irregular point set: ``(B, N, dim) -> same``.

    ``__call__(x, return_weights=True)`` also returns the slice weights ``(B, heads, N, G)``;
    ``__call__(x, mask=m)`` with ``m`` ``(B, N)`` 1/0 leaves padded points out of every slice
    token (their weights, returned as 0, and outputs are don't-care).
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        slice_num: int = 32,
        temperature_clip: tuple[float, float] | None = None,
        rngs: nnx.Rngs,
    ):
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        if slice_num < 1:
            raise ValueError(f"slice_num must be >= 1, got {slice_num}")
        self.dim = dim
        self.num_heads = num_heads
        self.dim_head = dim // num_heads
        self.slice_num = slice_num
        self.temperature_clip = temperature_clip
        inner = self.dim_head * num_heads
        self.in_project_x = dense(dim, inner, ("embed", "heads"), rngs=rngs)
        self.in_project_fx = dense(dim, inner, ("embed", "heads"), rngs=rngs)
        self.in_project_slice = dense(self.dim_head, slice_num, (None, None), rngs=rngs)
        self.temperature = nnx.Param(jnp.full((num_heads, 1, 1), 0.5, jnp.float32))
        d = self.dim_head
        self.to_q = dense(d, d, (None, None), rngs=rngs, use_bias=False)
        self.to_k = dense(d, d, (None, None), rngs=rngs, use_bias=False)
        self.to_v = dense(d, d, (None, None), rngs=rngs, use_bias=False)
        self.to_out = dense(inner, dim, ("heads", "embed"), rngs=rngs)

    def _heads(self, x: jax.Array) -> jax.Array:  # (B, N, H*D) -> (B, H, N, D)
        x = x.reshape(*x.shape[:-1], self.num_heads, self.dim_head)
        return jnp.swapaxes(x, -2, -3)

    def __call__(
        self,
        x: jax.Array,
        *,
        mask: jax.Array | None = None,
        return_weights: bool = False,
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        if x.shape[-1] != self.dim:
            raise ValueError(f"PhysicsAttention expects {self.dim} features, got shape {x.shape}")
        fx_mid = self._heads(self.in_project_fx(x))
        x_mid = self._heads(self.in_project_x(x))
        weights = slice_weights(
            self.in_project_slice(x_mid), self.temperature[...], self.temperature_clip
        )  # (B, H, N, G)
        if mask is None:
            tokens = slice_tokens(weights, fx_mid)  # (B, H, G, D)
        else:
            if jnp.shape(mask) != x.shape[:-1]:
                raise ValueError(f"mask {jnp.shape(mask)} must be (B, N) = {x.shape[:-1]}")
            head_mask = jnp.expand_dims(mask, -2)  # (B, 1, N): the same for every head
            weights = mask_weights(weights, head_mask)
            tokens = slice_tokens(weights, fx_mid, mask=head_mask)
        q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)
        dots = jnp.einsum("...id,...jd->...ij", q, k) * self.dim_head**-0.5
        out_tokens = jax.nn.softmax(dots, axis=-1) @ v
        out = jnp.swapaxes(deslice(weights, out_tokens), -2, -3)  # (B, N, H, D)
        out = self.to_out(out.reshape(*out.shape[:-2], -1))
        return (out, weights) if return_weights else out
