"""Distillation losses and two-teacher balancing: hand-computed answers and float64 references.

The NumPy "reference" helpers below transcribe the references' PyTorch
formulas (kl_loss = -log q·p + log(p + 1e-5)·p averaged with torch.mean over
B·C, entropy_value, scale_to_magnitude, the weight and temperature updates) in
float64, written independently of the module under test.
"""

import math

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jaxpapers.robust import losses as L

LN3 = math.log(3.0)
KL_75_25_VS_HALF = 0.75 * math.log(1.5) + 0.25 * math.log(
    0.5
)  # KL([.75,.25] ‖ [.5,.5]) = 0.1308...


# ----------------------------------------------------------------------------
# float64 NumPy transcriptions of the references' formulas.
# ----------------------------------------------------------------------------


def _np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _np_kl_elem(student, teacher, t_s=1.0, t_t=1.0, eps=1e-5):
    log_q = _np_log_softmax(np.asarray(student, np.float64) / t_s)
    p = np.exp(_np_log_softmax(np.asarray(teacher, np.float64) / t_t))
    return -log_q * p + np.log(p + eps) * p


def _np_entropy_value(logits, t):
    p = np.exp(_np_log_softmax(np.asarray(logits, np.float64) / t))
    return np.mean(np.log(p + 1e-5) * p)


def _np_scale_to_magnitude(a, b, c):
    a, b, c = (x + 1e-7 if math.isclose(x, 0, rel_tol=1e-9) else x for x in (a, b, c))
    target = min(math.floor(math.log10(abs(a))), math.floor(math.log10(abs(b))))
    return 10 ** (target - math.floor(math.log10(abs(c))))


class _RefBalancer:
    """B-MTARD / CIARD per-step bookkeeping, as in the reference scripts."""

    def __init__(self):
        self.w_adv, self.w_nat = 0.5, 0.5
        self.t_adv, self.t_nat = 1.0, 1.0
        self.init_adv = self.init_nat = None

    def step(
        self,
        s_adv,
        s_nat,
        t_adv_logits,
        t_nat_logits,
        labels=None,
        nat_adv_logits=None,
        w_lr=0.025,
        t_lr=0.001,
    ):
        l1 = float(np.mean(_np_kl_elem(s_adv, t_adv_logits, t_t=self.t_adv)))
        l2 = float(np.mean(_np_kl_elem(s_nat, t_nat_logits, t_t=self.t_nat)))
        ent_adv = _np_entropy_value(t_adv_logits, self.t_adv)
        ent_nat = _np_entropy_value(t_nat_logits, self.t_nat)
        self.t_adv = self.t_adv - t_lr * np.sign(ent_adv / ent_nat - 1)
        self.t_nat = self.t_nat - t_lr * np.sign(ent_nat / ent_adv - 1)
        self.t_adv = max(min(10, self.t_adv), 1)
        self.t_nat = max(min(10, self.t_nat), 1)
        if self.init_nat is None:
            self.init_nat = l2
        if self.init_adv is None:
            self.init_adv = l1
        lhat_adv, lhat_nat = l1 / self.init_adv, l2 / self.init_nat
        avg = (lhat_adv + lhat_nat) / 2
        r_adv, r_nat = lhat_adv / avg, lhat_nat / avg
        self.w_nat = self.w_nat - w_lr * (self.w_nat - r_nat / (r_adv + r_nat))
        self.w_adv = self.w_adv - w_lr * (self.w_adv - r_adv / (r_adv + r_nat))
        self.w_adv, self.w_nat = max(self.w_adv, 0), max(self.w_nat, 0)
        coef = 1.0 / (self.w_adv + self.w_nat)
        self.w_adv *= coef
        self.w_nat *= coef
        total = self.w_adv * l1 + self.w_nat * l2
        if labels is not None:
            wrong = np.argmax(nat_adv_logits, axis=1) != labels
            if wrong.any():
                l3 = float(np.mean(_np_kl_elem(s_adv[wrong], nat_adv_logits[wrong], t_s=5.0)))
                total -= _np_scale_to_magnitude(l1, l2, l3) * l3
        return total


