"""White-box ℓ∞ attacks: FGSM, PGD (CE or KL), CW∞, APGD-CE / APGD-DLR; robust accuracy.

Every attack is a pure function with the uniform signature

    attack(model_fn, key, x, y, *, <config>) -> x_adv

* ``model_fn(x) -> logits`` maps a batch ``(N, H, W, C)`` (any ``(N, ...)``
  shape works) to logits ``(N, num_classes)``. It must be a *pure* function that
  treats examples independently — for a Flax NNX model with batch norm, pass it
  in **eval mode** (running statistics), e.g.::

      graphdef, state = nnx.split(model)            # model.eval() first
      model_fn = lambda x: nnx.merge(graphdef, state)(x)

  A model in train mode would mix examples through the batch statistics and
  try to update them inside the attack's gradient trace. To evaluate without
  baking the weights into the compiled program as constants, pass
  ``jax.tree_util.Partial(apply_fn, state)`` (a pytree whose leaves are the
  weights); :func:`accuracy_under` then passes them to ``jit`` as arguments.
* ``key`` is a PRNG key (random starts, restarts); :func:`fgsm` and attacks with
  ``random_start=False`` accept ``key=None``.
* ``x`` is a float batch in ``[0, 1]``; ``y`` integer labels ``(N,)``.
* The result satisfies ``‖x_adv − x‖∞ ≤ eps`` and ``0 ≤ x_adv ≤ 1`` (up to one
  float rounding of ``x ± eps``) and carries ``lax.stop_gradient``: an outer
  ``jax.grad`` with respect to the model's parameters (adversarial training)
  treats ``x_adv`` as a constant, as ``x_adv.detach()`` does in the PyTorch
  references. The attacks themselves only differentiate with respect to the
  input.

Configuration (``eps``, ``step_size``, ``steps``, ``loss``, ...) is keyword-only;
use ``functools.partial(pgd, eps=8/255, step_size=2/255, steps=20)`` to make an
attack for :func:`accuracy_under`, and ``jax.jit(partial(...))`` with ``steps``
and strings static (they are Python values, so closing over them is enough).

Losses are summed over the batch before differentiating, so (examples being
independent) every example gets the gradient of its own loss; sign steps make
the sum/mean choice of the references irrelevant.

Iterative attacks run their steps in a ``lax.fori_loop``; ``unroll`` is passed
to it (``True`` unrolls fully, an int ``k`` runs a loop of ``k``-step bodies).
Measured on this 2-core CPU (XLA:CPU, jax 0.10; 128 digits 8×8 through
:class:`~jaxpapers.nn.resnet.ConvNet` 32/64/128 in eval mode; best of 10 after
compilation, machine shared with other jobs): one forward+backward 16.8 ms;
PGD-10 rolled (``unroll=1``) 329 ms, ``unroll=2`` 348 ms, fully unrolled 186 ms
(= 11.1 forward+backward passes, i.e. no per-step overhead); APGD-20 rolled
709 ms, unrolled 380 ms. Any ``while`` loop around the convolutions costs
XLA:CPU ~1.9× here (partial unrolling does not help; the task notes measured
2.7× for PGD-10 through ResNet-18), while compile time grows with the unrolled
steps (PGD-10: 1.5 s vs 1.1 s; APGD-20: 6.4 s vs 2.3 s; APGD-100 ≈ 35 s).
Hence the defaults: :func:`pgd` / :func:`cw_linf` unroll fully
(:data:`DEFAULT_UNROLL`; their 10–30 steps compile quickly), :func:`apgd` runs
rolled (:data:`APGD_DEFAULT_UNROLL`; pass ``unroll=True`` for a long evaluation
on CPU, where the one-off compile is repaid after a few dozen batches). On GPU
the loop's cost was not measured here.

References: FGSM (Goodfellow et al., 2015); PGD (Madry et al., 2018); the
TRADES/ARD/RSLAD inner maximisation of ``KL(p_target ‖ p_model(x_adv))``; CW∞ =
PGD on the Carlini–Wagner margin as in the CIARD/RSLAD evaluation scripts;
APGD (Croce & Hein, 2020, "Reliable evaluation of adversarial robustness with
an ensemble of diverse parameter-free attacks", Algorithm 1, following
``fra31/auto-attack``'s ``autopgd_base.py``). APGD-CE and APGD-DLR here are
the two untargeted components only — results must be reported under those
names, not as AutoAttack (which adds targeted APGD-T and FAB-T / Square).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

ModelFn = Callable[[jax.Array], jax.Array]
Attack = Callable[..., jax.Array]

DEFAULT_UNROLL: int | bool = True
"""``fori_loop`` unroll of :func:`pgd` and :func:`cw_linf` (fully unrolled); see the module doc."""

APGD_DEFAULT_UNROLL: int | bool = 1
"""``fori_loop`` unroll of :func:`apgd` (rolled: 100 unrolled steps compile slowly)."""

NORMAL_START_STD = 0.001
"""Std of the ``start="normal"`` perturbation (CIARD/RSLAD/TRADES: ``x + 0.001·N(0, 1)``)."""

_PGD_LOSSES = ("ce", "kl", "cw")
_APGD_LOSSES = ("ce", "dlr")
_STARTS = ("uniform", "normal")


# --------------------------------------------------------------------------------------
# Losses (per example; the attacks maximise them)
# --------------------------------------------------------------------------------------


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy ``−log softmax(z)_y``, shape ``(N,)``."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1)[:, 0]


def kl_to_target(target_logits: jax.Array, logits: jax.Array) -> jax.Array:
    """Per-example ``KL(softmax(target) ‖ softmax(logits)) = Σ_j p_j (log p_j − log q_j)``.

    The TRADES / ARD / RSLAD inner loss (PyTorch's ``KLDivLoss(log_softmax(model(x_adv)),
    softmax(target))``, summed per example). ``p_j = 0`` terms contribute 0.
    """
    logp = jax.nn.log_softmax(target_logits, axis=-1)
    logq = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(logp)
    return jnp.sum(jnp.where(p > 0, p * (logp - logq), 0.0), axis=-1)


def _max_other(logits: jax.Array, y: jax.Array) -> jax.Array:
    """``max_{j≠y} z_j`` per example."""
    mask = jax.nn.one_hot(y, logits.shape[-1], dtype=bool)
    return jnp.max(jnp.where(mask, -jnp.inf, logits), axis=-1)


def cw_margin_loss(logits: jax.Array, y: jax.Array, kappa: float = 50.0) -> jax.Array:
    """Carlini–Wagner margin loss ``−max(z_y − max_{j≠y} z_j + κ, 0)``, shape ``(N,)``.

    As ``cwloss`` in the CIARD/RSLAD/MART evaluation code (``confidence=50``):
    maximising it pushes the true-class margin down to ``−κ`` and then stops.
    """
    z_y = jnp.take_along_axis(logits, y[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return -jnp.maximum(z_y - _max_other(logits, y) + kappa, 0.0)


def dlr_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Difference-of-logits-ratio loss of Croce & Hein (2020), eq. (5), shape ``(N,)``.

    ``DLR(z, y) = −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e-12)`` with ``π`` the
    logits sorted in decreasing order (shift- and scale-invariant). Positive iff the
    example is misclassified. Needs at least 3 classes.
    """
    if logits.shape[-1] < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes; got {logits.shape[-1]}")
    top3 = jax.lax.top_k(logits, 3)[0]
    z_y = jnp.take_along_axis(logits, y[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return -(z_y - _max_other(logits, y)) / (top3[:, 0] - top3[:, 2] + 1e-12)


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------


def project_linf(x_adv: jax.Array, x: jax.Array, eps) -> jax.Array:
    """Projection onto ``{‖· − x‖∞ ≤ eps} ∩ [0, 1]^d`` (clip to the ball, then the box).

    Because ``x`` lies in the box, clipping to the box after the ball keeps the
    point inside the ball, so the composition is the exact projection.
    """
    return jnp.clip(jnp.clip(x_adv, x - eps, x + eps), 0.0, 1.0)


def _concrete(value) -> float | None:
    """``float(value)`` when it is a concrete scalar, ``None`` under tracing."""
    try:
        return float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


def _check_nonneg(name: str, value) -> None:
    if jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar; got shape {jnp.shape(value)}")
    v = _concrete(value)
    if v is not None and not (v >= 0.0 and np.isfinite(v)):
        raise ValueError(f"{name} must be finite and >= 0; got {v}")


def _check_steps(steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a Python int >= 0 (static); got {steps!r}")


def _check_batch(model_fn: ModelFn, x, y, name: str) -> tuple[jax.Array, jax.Array, int]:
    """Checks shapes/dtypes; returns ``x``, ``y`` as arrays and the number of classes."""
    if not callable(model_fn):
        raise ValueError(f"{name}: model_fn must be callable; got {type(model_fn).__name__}")
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim < 2:
        raise ValueError(f"{name}: x must be a batch (N, ...); got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name}: x must be floating point in [0, 1]; got dtype {x.dtype}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{name}: y must have shape ({x.shape[0]},); got {y.shape}")
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"{name}: y must hold integer labels; got dtype {y.dtype}")
    out = jax.eval_shape(model_fn, jax.ShapeDtypeStruct(x.shape, x.dtype))
    if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name}: model_fn must map x {x.shape} to logits ({x.shape[0]}, num_classes); "
            f"got {getattr(out, 'shape', type(out).__name__)}"
        )
    return x, y, int(out.shape[1])


