"""Distillation losses of the adversarial robustness distillation family.

Pure functions of logits (no models inside): ARD, RSLAD, MTARD, B-MTARD and
CIARD, plus the small state updates that MTARD, B-MTARD and CIARD use to
balance their two teachers (entropy-balanced temperatures, loss-weight
balancing from normalised loss ratios) and CIARD's push loss.

Facts were read from the reference code; every line here is our own:

* ARD (Goldblum et al., AAAI 2020), goldblum/AdversariallyRobustDistillation
  ``main.py``: ``α·T²·KLDivLoss()(log_softmax(S(x_adv)/T), softmax(T(x)/T))
  + (1−α)·CE(S(x), y)``, defaults ``T = 30``, ``α = 1``.
* RSLAD (Zi et al., ICCV 2021), zibojia/RSLAD ``resnet18_rslad_cifar10.py``:
  ``5/6·KL(S(x_adv) ‖ T(x)) + 1/6·KL(S(x) ‖ T(x))`` with the robust teacher's
  soft labels on *natural* images, ``T = 1``.
* MTARD (Zhao et al., ECCV 2022), zhaoshiji123/MTARD
  ``mtard/mtard_resnet18_cifar10.py``: ``w_adv·KL(S(x_adv) ‖ T_adv(x_adv)) +
  w_nat·KL(S(x) ‖ T_nat(x))`` with the weight update of :func:`balance_weights`
  (``power = β = 1``, learning rate 0.025), fixed temperatures 1.
* B-MTARD (Zhao et al., TPAMI 2024), zhaoshiji123/MTARD-extension
  ``resnet18_mtard_cifar10.py``: MTARD plus teacher temperatures
  (``KL(S ‖ T/τ)``) balanced by entropy (:func:`balance_temperatures`, step
  0.001, clipped to [1, 10]); the weight update normalises the loss ratios.
* CIARD (ICCV 2025), CIARD2025/CIARD ``CIARD_cifar10.py``: B-MTARD's loss
  and updates, minus a push loss (:func:`push_loss`) scaled to the
  decade of the distillation losses (:func:`push_scale`).

The KL convention of every reference. ARD calls PyTorch's
``nn.KLDivLoss()``, whose default reduction ``'mean'`` divides the sum over
batch *and classes* by ``B·C``. RSLAD, MTARD, B-MTARD and CIARD write it out
as ``torch.mean(-log q · p + log(p + 1e-5) · p)``: the same mean over
``B·C`` elements, with ``1e-5`` inside the target's log. :func:`kl_div`
gives both (``reduction="mean"``, ``target_eps``); the ``1e-5`` shifts the
loss *value* (which the weight balancing and the push scale read) but not
its gradient, since the target term is a constant. The student's
temperature and the teacher's are separate because the references use
different ones (ARD divides both by ``T``; B-MTARD/CIARD only the teacher;
CIARD's push loss only the student). No ``T²`` factor is applied inside
:func:`kl_div`; :func:`ard_loss` applies ARD's.

Teacher logits are always wrapped in ``stop_gradient`` (the references
``.detach()`` them); balancing statistics are computed from
``stop_gradient`` values too (the references read them with ``.item()``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

REFERENCE_EPS = 1e-5
"""The ``1e-5`` that RSLAD/MTARD/B-MTARD/CIARD add inside ``log(p + eps)``."""

TEMPERATURE_BOUNDS = (1.0, 10.0)
"""B-MTARD/CIARD clip both teacher temperatures to ``[1, 10]``."""

_REDUCTIONS = ("mean", "batchmean", "sum", "none")


# ----------------------------------------------------------------------------
# Input checks (shapes and dtypes only: values may be traced).
# ----------------------------------------------------------------------------


def _check_logits(name: str, x: jax.typing.ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, classes); got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be floating point; got dtype {x.dtype}")
    if x.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 classes; got shape {x.shape}")
    return x


def _check_pair(names: tuple[str, ...], *xs: jax.typing.ArrayLike) -> list[jax.Array]:
    arrays = [_check_logits(n, x) for n, x in zip(names, xs)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        got = ", ".join(f"{n} {a.shape}" for n, a in zip(names, arrays))
        raise ValueError(f"logits must all have the same shape; got {got}")
    return arrays


def _check_labels(labels: jax.typing.ArrayLike, batch: int) -> jax.Array:
    labels = jnp.asarray(labels)
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},); got {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integer class indices; got dtype {labels.dtype}")
    return labels


def _concrete(value: Any) -> float | None:
    """The float value of ``value`` when it is known at trace time, else None."""
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
        return None


def _check_scalar(name: str, value: Any, *, positive: bool = False, unit: bool = False) -> None:
    if jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar; got shape {jnp.shape(value)}")
    v = _concrete(value)
    if v is None:
        return
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite; got {v}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0; got {v}")
    if unit and not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1]; got {v}")


def _float(x: jax.Array) -> jax.Array:
    """Upcast half precision to float32 (losses are reduced in >= float32)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


