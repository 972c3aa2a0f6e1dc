"""Image backbones (Flax NNX): residual networks and a small ConvNet.

Every backbone exposes ``features(x) -> (batch, feature_dim)`` (global average
pooled, before the classifier) and ``__call__(x) -> logits``. Analytic methods
train a backbone by backprop on the base classes, freeze it and use
``features``.

* :class:`ResNet` — pre-defined depths: ``resnet20/32/56`` (CIFAR-style: 3x3
  stem, stages of 16/32/64 channels, 6n+2 layers; ACIL uses ResNet-32 on
  CIFAR-100) and ``resnet18`` (stages of 64/128/256/512 with two BasicBlocks
  each; ``small_input=True`` uses a 3x3 stride-1 stem without max-pool, as is
  usual for 32x32 and 64x64 images). Projection shortcuts (1x1 conv + BN) where
  the shape changes.
* :class:`ConvNet` — three conv-BN-ReLU layers and one max-pool: enough for
  8x8 digits in seconds on a CPU.

Images are NHWC float32 in [0, 1]; a fixed per-channel normalisation is the
caller's business (``mean``/``std`` arguments).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def _conv(c_in: int, c_out: int, k: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(
        c_in,
        c_out,
        kernel_size=(k, k),
        strides=(stride, stride),
        padding="SAME",
        use_bias=False,
        kernel_init=nnx.initializers.kaiming_normal(),
        rngs=rngs,
    )


class BasicBlock(nnx.Module):
    """Two 3x3 conv-BN layers with an identity or projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, rngs: nnx.Rngs):
        self.conv1 = _conv(c_in, c_out, 3, stride, rngs)
        self.bn1 = nnx.BatchNorm(c_out, rngs=rngs)
        self.conv2 = _conv(c_out, c_out, 3, 1, rngs)
        self.bn2 = nnx.BatchNorm(c_out, scale_init=nnx.initializers.zeros_init(), rngs=rngs)
        if stride != 1 or c_in != c_out:
            self.proj = _conv(c_in, c_out, 1, stride, rngs)
            self.proj_bn = nnx.BatchNorm(c_out, rngs=rngs)
        else:
            self.proj = self.proj_bn = None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.proj is None else self.proj_bn(self.proj(x))
        return jax.nn.relu(y + shortcut)


_DEPTHS = {
    "resnet20": ((16, 32, 64), (3, 3, 3)),
    "resnet32": ((16, 32, 64), (5, 5, 5)),
    "resnet56": ((16, 32, 64), (9, 9, 9)),
    "resnet18": ((64, 128, 256, 512), (2, 2, 2, 2)),
}


class ResNet(nnx.Module):
    """A residual network from :data:`_DEPTHS`; ``features`` is the pooled embedding."""

    def __init__(
        self,
        depth: str,
        num_classes: int,
        *,
        in_channels: int = 3,
        small_input: bool = True,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        rngs: nnx.Rngs,
    ):
        if depth not in _DEPTHS:
            raise ValueError(f"depth must be one of {sorted(_DEPTHS)}, got {depth!r}")
        widths, blocks = _DEPTHS[depth]
        self.mean, self.std = tuple(mean), tuple(std)  # static: part of the graph
        self.small_input = small_input
        stem_width = widths[0] if depth != "resnet18" else 64
        self.stem = _conv(
            in_channels, stem_width, 3 if small_input else 7, 1 if small_input else 2, rngs
        )
        self.stem_bn = nnx.BatchNorm(stem_width, rngs=rngs)
        layers, c_in = [], stem_width
        for stage, (width, n) in enumerate(zip(widths, blocks)):
            for i in range(n):
                stride = 2 if (i == 0 and stage > 0) else 1
                layers.append(BasicBlock(c_in, width, stride, rngs=rngs))
                c_in = width
        self.blocks = nnx.List(layers)
        self.feature_dim = c_in
        self.head = nnx.Linear(c_in, num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        x = (x - jnp.asarray(self.mean)) / jnp.asarray(self.std)
        x = jax.nn.relu(self.stem_bn(self.stem(x)))
        if not self.small_input:
            x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for block in self.blocks:
            x = block(x)
        return x.mean(axis=(1, 2))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))


class ConvNet(nnx.Module):
    """conv(32)-BN-ReLU, conv(64)-BN-ReLU, max-pool 2, conv(128)-BN-ReLU, average pool."""

    def __init__(
        self, num_classes: int, *, in_channels: int = 1, widths=(32, 64, 128), rngs: nnx.Rngs
    ):
        c1, c2, c3 = widths
        self.conv1, self.bn1 = _conv(in_channels, c1, 3, 1, rngs), nnx.BatchNorm(c1, rngs=rngs)
        self.conv2, self.bn2 = _conv(c1, c2, 3, 1, rngs), nnx.BatchNorm(c2, rngs=rngs)
        self.conv3, self.bn3 = _conv(c2, c3, 3, 1, rngs), nnx.BatchNorm(c3, rngs=rngs)
        self.feature_dim = c3
        self.head = nnx.Linear(c3, num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        x = jax.nn.relu(self.bn2(self.conv2(x)))
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        x = jax.nn.relu(self.bn3(self.conv3(x)))
        return x.mean(axis=(1, 2))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))


def make(
    name: str,
    num_classes: int,
    *,
    in_channels: int,
    image_size: int,
    rngs: nnx.Rngs,
    mean=(0.0,),
    std=(1.0,),
) -> nnx.Module:
    """``"convnet"`` or a :class:`ResNet` depth, sized for the input."""
    if name == "convnet":
        return ConvNet(num_classes, in_channels=in_channels, rngs=rngs)
    return ResNet(
        name,
        num_classes,
        in_channels=in_channels,
        small_input=image_size <= 64,
        mean=mean,
        std=std,
        rngs=rngs,
    )
