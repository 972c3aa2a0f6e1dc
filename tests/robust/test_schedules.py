"""Learning-rate schedules against the references' formulas and loops, at chosen epochs.

The ``_ref_*`` helpers replay the references' per-epoch / per-step Python
logic (1-based epochs) in float64; the schedules take 0-based optax steps.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpapers.robust import schedules as S

SPE = 3  # steps per epoch: small, but every epoch has a first, middle and last step


def _at_epoch(schedule, e, spe=SPE):
    """The lr at every step of 0-based epoch ``e`` (asserting it is constant there)."""
    values = np.asarray(schedule(jnp.arange(e * spe, (e + 1) * spe)))
    assert np.all(values == values[0]), values
    return float(values[0])


def _ref_step_decay(epochs=300, milestones=(215, 260, 285), lr=0.1):
    """RSLAD/MTARD/B-MTARD: train epoch E at lr, then `if epoch in milestones: lr *= 0.1`."""
    out = []
    for epoch in range(1, epochs + 1):
        out.append(lr)
        if epoch in milestones:
            lr *= 0.1
    return out


def _ciard_formula(big_e, base, start, total):
    t = big_e - start
    return (
        base
        * (0.5 + 0.5 * math.cos(math.pi * t / (total - start)))
        * math.exp(-0.01 * t**2 / (total - start) ** 2)
    )


def test_mtard_schedule_chosen_epochs():
    sched = S.mtard_schedule(SPE)
    # 0-based epoch: 214 is the reference's epoch 215, the last one at 0.1.
    for e, want in [
        (0, 0.1),
        (214, 0.1),
        (215, 0.01),
        (259, 0.01),
        (260, 1e-3),
        (284, 1e-3),
        (285, 1e-4),
        (299, 1e-4),
    ]:
        assert _at_epoch(sched, e) == pytest.approx(want, rel=1e-6), e
    assert S.rslad_schedule is S.mtard_schedule


def test_mtard_schedule_matches_reference_loop_every_epoch():
    want = _ref_step_decay()
    got = np.asarray(jax.jit(S.mtard_schedule(SPE))(jnp.arange(300) * SPE))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # Balancing rates share the milestones (B-MTARD decays 0.025 and 0.001 there too).
    got = np.asarray(S.mtard_schedule(SPE, base_lr=0.025)(jnp.arange(300) * SPE))
    np.testing.assert_allclose(got, _ref_step_decay(lr=0.025), rtol=1e-6)


def test_mtard_schedule_scaled_to_short_runs():
    assert [S.scale_epoch(m, 30) for m in (215, 260, 285)] == [
        22,
        26,
        29,
    ]  # 21.5, 26, 28.5 rounded half up
    got = np.asarray(S.mtard_schedule(SPE, epochs=30)(jnp.arange(30) * SPE))
    np.testing.assert_allclose(got, _ref_step_decay(30, (22, 26, 29)), rtol=1e-6)


def test_ard_schedule_as_coded_and_intended():
    def ref(as_coded):
        # main.py: `for epoch in range(0, 200): adjust_learning_rate(optimizer, epoch, lr)` where
        # adjust sets lr = lr * 0.1 on the *initial* lr passed in (as_coded) or on the current one.
        current, out = 0.1, []
        for epoch in range(200):
            if epoch in (100, 150):
                current = (0.1 if as_coded else current) * 0.1
            out.append(current)
        return out

    for as_coded in (True, False):
        got = np.asarray(S.ard_schedule(SPE, as_coded=as_coded)(jnp.arange(200) * SPE))
        np.testing.assert_allclose(got, ref(as_coded), rtol=1e-6)
    assert _at_epoch(S.ard_schedule(SPE), 199) == pytest.approx(0.01)
    assert _at_epoch(S.ard_schedule(SPE, as_coded=False), 150) == pytest.approx(0.001)


def test_ciard_student_schedule_chosen_epochs():
    sched = S.ciard_student_schedule(SPE)
    assert _at_epoch(sched, 0) == pytest.approx(0.1)
    assert _at_epoch(sched, 148) == pytest.approx(0.1)  # E = 149 < 150
    assert _at_epoch(sched, 149) == pytest.approx(0.1)  # E = 150: cos 0 = 1, exp 0 = 1
    # E = 225: cos(π/2) = 0 -> ½; exp(-0.01·¼).
    assert _at_epoch(sched, 224) == pytest.approx(0.1 * 0.5 * math.exp(-0.0025), rel=1e-6)
    assert _at_epoch(sched, 299) == pytest.approx(0.0, abs=1e-9)  # E = 300: cos π = -1
    got = np.asarray(sched(jnp.arange(300) * SPE))
    want = [0.1 if e < 150 else _ciard_formula(e, 0.1, 150, 300) for e in range(1, 301)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
    assert np.all(np.diff(got) <= 1e-9)  # never increases


def test_ciard_teacher_lr_is_exactly_zero_before_retraining():
    sched = S.ciard_teacher_schedule(SPE)
    before = np.asarray(sched(jnp.arange(50 * SPE)))  # every step of 0-based epochs 0..49
    assert np.all(before == 0.0)
    # 0-based epoch 50 is the reference's epoch 51, the first with a teacher step.
    assert _at_epoch(sched, 50) == pytest.approx(_ciard_formula(51, 1e-4, 50, 300), rel=1e-6)
    assert 0 < _at_epoch(sched, 50) < 1e-4
    # E = 175: halfway, cos(π/2) = 0.
    assert _at_epoch(sched, 174) == pytest.approx(1e-4 * 0.5 * math.exp(-0.0025), rel=1e-6)
    assert _at_epoch(sched, 299) == pytest.approx(0.0, abs=1e-12)
    got = np.asarray(sched(jnp.arange(300) * SPE))
    want = [0.0 if e <= 50 else _ciard_formula(e, 1e-4, 50, 300) for e in range(1, 301)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    # Scaled: a 30-epoch run starts retraining after epoch 5.
    short = S.ciard_teacher_schedule(SPE, epochs=30)
    assert _at_epoch(short, 4) == 0.0 and _at_epoch(short, 5) > 0


def test_ciard_balance_schedule_as_coded_replays_the_batch_loop():
    spe = 5
    # The reference loop: balancing uses the current rate, then (inside the batch loop)
    # `if epoch in [215, 260, 285]: rate *= 0.1`.
    rate, want = 0.025, []
    for epoch in range(1, 301):
        for _ in range(spe):
            want.append(rate)
            if epoch in (215, 260, 285):
                rate *= 0.1
    got = np.asarray(S.ciard_balance_schedule(spe, base_lr=0.025)(jnp.arange(300 * spe)))
    np.testing.assert_allclose(got, np.float32(want), rtol=1e-5, atol=0)
    # Epoch 215 (0-based 214) decays step by step; from then on balancing is (nearly) frozen.
    np.testing.assert_allclose(got[214 * spe : 215 * spe], 0.025 * 0.1 ** np.arange(spe), rtol=1e-5)
    assert got[214 * spe - 1] == pytest.approx(0.025)
    # With a realistic epoch length the rate is exactly 0 after epoch 215.
    real = S.ciard_balance_schedule(391, base_lr=0.001)
    assert float(real(215 * 391)) == 0.0 and float(real(214 * 391)) == pytest.approx(0.001)
    # as_coded=False is B-MTARD's per-epoch decay.
    intended = S.ciard_balance_schedule(SPE, base_lr=0.025, as_coded=False)
    np.testing.assert_allclose(
        np.asarray(intended(jnp.arange(300) * SPE)), _ref_step_decay(lr=0.025), rtol=1e-6
    )


def _ref_torch_sgd(params, grads, lrs, momentum, wd):
    """torch.optim.SGD's update rule (dampening 0, no Nesterov), step by step."""
    p, buf, out = np.array(params, np.float64), None, []
    for g, lr in zip(grads, lrs):
        d = np.asarray(g, np.float64) + wd * p
        buf = d.copy() if buf is None else momentum * buf + d
        p = p - lr * buf
        out.append(p.copy())
    return out