def _loss_grad(model_fn: ModelFn, loss_fn, x_adv: jax.Array):
    """``(per-example loss, logits, ∂Σloss/∂x_adv)`` at ``x_adv``."""

    def total(xa):
        logits = model_fn(xa)
        per_example = loss_fn(logits)
        return jnp.sum(per_example), (per_example, logits)

    (_, (loss, logits)), grad = jax.value_and_grad(total, has_aux=True)(x_adv)
    return loss, logits, grad


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
    """Per-example ``(N,)`` values broadcast against ``x`` ``(N, ...)``."""
    return v.reshape(v.shape + (1,) * (x.ndim - 1))


def _where(cond: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """Per-example select: ``cond`` is ``(N,)`` (or a scalar), ``a``/``b`` are ``(N, ...)``."""
    if jnp.ndim(cond) == 0:
        return jnp.where(cond, a, b)
    return jnp.where(_bcast(cond, a), a, b)


# --------------------------------------------------------------------------------------
# FGSM, PGD, CW∞
# --------------------------------------------------------------------------------------


def fgsm(model_fn: ModelFn, key: jax.Array | None, x: jax.Array, y: jax.Array, *, eps) -> jax.Array:
    """Fast gradient sign method: ``clip(x + eps·sign(∇_x CE(model(x), y)), 0, 1)``.

    Goodfellow et al. (2015), as ``attack_fgsm`` in CIARD's ``attack_eval.py``.
    ``key`` is unused (accepted, may be ``None``, for the uniform attack signature).
    """
    del key
    x, y, _ = _check_batch(model_fn, x, y, "fgsm")
    _check_nonneg("eps", eps)
    _, _, grad = _loss_grad(model_fn, lambda z: cross_entropy(z, y), x)
    return jax.lax.stop_gradient(project_linf(x + eps * jnp.sign(grad), x, eps))


def _start_point(key, x, eps, random_start: bool, start: str) -> jax.Array:
    if not random_start:
        return x
    if key is None:
        raise ValueError("random_start=True needs a PRNG key; got key=None")
    if start == "uniform":
        noise = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps
    else:
        noise = NORMAL_START_STD * jax.random.normal(key, x.shape, x.dtype)
    return project_linf(x + noise, x, eps)


def pgd(
    model_fn: ModelFn,
    key: jax.Array | None,
    x: jax.Array,
    y: jax.Array,
    *,
    eps,
    step_size,
    steps: int,
    random_start: bool = True,
    loss: str = "ce",
    target_logits: jax.Array | None = None,
    start: str = "uniform",
    kappa: float = 50.0,
    unroll: int | bool = DEFAULT_UNROLL,
) -> jax.Array:
    """ℓ∞ projected gradient ascent (Madry et al., 2018) on a per-example loss.

    ``x_{t+1} = Π_{B∞(x, eps) ∩ [0,1]}(x_t + step_size · sign(∇ L(x_t)))`` for
    ``steps`` steps from ``x_0``, returning the last iterate (as the references do,
    not the best one).

    Args:
      loss: ``"ce"`` — cross-entropy on ``y`` (PGD-k evaluation / Madry AT, the
        student-CE inner max of CIARD's training); ``"kl"`` —
        ``KL(softmax(target_logits) ‖ softmax(model(x_adv)))`` (TRADES, ARD, RSLAD);
        when ``target_logits`` is ``None`` the target is the model's own clean
        logits ``model_fn(x)`` (TRADES), held constant; ``"cw"`` — the CW margin
        :func:`cw_margin_loss` with ``kappa`` (see :func:`cw_linf`).
      target_logits: ``(N, num_classes)`` logits of a teacher (e.g. on the clean
        ``x``) for ``loss="kl"``; treated as constants.
      random_start: start from a random point (else from ``x``).
      start: ``"uniform"`` — ``x + U(−eps, eps)`` (Madry; CIARD's evaluation
        PGD-20); ``"normal"`` — ``x + 0.001·N(0, 1)`` (CIARD's training attack,
        TRADES, RSLAD); both then projected to the ball and box.
      unroll: passed to ``lax.fori_loop`` (see the module docstring).

    ``y`` is still required for ``loss="kl"`` (shape checks, uniform signature).
    """
    x, y, num_classes = _check_batch(model_fn, x, y, "pgd")
    _check_nonneg("eps", eps)
    _check_nonneg("step_size", step_size)
    _check_steps(steps)
    if loss not in _PGD_LOSSES:
        raise ValueError(f"loss must be one of {_PGD_LOSSES}; got {loss!r}")
    if start not in _STARTS:
        raise ValueError(f"start must be one of {_STARTS}; got {start!r}")
    if loss != "kl" and target_logits is not None:
        raise ValueError(f"target_logits is only used with loss='kl'; got loss={loss!r}")
    if loss == "ce":
        loss_fn = lambda z: cross_entropy(z, y)  # noqa: E731
    elif loss == "cw":
        loss_fn = lambda z: cw_margin_loss(z, y, kappa)  # noqa: E731
    else:
        if target_logits is None:
            target = model_fn(x)
        else:
            target = target_logits
            if target.shape != (x.shape[0], num_classes):
                raise ValueError(
                    f"target_logits must have shape {(x.shape[0], num_classes)}; got {target.shape}"
                )
        target = jax.lax.stop_gradient(target)
        loss_fn = lambda z: kl_to_target(target, z)  # noqa: E731

    x = jax.lax.stop_gradient(x)
    x0 = _start_point(key, x, eps, random_start, start)

    def body(_, x_adv):
        _, _, grad = _loss_grad(model_fn, loss_fn, x_adv)
        return project_linf(x_adv + step_size * jnp.sign(grad), x, eps)

    x_adv = jax.lax.fori_loop(0, steps, body, x0, unroll=unroll) if steps else x0
    return jax.lax.stop_gradient(x_adv)


def cw_linf(
    model_fn: ModelFn,
    key: jax.Array | None,
    x: jax.Array,
    y: jax.Array,
    *,
    eps,
    step_size,
    steps: int = 30,
    kappa: float = 50.0,
    random_start: bool = False,
    start: str = "uniform",
    unroll: int | bool = DEFAULT_UNROLL,
) -> jax.Array:
    """CW∞: ℓ∞ PGD on the Carlini–Wagner margin loss :func:`cw_margin_loss`.

    Follows ``attack_cw_inf`` in CIARD's ``attack_eval.py`` (κ = 50, 30 steps of
    ``2/255`` at ``eps = 8/255``, starting at ``x``: ``random_start=False``).
    Deviation: the reference clips only the perturbation to the ball during the
    iterations and clips to ``[0, 1]`` once at the end, so the model sees pixels
    outside ``[0, 1]`` while attacking; here every iterate is projected onto the
    ball ∩ box, so the attacked points are the evaluated points.
    """
    return pgd(
        model_fn,
        key,
        x,
        y,
        eps=eps,
        step_size=step_size,
        steps=steps,
        random_start=random_start,
        loss="cw",
        start=start,
        kappa=kappa,
        unroll=unroll,
    )


# --------------------------------------------------------------------------------------
# APGD
# --------------------------------------------------------------------------------------


def apgd_checkpoints(steps: int) -> tuple[tuple[int, int], ...]:
    """APGD's step-size checkpoints as ``(iterations_done, window_length)`` pairs.

    Croce & Hein (2020): ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} −
    0.03, 0.06)``, checkpoints ``w_j = ⌈p_j N_iter⌉``. In integers, as
    ``autopgd_base.py``: the first window is ``max(⌊0.22 N⌋, 1)`` iterations, each
    next one ``max(⌊0.03 N⌋, 1)`` shorter but at least ``max(⌊0.06 N⌋, 1)``.
    E.g. ``N = 100``: checks after 22, 41, 57, 70, 80, 87, 93, 99 iterations.
    """
    _check_steps(steps)
    k = max(int(0.22 * steps), 1)
    k_min = max(int(0.06 * steps), 1)
    decrement = max(int(0.03 * steps), 1)
    out, done = [], k
    while done <= steps:
        out.append((done, k))
        k = max(k - decrement, k_min)
        done += k
    return tuple(out)


def _apgd_init(key: jax.Array, x: jax.Array, eps) -> jax.Array:
    """APGD's ℓ∞ start: ``x + eps · t / max|t|`` with ``t ~ U(−1, 1)`` per example, in the box."""
    t = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0)
    t_max = jnp.max(jnp.abs(t).reshape(t.shape[0], -1), axis=1)
    return project_linf(x + eps * t / (_bcast(t_max, t) + 1e-12), x, eps)


