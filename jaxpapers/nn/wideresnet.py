"""Wide residual networks (Zagoruyko & Komodakis, BMVC 2016) in the TRADES layout (Flax NNX).

WRN-d-k has a 3x3 stem with 16 channels and three groups of ``n = (d - 4) / 6``
pre-activation blocks with ``16k``, ``32k`` and ``64k`` channels (strides 1, 2, 2),
then BN-ReLU, global average pooling and a linear classifier. WRN-34-10 is the robust
teacher of TRADES, ARD, RSLAD, MTARD and CIARD; its layout here follows the TRADES
reference (yaodongyu/TRADES ``models/wideresnet.py``, copied unchanged into
zibojia/RSLAD ``cifar10_models/wideresnet.py``):

* block: ``a = relu(bn1(x))``, ``y = conv2(dropout(relu(bn2(conv1(a)))))``, output
  ``y + x`` when the channel count is unchanged, else ``y + conv1x1(a)`` — the
  projection shortcut sees the *pre-activated* input, the identity shortcut the raw one;
* convolutions have no bias; 3x3 convs pad 1 on every side as PyTorch does (not XLA's
  ``SAME``, which pads stride-2 convs only at the bottom/right), so the output grid is
  the reference's and PyTorch weights would map one to one;
* init as the reference: conv kernels ``N(0, 2 / (k * k * c_out))`` (He, fan-out,
  untruncated), BN scale 1 / bias 0, linear weight PyTorch's default
  ``U(+-1/sqrt(fan_in))`` and bias 0; BN momentum 0.1 in PyTorch's convention (0.9 here)
  and eps 1e-5.

The reference also builds a ``sub_block1`` (a second copy of the first group) that its
``forward`` never calls: it only inflates the PyTorch parameter count (48.26M instead of
46.16M for WRN-34-10 on 10 classes) and the checkpoint. It is left out here; a TRADES
checkpoint's ``sub_block1.*`` entries can be dropped when converting.

Deviations: the reference pools with ``avg_pool2d(8)``, which is global average pooling
for 32x32 inputs only; here the pooling is global for every input size (8x8 digits
included). BN running variance uses the biased batch variance (Flax) instead of
PyTorch's unbiased one.

Images are NHWC float32 in [0, 1]; ``mean``/``std`` give an optional per-channel
normalisation applied inside the model (identity by default, as in the references).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
# PyTorch's default nn.Linear / nn.Conv2d weight init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
TORCH_DEFAULT_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# PyTorch BatchNorm2d(momentum=0.1) updates running = 0.9 * running + 0.1 * batch.
BN_MOMENTUM = 0.9


def torch_conv(
    c_in: int,
    c_out: int,
    k: int,
    stride: int,
    rngs: nnx.Rngs,
    *,
    groups: int = 1,
    kernel_init=_CONV_INIT,
) -> nnx.Conv:
    """A bias-free ``k x k`` conv padded like PyTorch's ``padding=k // 2`` (both sides)."""
    p = k // 2
    return nnx.Conv(
        c_in,
        c_out,
        kernel_size=(k, k),
        strides=(stride, stride),
        padding=((p, p), (p, p)),
        feature_group_count=groups,
        use_bias=False,
        kernel_init=kernel_init,
        rngs=rngs,
    )


def torch_bn(c: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """PyTorch's ``BatchNorm2d`` defaults (momentum 0.1, eps 1e-5) in Flax terms."""
    return nnx.BatchNorm(c, momentum=BN_MOMENTUM, epsilon=1e-5, rngs=rngs)


def check_normalisation(mean: Sequence[float], std: Sequence[float], channels: int):
    """Validate per-channel ``mean``/``std`` (length 1 or ``channels``, std > 0)."""
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    for name, v in (("mean", mean), ("std", std)):
        if len(v) not in (1, channels):
            raise ValueError(f"{name} must have 1 or {channels} entries, got {len(v)}")
    if any(not s > 0 for s in std):
        raise ValueError(f"std entries must be > 0, got {std}")
    return mean, std


class WideBlock(nnx.Module):
    """Pre-activation wide basic block (TRADES ``BasicBlock``)."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, dropout: float, rngs: nnx.Rngs):
        self.bn1 = torch_bn(c_in, rngs)
        self.conv1 = torch_conv(c_in, c_out, 3, stride, rngs)
        self.bn2 = torch_bn(c_out, rngs)
        self.conv2 = torch_conv(c_out, c_out, 3, 1, rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None
        # The reference keys the shortcut on c_in == c_out only; a stride-2 block with equal
        # widths would not run there, so adding ``stride != 1`` changes no valid network.
        if c_in != c_out or stride != 1:
            self.shortcut = torch_conv(c_in, c_out, 1, stride, rngs)
        else:
            self.shortcut = None

    def __call__(self, x: jax.Array) -> jax.Array:
        a = jax.nn.relu(self.bn1(x))
        y = jax.nn.relu(self.bn2(self.conv1(a)))
        if self.dropout is not None:
            y = self.dropout(y)
        y = self.conv2(y)
        return y + (x if self.shortcut is None else self.shortcut(a))


class WideResNet(nnx.Module):
    """WRN-``depth``-``widen_factor``; ``features`` is the pooled 64k-dim embedding.

    Args:
      depth: total depth, ``6n + 4`` with ``n >= 1`` (10, 16, 22, 28, 34, 40, ...).
      widen_factor: channel multiplier k >= 1.
      num_classes: classifier outputs.
      in_channels: image channels.
      dropout: dropout rate between the two convs of each block (0 in TRADES/CIARD). With
        a positive rate the model holds a ``dropout`` RNG stream (from ``rngs``).
      mean, std: per-channel normalisation applied to the [0, 1] input.
    """

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int,
        *,
        in_channels: int = 3,
        dropout: float = 0.0,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        rngs: nnx.Rngs,
    ):
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, ..., 34), got {depth!r}")
        if not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError(f"widen_factor must be an integer >= 1, got {widen_factor!r}")
        if num_classes < 1 or in_channels < 1:
            raise ValueError(
                f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.mean, self.std = check_normalisation(mean, std, in_channels)  # static
        self.depth, self.widen_factor = depth, widen_factor
        n = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.stem = torch_conv(in_channels, widths[0], 3, 1, rngs)
        blocks = []
        for group, stride in enumerate((1, 2, 2)):
            for i in range(n):
                c_in = widths[group] if i == 0 else widths[group + 1]
                blocks.append(
                    WideBlock(
                        c_in, widths[group + 1], stride if i == 0 else 1, dropout=dropout, rngs=rngs
                    )
                )
        self.blocks = nnx.List(blocks)
        self.bn = torch_bn(widths[3], rngs)
        self.feature_dim = widths[3]
        self.head = nnx.Linear(widths[3], num_classes, kernel_init=TORCH_DEFAULT_INIT, rngs=rngs)

    def feature_map(self, x: jax.Array) -> jax.Array:
        """(batch, H/4, W/4, 64k) activations after the final BN-ReLU, before pooling."""
        x = (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return jax.nn.relu(self.bn(x))

    def features(self, x: jax.Array) -> jax.Array:
        return self.feature_map(x).mean(axis=(1, 2))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))


def wrn34_10(num_classes: int = 10, *, rngs: nnx.Rngs, **kwargs) -> WideResNet:
    """WRN-34-10, the TRADES robust teacher (46,160,474 parameters for 10 classes)."""
    return WideResNet(34, 10, num_classes, rngs=rngs, **kwargs)