def _logits(rng, b=6, c=4, scale=2.0):
    return (scale * rng.standard_normal((b, c))).astype(np.float32)


# ----------------------------------------------------------------------------
# kl_div, cross_entropy, mean_entropy.
# ----------------------------------------------------------------------------


def test_kl_div_hand_computed_reductions():
    student = jnp.zeros((2, 2))  # q = [1/2, 1/2] in both rows
    teacher = jnp.array([[LN3, 0.0], [0.0, 0.0]])  # p = [3/4, 1/4], then q itself
    row0 = [0.75 * math.log(1.5), 0.25 * math.log(0.5)]
    np.testing.assert_allclose(
        L.kl_div(student, teacher, reduction="none"), [row0, [0, 0]], atol=1e-7
    )
    assert float(L.kl_div(student, teacher, reduction="sum")) == pytest.approx(
        KL_75_25_VS_HALF, rel=1e-6
    )
    assert float(L.kl_div(student, teacher, reduction="batchmean")) == pytest.approx(
        KL_75_25_VS_HALF / 2, rel=1e-6
    )
    # PyTorch's default 'mean' divides by B·C = 4.
    assert float(L.kl_div(student, teacher)) == pytest.approx(KL_75_25_VS_HALF / 4, rel=1e-6)


def test_kl_div_temperatures_hand_computed():
    # Teacher [2 ln 3, 0] at T = 2 is [ln 3, 0]: p = [3/4, 1/4]; student [0, 0] at any T is uniform.
    teacher = jnp.array([[2 * LN3, 0.0]])
    got = L.kl_div(jnp.zeros((1, 2)), teacher, temperature=2.0, reduction="sum")
    assert float(got) == pytest.approx(KL_75_25_VS_HALF, rel=1e-6)
    # Student-only temperature: student [5 ln 3, 0] / 5 = [ln 3, 0] equals the teacher at T = 1.
    got = L.kl_div(jnp.array([[5 * LN3, 0.0]]), jnp.array([[LN3, 0.0]]), student_temperature=5.0)
    assert abs(float(got)) < 1e-7
    # Teacher-only temperature: teacher [2 ln 3, 0] / 2 vs student [ln 3, 0] at 1: zero.
    got = L.kl_div(jnp.array([[LN3, 0.0]]), teacher, teacher_temperature=2.0)
    assert abs(float(got)) < 1e-7


@pytest.mark.parametrize("eps", [0.0, 1e-5])
def test_kl_div_matches_float64_reference(eps):
    rng = np.random.default_rng(0)
    s, t = _logits(rng), _logits(rng)
    want = _np_kl_elem(s, t, t_s=1.5, t_t=3.0, eps=eps) if eps else None
    if not eps:  # xlogy form: p·log p exactly
        log_q = _np_log_softmax(s / 1.5)
        p = np.exp(_np_log_softmax(t / 3.0))
        want = p * np.log(p) - p * log_q
    got = L.kl_div(
        s, t, student_temperature=1.5, teacher_temperature=3.0, reduction="none", target_eps=eps
    )
    np.testing.assert_allclose(got, want, atol=2e-6)
    got_mean = L.kl_div(s, t, student_temperature=1.5, teacher_temperature=3.0, target_eps=eps)
    assert float(got_mean) == pytest.approx(float(np.mean(want)), rel=1e-5)


def test_kl_div_gradient_is_q_minus_p_over_t_and_teacher_is_constant():
    rng = np.random.default_rng(1)
    s, t = _logits(rng, b=3, c=5), _logits(rng, b=3, c=5)
    grad_s, grad_t = jax.grad(
        lambda a, b: L.kl_div(a, b, student_temperature=2.0, reduction="sum"), argnums=(0, 1)
    )(s, t)
    q = np.exp(_np_log_softmax(s / 2.0))
    p = np.exp(_np_log_softmax(t))
    np.testing.assert_allclose(grad_s, (q - p) / 2.0, atol=1e-6)
    np.testing.assert_array_equal(grad_t, np.zeros_like(t))