def _run_optax(opt, params, grads):
    state = opt.init(params)
    out = []
    for g in grads:
        updates, state = opt.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params))
    return out


def test_torch_sgd_matches_pytorch_rule():
    rng = np.random.default_rng(0)
    params = jnp.asarray([1.0, -2.0, 0.5], jnp.float32)
    grads = rng.standard_normal((6, 3)).astype(np.float32)
    sched = S.step_decay_schedule(2, base_lr=0.1, milestones=(1,))  # 0.1, 0.1, then 0.01
    got = _run_optax(S.torch_sgd(sched, momentum=0.9, weight_decay=0.01), params, grads)
    want = _ref_torch_sgd(params, grads, [0.1, 0.1, 0.01, 0.01, 0.01, 0.01], 0.9, 0.01)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_torch_sgd_freeze_while_zero_lr_starts_a_fresh_buffer():
    rng = np.random.default_rng(1)
    params = jnp.asarray([1.0, -2.0], jnp.float32)
    grads = rng.standard_normal((5, 2)).astype(np.float32)
    sched = S.ciard_teacher_schedule(1, epochs=6, start_epoch=2)  # lr 0 for steps 0, 1
    lrs = [float(sched(i)) for i in range(5)]
    assert lrs[:2] == [0.0, 0.0] and lrs[2] > 0
    frozen = _run_optax(
        S.torch_sgd(sched, momentum=0.1, weight_decay=2e-4, freeze_while_zero_lr=True),
        params,
        grads,
    )
    np.testing.assert_array_equal(frozen[0], params)  # no movement at lr 0
    np.testing.assert_array_equal(frozen[1], params)
    # Like the reference: no optimizer step at all before retraining starts.
    want = _ref_torch_sgd(params, grads[2:], lrs[2:], 0.1, 2e-4)
    np.testing.assert_allclose(frozen[2:], want, rtol=1e-6)
    # Without freezing, zero-lr steps fill the momentum buffer, so the result differs.
    unfrozen = _run_optax(S.torch_sgd(sched, momentum=0.1, weight_decay=2e-4), params, grads)
    np.testing.assert_array_equal(unfrozen[1], params)
    assert not np.allclose(unfrozen[2], frozen[2], rtol=1e-9, atol=0)


