"""Learning-rate schedules of the robustness-distillation references, as optax schedules.

Every schedule takes ``steps_per_epoch`` and returns an ``optax.Schedule``:
a function of the optax step count (the number of updates already applied,
0 for the first), constant within an epoch as in the references, which set
the learning rate once per epoch (or once per step to a per-epoch value).
Epoch index ``e = step // steps_per_epoch`` is 0-based; the references count
epochs from 1 (``E = e + 1``) and their formulas are written here in ``E``.

What the references do (facts read from the code, lines our own):

* RSLAD (``resnet18_rslad_cifar10.py``), MTARD (``mtard_resnet18_cifar10.py``)
  and B-MTARD (``resnet18_mtard_cifar10.py``): SGD lr 0.1, momentum 0.9,
  weight decay 2e-4, 300 epochs; ``lr *= 0.1`` *after* epochs 215, 260 and
  285, so epochs ``E ≥ 216, 261, 286`` (``e ≥ 215, 260, 285``) run at
  0.01, 0.001, 1e-4. MTARD decays its weight-balancing rate (0.025) at the
  same points, B-MTARD also its temperature rate (0.001):
  :func:`mtard_schedule` serves all of them.
* ARD (``main.py``): lr 0.1, 200 epochs, ``--lr_schedule 100 150``. Its
  ``adjust_learning_rate`` multiplies the *initial* lr each time, so the
  code runs 0.1 before epoch 100 and 0.01 after, both decays giving 0.01
  (``as_coded=True``); ``as_coded=False`` gives the evident intent, 0.001
  from epoch 150.
* CIARD (``CIARD_cifar10.py``): student lr 0.1 for ``E < 150``, then
  ``0.1·(½ + ½cos(π(E−150)/150))·exp(−0.01(E−150)²/150²)`` (exactly 0 at
  ``E = 300``). Robust teacher (SGD momentum 0.1, weight decay 2e-4): lr
  ``1e-4·(½ + ½cos(π(E−50)/250))·exp(−0.01(E−50)²/250²)`` for ``E ≥ 50``,
  but the teacher only steps for ``E > 50``, so the effective lr is 0 for
  ``E ≤ 50`` (``e < 50``): :func:`ciard_teacher_schedule`. Its balancing
  rates (0.025, 0.001) are multiplied by 0.1 *inside the batch loop* during
  epochs 215, 260 and 285 — once per step — so they vanish during epoch
  215 and balancing is frozen from then on: :func:`ciard_balance_schedule`
  reproduces this (``as_coded=True``) or gives the per-epoch decay that was
  presumably meant.

Shorter runs: each schedule takes ``epochs`` (the run's total) and scales
the reference's milestone epochs by ``epochs / reference_total``, rounded half up;
at the reference total everything is exactly as above.

:func:`torch_sgd` is PyTorch's ``optim.SGD`` (coupled weight decay, momentum
without dampening) in optax, optionally frozen while the lr is 0 so that
CIARD's robust teacher starts retraining from a fresh momentum buffer, as in
the reference, where it takes no step before epoch 51.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

MTARD_MILESTONES = (215, 260, 285)
"""Epochs after which RSLAD/MTARD/B-MTARD multiply their rates by 0.1 (of 300)."""

REFERENCE_EPOCHS = 300
"""Training length of RSLAD, MTARD, B-MTARD and CIARD on CIFAR."""


def _check_steps(steps_per_epoch: Any) -> None:
    if (
        not isinstance(steps_per_epoch, int)
        or isinstance(steps_per_epoch, bool)
        or steps_per_epoch < 1
    ):
        raise ValueError(f"steps_per_epoch must be a positive int; got {steps_per_epoch!r}")


def _check_epochs(epochs: Any) -> None:
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive int; got {epochs!r}")


def _check_rate(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number; got {value!r}")


def scale_epoch(epoch: int, epochs: int, reference_epochs: int = REFERENCE_EPOCHS) -> int:
    """``⌊epoch · epochs / reference_epochs + ½⌋``: a milestone moved to a shorter run."""
    _check_epochs(epochs)
    _check_epochs(reference_epochs)
    return math.floor(epoch * epochs / reference_epochs + 0.5)


def _epoch(step: jax.typing.ArrayLike, steps_per_epoch: int) -> jax.Array:
    """0-based epoch index of an optax step count."""
    return jnp.asarray(step) // steps_per_epoch


def step_decay_schedule(
    steps_per_epoch: int,
    *,
    base_lr: float,
    milestones: tuple[int, ...],
    factor: float = 0.1,
) -> optax.Schedule:
    """``base_lr · factor^(number of milestones m with e ≥ m)`` (``e`` 0-based).

    A milestone ``m`` means "decay after ``m`` epochs", i.e. the reference's
    ``if epoch in milestones: lr *= factor`` at the *end* of 1-based epoch
    ``m``, or at the *start* of 0-based epoch ``m``.
    """
    _check_steps(steps_per_epoch)
    _check_rate("base_lr", base_lr)
    _check_rate("factor", factor)
    if any(not isinstance(m, int) or m < 0 for m in milestones):
        raise ValueError(f"milestones must be non-negative ints; got {milestones!r}")
    bounds = jnp.asarray(sorted(milestones), jnp.int32).reshape(-1)

    def schedule(step: jax.typing.ArrayLike) -> jax.Array:
        passed = jnp.sum(_epoch(step, steps_per_epoch)[..., None] >= bounds, axis=-1)
        return base_lr * jnp.power(jnp.float32(factor), passed)

    return schedule


def mtard_schedule(
    steps_per_epoch: int,
    *,
    base_lr: float = 0.1,
    epochs: int = REFERENCE_EPOCHS,
    factor: float = 0.1,
) -> optax.Schedule:
    """RSLAD/MTARD/B-MTARD step decay: ``×0.1`` after epochs 215, 260, 285 of 300.

    Used for the student (``base_lr = 0.1``) and, in MTARD/B-MTARD, for the
    weight-balancing rate (``base_lr = 0.025``) and B-MTARD's temperature
    rate (``base_lr = 0.001``). ``epochs`` scales the milestones.
    """
    _check_epochs(epochs)
    milestones = tuple(scale_epoch(m, epochs) for m in MTARD_MILESTONES)
    return step_decay_schedule(
        steps_per_epoch, base_lr=base_lr, milestones=milestones, factor=factor
    )


rslad_schedule = mtard_schedule
"""RSLAD's student schedule is MTARD's (same script lineage)."""


def ard_schedule(
    steps_per_epoch: int,
    *,
    base_lr: float = 0.1,
    epochs: int = 200,
    milestones: tuple[int, ...] = (100, 150),
    factor: float = 0.1,
    as_coded: bool = True,
) -> optax.Schedule:
    """ARD's student schedule (``main.py``: lr 0.1, ``--lr_schedule 100 150``, 200 epochs).

    ``as_coded=True`` is what the code runs: each milestone sets
    ``lr = base_lr·factor`` (it scales the initial lr, not the current one),
    so only the first milestone matters. ``as_coded=False`` compounds them.
    ``milestones`` are given for ``epochs = 200`` and scaled to ``epochs``.
    """
    _check_epochs(epochs)
    scaled = tuple(scale_epoch(m, epochs, 200) for m in milestones)
    if as_coded:
        scaled = scaled[:1]
    return step_decay_schedule(steps_per_epoch, base_lr=base_lr, milestones=scaled, factor=factor)


def _cosine_exp(base_lr: float, elapsed: jax.Array, span: float) -> jax.Array:
    """CIARD's ``base·(½ + ½cos(π·t/span))·exp(−0.01·t²/span²)``.

    ``½ + ½cos(πt/s)`` is evaluated as ``sin²(π(s − t)/(2s))`` (equal), which
    keeps float32 relative accuracy near the end of the decay, where the
    cosine form cancels.
    """
    elapsed = elapsed.astype(jnp.float32)
    cosine = jnp.sin(jnp.pi * (span - elapsed) / (2.0 * span)) ** 2
    return base_lr * cosine * jnp.exp(-0.01 * elapsed**2 / span**2)


def ciard_student_schedule(
    steps_per_epoch: int,
    *,
    base_lr: float = 0.1,
    epochs: int = REFERENCE_EPOCHS,
    decay_start: int | None = None,
) -> optax.Schedule:
    """CIARD's student lr: ``0.1`` for ``E < 150``, then cosine × Gaussian decay to 0 at ``E = 300``.

    ``lr(E) = base·(½ + ½cos(π(E−s)/(N−s)))·exp(−0.01(E−s)²/(N−s)²)`` for
    ``E ≥ s`` (1-based epoch ``E``, ``s = decay_start`` = 150, ``N = epochs``
    = 300); continuous at ``E = s`` and exactly 0 in the last epoch, as in
    the reference. ``decay_start`` defaults to 150 scaled to ``epochs``.
    """
    _check_steps(steps_per_epoch)
    _check_epochs(epochs)
    _check_rate("base_lr", base_lr)
    # scaled, and kept inside the run (a 1-epoch run decays from its start)
    start = min(scale_epoch(150, epochs), epochs - 1) if decay_start is None else decay_start
    if not isinstance(start, int) or not 0 <= start < epochs:
        raise ValueError(f"decay_start must be an int in [0, {epochs}); got {start!r}")
    span = float(epochs - start)

    def schedule(step: jax.typing.ArrayLike) -> jax.Array:
        big_e = _epoch(step, steps_per_epoch) + 1
        decayed = _cosine_exp(base_lr, jnp.maximum(big_e - start, 0), span)
        return jnp.where(big_e < start, jnp.float32(base_lr), decayed)

    return schedule


def ciard_teacher_schedule(
    steps_per_epoch: int,
    *,
    base_lr: float = 1e-4,
    epochs: int = REFERENCE_EPOCHS,
    start_epoch: int | None = None,
) -> optax.Schedule:
    """CIARD's robust-teacher retraining lr: exactly 0 until epoch 50, then ``1e-4`` cosine × Gaussian.

    ``lr(E) = 0`` for ``E ≤ s`` (the reference steps the teacher only when
    ``epoch > 50``), else
    ``base·(½ + ½cos(π(E−s)/(N−s)))·exp(−0.01(E−s)²/(N−s)²)`` with
    ``s = start_epoch`` = 50 and ``N = epochs`` = 300. In 0-based epochs: 0
    for ``e < s``, and the first retraining epoch ``e = s`` runs at
    ``lr(s + 1)``. ``start_epoch`` defaults to 50 scaled to ``epochs``.
    """
    _check_steps(steps_per_epoch)
    _check_epochs(epochs)
    _check_rate("base_lr", base_lr)
    start = min(scale_epoch(50, epochs), epochs - 1) if start_epoch is None else start_epoch
    if not isinstance(start, int) or not 0 <= start < epochs:
        raise ValueError(f"start_epoch must be an int in [0, {epochs}); got {start!r}")
    span = float(epochs - start)

    def schedule(step: jax.typing.ArrayLike) -> jax.Array:
        big_e = _epoch(step, steps_per_epoch) + 1
        decayed = _cosine_exp(base_lr, jnp.maximum(big_e - start, 0), span)
        return jnp.where(big_e <= start, jnp.float32(0.0), decayed)

    return schedule


def ciard_balance_schedule(
    steps_per_epoch: int,
    *,
    base_lr: float,
    epochs: int = REFERENCE_EPOCHS,
    factor: float = 0.1,
    as_coded: bool = True,
) -> optax.Schedule:
    """CIARD's weight (0.025) and temperature (0.001) balancing rates.

    ``as_coded=True`` reproduces ``CIARD_cifar10.py``, where
    ``if epoch in [215, 260, 285]: rate *= 0.1`` sits inside the batch loop
    after the balancing updates: the ``j``-th step (0-based) of 1-based epoch
    215 uses ``base·0.1^j``, and every later step ``base·0.1^n`` with ``n`` at
    least ``steps_per_epoch`` — zero in float32 after 45 steps. Balancing
    therefore stops during epoch 215 (0-based 214). ``as_coded=False`` decays
    once per milestone, like B-MTARD (:func:`mtard_schedule`).
    """
    if not as_coded:
        return mtard_schedule(steps_per_epoch, base_lr=base_lr, epochs=epochs, factor=factor)
    _check_steps(steps_per_epoch)
    _check_epochs(epochs)
    _check_rate("base_lr", base_lr)
    _check_rate("factor", factor)
    # 0-based first step of each decaying epoch (1-based epoch m starts at (m-1)·spe).
    starts = jnp.asarray(
        [(scale_epoch(m, epochs) - 1) * steps_per_epoch for m in MTARD_MILESTONES], jnp.int32
    )

    def schedule(step: jax.typing.ArrayLike) -> jax.Array:
        step = jnp.asarray(step)
        n = jnp.sum(jnp.clip(step[..., None] - starts, 0, steps_per_epoch), axis=-1)
        return base_lr * jnp.power(jnp.float32(factor), n)

    return schedule


# ----------------------------------------------------------------------------
# PyTorch's SGD in optax.
# ----------------------------------------------------------------------------


class TorchSGDState(NamedTuple):
    """State of :func:`torch_sgd`: the step count and the momentum buffer."""

    count: jax.Array
    momentum: Any


def torch_sgd(
    learning_rate: float | optax.Schedule,
    *,
    momentum: float = 0.9,
    weight_decay: float = 2e-4,
    freeze_while_zero_lr: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.SGD(lr, momentum, weight_decay)`` (no dampening, not Nesterov).

    PyTorch adds ``wd·p`` to the gradient, then ``buf ← m·buf + g`` (the first
    step stores ``g``) and ``p ← p − lr·buf``. That is
    ``chain(add_decayed_weights(wd), trace(m), scale(−lr))``; the schedule is
    read at this transformation's own step count.

    With ``freeze_while_zero_lr`` a step whose lr is exactly 0 leaves the
    momentum buffer untouched (and the parameters, as always at lr 0): the
    reference skips CIARD's robust-teacher optimizer step altogether before
    epoch 51, so its buffer starts empty at the first real step. Without it,
    zero-lr steps still fill the buffer.

    The references' values: students ``momentum = 0.9``, ``weight_decay =
    2e-4``; CIARD's robust teacher ``momentum = 0.1``, ``weight_decay = 2e-4``
    with :func:`ciard_teacher_schedule` and ``freeze_while_zero_lr=True``.
    """
    if not callable(learning_rate):
        _check_rate("learning_rate", learning_rate)
    _check_rate("momentum", momentum)
    _check_rate("weight_decay", weight_decay)

    def lr_at(count: jax.Array) -> jax.Array:
        return learning_rate(count) if callable(learning_rate) else jnp.asarray(learning_rate)

    def init(params: Any) -> TorchSGDState:
        return TorchSGDState(
            count=jnp.zeros((), jnp.int32),
            momentum=jax.tree.map(jnp.zeros_like, params),
        )

    def update(updates: Any, state: TorchSGDState, params: Any = None) -> tuple[Any, TorchSGDState]:
        if weight_decay and params is None:
            raise ValueError("torch_sgd with weight_decay needs params in update()")
        grads = updates
        if weight_decay:
            grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)
        buf = jax.tree.map(lambda b, g: momentum * b + g, state.momentum, grads)
        lr = lr_at(state.count)
        if freeze_while_zero_lr:
            frozen = lr == 0
            buf = jax.tree.map(lambda old, new: jnp.where(frozen, old, new), state.momentum, buf)
        new_updates = jax.tree.map(lambda b: (-lr * b).astype(b.dtype), buf)
        return new_updates, TorchSGDState(count=optax.safe_increment(state.count), momentum=buf)

    return optax.GradientTransformation(init, update)


