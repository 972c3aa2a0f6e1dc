"""LaDEEP: two-stage Transformer surrogate for stretch bending (KDD 2025), in Flax NNX.

Faithful to the reference code (therontau0054/LaDEEP, ``core/*.py`` and ``main.py``); every
component keeps the reference's name. Arrays are channels-last: a curve is ``(B, L, 3)`` of
min-max scaled point differences (:mod:`jaxpapers.physics.curves`), the cross-section is an
SDF image ``(B, H, W, 1)``, the process parameters are ``(B, motion_degrees)``.

Data flow (``LaDEEP.__call__``)::

    strip  -> cle_for_strip ─┐            section -> cse ─> csd -> section_recon
    mould  -> cle_for_mould  │ off(strip tokens, section feature)
    params -> mpe            │
    dp_loading(Q = [params ‖ mould], K = V = strip) -> cld_for_loading   -> loaded
      └─> dp_unloading(self-attention)              -> cld_for_unloading -> unloaded

Components (facts read from the reference):

* :class:`CharacteristicLineEncoder` — pointwise Linear 3->E + ReLU, then the L points are cut
  into ``seq_length`` contiguous regions and each region has its *own* (unshared) Conv1d
  ``(L/S) -> 1`` over its points (no activation). A global token — pointwise Linear 3->E +
  ReLU, Conv1d ``L -> 1`` over all points, ReLU — is broadcast-added to every region token.
* :class:`CharacteristicLineDecoder` — per-region unshared Conv1d ``1 -> L/S`` + ReLU expands
  each token back to its points, then a pointwise Linear E->3 and a sigmoid.
* :class:`MotionParametersEncoder` — each of the 6 scalars goes through a shared Linear 1->E +
  ReLU, then its own Conv1d ``1 -> S/6`` + ReLU, giving S tokens.
* :class:`CrossSectionEncoder` — backbone -> 512 features -> a residual conv *adapter* (the
  512 vector viewed as a 32x16 image; conv3x3 1->32->64->32->1 with ReLU, + identity, ReLU).
* :class:`CrossSectionDecoder` — transposed convs (k4, s2) halving channels from 512, each +
  BN + ReLU, a bilinear (2, 1) upsample before the last stage, a 1x1 conv and a sigmoid.
* :class:`ObjectFeatureFusioner` — Linear 512->E of the section feature, added to every strip
  token.
* :class:`LoadingModule` / :class:`UnloadingModule` — learned positional offsets
  (``arange(1, S+1) / 128``, one scalar per position, shared across features; the reference
  divides by 128, ``PositionalEncoding``'s default ``emb_dim``, not by the model's 64), then
  post-LN layers ``z = LN(z + MHA(...)); z = LN(z + FFN(z))``, FFN E -> E*heads/2 -> E with
  ReLU, attention projections without bias. Loading: the query is ``W_q([params ‖ mould])``
  (2E -> E) and keys/values are the strip tokens; params and mould are not updated between
  layers. Unloading: self-attention over the loaded strip tokens.
* Dropout is 0 everywhere in the reference (``LoadingModule``/``UnloadingModule`` default),
  so there is none here; the model is deterministic and needs no ``rngs`` after init.
* Initialisation as the reference's ``_initialize``: convolutions Kaiming-normal (fan_out,
  ReLU gain), linears Xavier-uniform with gain sqrt(2), biases zero; LayerNorm/BN scale 1,
  bias 0. A PyTorch ``ConvTranspose2d``'s "fan_out" is ``in_channels * k * k`` (its weight is
  stored ``(in, out, k, k)``), so the transposed convs use fan-in in Flax's ``(k, k, in, out)``
  layout, giving the same variance.
* Loss (``main.py``): three Adam optimizers over disjoint groups (unloading params, section
  params, the rest) and three ``backward`` calls accumulated before any step, so every group
  sees the gradient of ``loss_p(loaded) + loss_p(unloaded) + loss_r``: :func:`ladeep_loss`
  returns that sum. :func:`param_group` labels parameters like the reference's split.

Choices where we depart from, or the reference is silent on, something:

* Section backbone: the reference uses an ImageNet-pretrained, frozen ResNet-18 (input
  replicated to 3 channels). No weights can be downloaded here, so ``section_encoder="cnn"``
  (default) is a small trainable CNN (conv3x3 stride 2 with 32/64/128/256 channels + ReLU,
  global average pool, Linear 256->512 + ReLU; ReLU so that, like the pooled ResNet output,
  the feature is non-negative), and ``"resnet18"`` is :class:`jaxpapers.nn.resnet.ResNet`
  (one input channel, 3x3 stride-1 stem without max-pool when ``min(H, W) <= 64``, else the
  7x7 stem; its classifier head removed) trained from scratch. ``freeze_section_backbone``
  puts the backbone behind ``stop_gradient`` as the reference does (useful only with weights
  loaded from elsewhere).
* ``section_shape``: the reference decodes only 512x256 (7 front stages + 1 rear stage from
  1x1). For ``(H, W)`` we use ``log2(W)`` stride-2 stages (the first ``log2(W)-1`` "front",
  then the bilinear ``(H/W, 1)`` upsample, then the "rear" stage), channels
  ``512 // 2**i``. ``W`` must be a power of two in [2, 512] and ``H`` a multiple of ``W``;
  ``(512, 256)`` gives exactly the reference decoder.
* BatchNorm (decoder, and the ResNet-18 backbone) follows ``model.train()`` /
  ``model.eval()``; momentum 0.9 in Flax = PyTorch's 0.1, epsilon 1e-5 as PyTorch.
  LayerNorm epsilon 1e-5 (PyTorch's default).
* ``loss_p`` uses a norm whose gradient is 0 (not NaN) at an exactly zero residual, as
  PyTorch's ``torch.norm`` does.

Parameter count (trainable ``nnx.Param`` entries; BN running statistics excluded) of
``LaDEEP()`` with the defaults (``section_shape=(64, 32)``, CNN section encoder): 3,609,066;
of those the section encoder has 556,993 and the section decoder 2,803,233 (with
``section_shape=(512, 256)`` the decoder is the reference's; with the ResNet-18 encoder the
section encoder has 11,205,249 with the 3x3 stem, 11,207,809 with the 7x7 one).

Example::

    model = LaDEEP(rngs=nnx.Rngs(0))
    recon, loaded, unloaded = model(strip, mould, section, params)   # (B,64,32,1), 2x (B,300,3)
    loss, metrics = ladeep_loss((recon, loaded, unloaded), batch, axis_weights)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.nn.resnet import ResNet

_XAVIER_RELU = nnx.initializers.variance_scaling(2.0, "fan_avg", "uniform")
_KAIMING_FAN_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
# PyTorch ConvTranspose2d "fan_out" = in_channels * k * k = Flax fan_in for (k, k, in, out).
_KAIMING_CONVT = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")
_ZEROS = nnx.initializers.zeros_init()
_LN_EPS = 1e-5
SECTION_FEATURES = 512  # the ResNet-18 pooled width that the reference's adapter reshapes


def _linear(d_in: int, d_out: int, rngs: nnx.Rngs, *, bias: bool = True) -> nnx.Linear:
    """A PyTorch ``nn.Linear`` as the reference initialises it."""
    return nnx.Linear(
        d_in, d_out, use_bias=bias, kernel_init=_XAVIER_RELU, bias_init=_ZEROS, rngs=rngs
    )


def _pointwise(d_in: int, d_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    """A PyTorch ``Conv1d(d_in, d_out, 1)``: a Linear with Kaiming fan-out init."""
    return nnx.Linear(d_in, d_out, kernel_init=_KAIMING_FAN_OUT, bias_init=_ZEROS, rngs=rngs)


def _conv2d(c_in: int, c_out: int, rngs: nnx.Rngs, *, k: int = 3, stride: int = 1) -> nnx.Conv:
    return nnx.Conv(
        c_in,
        c_out,
        kernel_size=(k, k),
        strides=(stride, stride),
        padding="SAME",
        kernel_init=_KAIMING_FAN_OUT,
        bias_init=_ZEROS,
        rngs=rngs,
    )


def _kaiming_fan_out(rngs: nnx.Rngs, shape: Sequence[int], fan_out: int) -> jax.Array:
    """Kaiming-normal (ReLU gain) samples for a bank of unshared 1x1 Conv1d weights."""
    return jax.random.normal(rngs.params(), tuple(shape), jnp.float32) * math.sqrt(2.0 / fan_out)


def _check_curve(x: jax.Array, name: str, length: int) -> None:
    if x.ndim != 3 or x.shape[1] != length or x.shape[2] != 3:
        raise ValueError(f"{name} must have shape (batch, {length}, 3), got {tuple(x.shape)}.")


# --------------------------------------------------------------------------- curve encoders


class CharacteristicLineEncoder(nnx.Module):
    """``(B, L, dim)`` curve -> ``(B, S, E)`` region tokens plus a broadcast global token.

    Example::

        cle = CharacteristicLineEncoder(input_length=300, seq_length=60, emb_dim=64,
                                        rngs=nnx.Rngs(0))
        cle(jnp.zeros((2, 300, 3))).shape  # (2, 60, 64)
    """

    def __init__(
        self,
        *,
        dim: int = 3,
        input_length: int = 300,
        seq_length: int = 60,
        emb_dim: int = 64,
        rngs: nnx.Rngs,
    ):
        if input_length % seq_length:
            raise ValueError(
                f"input_length ({input_length}) must be a multiple of seq_length ({seq_length})."
            )
        self.dim, self.input_length, self.seq_length = dim, input_length, seq_length
        per_region = input_length // seq_length
        self.local_emb_nn = _pointwise(dim, emb_dim, rngs)
        # seq_length unshared Conv1d(per_region, 1, 1): weights (S, P), biases (S,).
        self.local_region_kernel = nnx.Param(_kaiming_fan_out(rngs, (seq_length, per_region), 1))
        self.local_region_bias = nnx.Param(jnp.zeros((seq_length,)))
        self.global_emb_nn = _pointwise(dim, emb_dim, rngs)
        # Conv1d(input_length, 1, 1) over the points.
        self.global_kernel = nnx.Param(_kaiming_fan_out(rngs, (input_length,), 1))
        self.global_bias = nnx.Param(jnp.zeros(()))

    def __call__(self, x: jax.Array) -> jax.Array:
        b = x.shape[0]
        g = jax.nn.relu(self.global_emb_nn(x))  # (B, L, E)
        g = jnp.einsum("ble,l->be", g, self.global_kernel[...]) + self.global_bias[...]
        g = jax.nn.relu(g)[:, None, :]  # (B, 1, E)
        loc = jax.nn.relu(self.local_emb_nn(x))
        loc = loc.reshape(b, self.seq_length, -1, loc.shape[-1])  # (B, S, P, E)
        loc = jnp.einsum("bspe,sp->bse", loc, self.local_region_kernel[...])
        loc = loc + self.local_region_bias[...][None, :, None]
        return loc + g


class CharacteristicLineDecoder(nnx.Module):
    """``(B, S, E)`` tokens -> ``(B, L, dim)`` in (0, 1): per-region expansion, Linear, sigmoid.

    Example::

        cld = CharacteristicLineDecoder(seq_length=60, emb_dim=64, output_length=300,
                                        rngs=nnx.Rngs(0))
        cld(jnp.zeros((2, 60, 64))).shape  # (2, 300, 3)
    """

    def __init__(
        self,
        *,
        dim: int = 3,
        seq_length: int = 60,
        emb_dim: int = 64,
        output_length: int = 300,
        rngs: nnx.Rngs,
    ):
        if output_length % seq_length:
            raise ValueError(
                f"output_length ({output_length}) must be a multiple of seq_length ({seq_length})."
            )
        per_region = output_length // seq_length
        self.seq_length, self.output_length = seq_length, output_length
        # seq_length unshared Conv1d(1, per_region, 1): weights and biases (S, P).
        self.re_local_region_kernel = nnx.Param(
            _kaiming_fan_out(rngs, (seq_length, per_region), per_region)
        )
        self.re_local_region_bias = nnx.Param(jnp.zeros((seq_length, per_region)))
        self.re_emb_nn = _pointwise(emb_dim, dim, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, s, e = x.shape
        if s != self.seq_length:
            raise ValueError(f"expected {self.seq_length} tokens, got {s}.")
        y = x[:, :, None, :] * self.re_local_region_kernel[...][None, :, :, None]
        y = jax.nn.relu(y + self.re_local_region_bias[...][None, :, :, None])  # (B, S, P, E)
        y = y.reshape(b, self.output_length, e)
        return jax.nn.sigmoid(self.re_emb_nn(y))


class MotionParametersEncoder(nnx.Module):
    """``(B, D)`` process parameters -> ``(B, S, E)`` tokens, S/D tokens per parameter.

    Example::

        mpe = MotionParametersEncoder(seq_length=60, emb_dim=64, rngs=nnx.Rngs(0))
        mpe(jnp.zeros((2, 6))).shape  # (2, 60, 64)
    """

    def __init__(
        self, *, seq_length: int = 60, emb_dim: int = 64, motion_degrees: int = 6, rngs: nnx.Rngs
    ):
        if seq_length % motion_degrees:
            raise ValueError(
                f"seq_length ({seq_length}) must be a multiple of motion_degrees "
                f"({motion_degrees})."
            )
        per_degree = seq_length // motion_degrees
        self.degrees, self.seq_length = motion_degrees, seq_length
        self.emb_nn = _linear(1, emb_dim, rngs)
        # motion_degrees unshared Conv1d(1, per_degree, 1): weights and biases (D, S/D).
        self.fc_kernel = nnx.Param(_kaiming_fan_out(rngs, (motion_degrees, per_degree), per_degree))
        self.fc_bias = nnx.Param(jnp.zeros((motion_degrees, per_degree)))

    def __call__(self, x: jax.Array) -> jax.Array:
        b = x.shape[0]
        e = jax.nn.relu(self.emb_nn(x[..., None]))  # (B, D, E)
        y = e[:, :, None, :] * self.fc_kernel[...][None, :, :, None]
        y = jax.nn.relu(y + self.fc_bias[...][None, :, :, None])  # (B, D, S/D, E)
        return y.reshape(b, self.seq_length, e.shape[-1])


# --------------------------------------------------------------------------- cross-section


class SmallSectionCNN(nnx.Module):
    """Default section backbone: 4 stride-2 conv3x3 + ReLU, average pool, Linear -> 512 + ReLU."""

    def __init__(self, *, widths: Sequence[int] = (32, 64, 128, 256), rngs: nnx.Rngs):
        convs, c_in = [], 1
        for w in widths:
            convs.append(_conv2d(c_in, w, rngs, stride=2))
            c_in = w
        self.convs = nnx.List(convs)
        self.fc = _linear(c_in, SECTION_FEATURES, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return jax.nn.relu(self.fc(x.mean(axis=(1, 2))))


class CrossSectionEncoder(nnx.Module):
    """``(B, H, W, 1)`` SDF image -> ``(B, 512)``: backbone, then the residual conv adapter.

    Example::

        cse = CrossSectionEncoder(section_shape=(64, 32), rngs=nnx.Rngs(0))
        cse(jnp.zeros((2, 64, 32, 1))).shape  # (2, 512)
    """

    def __init__(
        self,
        *,
        backbone: str = "cnn",
        section_shape: tuple[int, int] = (64, 32),
        freeze_backbone: bool = False,
        rngs: nnx.Rngs,
    ):
        if backbone == "cnn":
            self.section_encoder = SmallSectionCNN(rngs=rngs)
        elif backbone == "resnet18":
            net = ResNet(
                "resnet18", 1, in_channels=1, small_input=min(section_shape) <= 64, rngs=rngs
            )
            net.head = None  # only the pooled features are used
            self.section_encoder = net
        else:
            raise ValueError(f"section_encoder must be 'cnn' or 'resnet18', got {backbone!r}.")
        self.backbone = backbone
        self.freeze_backbone = freeze_backbone
        self.conv1 = _conv2d(1, 32, rngs)
        self.conv2 = _conv2d(32, 64, rngs)
        self.conv3 = _conv2d(64, 32, rngs)
        self.conv4 = _conv2d(32, 1, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.backbone == "cnn":
            f = self.section_encoder(x)
        else:
            f = self.section_encoder.features(x)
        if self.freeze_backbone:
            f = jax.lax.stop_gradient(f)
        b = f.shape[0]
        img = f.reshape(b, 32, 16, 1)  # the reference's view(-1, 1, 32, 16), channels-last
        out = jax.nn.relu(self.conv1(img))
        out = jax.nn.relu(self.conv2(out))
        out = jax.nn.relu(self.conv3(out))
        out = jax.nn.relu(self.conv4(out))
        return jax.nn.relu(out + img).reshape(b, SECTION_FEATURES)


def _check_section_shape(section_shape: Sequence[int]) -> tuple[int, int]:
    if len(section_shape) != 2:
        raise ValueError(f"section_shape must be (H, W), got {section_shape!r}.")
    h, w = int(section_shape[0]), int(section_shape[1])
    if w < 2 or w > 512 or w & (w - 1):
        raise ValueError(f"section width must be a power of two in [2, 512], got {w}.")
    if h < w or h % w:
        raise ValueError(f"section height must be a positive multiple of the width, got {h}x{w}.")
    return h, w


class CrossSectionDecoder(nnx.Module):
    """``(B, 512)`` -> ``(B, H, W, 1)`` in (0, 1): transposed convs + BN + ReLU, sigmoid.

    ``width`` is the channel count the channel ladder starts from (the reference: 512,
    halving at every 2x upsampling: 512 -> 256 -> ... ). The decoder only serves the
    auxiliary reconstruction loss, yet at 512 it costs more than the rest of LaDEEP on
    a CPU (measured: 600 of 800 ms per batch-32 training step at 32x16), so CPU configs
    may narrow it; the first layer always reads the 512 section features.

    Example::

        csd = CrossSectionDecoder(section_shape=(64, 32), rngs=nnx.Rngs(0))
        csd(jnp.zeros((2, 512))).shape  # (2, 64, 32, 1)
    """

    def __init__(
        self,
        *,
        section_shape: tuple[int, int] = (64, 32),
        width: int = SECTION_FEATURES,
        rngs: nnx.Rngs,
    ):
        h, w = _check_section_shape(section_shape)
        self.section_shape = (h, w)
        n = int(round(math.log2(w)))
        if width < 2 ** (n - 1):
            raise ValueError(f"decoder width {width} must be at least {2 ** (n - 1)} for W={w}.")
        hiddens = [SECTION_FEATURES] + [width // 2**i for i in range(1, n)]

        def convt(c_in: int, c_out: int) -> nnx.ConvTranspose:
            return nnx.ConvTranspose(
                c_in,
                c_out,
                kernel_size=(4, 4),
                strides=(2, 2),
                padding="SAME",
                kernel_init=_KAIMING_CONVT,
                bias_init=_ZEROS,
                rngs=rngs,
            )

        def bn(c: int) -> nnx.BatchNorm:
            return nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, rngs=rngs)

        self.front_convs = nnx.List([convt(a, b) for a, b in zip(hiddens[:-1], hiddens[1:])])
        self.front_bns = nnx.List([bn(c) for c in hiddens[1:]])
        self.rear_conv = convt(hiddens[-1], hiddens[-1])
        self.rear_bn = bn(hiddens[-1])
        self.out_conv = _conv2d(hiddens[-1], 1, rngs, k=1)

    def __call__(self, x: jax.Array) -> jax.Array:
        b = x.shape[0]
        y = x.reshape(b, 1, 1, x.shape[-1])
        for conv, bn in zip(self.front_convs, self.front_bns):
            y = jax.nn.relu(bn(conv(y)))
        h, w = self.section_shape
        if h != w:
            y = jax.image.resize(y, (b, y.shape[1] * (h // w), y.shape[2], y.shape[3]), "bilinear")
        y = jax.nn.relu(self.rear_bn(self.rear_conv(y)))
        return jax.nn.sigmoid(self.out_conv(y))


class ObjectFeatureFusioner(nnx.Module):
    """Adds ``Linear(512 -> E)`` of the section feature to every curve token."""

    def __init__(self, *, cl_dim: int = 64, cs_dim: int = SECTION_FEATURES, rngs: nnx.Rngs):
        self.fc = _linear(cs_dim, cl_dim, rngs)

    def __call__(self, tokens: jax.Array, section_feature: jax.Array) -> jax.Array:
        return tokens + self.fc(section_feature)[:, None, :]


# --------------------------------------------------------------------------- deformation


class PositionalEncoding(nnx.Module):
    """Learned per-position scalar offsets initialised to ``arange(1, S+1) / 128``."""

    def __init__(self, *, seq_length: int = 60):
        init = jnp.arange(1, seq_length + 1, dtype=jnp.float32)[:, None] / 128.0
        self.pos_embedding = nnx.Param(init)  # (S, 1), broadcast across features

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.pos_embedding[...]


class MultiHeadAttention(nnx.Module):
    """Scaled dot-product attention; ``W_q: query_dim -> F``, ``W_k, W_v, W_o`` F-wide, no bias.

    Heads split the F features into contiguous blocks; the scale is ``1/sqrt(F/heads)``.
    """

    def __init__(
        self,
        *,
        query_dim: int,
        kv_dim: int,
        feature_dims: int,
        num_heads: int,
        bias: bool = False,
        rngs: nnx.Rngs,
    ):
        if feature_dims % num_heads:
            raise ValueError(f"feature_dims {feature_dims} not divisible by {num_heads} heads.")
        self.num_heads = num_heads
        self.W_q = _linear(query_dim, feature_dims, rngs, bias=bias)
        self.W_k = _linear(kv_dim, feature_dims, rngs, bias=bias)
        self.W_v = _linear(kv_dim, feature_dims, rngs, bias=bias)
        self.W_o = _linear(feature_dims, feature_dims, rngs, bias=bias)

    def __call__(self, q_in: jax.Array, kv_in: jax.Array) -> jax.Array:
        def heads(t):
            return t.reshape(*t.shape[:-1], self.num_heads, -1)

        q, k, v = heads(self.W_q(q_in)), heads(self.W_k(kv_in)), heads(self.W_v(kv_in))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
        return self.W_o(out.reshape(*out.shape[:-2], -1))


class AddNorm(nnx.Module):
    """Post-LN residual: ``LayerNorm(x + y)``."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.ln = nnx.LayerNorm(dim, epsilon=_LN_EPS, rngs=rngs)

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return self.ln(x + y)


