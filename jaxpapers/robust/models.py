"""Models for adversarial robustness distillation: one factory, parameter counts, attack views.

:func:`make` builds every network of the family by name (Flax NNX, NHWC, inputs in
[0, 1], batch norm switched by ``model.train()`` / ``model.eval()``):

* ``resnet18`` — CIFAR ResNet-18 (:class:`~jaxpapers.nn.resnet.ResNet`; 3x3 stride-1
  stem, no max-pool for inputs up to 64x64): a student of ARD/RSLAD/MTARD/CIARD.
* ``resnet56`` — CIFAR ResNet-56 (16/32/64 channels, 1x1 conv + BN projection
  shortcuts): CIARD's clean ("natural") teacher.
* ``mobilenet_v2`` — CIFAR MobileNetV2 (:mod:`jaxpapers.nn.mobilenet`): the main student;
  ``width`` is its width multiplier.
* ``wrn34_10`` — WRN-34-10 (:mod:`jaxpapers.nn.wideresnet`): the TRADES robust teacher.
* ``wrn_tiny`` — WRN-10-1 (one block per group, 16/16/32/64 channels, 77,850 parameters
  for 10 classes): a robust teacher small enough for tests and CPU runs.
* ``small_cnn`` — :class:`SmallCNN`, the 3-layer conv-BN :class:`~jaxpapers.nn.resnet.ConvNet`
  (32/64/128 channels, one max-pool) behind the input normalisation: for 8x8 digits and
  other small images. It has batch norm, so it exercises the same train/eval handling as
  the CIFAR networks (TRADES' MNIST ``SmallCNN`` has no BN and assumes 28x28 inputs, so
  it is not used).

The two ResNets and the ConvNet come from :mod:`jaxpapers.nn.resnet` unchanged: their
batch norm keeps Flax's default momentum 0.99 (PyTorch's 0.1 is 0.9 in Flax, which the
WRN and MobileNetV2 modules use) and ResNet zero-initialises the last BN scale of each
block; neither changes the architecture or the parameter counts.

Parameter counts for 10 classes on 32x32x3 (trainable parameters, BN running statistics
excluded, as PyTorch's ``parameters()``): ResNet-18 11,173,962; ResNet-56 855,770;
MobileNetV2 2,296,922; WRN-34-10 46,160,474 (see the two backbone modules and the tests
for the derivations).

Input normalisation: every model takes ``mean``/``std`` and normalises inside, so attacks
always work in [0, 1] pixel space. The references do not normalise at all — the ARD,
RSLAD and CIARD training scripts build their CIFAR loaders with
``RandomCrop(32, 4), RandomHorizontalFlip(), ToTensor()`` (and ``ToTensor()`` for the
test set), with no ``Normalize`` and no normalisation layer in the models — so the
default ``mean=(0,), std=(1,)`` reproduces them.

Batch norm under attack, and what the references do when they build *training-time*
adversarial examples (read from the code, not the papers):

* Evaluation attacks (FGSM, PGD-20, CW, APGD) run with every model in eval mode in all
  references (``student.eval()`` before ``attack_pgd`` in RSLAD/CIARD, ``net.eval()`` in
  ARD), and :func:`logits_fn` gives that view by default: running statistics, examples
  independent, nothing mutated.
* ARD (goldblum/AdversariallyRobustDistillation ``main.py``): the PGD-10 of training runs
  inside ``net.train()``, so the student is in **train** mode while the attack is built
  (batch statistics, and PyTorch updates the running statistics at each of the 11
  forward passes); the teacher is in eval mode and sees the clean batch only.
* RSLAD (``rslad_loss.py: rslad_inner_loss``) and MTARD (``mtard_inner_loss_ce``): the
  student is put in **eval** mode for the PGD steps and back in train mode for the
  forward pass on the final ``x_adv`` that is trained on; teachers in eval mode.
* CIARD (``CIARD_cifar10.py``; ``robust_inner_loss_push`` lives in a ``mtard_loss.py``
  that the CIARD2025/CIARD repository does not ship — read from copies in public forks):
  student in **eval** mode during PGD, train mode afterwards; the clean teacher in eval
  mode; the robust teacher in **train** mode for its forward pass on ``x_adv`` (the loop
  calls ``teacher.train()`` every step, because that teacher is retrained on ``x_adv``
  after epoch 50) — so its logits use batch statistics and its running statistics keep
  moving even in the first 50 epochs, when its learning rate is 0.

``logits_fn(..., train=True)`` gives a pure train-mode view (batch statistics; the
running-statistics update is computed and thrown away, a deviation from ARD's PyTorch
side effect) for the trainer that wants the ARD convention. With dropout (WRN with
``dropout > 0``) the train view also throws away its RNG advance, so every call draws
the same mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.nn import mobilenet, resnet, wideresnet

NAMES = ("mobilenet_v2", "resnet18", "resnet56", "small_cnn", "wrn34_10", "wrn_tiny")
WRN_TINY = (10, 1)
"""(depth, widen_factor) of ``wrn_tiny``."""


class SmallCNN(nnx.Module):
    """:class:`~jaxpapers.nn.resnet.ConvNet` with per-channel input normalisation."""

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 1,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        rngs: nnx.Rngs,
    ):
        self.mean, self.std = wideresnet.check_normalisation(mean, std, in_channels)
        self.net = resnet.ConvNet(num_classes, in_channels=in_channels, rngs=rngs)
        self.feature_dim = self.net.feature_dim

    def features(self, x: jax.Array) -> jax.Array:
        x = (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)
        return self.net.features(x)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net.head(self.features(x))


def make(
    name: str,
    num_classes: int,
    *,
    rngs: nnx.Rngs,
    input_shape: Sequence[int],
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    width: float = 1.0,
) -> nnx.Module:
    """Build the model ``name`` (one of :data:`NAMES`) for ``input_shape = (H, W, C)``.

    ``mean``/``std`` (1 or C entries) normalise the [0, 1] input inside the model.
    ``width`` is MobileNetV2's width multiplier and must stay 1.0 for the other models.
    The model comes back in train mode (``model.eval()`` for evaluation).
    """
    if name not in NAMES:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(NAMES)}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    shape = tuple(input_shape)
    if len(shape) != 3 or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"input_shape must be (height, width, channels) > 0, got {input_shape!r}")
    if width != 1.0 and name != "mobilenet_v2":
        raise ValueError(f"width applies to mobilenet_v2 only, got width={width} for {name!r}")
    h, w, c = shape
    kw = dict(in_channels=c, mean=mean, std=std, rngs=rngs)
    if name in ("resnet18", "resnet56"):
        wideresnet.check_normalisation(mean, std, c)
        return resnet.ResNet(name, num_classes, small_input=max(h, w) <= 64, **kw)
    if name == "mobilenet_v2":
        return mobilenet.MobileNetV2(num_classes, width=width, **kw)
    if name == "wrn34_10":
        return wideresnet.wrn34_10(num_classes, **kw)
    if name == "wrn_tiny":
        return wideresnet.WideResNet(*WRN_TINY, num_classes, **kw)
    return SmallCNN(num_classes, **kw)


def param_count(model: nnx.Module | nnx.State) -> int:
    """Number of trainable scalars (``nnx.Param`` leaves; BN statistics excluded).

    Works on abstract models from ``nnx.eval_shape`` too, so the count of a large model
    needs no memory for its weights.
    """
    if isinstance(model, nnx.Module):
        params = nnx.state(model, nnx.Param)
    else:
        params = nnx.filter_state(model, nnx.Param)
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def _apply(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array) -> jax.Array:
    # copy=True: fresh Variables at the current trace level, so a train-mode BN may write
    # its (discarded) statistics inside jit/grad without touching the caller's Variables.
    return nnx.merge(graphdef, state, copy=True)(x)


def logits_fn(graphdef: nnx.GraphDef, state: nnx.State, *, train: bool = False):
    """The pure function ``x -> logits`` of the model ``(graphdef, state)``, for attacks.

    By default the model is viewed in eval mode whatever mode it was split in: batch norm
    uses the running statistics, dropout is off, examples are independent and nothing is
    mutated — the mode every reference evaluates attacks in. ``train=True`` gives the
    train-mode view instead (batch statistics of the batch being attacked, as ARD's
    training-time PGD); the statistics update is discarded, so the function stays pure.
    The caller's ``graphdef``/``state`` are not modified.

    Returns a ``jax.tree_util.Partial`` whose leaves are the weights, so ``jax.jit`` of
    an attack over it takes the weights as arguments instead of baking them in as
    constants, and the compiled program is reused across weight updates.
    """
    if not isinstance(graphdef, nnx.GraphDef):
        raise ValueError(f"graphdef must be an nnx.GraphDef, got {type(graphdef).__name__}")
    model = nnx.merge(graphdef, state, copy=True)
    if train:
        model.train()
    else:
        model.eval()
    mode_graphdef, mode_state = nnx.split(model)
    return jax.tree_util.Partial(_apply, mode_graphdef, mode_state)