def test_kl_div_zero_for_identical_and_positive_otherwise():
    rng = np.random.default_rng(2)
    s = _logits(rng)
    assert abs(float(L.kl_div(s, s, reduction="sum"))) < 1e-5
    assert float(L.kl_div(s, _logits(rng), reduction="sum")) > 0


def test_cross_entropy_hand_computed():
    logits = jnp.array([[LN3, 0.0], [0.0, 0.0]])
    assert float(L.cross_entropy(logits, jnp.array([0, 1]))) == pytest.approx(
        (-math.log(0.75) + math.log(2)) / 2, rel=1e-6
    )


def test_mean_entropy_hand_computed():
    assert float(L.mean_entropy(jnp.zeros((3, 4)), eps=0.0)) == pytest.approx(math.log(4), rel=1e-6)
    # p = [3/4, 1/4] after dividing [2 ln 3, 0] by T = 2.
    want = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    got = L.mean_entropy(jnp.array([[2 * LN3, 0.0]]), temperature=2.0, eps=0.0)
    assert float(got) == pytest.approx(want, rel=1e-6)
    # The reference's entropy_value is -H/C (with its 1e-5).
    rng = np.random.default_rng(3)
    x = _logits(rng)
    assert float(L.mean_entropy(x, temperature=1.7)) == pytest.approx(
        -4 * _np_entropy_value(x, 1.7), rel=1e-5
    )


# ----------------------------------------------------------------------------
# ARD and RSLAD.
# ----------------------------------------------------------------------------


def test_ard_loss_hand_computed():
    s_adv = jnp.zeros((1, 2))
    s_nat = jnp.array([[LN3, 0.0]])
    teacher = jnp.array([[2 * LN3, 0.0]])  # /T=2 -> p = [3/4, 1/4]
    loss, m = L.ard_loss(s_adv, s_nat, teacher, jnp.array([0]), alpha=0.5, temperature=2.0)
    kl = KL_75_25_VS_HALF / 2  # KLDivLoss 'mean' over B·C = 2
    ce = -math.log(0.75)
    assert float(m["loss_kl"]) == pytest.approx(kl, rel=1e-6)
    assert float(m["loss_ce"]) == pytest.approx(ce, rel=1e-6)
    assert float(loss) == pytest.approx(0.5 * 4 * kl + 0.5 * ce, rel=1e-6)


def test_ard_default_is_pure_distillation_at_t30():
    rng = np.random.default_rng(4)
    s_adv, s_nat, t = _logits(rng), _logits(rng), _logits(rng)
    loss, _ = L.ard_loss(s_adv, s_nat, t, jnp.zeros((6,), jnp.int32))
    want = 900 * np.mean(_np_kl_elem(s_adv, t, 30.0, 30.0, eps=0.0))
    assert float(loss) == pytest.approx(want, rel=1e-4)
    # alpha = 1: the natural-image student logits get no gradient.
    g = jax.grad(lambda x: L.ard_loss(s_adv, x, t, jnp.zeros((6,), jnp.int32))[0])(s_nat)
    np.testing.assert_array_equal(g, np.zeros_like(s_nat))