class PositionWiseFFN(nnx.Module):
    """``Linear -> ReLU -> Linear`` (with biases)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, *, rngs: nnx.Rngs):
        self.dense1 = _linear(d_in, d_hidden, rngs)
        self.dense2 = _linear(d_hidden, d_out, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dense2(jax.nn.relu(self.dense1(x)))


class DeformationLayer(nnx.Module):
    """One post-LN attention layer; ``query_dim`` is 2E for loading (``[params ‖ mould]``)."""

    def __init__(self, *, fea_len: int, num_heads: int, query_dim: int, rngs: nnx.Rngs):
        self.attention = MultiHeadAttention(
            query_dim=query_dim,
            kv_dim=fea_len,
            feature_dims=fea_len,
            num_heads=num_heads,
            rngs=rngs,
        )
        self.add_norm = AddNorm(fea_len, rngs=rngs)
        self.fc = PositionWiseFFN(fea_len, fea_len * num_heads // 2, fea_len, rngs=rngs)
        self.add_norm_fc = AddNorm(fea_len, rngs=rngs)

    def __call__(self, query: jax.Array, z: jax.Array) -> jax.Array:
        z = self.add_norm(z, self.attention(query, z))
        return self.add_norm_fc(z, self.fc(z))


class LoadingModule(nnx.Module):
    """Cross-attention stage: strip tokens attend with queries from ``[params ‖ mould]``."""

    def __init__(
        self,
        *,
        num_layers: int = 3,
        num_heads: int = 4,
        fea_len: int = 64,
        seq_length: int = 60,
        rngs: nnx.Rngs,
    ):
        self.pos_encoding_x = PositionalEncoding(seq_length=seq_length)
        self.pos_encoding_y = PositionalEncoding(seq_length=seq_length)
        self.pos_encoding_z = PositionalEncoding(seq_length=seq_length)
        self.layers = nnx.List(
            [
                DeformationLayer(
                    fea_len=fea_len, num_heads=num_heads, query_dim=2 * fea_len, rngs=rngs
                )
                for _ in range(num_layers)
            ]
        )

    def __call__(self, params: jax.Array, mould: jax.Array, strip: jax.Array) -> jax.Array:
        query = jnp.concatenate([self.pos_encoding_x(params), self.pos_encoding_y(mould)], -1)
        z = self.pos_encoding_z(strip)
        for layer in self.layers:
            z = layer(query, z)
        return z


class UnloadingModule(nnx.Module):
    """Self-attention stage over the loaded strip tokens (springback)."""

    def __init__(
        self,
        *,
        num_layers: int = 3,
        num_heads: int = 4,
        fea_len: int = 64,
        seq_length: int = 60,
        rngs: nnx.Rngs,
    ):
        self.pos_encoding = PositionalEncoding(seq_length=seq_length)
        self.layers = nnx.List(
            [
                DeformationLayer(fea_len=fea_len, num_heads=num_heads, query_dim=fea_len, rngs=rngs)
                for _ in range(num_layers)
            ]
        )

    def __call__(self, strip: jax.Array) -> jax.Array:
        x = self.pos_encoding(strip)
        for layer in self.layers:
            x = layer(x, x)
        return x


# --------------------------------------------------------------------------- model


class LaDEEP(nnx.Module):
    """The LaDEEP surrogate: ``(strip, mould, section, params) -> (recon, loaded, unloaded)``.

    Example::

        model = LaDEEP(section_shape=(64, 32), rngs=nnx.Rngs(0))
        recon, loaded, unloaded = model(
            jnp.zeros((2, 300, 3)), jnp.zeros((2, 300, 3)), jnp.zeros((2, 64, 32, 1)),
            jnp.zeros((2, 6)))
    """

    def __init__(
        self,
        *,
        input_length: int = 300,
        seq_length: int = 60,
        emb_dim: int = 64,
        loading_layers: int = 3,
        loading_heads: int = 4,
        unloading_layers: int = 3,
        unloading_heads: int = 4,
        motion_degrees: int = 6,
        section_shape: tuple[int, int] = (64, 32),
        section_encoder: str = "cnn",
        freeze_section_backbone: bool = False,
        section_decoder_width: int = SECTION_FEATURES,
        rngs: nnx.Rngs,
    ):
        self.input_length, self.motion_degrees = input_length, motion_degrees
        self.section_shape = _check_section_shape(section_shape)
        cle = dict(input_length=input_length, seq_length=seq_length, emb_dim=emb_dim, rngs=rngs)
        self.cle_for_mould = CharacteristicLineEncoder(**cle)
        self.cle_for_strip = CharacteristicLineEncoder(**cle)
        self.cse = CrossSectionEncoder(
            backbone=section_encoder,
            section_shape=self.section_shape,
            freeze_backbone=freeze_section_backbone,
            rngs=rngs,
        )
        self.csd = CrossSectionDecoder(
            section_shape=self.section_shape, width=section_decoder_width, rngs=rngs
        )
        self.off = ObjectFeatureFusioner(cl_dim=emb_dim, rngs=rngs)
        self.mpe = MotionParametersEncoder(
            seq_length=seq_length, emb_dim=emb_dim, motion_degrees=motion_degrees, rngs=rngs
        )
        self.dp_loading = LoadingModule(
            num_layers=loading_layers,
            num_heads=loading_heads,
            fea_len=emb_dim,
            seq_length=seq_length,
            rngs=rngs,
        )
        self.dp_unloading = UnloadingModule(
            num_layers=unloading_layers,
            num_heads=unloading_heads,
            fea_len=emb_dim,
            seq_length=seq_length,
            rngs=rngs,
        )
        cld = dict(seq_length=seq_length, emb_dim=emb_dim, output_length=input_length, rngs=rngs)
        self.cld_for_loading = CharacteristicLineDecoder(**cld)
        self.cld_for_unloading = CharacteristicLineDecoder(**cld)

    def check_inputs(self, strip, mould, section, params) -> None:
        """Raises ValueError unless the four inputs have the documented shapes."""
        _check_curve(strip, "strip", self.input_length)
        _check_curve(mould, "mould", self.input_length)
        h, w = self.section_shape
        if section.ndim != 4 or tuple(section.shape[1:]) != (h, w, 1):
            raise ValueError(
                f"section must have shape (batch, {h}, {w}, 1), got {tuple(section.shape)}."
            )
        if params.ndim != 2 or params.shape[1] != self.motion_degrees:
            raise ValueError(
                f"params must have shape (batch, {self.motion_degrees}), got {tuple(params.shape)}."
            )
        sizes = {strip.shape[0], mould.shape[0], section.shape[0], params.shape[0]}
        if len(sizes) != 1:
            raise ValueError(f"inputs disagree on the batch size: {sorted(sizes)}.")

    def __call__(
        self, strip: jax.Array, mould: jax.Array, section: jax.Array, params: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        self.check_inputs(strip, mould, section, params)
        s = self.cle_for_strip(strip)
        m = self.cle_for_mould(mould)
        f = self.cse(section)
        recon = self.csd(f)
        s = self.off(s, f)
        p = self.mpe(params)
        s = self.dp_loading(p, m, s)
        loaded = self.cld_for_loading(s)
        s = self.dp_unloading(s)
        unloaded = self.cld_for_unloading(s)
        return recon, loaded, unloaded


def param_group(path: Sequence[Any]) -> str:
    """The reference's optimizer split for a LaDEEP state path: unloading / section / loading.

    ``"unloading"`` if a path key contains "unloading" (``dp_unloading``, ``cld_for_unloading``),
    ``"section"`` for ``cse``/``csd``, else ``"loading"``.
    """
    keys = [str(k) for k in path]
    if any("unloading" in k for k in keys):
        return "unloading"
    if keys and keys[0] in ("cse", "csd"):
        return "section"
    return "loading"


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param``; BN statistics excluded)."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


# --------------------------------------------------------------------------- losses


def _safe_norm(x: jax.Array, axis: int) -> jax.Array:
    """L2 norm whose gradient at 0 is 0 (as ``torch.norm``), not NaN."""
    sq = jnp.sum(x * x, axis=axis)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def loss_p(target: jax.Array, pred: jax.Array, axis_weights: Any) -> jax.Array:
    """Per-axis weighted L2: ``sum_i w_i * mean_batch ||target[:, :, i] - pred[:, :, i]||_2``.

    ``target``/``pred`` are ``(B, L, 3)``; ``axis_weights`` is ``(3,)`` (the per-axis scale
    widths ``max - min``). Example: one curve off by 1 at 4 points of axis 0, weights
    ``(1, 0, 0)`` -> 2.0.
    """
    if target.shape != pred.shape or target.ndim != 3:
        raise ValueError(
            f"target and pred must share a (B, L, C) shape, got {target.shape} and {pred.shape}."
        )
    w = jnp.asarray(axis_weights, dtype=pred.dtype)
    if w.shape != (target.shape[-1],):
        raise ValueError(f"axis_weights must have shape ({target.shape[-1]},), got {w.shape}.")
    per_axis = jnp.mean(_safe_norm(target - pred, axis=1), axis=0)  # (C,)
    return jnp.sum(per_axis * w)


def loss_r(section: jax.Array, recon: jax.Array) -> jax.Array:
    """Mean squared error between the section image and its reconstruction."""
    if section.shape != recon.shape:
        raise ValueError(f"section {section.shape} and recon {recon.shape} differ in shape.")
    return jnp.mean((section - recon) ** 2)


def _split_weights(axis_weights: Any) -> tuple[jax.Array, jax.Array]:
    w = jnp.asarray(axis_weights, dtype=jnp.float32)
    if w.shape == (3,):
        return w, w
    if w.shape == (2, 3):
        return w[0], w[1]
    raise ValueError(
        f"axis_weights must be (3,) or (2, 3) [loaded row, unloaded row], got {w.shape}."
    )


def ladeep_loss(
    model_outputs: tuple[Any, jax.Array, jax.Array],
    batch: Mapping[str, jax.Array],
    axis_weights: Any,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``loss_p(loaded) + loss_p(unloaded) + loss_r`` as the reference trains, and the parts.

    ``model_outputs`` is ``(section_recon | None, loaded, unloaded)``; ``batch`` has
    ``"loaded"``, ``"unloaded"`` and (unless the recon is None) ``"section"``.
    ``axis_weights`` is ``(3,)`` for both curves or ``(2, 3)`` = (loaded, unloaded) rows, as
    the reference's ``coordinate_weights`` (``LOAD_SCALE.weights``, ``UNLOAD_SCALE.weights``).
    A None recon (the baselines) drops the section term.
    """
    recon, loaded, unloaded = model_outputs
    w_load, w_unload = _split_weights(axis_weights)
    l_load = loss_p(batch["loaded"], loaded, w_load)
    l_unload = loss_p(batch["unloaded"], unloaded, w_unload)
    metrics = {"loss_loaded": l_load, "loss_unloaded": l_unload}
    total = l_load + l_unload
    if recon is not None:
        l_r = loss_r(batch["section"], recon)
        metrics["loss_section"] = l_r
        total = total + l_r
    metrics["loss"] = total
    return total, metrics