def test_schedules_jit_and_vmap():
    for sched in (
        S.mtard_schedule(SPE),
        S.ard_schedule(SPE),
        S.ciard_student_schedule(SPE),
        S.ciard_teacher_schedule(SPE),
        S.ciard_balance_schedule(SPE, base_lr=0.001),
    ):
        steps = jnp.arange(0, 300 * SPE, 37)
        np.testing.assert_allclose(jax.jit(jax.vmap(sched))(steps), sched(steps), rtol=1e-6)


def test_input_errors():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        S.mtard_schedule(0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        S.ciard_student_schedule(2.5)
    with pytest.raises(ValueError, match="epochs"):
        S.ciard_teacher_schedule(3, epochs=0)
    with pytest.raises(ValueError, match="start_epoch"):
        S.ciard_teacher_schedule(3, epochs=10, start_epoch=10)
    with pytest.raises(ValueError, match="decay_start"):
        S.ciard_student_schedule(3, decay_start=-1)
    with pytest.raises(ValueError, match="base_lr"):
        S.mtard_schedule(3, base_lr=-0.1)
    with pytest.raises(ValueError, match="milestones"):
        S.step_decay_schedule(3, base_lr=0.1, milestones=(1.5,))
    with pytest.raises(ValueError, match="momentum"):
        S.torch_sgd(0.1, momentum=-1.0)
    with pytest.raises(ValueError, match="needs params"):
        opt = S.torch_sgd(0.1)
        opt.update(jnp.ones(2), opt.init(jnp.ones(2)))


def test_ciard_schedules_accept_a_one_epoch_run():
    # the scaled milestones stay inside the run; the formula ends at 0 in the last epoch
    student = S.ciard_student_schedule(3, epochs=1)
    teacher = S.ciard_teacher_schedule(3, epochs=1)
    assert [float(student(i)) for i in range(3)] == [0.0] * 3
    assert [float(teacher(i)) for i in range(3)] == [0.0] * 3
    two = S.ciard_student_schedule(3, epochs=2)
    assert [round(float(two(i)), 6) for i in (0, 2, 3, 5)] == [0.1, 0.1, 0.0, 0.0]