def test_rslad_loss_hand_computed_and_reference():
    teacher = jnp.array([[LN3, 0.0]])  # p = [3/4, 1/4]
    loss, m = L.rslad_loss(jnp.zeros((1, 2)), teacher, teacher, target_eps=0.0)
    assert float(m["loss_adv"]) == pytest.approx(KL_75_25_VS_HALF / 2, rel=1e-6)
    assert abs(float(m["loss_nat"])) < 1e-7
    assert float(loss) == pytest.approx(5 / 6 * KL_75_25_VS_HALF / 2, rel=1e-6)
    rng = np.random.default_rng(5)
    s_adv, s_nat, t = _logits(rng), _logits(rng), _logits(rng)
    want = 5 / 6 * np.mean(_np_kl_elem(s_adv, t)) + 1 / 6 * np.mean(_np_kl_elem(s_nat, t))
    assert float(L.rslad_loss(s_adv, s_nat, t)[0]) == pytest.approx(want, rel=1e-5)


# ----------------------------------------------------------------------------
# Balancing state updates.
# ----------------------------------------------------------------------------


def test_init_balance_state():
    s = L.init_balance_state()
    np.testing.assert_array_equal(s.temperatures, [1.0, 1.0])
    np.testing.assert_array_equal(s.weights, [0.5, 0.5])
    assert not bool(s.initialized)
    np.testing.assert_allclose(L.init_balance_state(4).weights, [0.25] * 4)