class SGDGroup(NamedTuple):
    """One parameter group of :func:`torch_sgd_groups` (a PyTorch ``param_group``)."""

    learning_rate: float | optax.Schedule
    momentum: float = 0.9
    weight_decay: float = 2e-4
    freeze_while_zero_lr: bool = False


def torch_sgd_groups(
    groups: dict[str, SGDGroup], label_fn: Callable[[Any], Any]
) -> optax.GradientTransformation:
    """:func:`torch_sgd` with one set of hyperparameters per parameter group.

    ``label_fn(params)`` returns a tree of group names shaped like ``params``;
    each leaf is updated by its group's rule, with one shared step count (the
    schedules read it). This is what CIARD does with two PyTorch optimizers
    (the student's and the robust teacher's), written as one transformation
    whose state holds only arrays — ``optax.multi_transform`` would put
    ``MaskedNode`` placeholders in the optimizer state, which ``nnx.Optimizer``
    wraps into variables that sharding and checkpointing cannot handle.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = torch_sgd_groups(
      ...     {"a": SGDGroup(0.1, momentum=0.0, weight_decay=0.0),
      ...      "b": SGDGroup(0.0, momentum=0.0, weight_decay=0.0)},
      ...     lambda p: {"a": "a", "b": "b"})
      >>> params = {"a": jnp.ones(2), "b": jnp.ones(2)}
      >>> updates, _ = tx.update(params, tx.init(params), params)
      >>> [float(updates[k][0]) for k in "ab"]
      [-0.1, -0.0]
    """
    if not groups:
        raise ValueError("torch_sgd_groups needs at least one group")
    for name, g in groups.items():
        if not isinstance(g, SGDGroup):
            raise ValueError(f"group {name!r} must be an SGDGroup; got {type(g).__name__}")
        if not callable(g.learning_rate):
            _check_rate(f"{name}.learning_rate", g.learning_rate)
        _check_rate(f"{name}.momentum", g.momentum)
        _check_rate(f"{name}.weight_decay", g.weight_decay)

    def group_of(label) -> SGDGroup:
        if label not in groups:
            raise ValueError(f"label_fn gave {label!r}; groups are {sorted(groups)}")
        return groups[label]

    def init(params: Any) -> TorchSGDState:
        return TorchSGDState(
            count=jnp.zeros((), jnp.int32),
            momentum=jax.tree.map(jnp.zeros_like, params),
        )

    def update(updates: Any, state: TorchSGDState, params: Any = None) -> tuple[Any, TorchSGDState]:
        if params is None:
            raise ValueError("torch_sgd_groups needs params in update()")
        labels = label_fn(params)

        def one(label, g, buf, p):
            group = group_of(label)
            lr = group.learning_rate
            lr = lr(state.count) if callable(lr) else jnp.asarray(lr)
            g = g + group.weight_decay * p if group.weight_decay else g
            new = group.momentum * buf + g
            if group.freeze_while_zero_lr:
                new = jnp.where(lr == 0, buf, new)
            return (-lr * new).astype(new.dtype), new

        pairs = jax.tree.map(one, labels, updates, state.momentum, params)
        is_pair = lambda x: isinstance(x, tuple)  # noqa: E731
        new_updates = jax.tree.map(lambda t: t[0], pairs, is_leaf=is_pair)
        momentum = jax.tree.map(lambda t: t[1], pairs, is_leaf=is_pair)
        return new_updates, TorchSGDState(optax.safe_increment(state.count), momentum)

    return optax.GradientTransformation(init, update)