# --------------------------------------------------------------------------- experiment


def make_model(cfg, section_shape: Sequence[int], rngs: nnx.Rngs) -> nnx.Module:
    """``cfg.name`` (ladeep | mlp | transformer) from a ``config.model`` block."""
    from jaxpapers.physics import baselines  # pylint: disable=g-import-not-at-top

    section_shape = tuple(int(s) for s in section_shape)
    if cfg.name == "ladeep":
        return LaDEEP(
            seq_length=cfg.seq_length,
            emb_dim=cfg.emb_dim,
            loading_layers=cfg.loading_layers,
            loading_heads=cfg.loading_heads,
            unloading_layers=cfg.unloading_layers,
            unloading_heads=cfg.unloading_heads,
            section_shape=section_shape,
            section_encoder=cfg.section_encoder,
            section_decoder_width=cfg.section_decoder_width,
            rngs=rngs,
        )
    if cfg.name == "mlp":
        return baselines.MLPBaseline(
            section_shape=section_shape, hidden=tuple(cfg.mlp_hidden), rngs=rngs
        )
    if cfg.name == "transformer":
        return baselines.TransformerBaseline(
            section_shape=section_shape,
            emb_dim=cfg.emb_dim,
            num_layers=cfg.transformer_layers,
            num_heads=cfg.transformer_heads,
            patch_size=cfg.transformer_patch,
            rngs=rngs,
        )
    raise ValueError(f"model.name must be one of {MODEL_NAMES}, got {cfg.name!r}")


MODEL_NAMES = ("ladeep", "mlp", "transformer")


def run(config, workdir: str) -> dict:
    """Registry entry: trains ``config.model.name`` on stretch-bending data (loaded + unloaded)."""
    from jaxpapers.physics import stretch  # pylint: disable=g-import-not-at-top

    return stretch.run(config, workdir, {name: make_model for name in MODEL_NAMES})