def test_balance_temperatures_hand_computed():
    s = L.init_balance_state()._replace(temperatures=jnp.array([5.0, 5.0]))
    # The adversarial teacher is less certain: sharpen it, soften the other.
    out = L.balance_temperatures(s, jnp.array([2.0, 1.0]), learning_rate=0.001)
    np.testing.assert_allclose(out.temperatures, [4.999, 5.001], rtol=1e-6)
    out = L.balance_temperatures(s, jnp.array([1.0, 1.0]))
    np.testing.assert_array_equal(out.temperatures, [5.0, 5.0])
    # Clipped at both ends of [1, 10].
    out = L.balance_temperatures(L.init_balance_state(), jnp.array([2.0, 1.0]))
    np.testing.assert_allclose(out.temperatures, [1.0, 1.001], rtol=1e-6)
    s10 = s._replace(temperatures=jnp.array([10.0, 10.0]))
    out = L.balance_temperatures(s10, jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(out.temperatures, [10.0, 9.999], rtol=1e-6)
    # Weights are untouched.
    np.testing.assert_array_equal(out.weights, s.weights)


def test_balance_temperatures_matches_reference_ratio_rule():
    rng = np.random.default_rng(6)
    for _ in range(20):
        t_adv, t_nat = rng.uniform(1, 10, 2)
        a, b = _logits(rng, scale=rng.uniform(0.1, 5)), _logits(rng, scale=rng.uniform(0.1, 5))
        ev_a, ev_n = _np_entropy_value(a, t_adv), _np_entropy_value(b, t_nat)
        want = [
            max(min(10, t_adv - 0.3 * np.sign(ev_a / ev_n - 1)), 1),
            max(min(10, t_nat - 0.3 * np.sign(ev_n / ev_a - 1)), 1),
        ]
        s = L.init_balance_state()._replace(temperatures=jnp.array([t_adv, t_nat], jnp.float32))
        h = jnp.stack([L.mean_entropy(a, temperature=t_adv), L.mean_entropy(b, temperature=t_nat)])
        np.testing.assert_allclose(
            L.balance_temperatures(s, h, learning_rate=0.3).temperatures, want, rtol=1e-6
        )


@settings(max_examples=40, deadline=None)
@given(
    temps=hnp.arrays(np.float32, 2, elements=st.floats(1, 10, width=32)),
    entropies=hnp.arrays(np.float32, 2, elements=st.floats(0, 10, width=32)),
    lr=st.floats(0, 20),
)
def test_balance_temperatures_stay_in_bounds(temps, entropies, lr):
    s = L.init_balance_state()._replace(temperatures=jnp.asarray(temps))
    out = np.asarray(L.balance_temperatures(s, entropies, learning_rate=lr).temperatures)
    assert np.all(out >= 1.0) and np.all(out <= 10.0)


def test_balance_weights_hand_computed():
    s = L.init_balance_state()
    s1 = L.balance_weights(s, jnp.array([2.0, 4.0]))  # first call: ratios 1, 1 -> weights stay
    np.testing.assert_allclose(s1.weights, [0.5, 0.5])
    np.testing.assert_allclose(s1.init_losses, [2.0, 4.0])
    assert bool(s1.initialized)
    # L̂ = [1/2, 1]: target [1/3, 2/3]; w = 1/2 - 0.025·(1/2 - target).
    s2 = L.balance_weights(s1, jnp.array([1.0, 4.0]), learning_rate=0.025)
    np.testing.assert_allclose(s2.weights, [0.5 - 0.025 / 6, 0.5 + 0.025 / 6], rtol=1e-6)
    np.testing.assert_allclose(s2.init_losses, [2.0, 4.0])  # kept from the first call
    # lr = 1 jumps to the target.
    s3 = L.balance_weights(s1, jnp.array([1.0, 4.0]), learning_rate=1.0)
    np.testing.assert_allclose(s3.weights, [1 / 3, 2 / 3], rtol=1e-6)
    # Degenerate inputs: a zero first loss (the reference divides by it) and all-zero losses.
    s0 = s1._replace(init_losses=jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(
        L.balance_weights(s0, jnp.array([100.0, 1.0])).weights, [0.5125, 0.4875], rtol=1e-6
    )
    w2 = np.asarray(s2.weights)  # all-zero losses: uniform target
    np.testing.assert_allclose(
        L.balance_weights(s2, jnp.zeros(2)).weights, w2 - 0.025 * (w2 - 0.5), rtol=1e-6
    )


def test_balance_weights_matches_mtard_and_bmtard_code():
    rng = np.random.default_rng(7)
    losses = rng.uniform(0.01, 3.0, (40, 2))
    # MTARD: w_nat updated, w_adv = 1 - w_nat, bert = 1.
    w_nat, init = 0.5, losses[0]
    s = L.init_balance_state()
    for l_adv, l_nat in losses:
        lhat_adv, lhat_nat = l_adv / init[0], l_nat / init[1]
        w_nat = w_nat - 0.025 * (w_nat - lhat_nat / (lhat_adv + lhat_nat))
        s = L.balance_weights(s, jnp.array([l_adv, l_nat], jnp.float32))
    np.testing.assert_allclose(s.weights, [1 - w_nat, w_nat], rtol=1e-5)
    # MTARD with bert = 2.
    w_nat, s = 0.5, L.init_balance_state()
    for l_adv, l_nat in losses:
        a, n = (l_adv / init[0]) ** 2, (l_nat / init[1]) ** 2
        w_nat = w_nat - 0.1 * (w_nat - n / (a + n))
        s = L.balance_weights(
            s, jnp.array([l_adv, l_nat], jnp.float32), learning_rate=0.1, power=2.0
        )
    np.testing.assert_allclose(s.weights, [1 - w_nat, w_nat], rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    weights=hnp.arrays(np.float64, 3, elements=st.floats(0, 1)),
    init=hnp.arrays(np.float32, 3, elements=st.floats(0, 100, width=32)),
    losses=hnp.arrays(np.float32, 3, elements=st.floats(0, 100, width=32)),
    lr=st.floats(0, 2),
    power=st.floats(0.5, 2),
)
def test_balance_weights_stay_on_simplex(weights, init, losses, lr, power):
    assume(weights.sum() > 1e-3)
    w0 = jnp.asarray(weights / weights.sum(), jnp.float32)
    s = L.init_balance_state(3)._replace(
        weights=w0, init_losses=jnp.asarray(init), initialized=jnp.asarray(True)
    )
    out = np.asarray(L.balance_weights(s, losses, learning_rate=lr, power=power).weights)
    assert np.all(np.isfinite(out)) and np.all(out >= 0)
    assert out.sum() == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------------------------------
# Push loss and its scale.
# ----------------------------------------------------------------------------


def test_push_scale_hand_computed():
    assert float(L.push_scale(0.0123, 0.5, 0.00042)) == 100.0  # 10**(-2 - (-4))
    assert float(L.push_scale(1.0, 10.0, 0.1)) == 10.0  # exact powers: decades 0, 1, -1
    assert float(L.push_scale(1000.0, 1000.0, 3.0)) == 1000.0  # log10(1000) is 2.9999998 in float32
    assert float(L.push_scale(0.3, 2.0, 0.0)) == pytest.approx(
        1e6
    )  # zero -> 1e-7, as the reference
    assert float(L.push_scale(0.3, 2.0, 7.0)) == pytest.approx(0.1)
    g = jax.grad(lambda c: L.push_scale(0.3, 2.0, c))(0.005)
    assert float(g) == 0.0  # a constant, like the reference's .item()


_POWERS32 = {float(np.float32(10.0**k)) for k in range(-12, 13)}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(2.0**-12, 2.0**20, width=32), min_size=3, max_size=3))
def test_push_scale_matches_reference_formula(values):
    assume(not _POWERS32.intersection(values))  # float32 rounding of 10**k itself: a tie either way
    assert float(L.push_scale(*values)) == pytest.approx(_np_scale_to_magnitude(*values), rel=1e-6)