# ----------------------------------------------------------------------------
# Building blocks.
# ----------------------------------------------------------------------------


def kl_div(
    student_logits: jax.typing.ArrayLike,
    teacher_logits: jax.typing.ArrayLike,
    *,
    temperature: jax.typing.ArrayLike = 1.0,
    student_temperature: jax.typing.ArrayLike | None = None,
    teacher_temperature: jax.typing.ArrayLike | None = None,
    reduction: str = "mean",
    target_eps: float = 0.0,
) -> jax.Array:
    """``KL(p ‖ q)`` with ``p = softmax(teacher/τ_t)``, ``q = softmax(student/τ_s)``.

    This is PyTorch's ``nn.KLDivLoss(reduction=...)(log_softmax(student/τ_s),
    softmax(teacher/τ_t))``, the call (or hand-written equivalent) of every
    reference in this family. Elementwise
    ``k_ij = p_ij·log(p_ij + target_eps) − p_ij·log q_ij``; with
    ``target_eps = 0`` the first term is ``xlogy(p, p)`` (PyTorch's
    ``KLDivLoss``), with ``target_eps = 1e-5`` it is the RSLAD/MTARD/CIARD
    ``kl_loss``.

    Args:
      student_logits: ``(B, C)``; gradients flow into it.
      teacher_logits: ``(B, C)``; held constant (``stop_gradient``).
      temperature: divides both logits unless overridden below.
      student_temperature: divides the student's logits (default
        ``temperature``). CIARD's push loss uses 5 here and 1 for the teacher.
      teacher_temperature: divides the teacher's logits (default
        ``temperature``). B-MTARD/CIARD put their balanced ``τ`` here only.
      reduction: ``"mean"`` (PyTorch's default and the references': sum over
        batch and classes divided by ``B·C``), ``"batchmean"`` (sum / ``B``:
        the mathematical mean KL per sample), ``"sum"``, or ``"none"`` (the
        ``(B, C)`` elementwise terms, as in PyTorch).
      target_eps: ``eps`` inside ``log(p + eps)``; see above.

    Returns:
      A scalar (or ``(B, C)`` for ``reduction="none"``), in float32 or wider.
      No ``T²`` factor is applied.

    Example:
      >>> import jax.numpy as jnp
      >>> kl = kl_div(jnp.zeros((1, 2)), jnp.log(jnp.array([[3.0, 1.0]])), reduction="sum")
      >>> round(float(kl), 4)  # 0.75·log 1.5 + 0.25·log 0.5
      0.1308
    """
    student, teacher = _check_pair(
        ("student_logits", "teacher_logits"), student_logits, teacher_logits
    )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}; got {reduction!r}")
    if not (isinstance(target_eps, (int, float)) and target_eps >= 0):
        raise ValueError(f"target_eps must be a non-negative Python float; got {target_eps!r}")
    t_s = temperature if student_temperature is None else student_temperature
    t_t = temperature if teacher_temperature is None else teacher_temperature
    for name, t in (("student temperature", t_s), ("teacher temperature", t_t)):
        _check_scalar(name, t, positive=True)
    student = _float(student)
    teacher = jax.lax.stop_gradient(_float(teacher))
    log_q = jax.nn.log_softmax(student / t_s, axis=-1)
    p = jax.nn.softmax(teacher / t_t, axis=-1)
    if target_eps == 0:
        plogp = jax.scipy.special.xlogy(p, p)
    else:
        plogp = p * jnp.log(p + target_eps)
    elementwise = plogp - p * log_q
    if reduction == "none":
        return elementwise
    if reduction == "sum":
        return jnp.sum(elementwise)
    if reduction == "batchmean":
        return jnp.sum(elementwise) / elementwise.shape[0]
    return jnp.mean(elementwise)


def cross_entropy(logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike) -> jax.Array:
    """Mean softmax cross-entropy with integer labels (``nn.CrossEntropyLoss()``)."""
    logits = _check_logits("logits", logits)
    labels = _check_labels(labels, logits.shape[0])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(_float(logits), labels))


