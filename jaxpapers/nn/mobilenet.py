"""MobileNetV2 for CIFAR-sized images (Flax NNX), as used by ARD, RSLAD, MTARD and CIARD.

The robust-distillation references (goldblum/AdversariallyRobustDistillation
``models/mobilenetv2.py``, zibojia/RSLAD ``cifar10_models/mobilenet_v2.py``, which CIARD
imports) all use the widely copied CIFAR port of MobileNetV2 (Sandler et al., CVPR
2018), which differs from the ImageNet network of the paper; this module follows the port:

* stem: 3x3 conv, 32 channels, **stride 1** (the paper: stride 2), BN-ReLU;
* inverted-residual stages ``(expansion t, channels c, blocks n, stride s)`` =
  (1,16,1,1), (6,24,2,**1**), (6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1)
  — the second stage keeps stride 1 (the paper: 2), so a 32x32 input ends at 4x4;
* block: 1x1 expand to ``t * c_in`` (also for t = 1, which the paper skips) - BN - ReLU,
  3x3 depthwise (stride s) - BN - ReLU, 1x1 project - BN; for stride 1 a residual is
  added, through a 1x1 conv + BN projection when the channel count changes (the paper
  has a residual only when the shapes already match, and none with a projection);
* plain ReLU, not ReLU6;
* head: 1x1 conv to 1280 - BN - ReLU, average pooling, linear classifier.

For 10 classes this has 2,296,922 parameters (the count in ``tests/nn/test_mobilenet.py``
is derived layer by layer from the reference definition).

Added here (not in the reference): a width multiplier as in the MobileNetV2 paper —
every channel count ``c`` becomes ``c * width`` rounded to a multiple of 8 (never below
90% of ``c * width``; the torchvision rule), except the last 1x1 conv, which keeps 1280
channels for ``width <= 1`` (paper, Sec. 6.1). ``width=1.0`` reproduces the reference
exactly. Pooling is global for every input size (the reference's ``avg_pool2d(4)`` is
global only for 32x32 inputs). Convs pad symmetrically as PyTorch does. Init as PyTorch's
defaults, which the reference keeps: conv and linear weights ``U(+-1/sqrt(fan_in))``
(``fan_in = c_in / groups * k * k``), linear bias ``U(+-1/sqrt(fan_in))``, BN scale 1 /
bias 0, BN momentum 0.1 in PyTorch's convention (0.9 here), eps 1e-5.

Images are NHWC float32 in [0, 1]; ``mean``/``std`` give an optional per-channel
normalisation applied inside the model (identity by default, as in the references).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.nn.wideresnet import TORCH_DEFAULT_INIT, check_normalisation, torch_bn, torch_conv

# (expansion, out_channels, num_blocks, first_stride): the CIFAR configuration.
CIFAR_CONFIG = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


def scale_channels(c: int, width: float, divisor: int = 8) -> int:
    """``c * width`` rounded to the nearest multiple of ``divisor``, not below 90% of it."""
    v = c * width
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * v:
        rounded += divisor
    return rounded


def _torch_bias_init(fan_in: int):
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _conv(c_in: int, c_out: int, k: int, stride: int, rngs: nnx.Rngs, groups: int = 1):
    return torch_conv(c_in, c_out, k, stride, rngs, groups=groups, kernel_init=TORCH_DEFAULT_INIT)


class InvertedResidual(nnx.Module):
    """Expand (1x1) - depthwise (3x3, stride) - project (1x1), residual for stride 1."""

    def __init__(self, c_in: int, c_out: int, expansion: int, stride: int, *, rngs: nnx.Rngs):
        planes = expansion * c_in
        self.stride = stride
        self.conv1, self.bn1 = _conv(c_in, planes, 1, 1, rngs), torch_bn(planes, rngs)
        self.conv2 = _conv(planes, planes, 3, stride, rngs, groups=planes)
        self.bn2 = torch_bn(planes, rngs)
        self.conv3, self.bn3 = _conv(planes, c_out, 1, 1, rngs), torch_bn(c_out, rngs)
        if stride == 1 and c_in != c_out:
            self.proj, self.proj_bn = _conv(c_in, c_out, 1, 1, rngs), torch_bn(c_out, rngs)
        else:
            self.proj = self.proj_bn = None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = jax.nn.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.stride != 1:
            return y
        return y + (x if self.proj is None else self.proj_bn(self.proj(x)))


class MobileNetV2(nnx.Module):
    """CIFAR MobileNetV2; ``features`` is the pooled 1280-dim embedding (for width <= 1)."""

    def __init__(
        self,
        num_classes: int,
        *,
        width: float = 1.0,
        in_channels: int = 3,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        rngs: nnx.Rngs,
    ):
        if not (isinstance(width, int | float) and width > 0):
            raise ValueError(f"width must be a positive number, got {width!r}")
        if num_classes < 1 or in_channels < 1:
            raise ValueError(
                f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}"
            )
        self.mean, self.std = check_normalisation(mean, std, in_channels)  # static
        self.width = float(width)
        c = scale_channels(STEM_CHANNELS, width)
        self.stem, self.stem_bn = _conv(in_channels, c, 3, 1, rngs), torch_bn(c, rngs)
        blocks = []
        for expansion, out, n, first_stride in CIFAR_CONFIG:
            c_out = scale_channels(out, width)
            for i in range(n):
                blocks.append(
                    InvertedResidual(c, c_out, expansion, first_stride if i == 0 else 1, rngs=rngs)
                )
                c = c_out
        self.blocks = nnx.List(blocks)
        last = scale_channels(LAST_CHANNELS, width) if width > 1.0 else LAST_CHANNELS
        self.conv_last, self.bn_last = _conv(c, last, 1, 1, rngs), torch_bn(last, rngs)
        self.feature_dim = last
        self.head = nnx.Linear(
            last,
            num_classes,
            kernel_init=TORCH_DEFAULT_INIT,
            bias_init=_torch_bias_init(last),
            rngs=rngs,
        )

    def feature_map(self, x: jax.Array) -> jax.Array:
        """(batch, H/8, W/8, 1280) activations after the last 1x1 conv-BN-ReLU."""
        x = (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)
        x = jax.nn.relu(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return jax.nn.relu(self.bn_last(self.conv_last(x)))

    def features(self, x: jax.Array) -> jax.Array:
        return self.feature_map(x).mean(axis=(1, 2))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))


def mobilenet_v2(num_classes: int = 10, width: float = 1.0, *, rngs: nnx.Rngs, **kwargs):
    """The CIFAR MobileNetV2 student of ARD/RSLAD/MTARD/CIARD (2,296,922 params, 10 classes)."""
    return MobileNetV2(num_classes, width=width, rngs=rngs, **kwargs)