def _push_example():
    # Rows 0 and 2: the clean teacher says class 1, the label is 0 (wrong); row 1 is right.
    student = jnp.array([[0.0, 0.0], [7.0, -3.0], [5 * LN3, 0.0]])
    teacher = jnp.array([[0.0, LN3], [LN3, 0.0], [0.0, LN3]])
    return student, teacher, jnp.array([0, 0, 0])


def test_push_loss_hand_computed():
    student, teacher, labels = _push_example()
    loss, n = L.push_loss(student, teacher, labels, target_eps=0.0)
    # Row 0: KL([1/4,3/4] ‖ [1/2,1/2]); row 2: student/5 = [ln 3, 0], KL([1/4,3/4] ‖ [3/4,1/4]) = ½ ln 3.
    want = (KL_75_25_VS_HALF + 0.5 * LN3) / (2 * 2)  # torch.mean over 2 rows × 2 classes
    assert int(n) == 2
    assert float(loss) == pytest.approx(want, rel=1e-6)
    # Against the reference's masked selection with its 1e-5.
    wrong = np.array([True, False, True])
    ref = np.mean(_np_kl_elem(np.asarray(student)[wrong], np.asarray(teacher)[wrong], t_s=5.0))
    assert float(L.push_loss(student, teacher, labels)[0]) == pytest.approx(ref, rel=1e-5)
    # The excluded row gets no gradient, the others do.
    g = jax.grad(lambda s: L.push_loss(s, teacher, labels)[0])(student)
    np.testing.assert_array_equal(g[1], [0.0, 0.0])
    assert np.all(np.abs(np.asarray(g)[[0, 2]]).sum(axis=1) > 0)


def test_push_loss_exactly_zero_when_clean_teacher_never_wrong():
    rng = np.random.default_rng(8)
    student, teacher = _logits(rng), _logits(rng)
    labels = jnp.argmax(teacher, axis=1)  # the clean teacher is right everywhere
    loss, n = L.push_loss(student, teacher, labels)
    assert int(n) == 0
    assert float(loss) == 0.0
    g = jax.grad(lambda s: L.push_loss(s, teacher, labels)[0])(student)
    np.testing.assert_array_equal(g, np.zeros_like(student))


# ----------------------------------------------------------------------------
# MTARD, B-MTARD and CIARD compositions.
# ----------------------------------------------------------------------------


def _batch(rng, b=6, c=4):
    return {
        "s_adv": _logits(rng, b, c),
        "s_nat": _logits(rng, b, c),
        "t_adv": _logits(rng, b, c, scale=rng.uniform(0.5, 4)),
        "t_nat": _logits(rng, b, c, scale=rng.uniform(0.5, 4)),
        "c_adv": _logits(rng, b, c),
        "y": rng.integers(0, c, b).astype(np.int32),
    }