def mean_entropy(
    logits: jax.typing.ArrayLike,
    *,
    temperature: jax.typing.ArrayLike = 1.0,
    eps: float = REFERENCE_EPS,
) -> jax.Array:
    """Batch mean of ``H(softmax(logits/τ)) = −Σ_c p_c·log(p_c + eps)``.

    B-MTARD/CIARD compare their teachers' entropies with
    ``entropy_value(p) = mean over B·C of p·log(p + 1e-5)``, which is
    ``−H/C``; only the comparison of two such values is used, and it is the
    same for ``H`` (the factor ``−1/C`` cancels in their ratio), so this
    returns the ordinary, positive entropy in nats. The logits are held
    constant (``stop_gradient``).
    """
    logits = _check_logits("logits", logits)
    _check_scalar("temperature", temperature, positive=True)
    p = jax.nn.softmax(jax.lax.stop_gradient(_float(logits)) / temperature, axis=-1)
    return -jnp.mean(jnp.sum(p * jnp.log(p + eps), axis=-1))


# Powers of ten for :func:`_decade`; numpy rounds each one correctly to float32.
_DECADE_LO, _DECADE_HI = -37, 38
_POWERS_OF_TEN = np.array([10.0**k for k in range(_DECADE_LO, _DECADE_HI + 1)], np.float64)


def _decade(x: jax.Array) -> jax.Array:
    """``floor(log10(|x|))`` as an integer-valued float, exact at powers of ten.

    Counting the powers of ten ``≤ |x|`` avoids the ``log10`` rounding that
    puts ``log10(1000.0)`` at ``2.9999998`` in float32. Values are clipped to
    ``[1e-37, 1e38]``.
    """
    table = jnp.asarray(_POWERS_OF_TEN, x.dtype)
    count = jnp.sum(table <= jnp.abs(x)[..., None], axis=-1)
    return (count - 1 + _DECADE_LO).astype(x.dtype)


def push_scale(
    loss_adv: jax.typing.ArrayLike,
    loss_nat: jax.typing.ArrayLike,
    loss_push: jax.typing.ArrayLike,
) -> jax.Array:
    """CIARD's power-of-ten weight for the push loss (``scale_to_magnitude``).

    ``10 ** (min(⌊log10 L_adv⌋, ⌊log10 L_nat⌋) − ⌊log10 L_push⌋)``, so that the
    scaled push loss has the decade of the smaller distillation loss. As in
    the reference an exactly-zero input is replaced by ``1e-7`` first, and the
    scale is a constant (``stop_gradient``; the reference reads ``.item()``).
    The reference computes decades in float64 Python; here they are exact
    in the input dtype (see :func:`_decade`).

    Example:
      >>> float(push_scale(0.0123, 0.5, 0.00042))  # 10 ** (-2 - (-4))
      100.0
    """
    values = []
    for name, v in (("loss_adv", loss_adv), ("loss_nat", loss_nat), ("loss_push", loss_push)):
        _check_scalar(name, v)
        v = _float(jnp.asarray(jax.lax.stop_gradient(v)))
        values.append(jnp.where(v == 0, jnp.asarray(1e-7, v.dtype), v))
    dtype = jnp.result_type(*values)
    a, b, c = (_decade(v.astype(dtype)) for v in values)
    return jnp.power(jnp.asarray(10.0, dtype), jnp.minimum(a, b) - c)


# ----------------------------------------------------------------------------
# Single-teacher baselines.
# ----------------------------------------------------------------------------