def _apgd_single_run(model_fn, loss_fn, key, x, y, eps, steps, rho, momentum, unroll):
    """One run of Algorithm 1; returns ``(x_best, loss_best, x_fooled, fooled, step_size)``."""
    n = x.shape[0]
    checks = apgd_checkpoints(steps)
    is_check = np.zeros(max(steps, 1), dtype=bool)
    window = np.zeros(max(steps, 1), dtype=np.float32)
    for done, k in checks:
        is_check[done - 1] = True
        window[done - 1] = k
    is_check, window = jnp.asarray(is_check), jnp.asarray(window)

    x0 = _apgd_init(key, x, eps)
    loss0, logits0, grad0 = _loss_grad(model_fn, loss_fn, x0)
    state = dict(
        x_adv=x0,
        x_prev=x0,
        grad=grad0,
        step=jnp.full((n,), 2.0 * eps, dtype=x.dtype),
        x_best=x0,
        grad_best=grad0,
        loss_best=loss0,
        x_fooled=x0,
        fooled=jnp.argmax(logits0, axis=-1) != y,
        prev_loss=loss0,
        n_incr=jnp.zeros((n,), jnp.float32),
        loss_best_last_check=loss0,
        reduced_last_check=jnp.ones((n,), bool),
    )

    def body(i, s):
        a = jnp.where(i > 0, momentum, 1.0).astype(x.dtype)
        velocity = s["x_adv"] - s["x_prev"]
        z = project_linf(s["x_adv"] + _bcast(s["step"], x) * jnp.sign(s["grad"]), x, eps)
        x_new = project_linf(s["x_adv"] + a * (z - s["x_adv"]) + (1.0 - a) * velocity, x, eps)
        loss, logits, grad = _loss_grad(model_fn, loss_fn, x_new)

        wrong = jnp.argmax(logits, axis=-1) != y
        x_fooled = _where(wrong, x_new, s["x_fooled"])
        improved = loss > s["loss_best"]
        x_best = _where(improved, x_new, s["x_best"])
        grad_best = _where(improved, grad, s["grad_best"])
        loss_best = jnp.where(improved, loss, s["loss_best"])
        n_incr = s["n_incr"] + (loss > s["prev_loss"])

        # Checkpoint: halve the step where the loss oscillated (condition 1: at most
        # rho·window increases in the window) or neither improved the best loss nor
        # had been halved at the previous checkpoint (condition 2); restart those
        # examples from their best point with its gradient.
        check = is_check[i]
        oscillating = n_incr <= window[i] * rho
        stalled = (~s["reduced_last_check"]) & (s["loss_best_last_check"] >= loss_best)
        reduce = check & (oscillating | stalled)
        return dict(
            x_adv=_where(reduce, x_best, x_new),
            x_prev=s["x_adv"],
            grad=_where(reduce, grad_best, grad),
            step=jnp.where(reduce, s["step"] / 2.0, s["step"]),
            x_best=x_best,
            grad_best=grad_best,
            loss_best=loss_best,
            x_fooled=x_fooled,
            fooled=s["fooled"] | wrong,
            prev_loss=loss,
            n_incr=jnp.where(check, 0.0, n_incr),
            loss_best_last_check=jnp.where(check, loss_best, s["loss_best_last_check"]),
            reduced_last_check=jnp.where(check, oscillating | stalled, s["reduced_last_check"]),
        )

    if steps:
        state = jax.lax.fori_loop(0, steps, body, state, unroll=unroll)
    return (
        state["x_best"],
        state["loss_best"],
        state["x_fooled"],
        state["fooled"],
        state["step"],
    )