def test_mtard_loss_matches_reference_steps():
    rng = np.random.default_rng(9)
    s = L.init_balance_state()
    w_nat, init = 0.5, None
    for _ in range(5):
        x = _batch(rng)
        l1 = float(np.mean(_np_kl_elem(x["s_adv"], x["t_adv"])))
        l2 = float(np.mean(_np_kl_elem(x["s_nat"], x["t_nat"])))
        init = init or (l1, l2)
        lhat_adv, lhat_nat = l1 / init[0], l2 / init[1]
        w_nat = w_nat - 0.025 * (w_nat - lhat_nat / (lhat_adv + lhat_nat))
        want = (1 - w_nat) * l1 + w_nat * l2
        loss, aux = L.mtard_loss(x["s_adv"], x["s_nat"], x["t_adv"], x["t_nat"], s)
        assert float(loss) == pytest.approx(want, rel=1e-5)
        assert float(aux.metrics["weight_nat"]) == pytest.approx(w_nat, rel=1e-5)
        s = aux.state
    np.testing.assert_array_equal(s.temperatures, [1.0, 1.0])


@pytest.mark.parametrize("method", ["bmtard", "ciard"])
def test_two_teacher_losses_match_reference_loop(method):
    rng = np.random.default_rng(10)
    ref, s = _RefBalancer(), L.init_balance_state()
    # Large temperature steps so that the temperatures move visibly in a few steps.
    for step in range(6):
        x = _batch(rng)
        if step == 3:  # a batch where the clean teacher is never wrong
            x["y"] = np.argmax(x["c_adv"], axis=1).astype(np.int32)
        if method == "ciard":
            want = ref.step(
                x["s_adv"], x["s_nat"], x["t_adv"], x["t_nat"], x["y"], x["c_adv"], t_lr=0.5
            )
            loss, aux = L.ciard_loss(
                x["s_adv"],
                x["s_nat"],
                x["t_adv"],
                x["t_nat"],
                x["c_adv"],
                x["y"],
                s,
                temperature_lr=0.5,
            )
        else:
            want = ref.step(x["s_adv"], x["s_nat"], x["t_adv"], x["t_nat"], t_lr=0.5)
            loss, aux = L.bmtard_loss(
                x["s_adv"], x["s_nat"], x["t_adv"], x["t_nat"], s, temperature_lr=0.5
            )
        s = aux.state
        assert float(loss) == pytest.approx(want, rel=2e-5, abs=1e-6)
        np.testing.assert_allclose(s.weights, [ref.w_adv, ref.w_nat], rtol=1e-5)
        np.testing.assert_allclose(s.temperatures, [ref.t_adv, ref.t_nat], rtol=1e-6)
    assert not np.allclose(s.temperatures, [1.0, 1.0])


def test_ciard_loss_components_and_push_sign():
    rng = np.random.default_rng(11)
    x = _batch(rng)
    x["y"] = (np.argmax(x["c_adv"], axis=1) + 1).astype(np.int32) % 4  # clean teacher always wrong
    s = L.init_balance_state()
    loss, aux = L.ciard_loss(x["s_adv"], x["s_nat"], x["t_adv"], x["t_nat"], x["c_adv"], x["y"], s)
    m = aux.metrics
    base = m["weight_adv"] * m["loss_adv"] + m["weight_nat"] * m["loss_nat"]
    assert float(loss) == pytest.approx(float(base - m["push_scale"] * m["loss_push"]), rel=1e-6)
    assert float(m["push_fraction"]) == 1.0 and float(m["loss_push"]) > 0
    # The scaled push term sits in the decade of the smaller distillation loss.
    decade = math.floor(math.log10(min(float(m["loss_adv"]), float(m["loss_nat"]))))
    assert 10**decade <= float(m["push_scale"] * m["loss_push"]) < 10 ** (decade + 1)
    # use_push=False is B-MTARD exactly.
    no_push, aux2 = L.ciard_loss(
        x["s_adv"], x["s_nat"], x["t_adv"], x["t_nat"], x["c_adv"], x["y"], s, use_push=False
    )
    bm, aux3 = L.bmtard_loss(x["s_adv"], x["s_nat"], x["t_adv"], x["t_nat"], s)
    assert float(no_push) == float(bm)
    jax.tree.map(np.testing.assert_array_equal, aux2.state, aux3.state)


