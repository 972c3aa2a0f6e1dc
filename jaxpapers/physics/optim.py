"""PyTorch-style Adam with one optimizer per parameter group, as one optax transformation.

LaDEEP and FilDeep train with several ``torch.optim.Adam`` instances, one per
parameter group, each with its own learning rate, weight decay and
``CosineAnnealingLR`` stepped once per epoch. FilDeep steps its low-fidelity
optimizers only on low-fidelity batches and its high-fidelity optimizer only on
high-fidelity batches, then starts a fresh Adam on the high-fidelity parameters
for fine-tuning. :func:`torch_adam_groups` writes that as a single
transformation for ``nnx.Optimizer``:

* ``torch.optim.Adam`` semantics: weight decay is L2 added to the gradient
  (``g + wd * p``), then ``-lr * m_hat / (sqrt(v_hat) + eps)`` with bias
  corrections from the group's own step count;
* each group keeps its own step count and **steps only on batches that give it
  a gradient**: when every gradient of a group is exactly zero (its parameters
  took no part in the loss, or sat behind ``stop_gradient``) its moments, count
  and parameters stay as they are — a PyTorch optimizer that was not stepped.
  The schedules read the group's own count, so an epoch schedule advances with
  the group's own epochs;
* ``restart_at``: at that group step the moments and the bias-correction count
  start again from zero (FilDeep's fresh fine-tuning optimizer over the same
  parameters); the learning-rate schedule, which sees the full count, switches
  with it.

The state holds only arrays (no ``optax.MaskedNode``), so ``nnx.Optimizer``
shards and checkpoints it like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class AdamGroup(NamedTuple):
    """One parameter group (one PyTorch ``Adam``).

    ``learning_rate`` is a float or a schedule of the group's own step count.
    """

    learning_rate: float | optax.Schedule
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    restart_at: int = 0  # > 0: moments and bias correction restart at this group step


class GroupedAdamState(NamedTuple):
    counts: dict[str, jax.Array]  # group name -> steps this group has taken
    mu: Any
    nu: Any


def epoch_cosine(
    base: float, *, steps_per_epoch: int, num_epochs: int, decay_min: float
) -> optax.Schedule:
    """``CosineAnnealingLR(T_max=num_epochs, eta_min=base / decay_min)`` stepped per epoch.

    The learning rate at step ``t`` is that of epoch ``t // steps_per_epoch``:
    ``eta_min + (base - eta_min) (1 + cos(pi e / T)) / 2``, continuing the cosine
    (as PyTorch's recursive form does) past ``T``.

    >>> s = epoch_cosine(1.0, steps_per_epoch=10, num_epochs=2, decay_min=10.0)
    >>> [round(float(s(t)), 4) for t in (0, 9, 10, 20)]
    [1.0, 1.0, 0.55, 0.1]
    """
    if steps_per_epoch <= 0 or num_epochs <= 0:
        raise ValueError(
            f"steps_per_epoch and num_epochs must be positive, got {steps_per_epoch}, {num_epochs}"
        )
    if decay_min < 1:
        raise ValueError(f"decay_min must be >= 1 (eta_min = base / decay_min), got {decay_min}")
    eta_min = base / decay_min

    def schedule(count):
        epoch = (jnp.asarray(count) // steps_per_epoch).astype(jnp.float32)
        return eta_min + (base - eta_min) * 0.5 * (1 + jnp.cos(jnp.pi * epoch / num_epochs))

    return schedule


def torch_adam_groups(
    groups: dict[str, AdamGroup], label_fn: Callable[[Any], Any]
) -> optax.GradientTransformation:
    """One ``torch.optim.Adam`` per group; a group steps only when it has a gradient.

    ``label_fn(params)`` returns a tree of group names shaped like ``params``.

    Example (group ``b`` gets no gradient, so it neither moves nor counts):
      >>> import jax.numpy as jnp
      >>> tx = torch_adam_groups({"a": AdamGroup(0.1), "b": AdamGroup(0.1)},
      ...                        lambda p: {"a": "a", "b": "b"})
      >>> params = {"a": jnp.ones(2), "b": jnp.ones(2)}
      >>> grads = {"a": jnp.ones(2), "b": jnp.zeros(2)}
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> [round(float(updates[k][0]), 4) for k in "ab"], {k: int(v) for k, v in state.counts.items()}
      ([-0.1, 0.0], {'a': 1, 'b': 0})
    """
    if not groups:
        raise ValueError("torch_adam_groups needs at least one group")
    for name, g in groups.items():
        if not isinstance(g, AdamGroup):
            raise ValueError(f"group {name!r} must be an AdamGroup; got {type(g).__name__}")
        if not callable(g.learning_rate) and g.learning_rate < 0:
            raise ValueError(f"group {name!r}: learning_rate must be >= 0, got {g.learning_rate}")
        if g.weight_decay < 0 or not 0 <= g.b1 < 1 or not 0 <= g.b2 < 1 or g.eps <= 0:
            raise ValueError(f"group {name!r}: invalid Adam hyperparameters {g}")
        if g.restart_at < 0:
            raise ValueError(f"group {name!r}: restart_at must be >= 0, got {g.restart_at}")

    def labels_of(params):
        labels = label_fn(params)
        unknown = set(jax.tree.leaves(labels)) - set(groups)
        if unknown:
            raise ValueError(f"label_fn gave {sorted(unknown)}; groups are {sorted(groups)}")
        return labels

    def init(params):
        labels_of(params)
        zeros = lambda p: jnp.zeros_like(p)  # noqa: E731
        return GroupedAdamState(
            counts={name: jnp.zeros((), jnp.int32) for name in groups},
            mu=jax.tree.map(zeros, params),
            nu=jax.tree.map(zeros, params),
        )

    def update(updates, state: GroupedAdamState, params=None):
        if params is None:
            raise ValueError("torch_adam_groups needs params in update()")
        labels = labels_of(params)
        flat_labels = jax.tree.leaves(labels)
        flat_grads = jax.tree.leaves(updates)
        active = {}
        for name in groups:  # a group steps iff any of its gradients is non-zero
            mine = [jnp.any(g != 0) for lbl, g in zip(flat_labels, flat_grads) if lbl == name]
            active[name] = jnp.any(jnp.stack(mine)) if mine else jnp.zeros((), bool)
        new_counts = {name: state.counts[name] + active[name].astype(jnp.int32) for name in groups}

        def one(label, g, mu0, nu0, p):
            group = groups[label]
            on, step = active[label], new_counts[label]
            mu, nu = mu0, nu0
            if group.restart_at:
                fresh = step == group.restart_at + 1  # first step of the restarted optimizer
                mu = jnp.where(fresh, 0, mu)
                nu = jnp.where(fresh, 0, nu)
                t = jnp.where(step > group.restart_at, step - group.restart_at, step)
            else:
                t = step
            lr = group.learning_rate
            lr = lr(step - 1) if callable(lr) else lr
            g = g + group.weight_decay * p if group.weight_decay else g
            new_mu = group.b1 * mu + (1 - group.b1) * g
            new_nu = group.b2 * nu + (1 - group.b2) * g * g
            tf = jnp.maximum(t, 1).astype(jnp.float32)
            m_hat = new_mu / (1 - group.b1**tf)
            v_hat = new_nu / (1 - group.b2**tf)
            u = (-lr * m_hat / (jnp.sqrt(v_hat) + group.eps)).astype(p.dtype)
            return (
                jnp.where(on, u, jnp.zeros_like(u)),
                jnp.where(on, new_mu, mu0),
                jnp.where(on, new_nu, nu0),
            )

        triples = jax.tree.map(one, labels, updates, state.mu, state.nu, params)
        is_triple = lambda x: isinstance(x, tuple)  # noqa: E731
        pick = lambda i: jax.tree.map(lambda t: t[i], triples, is_leaf=is_triple)  # noqa: E731
        return pick(0), GroupedAdamState(new_counts, pick(1), pick(2))

    return optax.GradientTransformation(init, update)