def apgd(
    model_fn: ModelFn,
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    *,
    eps,
    steps: int = 100,
    loss: str = "ce",
    rho: float = 0.75,
    restarts: int = 1,
    momentum: float = 0.75,
    best_loss: bool = False,
    unroll: int | bool = APGD_DEFAULT_UNROLL,
) -> jax.Array:
    """Auto-PGD, ℓ∞ (Croce & Hein, 2020, Algorithm 1; ``fra31/auto-attack``).

    Per example: start at ``x + eps·t/max|t|``, ``t ~ U(−1, 1)``; step size
    ``η = 2·eps``; update ``z = Π(x_k + η sign(∇))``, ``x_{k+1} = Π(x_k + α(z − x_k)
    + (1 − α)(x_k − x_{k−1}))`` with ``α = 1`` on the first step and
    ``momentum`` (0.75) after. At the checkpoints of :func:`apgd_checkpoints`, ``η``
    is halved for examples whose loss increased in at most ``rho`` of the window's
    steps, or which were not halved at the previous checkpoint and whose best loss
    did not improve since; those examples restart from their best point (and its
    gradient). The best-loss point is tracked per example.

    Returns, per example: with ``best_loss=False`` (AutoAttack's default), a
    misclassified iterate where any iterate of any restart was misclassified, else
    the highest-loss point found; with ``best_loss=True``, the highest-loss point
    over all iterates and restarts (``perturb(best_loss=True)``). AutoAttack returns
    the clean ``x`` for examples it did not fool; returning the best point instead
    changes no accuracy.

    Args:
      loss: ``"ce"`` (APGD-CE) or ``"dlr"`` (APGD-DLR, :func:`dlr_loss`, ≥ 3 classes).
      restarts: independent random restarts (``n_restarts``, 1 in AutoAttack's
        standard version). AutoAttack re-attacks only the still-robust examples;
        with static shapes every restart runs on the whole batch and the results
        are combined per example, which gives the same accuracy.

    Deviation: the oscillation count compares the first window's first iterate with
    the starting point's loss (the paper's definition); the reference compares it
    with an unfilled zero row of its loss history.
    """
    x, y, num_classes = _check_batch(model_fn, x, y, "apgd")
    _check_nonneg("eps", eps)
    _check_steps(steps)
    if loss not in _APGD_LOSSES:
        raise ValueError(f"loss must be one of {_APGD_LOSSES}; got {loss!r}")
    if loss == "dlr" and num_classes < 3:
        raise ValueError(f"APGD-DLR needs at least 3 classes; model_fn gives {num_classes}")
    if not isinstance(restarts, (int, np.integer)) or isinstance(restarts, bool) or restarts < 1:
        raise ValueError(f"restarts must be an int >= 1; got {restarts!r}")
    if not 0.0 <= rho <= 1.0 or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"rho and momentum must lie in [0, 1]; got {rho}, {momentum}")
    if key is None:
        raise ValueError("apgd needs a PRNG key for its random start; got key=None")
    if loss == "ce":
        loss_fn = lambda z: cross_entropy(z, y)  # noqa: E731
    else:
        loss_fn = lambda z: dlr_loss(z, y)  # noqa: E731

    x = jax.lax.stop_gradient(x)

    def run(k):
        return _apgd_single_run(model_fn, loss_fn, k, x, y, eps, steps, rho, momentum, unroll)

    if restarts == 1:
        best_x, _, fooled_x, fooled, _ = run(jax.random.split(key, 1)[0])
    else:  # one compiled run, looped over the restarts' keys; results stacked on axis 0
        xb, lb, xf, f, _ = jax.lax.map(run, jax.random.split(key, restarts))
        pick = lambda stack, idx: jnp.take_along_axis(  # noqa: E731
            stack, _bcast(idx, stack[0])[None], axis=0
        )[0]
        best_x = pick(xb, jnp.argmax(lb, axis=0))  # first restart with the highest loss
        fooled_x = pick(xf, jnp.argmax(f, axis=0))  # first restart that fooled the model
        fooled = jnp.any(f, axis=0)
    out = best_x if best_loss else _where(fooled, fooled_x, best_x)
    return jax.lax.stop_gradient(out)