def test_ciard_equals_bmtard_when_clean_teacher_never_wrong():
    rng = np.random.default_rng(12)
    x = _batch(rng)
    y = jnp.argmax(x["c_adv"], axis=1)
    s = L.init_balance_state()
    loss, aux = L.ciard_loss(x["s_adv"], x["s_nat"], x["t_adv"], x["t_nat"], x["c_adv"], y, s)
    bm, _ = L.bmtard_loss(x["s_adv"], x["s_nat"], x["t_adv"], x["t_nat"], s)
    assert float(aux.metrics["loss_push"]) == 0.0
    assert float(loss) == float(bm)


def test_ciard_loss_jit_grad_and_teacher_constants():
    rng = np.random.default_rng(13)
    x = _batch(rng)
    s = L.init_balance_state()

    def f(s_adv, s_nat, t_adv, t_nat, c_adv, state):
        return L.ciard_loss(
            s_adv, s_nat, t_adv, t_nat, c_adv, x["y"], state, weight_lr=0.05, temperature_lr=0.01
        )

    args = (x["s_adv"], x["s_nat"], x["t_adv"], x["t_nat"], x["c_adv"], s)
    (loss, aux), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3, 4), has_aux=True))(
        *args
    )
    eager_loss, eager_aux = f(*args)
    assert float(loss) == pytest.approx(float(eager_loss), rel=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), aux.state, eager_aux.state
    )
    assert np.abs(grads[0]).sum() > 0 and np.abs(grads[1]).sum() > 0
    for g in grads[2:]:  # teachers are constants
        np.testing.assert_array_equal(g, np.zeros_like(g))
    # A traced state round-trips through jit for several steps.
    step = jax.jit(lambda st: f(*args[:-1], st)[1].state)
    for _ in range(3):
        s = step(s)
    assert np.all((np.asarray(s.temperatures) >= 1) & (np.asarray(s.temperatures) <= 10))
    assert float(jnp.sum(s.weights)) == pytest.approx(1.0, abs=1e-6)


# ----------------------------------------------------------------------------
# Input checks.
# ----------------------------------------------------------------------------


def test_input_errors():
    z = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="same shape"):
        L.kl_div(z, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        L.kl_div(jnp.zeros(3), jnp.zeros(3))
    with pytest.raises(ValueError, match="reduction"):
        L.kl_div(z, z, reduction="avg")
    with pytest.raises(ValueError, match="> 0"):
        L.kl_div(z, z, temperature=0.0)
    with pytest.raises(ValueError, match="integer"):
        L.cross_entropy(z, jnp.zeros(2))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        L.push_loss(z, z, jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        L.ard_loss(z, z, z, jnp.zeros(2, jnp.int32), alpha=1.5)
    with pytest.raises(ValueError, match="one entry per teacher"):
        L.balance_weights(L.init_balance_state(), jnp.ones(3))
    with pytest.raises(ValueError, match="exactly two"):
        L.mtard_loss(z, z, z, z, L.init_balance_state(3))
    with pytest.raises(ValueError, match=r"\[1.0, 10.0\]"):
        L.init_balance_state(temperature=0.5)
    with pytest.raises(ValueError, match="BalanceState"):
        L.balance_temperatures((jnp.ones(2), jnp.ones(2)), jnp.ones(2))