def ard_loss(
    student_adv_logits: jax.typing.ArrayLike,
    student_nat_logits: jax.typing.ArrayLike,
    teacher_nat_logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    alpha: jax.typing.ArrayLike = 1.0,
    temperature: jax.typing.ArrayLike = 30.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ARD (Goldblum et al., 2020): ``α·T²·KL(S(x_adv)/T ‖ T(x)/T) + (1−α)·CE(S(x), y)``.

    The KL is PyTorch's ``nn.KLDivLoss()`` with its default ``'mean'``
    reduction (divided by ``B·C``) and no eps, exactly as ARD's ``main.py``;
    the robust teacher sees the *natural* images. Defaults are that script's
    (``--temp 30 --alpha 1``, which drops the CE term).

    Args:
      student_adv_logits: student on the PGD examples ``x_adv`` (``(B, C)``).
      student_nat_logits: student on the natural images ``x``.
      teacher_nat_logits: robust teacher on ``x`` (held constant).
      labels: ``(B,)`` integer labels (for the CE term).
      alpha: weight of the distillation term, in ``[0, 1]``.
      temperature: ``T`` for both student and teacher.

    Returns:
      ``(loss, metrics)`` with metrics ``loss_kl`` (without ``α·T²``) and
      ``loss_ce``.
    """
    s_adv, s_nat, t_nat = _check_pair(
        ("student_adv_logits", "student_nat_logits", "teacher_nat_logits"),
        student_adv_logits,
        student_nat_logits,
        teacher_nat_logits,
    )
    _check_scalar("alpha", alpha, unit=True)
    _check_scalar("temperature", temperature, positive=True)
    kl = kl_div(s_adv, t_nat, temperature=temperature)
    ce = cross_entropy(s_nat, labels)
    loss = alpha * temperature**2 * kl + (1.0 - alpha) * ce
    return loss, {"loss_kl": kl, "loss_ce": ce}


def rslad_loss(
    student_adv_logits: jax.typing.ArrayLike,
    student_nat_logits: jax.typing.ArrayLike,
    teacher_nat_logits: jax.typing.ArrayLike,
    *,
    adv_weight: jax.typing.ArrayLike = 5.0 / 6.0,
    target_eps: float = REFERENCE_EPS,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """RSLAD (Zi et al., 2021): ``5/6·KL(S(x_adv) ‖ T(x)) + 1/6·KL(S(x) ‖ T(x))``.

    Both terms use the robust teacher's soft labels on the natural images
    (``T(x)``) at temperature 1, with the reference's ``kl_loss`` (mean over
    ``B·C``, ``1e-5`` in the target's log).

    Args:
      student_adv_logits: student on the RSLAD examples (PGD maximising
        ``KL(S(x_adv) ‖ T(x))``, made by the attack module).
      student_nat_logits: student on ``x``.
      teacher_nat_logits: robust teacher on ``x`` (held constant).
      adv_weight: weight of the adversarial term; the natural term gets
        ``1 − adv_weight``.
      target_eps: see :func:`kl_div`.

    Returns:
      ``(loss, metrics)`` with ``loss_adv`` and ``loss_nat``.
    """
    s_adv, s_nat, t_nat = _check_pair(
        ("student_adv_logits", "student_nat_logits", "teacher_nat_logits"),
        student_adv_logits,
        student_nat_logits,
        teacher_nat_logits,
    )
    _check_scalar("adv_weight", adv_weight, unit=True)
    loss_adv = kl_div(s_adv, t_nat, target_eps=target_eps)
    loss_nat = kl_div(s_nat, t_nat, target_eps=target_eps)
    loss = adv_weight * loss_adv + (1.0 - adv_weight) * loss_nat
    return loss, {"loss_adv": loss_adv, "loss_nat": loss_nat}


# ----------------------------------------------------------------------------
# Two-teacher balancing state (MTARD, B-MTARD, CIARD).
# ----------------------------------------------------------------------------


class BalanceState(NamedTuple):
    """What MTARD/B-MTARD/CIARD carry between steps (a pytree; index 0 = adv, 1 = nat).

    Attributes:
      temperatures: ``(K,)`` teacher temperatures ``τ`` (start at 1).
      weights: ``(K,)`` loss weights, ``≥ 0`` and summing to 1 (start at ``1/K``).
      init_losses: ``(K,)`` the losses of the first step (the references'
        ``init_loss_adv/nat``); meaningful once ``initialized``.
      initialized: scalar bool; False until the first weight update.
    """

    temperatures: jax.Array
    weights: jax.Array
    init_losses: jax.Array
    initialized: jax.Array


def init_balance_state(
    num_teachers: int = 2, *, temperature: float = 1.0, dtype: Any = jnp.float32
) -> BalanceState:
    """The references' starting state: ``τ = 1`` and equal weights ``1/K``."""
    if not isinstance(num_teachers, int) or num_teachers < 2:
        raise ValueError(f"num_teachers must be an int >= 2; got {num_teachers!r}")
    lo, hi = TEMPERATURE_BOUNDS
    if not lo <= temperature <= hi:
        raise ValueError(f"temperature must lie in [{lo}, {hi}]; got {temperature}")
    return BalanceState(
        temperatures=jnp.full((num_teachers,), temperature, dtype),
        weights=jnp.full((num_teachers,), 1.0 / num_teachers, dtype),
        init_losses=jnp.ones((num_teachers,), dtype),
        initialized=jnp.asarray(False),
    )


def _check_state(state: BalanceState) -> int:
    if not isinstance(state, BalanceState):
        raise ValueError(f"state must be a BalanceState; got {type(state).__name__}")
    k = jnp.shape(state.weights)
    if len(k) != 1 or k[0] < 2:
        raise ValueError(f"state.weights must have shape (K,) with K >= 2; got {k}")
    for name in ("temperatures", "init_losses"):
        if jnp.shape(getattr(state, name)) != k:
            raise ValueError(
                f"state.{name} must have shape {k}; got {jnp.shape(getattr(state, name))}"
            )
    if jnp.shape(state.initialized) != ():
        raise ValueError(f"state.initialized must be a scalar; got {jnp.shape(state.initialized)}")
    return k[0]


def _check_vector(name: str, x: jax.typing.ArrayLike, k: int) -> jax.Array:
    x = jnp.asarray(x)
    if x.shape != (k,):
        raise ValueError(f"{name} must have shape ({k},), one entry per teacher; got {x.shape}")
    return x


def balance_temperatures(
    state: BalanceState,
    teacher_entropies: jax.typing.ArrayLike,
    *,
    learning_rate: jax.typing.ArrayLike = 0.001,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
) -> BalanceState:
    """B-MTARD/CIARD entropy-balanced temperatures: one signed step, then clip.

    The reference (B-MTARD ``resnet18_mtard_cifar10.py``, CIARD
    ``CIARD_cifar10.py``) computes each teacher's entropy at its current
    temperature and moves
    ``τ_adv ← τ_adv − lr·sign(H_adv/H_nat − 1)``,
    ``τ_nat ← τ_nat − lr·sign(H_nat/H_adv − 1)``, then clips both to
    ``[1, 10]``: the less certain teacher is sharpened, the more certain one
    softened, until their entropies match. We use ``sign(H_i − H_j)`` (equal
    for positive entropies, and defined when one is 0); for ``K > 2``
    teachers ``H_j`` is the mean of the others' entropies (our
    generalisation). The student's entropy plays no part in the references'
    rule, so it is not an argument here.

    Args:
      state: the current :class:`BalanceState`.
      teacher_entropies: ``(K,)`` mean entropies of the teachers' softened
        predictions, e.g. :func:`mean_entropy` at ``state.temperatures[i]``;
        read as constants.
      learning_rate: the step (reference 0.001; see
        :mod:`jaxpapers.robust.schedules` for its decay).
      bounds: the clip interval (reference ``[1, 10]``).

    Returns:
      The state with new ``temperatures`` (always inside ``bounds``).
    """
    k = _check_state(state)
    h = jax.lax.stop_gradient(_check_vector("teacher_entropies", teacher_entropies, k))
    _check_scalar("learning_rate", learning_rate)
    lo, hi = bounds
    if not 0 < lo <= hi:
        raise ValueError(f"bounds must satisfy 0 < lo <= hi; got {bounds}")
    others = (jnp.sum(h) - h) / (k - 1)
    t = state.temperatures - learning_rate * jnp.sign(h - others)
    return state._replace(temperatures=jnp.clip(t, lo, hi).astype(state.temperatures.dtype))


def balance_weights(
    state: BalanceState,
    losses: jax.typing.ArrayLike,
    *,
    learning_rate: jax.typing.ArrayLike = 0.025,
    power: jax.typing.ArrayLike = 1.0,
) -> BalanceState:
    """MTARD/B-MTARD/CIARD loss-weight balancing from normalised loss ratios.

    With ``L̂_i = L_i / L_i⁽⁰⁾`` (``L⁽⁰⁾`` = the first step's losses, stored in
    the state on the first call) the target weight is
    ``L̂_i^β / Σ_j L̂_j^β`` and ``w_i ← w_i − lr·(w_i − target_i)``: the
    teacher whose loss has fallen least (relative to its start) gets more
    weight. Then ``w ← max(w, 0) / Σ max(w, 0)``.

    * MTARD (``mtard_resnet18_cifar10.py``): ``β`` = ``bert`` = 1 and
      ``w_adv = 1 − w_nat``; identical to the above for ``K = 2``.
    * B-MTARD/CIARD: ``r_i = L̂_i / mean(L̂)``, target ``r_i / Σ r`` (the same
      as ``β = 1``), then clip at 0 and renormalise as above.

    Weights stay ``≥ 0`` and sum to 1 for any ``learning_rate`` in ``[0, 1]``
    (a convex combination of two points of the simplex), and the clip keeps
    them there otherwise. Deviation: a first-step loss of exactly 0 (the
    reference divides by it) is replaced by the smallest normal float, the
    ratios are normalised in log space (no overflow), and all-zero losses
    give uniform targets.

    Args:
      state: the current :class:`BalanceState`.
      losses: ``(K,)`` the current distillation losses (read as constants).
      learning_rate: the step (reference 0.025).
      power: ``β`` (MTARD's ``bert``, 1 in all references).

    Returns:
      The state with new ``weights`` (and ``init_losses``, ``initialized``).
    """
    k = _check_state(state)
    losses = jax.lax.stop_gradient(_check_vector("losses", losses, k)).astype(state.weights.dtype)
    _check_scalar("learning_rate", learning_rate)
    _check_scalar("power", power, positive=True)
    tiny = jnp.finfo(losses.dtype).tiny
    init = jnp.where(state.initialized, state.init_losses, losses)
    # target = L̂^β / Σ L̂^β, as a softmax of β·log L̂ so that huge ratios cannot overflow.
    log_ratio = jnp.log(jnp.maximum(losses, 0.0)) - jnp.log(jnp.maximum(init, tiny))
    all_zero = jnp.all(losses <= 0)
    target = jax.nn.softmax(power * jnp.where(all_zero, 0.0, log_ratio))
    w = state.weights - learning_rate * (state.weights - target)
    w = jnp.maximum(w, 0.0)
    s = jnp.sum(w)
    w = jnp.where(s > 0, w / jnp.where(s > 0, s, 1.0), 1.0 / k)
    return state._replace(
        weights=w.astype(state.weights.dtype),
        init_losses=init.astype(state.init_losses.dtype),
        initialized=jnp.asarray(True),
    )


# ----------------------------------------------------------------------------
# Two-teacher losses.
# ----------------------------------------------------------------------------


class DistillAux(NamedTuple):
    """The auxiliary output of the two-teacher losses (use with ``has_aux=True``).

    Attributes:
      metrics: scalar components for logging (see each loss).
      state: the updated :class:`BalanceState` for the next step.
    """

    metrics: dict[str, jax.Array]
    state: BalanceState


def two_teacher_kl(
    student_adv_logits: jax.typing.ArrayLike,
    student_nat_logits: jax.typing.ArrayLike,
    adv_teacher_adv_logits: jax.typing.ArrayLike,
    nat_teacher_nat_logits: jax.typing.ArrayLike,
    temperatures: jax.typing.ArrayLike = (1.0, 1.0),
    *,
    target_eps: float = REFERENCE_EPS,
) -> jax.Array:
    """``[KL(S(x_adv) ‖ T_adv(x_adv)/τ_adv), KL(S(x) ‖ T_nat(x)/τ_nat)]`` (shape ``(2,)``).

    The MTARD/B-MTARD/CIARD distillation terms ``L1`` and ``L2``: the
    temperature divides the *teacher's* logits only (the student is at
    temperature 1), the reference's ``kl_loss`` with mean over ``B·C``.
    """
    s_adv, s_nat, t_adv, t_nat = _check_pair(
        (
            "student_adv_logits",
            "student_nat_logits",
            "adv_teacher_adv_logits",
            "nat_teacher_nat_logits",
        ),
        student_adv_logits,
        student_nat_logits,
        adv_teacher_adv_logits,
        nat_teacher_nat_logits,
    )
    temps = _check_vector("temperatures", temperatures, 2)
    loss_adv = kl_div(s_adv, t_adv, teacher_temperature=temps[0], target_eps=target_eps)
    loss_nat = kl_div(s_nat, t_nat, teacher_temperature=temps[1], target_eps=target_eps)
    return jnp.stack([loss_adv, loss_nat])


def _balance_metrics(
    losses: jax.Array, new: BalanceState, old: BalanceState
) -> dict[str, jax.Array]:
    return {
        "loss_adv": losses[0],
        "loss_nat": losses[1],
        "weight_adv": new.weights[0],
        "weight_nat": new.weights[1],
        "temperature_adv": old.temperatures[0],
        "temperature_nat": old.temperatures[1],
    }


def mtard_loss(
    student_adv_logits: jax.typing.ArrayLike,
    student_nat_logits: jax.typing.ArrayLike,
    adv_teacher_adv_logits: jax.typing.ArrayLike,
    nat_teacher_nat_logits: jax.typing.ArrayLike,
    state: BalanceState,
    *,
    weight_lr: jax.typing.ArrayLike = 0.025,
    power: jax.typing.ArrayLike = 1.0,
    target_eps: float = REFERENCE_EPS,
) -> tuple[jax.Array, DistillAux]:
    """MTARD (Zhao et al., 2022): ``w_adv·KL(S(x_adv)‖T_adv(x_adv)) + w_nat·KL(S(x)‖T_nat(x))``.

    As in the reference step: the losses are computed, the weights are
    updated from them (:func:`balance_weights`) and the *updated* weights
    multiply this step's losses. Temperatures stay at ``state.temperatures``
    (1 in MTARD).

    Args:
      student_adv_logits: student on ``x_adv`` (PGD-CE on the student).
      student_nat_logits: student on ``x``.
      adv_teacher_adv_logits: robust teacher on ``x_adv`` (constant).
      nat_teacher_nat_logits: clean teacher on ``x`` (constant).
      state: :class:`BalanceState` with ``K = 2``.
      weight_lr: the weight step (reference 0.025, decayed by the schedule).
      power: MTARD's ``β``.
      target_eps: see :func:`kl_div`.

    Returns:
      ``(loss, DistillAux(metrics, new_state))``; metrics ``loss_adv``,
      ``loss_nat``, ``weight_adv``, ``weight_nat``, ``temperature_adv``,
      ``temperature_nat``.
    """
    if _check_state(state) != 2:
        raise ValueError("MTARD balances exactly two teachers (adv, nat)")
    losses = two_teacher_kl(
        student_adv_logits,
        student_nat_logits,
        adv_teacher_adv_logits,
        nat_teacher_nat_logits,
        state.temperatures,
        target_eps=target_eps,
    )
    new = balance_weights(state, losses, learning_rate=weight_lr, power=power)
    loss = jnp.sum(jax.lax.stop_gradient(new.weights) * losses)
    return loss, DistillAux(_balance_metrics(losses, new, state), new)


def bmtard_loss(
    student_adv_logits: jax.typing.ArrayLike,
    student_nat_logits: jax.typing.ArrayLike,
    adv_teacher_adv_logits: jax.typing.ArrayLike,
    nat_teacher_nat_logits: jax.typing.ArrayLike,
    state: BalanceState,
    *,
    weight_lr: jax.typing.ArrayLike = 0.025,
    temperature_lr: jax.typing.ArrayLike = 0.001,
    target_eps: float = REFERENCE_EPS,
) -> tuple[jax.Array, DistillAux]:
    """B-MTARD (Zhao et al., 2024): MTARD with entropy-balanced teacher temperatures.

    One step of the reference, in its order: ``L1 = KL(S(x_adv) ‖
    T_adv(x_adv)/τ_adv)`` and ``L2 = KL(S(x) ‖ T_nat(x)/τ_nat)`` at the
    current temperatures; the teachers' entropies at those temperatures move
    the temperatures for the *next* step (:func:`balance_temperatures`);
    the weights are updated from ``L1, L2`` (:func:`balance_weights`) and the
    updated weights give ``loss = w_adv·L1 + w_nat·L2``.

    Arguments as :func:`mtard_loss`, plus ``temperature_lr`` (reference
    0.001). Metrics add ``entropy_adv`` and ``entropy_nat``; the reported
    temperatures are the ones used in this step's losses.
    """
    if _check_state(state) != 2:
        raise ValueError("B-MTARD balances exactly two teachers (adv, nat)")
    losses = two_teacher_kl(
        student_adv_logits,
        student_nat_logits,
        adv_teacher_adv_logits,
        nat_teacher_nat_logits,
        state.temperatures,
        target_eps=target_eps,
    )
    entropies = jnp.stack(
        [
            mean_entropy(adv_teacher_adv_logits, temperature=state.temperatures[0]),
            mean_entropy(nat_teacher_nat_logits, temperature=state.temperatures[1]),
        ]
    )
    new = balance_temperatures(state, entropies, learning_rate=temperature_lr)
    new = balance_weights(new, losses, learning_rate=weight_lr)
    loss = jnp.sum(jax.lax.stop_gradient(new.weights) * losses)
    metrics = _balance_metrics(losses, new, state)
    metrics.update(entropy_adv=entropies[0], entropy_nat=entropies[1])
    return loss, DistillAux(metrics, new)


def push_loss(
    student_adv_logits: jax.typing.ArrayLike,
    clean_teacher_adv_logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    temperature: jax.typing.ArrayLike = 5.0,
    target_eps: float = REFERENCE_EPS,
) -> tuple[jax.Array, jax.Array]:
    """CIARD's push loss ``L3``: KL to the clean teacher where it is fooled.

    The reference's ``push_loss(nat_adv_logits, student_adv_logits, labels,
    T=5)``: on the samples whose clean-teacher prediction on ``x_adv`` is
    wrong (``argmax ≠ label``), ``KL(S(x_adv)/5 ‖ T_clean(x_adv))`` (the
    temperature divides the *student's* logits only), averaged with
    ``torch.mean`` over the selected rows *and classes*, i.e.
    ``Σ_{wrong i, c} k_ic / (n_wrong·C)``. With no wrong sample the reference
    skips the term; here it is then exactly 0 (and so is its gradient).
    CIARD *subtracts* it, scaled by :func:`push_scale`, which pushes the
    student away from the clean teacher's mistakes.

    Args:
      student_adv_logits: student on ``x_adv`` (``(B, C)``).
      clean_teacher_adv_logits: clean teacher on the same ``x_adv`` (constant).
      labels: ``(B,)`` integer labels.
      temperature: the student's temperature (reference 5).
      target_eps: see :func:`kl_div`.

    Returns:
      ``(loss, num_wrong)``: the masked mean, and how many samples it covers.
    """
    s_adv, t_adv = _check_pair(
        ("student_adv_logits", "clean_teacher_adv_logits"),
        student_adv_logits,
        clean_teacher_adv_logits,
    )
    labels = _check_labels(labels, s_adv.shape[0])
    _check_scalar("temperature", temperature, positive=True)
    wrong = jnp.argmax(jax.lax.stop_gradient(t_adv), axis=-1) != labels
    per_sample = jnp.sum(
        kl_div(
            s_adv,
            t_adv,
            student_temperature=temperature,
            teacher_temperature=1.0,
            reduction="none",
            target_eps=target_eps,
        ),
        axis=-1,
    )
    num_wrong = jnp.sum(wrong)
    total = jnp.sum(jnp.where(wrong, per_sample, 0.0))
    loss = total / (jnp.maximum(num_wrong, 1) * s_adv.shape[1]).astype(total.dtype)
    return loss, num_wrong


def ciard_loss(
    student_adv_logits: jax.typing.ArrayLike,
    student_nat_logits: jax.typing.ArrayLike,
    robust_teacher_adv_logits: jax.typing.ArrayLike,
    clean_teacher_nat_logits: jax.typing.ArrayLike,
    clean_teacher_adv_logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    state: BalanceState,
    *,
    weight_lr: jax.typing.ArrayLike = 0.025,
    temperature_lr: jax.typing.ArrayLike = 0.001,
    push_temperature: jax.typing.ArrayLike = 5.0,
    use_push: bool = True,
    target_eps: float = REFERENCE_EPS,
) -> tuple[jax.Array, DistillAux]:
    """The full CIARD student loss: ``w_adv·L1 + w_nat·L2 − s·L3``.

    One step of ``CIARD_cifar10.py``:

    1. ``L1 = KL(S(x_adv) ‖ T_robust(x_adv)/τ_adv)``,
       ``L2 = KL(S(x) ‖ T_clean(x)/τ_nat)`` (:func:`two_teacher_kl`).
    2. Temperatures for the next step from the teachers' entropies
       (:func:`balance_temperatures`), weights updated from ``L1, L2``
       (:func:`balance_weights`); the updated weights are used now.
    3. ``L3`` = :func:`push_loss` of the student against the clean teacher
       on ``x_adv``; ``s`` = :func:`push_scale` ``(L1, L2, L3)``. When the
       clean teacher is never wrong ``L3 = 0`` and nothing is subtracted.

    The robust teacher's own retraining (CE on its ``x_adv`` logits, after
    epoch 50) is separate: it needs gradients into the teacher, not the
    student, so the trainer computes it.

    Args:
      student_adv_logits: student on ``x_adv`` (PGD-CE on the student).
      student_nat_logits: student on ``x``.
      robust_teacher_adv_logits: robust teacher on ``x_adv`` (constant here).
      clean_teacher_nat_logits: clean teacher on ``x`` (constant).
      clean_teacher_adv_logits: clean teacher on ``x_adv`` (constant).
      labels: ``(B,)`` integer labels.
      state: :class:`BalanceState` with ``K = 2``.
      weight_lr, temperature_lr: balancing steps (reference 0.025, 0.001).
      push_temperature: the student's temperature in ``L3`` (reference 5).
      use_push: False drops ``L3`` (an ablation; B-MTARD plus nothing else).
      target_eps: see :func:`kl_div`.

    Returns:
      ``(loss, DistillAux(metrics, new_state))``; metrics as
      :func:`bmtard_loss` plus ``loss_push``, ``push_scale`` and
      ``push_fraction`` (share of the batch the clean teacher gets wrong).
    """
    loss, aux = bmtard_loss(
        student_adv_logits,
        student_nat_logits,
        robust_teacher_adv_logits,
        clean_teacher_nat_logits,
        state,
        weight_lr=weight_lr,
        temperature_lr=temperature_lr,
        target_eps=target_eps,
    )
    l3, num_wrong = push_loss(
        student_adv_logits,
        clean_teacher_adv_logits,
        labels,
        temperature=push_temperature,
        target_eps=target_eps,
    )
    metrics = dict(aux.metrics)
    if use_push:
        scale = push_scale(metrics["loss_adv"], metrics["loss_nat"], l3)
        loss = loss - scale * l3
    else:
        scale = jnp.zeros((), l3.dtype)
    metrics.update(
        loss_push=l3,
        push_scale=scale,
        push_fraction=num_wrong / jnp.shape(labels)[0],
    )
    return loss, DistillAux(metrics, aux.state)