def apgd_ce(model_fn: ModelFn, key: jax.Array, x: jax.Array, y: jax.Array, **kwargs):
    """APGD-CE: :func:`apgd` with ``loss="ce"`` (report as APGD-CE, not AutoAttack)."""
    if "loss" in kwargs:
        raise ValueError("apgd_ce fixes loss='ce'; call apgd to choose the loss")
    return apgd(model_fn, key, x, y, loss="ce", **kwargs)


def apgd_dlr(model_fn: ModelFn, key: jax.Array, x: jax.Array, y: jax.Array, **kwargs):
    """APGD-DLR: :func:`apgd` with ``loss="dlr"`` (report as APGD-DLR, not AutoAttack)."""
    if "loss" in kwargs:
        raise ValueError("apgd_dlr fixes loss='dlr'; call apgd to choose the loss")
    return apgd(model_fn, key, x, y, loss="dlr", **kwargs)


# --------------------------------------------------------------------------------------
# Robust accuracy over a dataset
# --------------------------------------------------------------------------------------


def _split_arrays(tree):
    """Leaves of ``tree`` split into arrays (jit arguments) and the rest (static)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    is_array = [isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves]
    arrays = [leaf for leaf, a in zip(leaves, is_array) if a]

    def rebuild(arrs):
        it = iter(arrs)
        return jax.tree_util.tree_unflatten(
            treedef, [next(it) if a else leaf for leaf, a in zip(leaves, is_array)]
        )

    return arrays, rebuild


def accuracy_under(
    attack: Attack | None,
    model_fn: ModelFn,
    key: jax.Array | None,
    x,
    y,
    *,
    batch_size: int,
) -> float:
    """Fraction of ``(x, y)`` classified correctly after ``attack`` (clean if ``None``).

    ``attack(model_fn, key, x_batch, y_batch) -> x_adv`` with its configuration
    bound (``functools.partial(pgd, eps=..., step_size=..., steps=...)``). The data
    (host NumPy or device arrays) is cut into batches of ``batch_size``; the last
    batch is padded with copies of the first examples and masked out, so one
    compiled program serves every batch. Batch ``b`` uses ``fold_in(key, b)``.
    Array leaves of ``model_fn`` (e.g. a ``jax.tree_util.Partial(apply, state)``)
    are passed to ``jit`` as arguments rather than baked in as constants.
    """
    x = x if isinstance(x, jax.Array) else np.asarray(x)
    y = y if isinstance(y, jax.Array) else np.asarray(y)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size must be an int; got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    n = x.shape[0] if x.ndim else 0
    if n == 0:
        raise ValueError("accuracy_under needs at least one example")
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},); got {y.shape}")
    use_key = key is not None  # key=None: only for attacks without randomness (fgsm, ...)

    arrays, rebuild = _split_arrays(model_fn)

    @jax.jit
    def correct_in_batch(arrs, k, xb, yb, mask):
        fn = rebuild(arrs)
        if attack is not None:
            xb = attack(fn, k if use_key else None, xb, yb)
        pred = jnp.argmax(fn(xb), axis=-1)
        return jnp.sum((pred == yb) & mask)

    bs = min(batch_size, n)
    total = 0
    for b, lo in enumerate(range(0, n, bs)):
        hi = min(lo + bs, n)
        pad = bs - (hi - lo)
        xb, yb = x[lo:hi], y[lo:hi]
        if pad:
            xb = jnp.concatenate([jnp.asarray(xb), jnp.asarray(x[:pad])], axis=0)
            yb = jnp.concatenate([jnp.asarray(yb), jnp.asarray(y[:pad])], axis=0)
        mask = jnp.arange(bs) < (hi - lo)
        k = jax.random.fold_in(key, b) if use_key else jax.random.key(0)
        # summed on device: no host sync per batch, so batches are dispatched back to back
        total = total + correct_in_batch(arrays, k, jnp.asarray(xb), jnp.asarray(yb), mask)
    return int(total) / n
