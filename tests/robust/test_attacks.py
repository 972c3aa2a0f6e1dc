"""Tests for jaxpapers.robust.attacks: known answers, constraints, strength, jit."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpapers.data.images import digits
from jaxpapers.robust import attacks as A

N_TEST = 128


def _key(seed: int) -> jax.Array:
    """An ``rbg`` PRNG key: XLA:CPU compiles threefry's rounds in ~0.3 s per program, which
    dominates these tiny attacks' compile time. The attacks only split/fold/draw from the
    key, so any implementation works; :func:`test_accuracy_under_pads_and_masks_the_last_batch`
    uses the default (threefry) keys."""
    return jax.random.key(seed, impl="rbg")


def _linear(params, x):
    w, b = params
    return x.reshape(x.shape[0], -1) @ w + b


def _mlp(params, x):
    w1, b1, w2, b2 = params
    return jnp.tanh(x.reshape(x.shape[0], -1) @ w1 + b1) @ w2 + b2


@functools.partial(jax.jit, static_argnums=0)
def _train(apply, params, x, y):
    def body(_, p):
        g = jax.grad(lambda q: A.cross_entropy(apply(q, x), y).mean())(p)
        return jax.tree.map(lambda a, b: a - 0.5 * b, p, g)

    return jax.lax.fori_loop(0, 300, body, params)


@pytest.fixture(scope="module")
def data():
    ds = digits()
    return (
        jnp.asarray(ds.train_images),
        jnp.asarray(ds.train_labels),
        jnp.asarray(ds.test_images[:N_TEST]),
        jnp.asarray(ds.test_labels[:N_TEST]),
    )


@pytest.fixture(scope="module")
def linear(data):
    """Softmax regression trained on digits (undefended); returns ``(params, model_fn)``."""
    xtr, ytr, xte, yte = data
    params = _train(_linear, (jnp.zeros((64, 10)), jnp.zeros(10)), xtr, ytr)
    fn = functools.partial(_linear, params)
    assert float(jnp.mean(jnp.argmax(fn(xte), -1) == yte)) > 0.9
    return params, fn


@pytest.fixture(scope="module")
def mlp(data):
    """A 64-32-10 tanh MLP trained on digits (undefended, non-linear)."""
    xtr, ytr, xte, yte = data
    k1, k2 = jax.random.split(jax.random.key(0))
    init = (
        jax.random.normal(k1, (64, 32)) / 8.0,
        jnp.zeros(32),
        jax.random.normal(k2, (32, 10)) / np.sqrt(32.0),
        jnp.zeros(10),
    )
    params = _train(_mlp, init, xtr, ytr)
    fn = functools.partial(_mlp, params)
    assert float(jnp.mean(jnp.argmax(fn(xte), -1) == yte)) > 0.9
    return params, fn


def _acc(fn, x, y):
    return float(jnp.mean(jnp.argmax(fn(x), -1) == y))


def _edge_inputs(seed: int, shape) -> jax.Array:
    """Random images with most pixels at or next to 0 and 1 (NumPy: no eager jax compiles)."""
    rng = np.random.default_rng(seed)
    edge = rng.choice(np.asarray([0.0, 1.0, 1e-3, 1.0 - 1e-3, 0.5], np.float32), size=shape)
    return jnp.asarray(np.where(rng.random(shape) < 0.7, edge, rng.random(shape, np.float32)))


# ---------------------------------------------------------------------------------
# Losses: hand-computed values
# ---------------------------------------------------------------------------------


def test_dlr_loss_hand_computed():
    logits = jnp.asarray([[1.0, 3.0, 2.0, 0.0]] * 3)
    y = jnp.asarray([0, 1, 3])
    # sorted: 3, 2, 1, 0 -> denominator z_pi1 - z_pi3 = 3 - 1 = 2
    # y=0: -(1 - 3)/2 = 1; y=1 (top class): -(3 - 2)/2 = -0.5; y=3: -(0 - 3)/2 = 1.5
    np.testing.assert_allclose(A.dlr_loss(logits, y), [1.0, -0.5, 1.5], rtol=1e-6)


def test_dlr_loss_matches_float64_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 7))
    y = rng.integers(0, 7, size=50)
    zs = np.sort(z, axis=1)
    top_is_y = np.argmax(z, axis=1) == y
    other = np.where(top_is_y, zs[:, -2], zs[:, -1])
    want = -(z[np.arange(50), y] - other) / (zs[:, -1] - zs[:, -3] + 1e-12)
    np.testing.assert_allclose(A.dlr_loss(jnp.asarray(z), jnp.asarray(y)), want, rtol=1e-5)
    assert np.all((want > 0) == ~top_is_y)  # positive iff misclassified


def test_dlr_needs_three_classes():
    with pytest.raises(ValueError, match="at least 3 classes"):
        A.dlr_loss(jnp.zeros((2, 2)), jnp.zeros(2, jnp.int32))

    two_class = lambda x: x.reshape(x.shape[0], -1)[:, :2]  # noqa: E731
    x, y = jnp.full((4, 3, 3, 1), 0.5), jnp.zeros(4, jnp.int32)
    with pytest.raises(ValueError, match="APGD-DLR needs at least 3 classes"):
        A.apgd_dlr(two_class, jax.random.key(0), x, y, eps=0.1, steps=2)


def test_cw_margin_and_kl_hand_computed():
    logits = jnp.asarray([[1.0, 3.0, 2.0, 0.0]] * 3)
    y = jnp.asarray([1, 0, 0])
    np.testing.assert_allclose(A.cw_margin_loss(logits[:1], y[:1], 0.5), [-1.5])  # 3-2+.5
    np.testing.assert_allclose(A.cw_margin_loss(logits[1:2], y[1:2], 50.0), [-48.0])  # 1-3+50
    np.testing.assert_allclose(A.cw_margin_loss(logits[2:], y[2:], 0.0), [0.0])  # max(-2, 0)
    # p = softmax([0, ln 3]) = (1/4, 3/4); q = (1/2, 1/2)
    kl = A.kl_to_target(jnp.asarray([[0.0, np.log(3.0)]]), jnp.zeros((1, 2)))
    np.testing.assert_allclose(kl, [0.25 * np.log(0.5) + 0.75 * np.log(1.5)], rtol=1e-6)
    ce = A.cross_entropy(jnp.asarray([[0.0, np.log(3.0)]]), jnp.asarray([1]))
    np.testing.assert_allclose(ce, [-np.log(0.75)], rtol=1e-6)


def test_apgd_checkpoints_match_the_paper():
    # p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), p_1 = 0.22, times N = 100
    assert [d for d, _ in A.apgd_checkpoints(100)] == [22, 41, 57, 70, 80, 87, 93, 99]
    assert [k for _, k in A.apgd_checkpoints(100)] == [22, 19, 16, 13, 10, 7, 6, 6]
    # N = 10: first window 2, then windows of max(int(.06 N), 1) = 1
    assert A.apgd_checkpoints(10) == ((2, 2),) + tuple((d, 1) for d in range(3, 11))
    assert A.apgd_checkpoints(0) == ()


# ---------------------------------------------------------------------------------
# Constraints
# ---------------------------------------------------------------------------------


ATTACKS = ("fgsm", "pgd", "pgd_kl", "cw", "apgd_ce", "apgd_dlr")


def _attack(name: str, steps: int, unroll=1):
    """Attack ``name`` with ``steps`` steps; ``eps`` (and the step size eps/4) stay traceable.

    Tests run the loops rolled (``unroll=1``: XLA:CPU compiles an unrolled loop body once
    per step); :func:`test_unrolled_loops_match_rolled` checks unrolled paths against it.
    """
    kw = {"unroll": unroll}

    def run(model_fn, key, x, y, eps):
        if name == "fgsm":
            return A.fgsm(model_fn, key, x, y, eps=eps)
        if name in ("pgd", "pgd_kl", "cw"):
            loss = {"pgd": "ce", "pgd_kl": "kl", "cw": "cw"}[name]  # pgd_kl: TRADES
            return A.pgd(
                model_fn, key, x, y, eps=eps, step_size=eps / 4, steps=steps, loss=loss, **kw
            )
        if name == "apgd_ce":
            return A.apgd_ce(model_fn, key, x, y, eps=eps, steps=steps, **kw)
        return A.apgd_dlr(model_fn, key, x, y, eps=eps, steps=steps, restarts=2, **kw)

    return run


@functools.partial(jax.jit, static_argnames=("name", "apply", "steps"))
def _run(name, apply, params, key, x, y, eps, steps=10):
    """Every attack under ``jax.jit`` with static config (one compile per attack/model)."""
    return _attack(name, steps)(functools.partial(apply, params), key, x, y, eps)


def test_every_attack_stays_in_ball_and_box(mlp):
    params, _ = mlp
    x = _edge_inputs(1, (N_TEST, 8, 8, 1))
    y = jnp.arange(N_TEST) % 10
    eps = 0.1
    for name in ATTACKS:
        x_adv = _run(name, _mlp, params, _key(2), x, y, eps)
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype, name
        assert float(jnp.max(jnp.abs(x_adv - x))) <= eps + 1e-6, name
        assert float(jnp.min(x_adv)) >= 0.0 and float(jnp.max(x_adv)) <= 1.0, name
        assert float(jnp.max(jnp.abs(x_adv - x))) > 0.5 * eps, name  # it moved


class _TinyBNNet(nnx.Module):
    """linear(16)-BN-ReLU-linear: the smallest net with batch norm (cheap to compile)."""

    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 16, rngs=rngs)
        self.bn = nnx.BatchNorm(16, rngs=rngs)
        self.head = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        h = self.hidden(x.reshape(x.shape[0], -1))
        return self.head(jax.nn.relu(self.bn(h)))


def test_nnx_model_in_eval_mode_under_attack():
    """An NNX net with batch norm: eval mode, attacked through split/merge, untouched."""
    model = _TinyBNNet(nnx.Rngs(_key(0)))
    model.eval()
    graphdef, state = nnx.split(model)

    @jax.jit
    def attack(state, key, x, y):
        model_fn = lambda v: nnx.merge(graphdef, state)(v)  # noqa: E731
        return A.pgd(model_fn, key, x, y, eps=0.1, step_size=0.05, steps=2, unroll=1)

    x = _edge_inputs(1, (8, 8, 8, 1))
    x_adv = attack(state, _key(2), x, jnp.arange(8))
    assert float(jnp.max(jnp.abs(x_adv - x))) <= 0.1 + 1e-6
    assert float(jnp.min(x_adv)) >= 0.0 and float(jnp.max(x_adv)) <= 1.0
    _, state_after = nnx.split(model)  # batch statistics were not updated
    jax.tree.map(np.testing.assert_array_equal, state, state_after)


# ---------------------------------------------------------------------------------
# Known answers and monotonicity on the linear model
# ---------------------------------------------------------------------------------


def test_fgsm_equals_hand_computed_step_on_linear_model(linear, data):
    (w, b), fn = linear
    x, y = data[2][:32], data[3][:32]
    eps = 0.1
    w64, b64 = np.asarray(w, np.float64), np.asarray(b, np.float64)
    xf = np.asarray(x, np.float64).reshape(32, -1)
    z = xf @ w64 + b64
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.eye(10)[np.asarray(y)]) @ w64.T  # d CE / d x
    want = np.clip(xf + eps * np.sign(grad), 0.0, 1.0).reshape(x.shape)
    got = jax.jit(functools.partial(A.fgsm, fn, None, eps=eps))(x, y)
    np.testing.assert_allclose(got, want, atol=1e-6)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _pgd_all_losses(fn, key, x, y, steps, teacher_logits):
    """PGD with CE, KL to a teacher (ARD/RSLAD: normal start) and CW; the losses reached."""
    pgd = functools.partial(A.pgd, fn, key, x, y, eps=0.05, step_size=0.01, steps=steps, unroll=1)
    x_ce = pgd(loss="ce")
    x_kl = pgd(loss="kl", target_logits=teacher_logits, start="normal")
    x_cw = pgd(loss="cw")
    return jnp.stack(
        [
            jnp.mean(A.cross_entropy(fn(x_ce), y)),
            jnp.mean(A.kl_to_target(teacher_logits, fn(x_kl))),
            jnp.mean(A.cw_margin_loss(fn(x_cw), y, 50.0)),
        ]
    )


def test_pgd_more_steps_never_lowers_the_loss(linear, mlp, data):
    """Same key, so the same start: 0, 1, 5, 20 steps; mean loss of CE, KL, CW."""
    _, fn = linear
    x, y = data[2], data[3]
    teacher = mlp[1](x)  # KL to another model's clean logits
    means = np.stack([_pgd_all_losses(fn, _key(3), x, y, s, teacher) for s in (0, 1, 5, 20)])
    assert np.all(np.diff(means, axis=0) >= -1e-5), means
    assert np.all(means[-1] > means[0] + 1e-3), means  # and it does climb


def test_large_eps_drives_undefended_models_to_zero(mlp, data):
    x, y = data[2], data[3]
    params, fn = mlp
    assert _acc(fn, x, y) > 0.9
    for name in ATTACKS:
        acc = _acc(fn, _run(name, _mlp, params, _key(4), x, y, 0.5), y)
        # KL to the model's own clean prediction (TRADES' inner max) uses no label: it
        # also grows by making the clean class *more* confident (KL(p‖q) → ∞ as the
        # other q_j → 0), a local maximum sign ascent can settle in; and it can move a
        # clean mistake onto the true class. It is a training attack, not an evaluation
        # one: ask only that it removes most of the accuracy.
        assert acc <= (0.3 if name == "pgd_kl" else 0.02), (name, acc)


def test_apgd_at_least_as_strong_as_pgd_and_returns_its_best_point(mlp, data):
    params, fn = mlp
    x, y = data[2], data[3]
    eps, key = 0.08, _key(5)
    x_pgd = _run("pgd", _mlp, params, key, x, y, eps)
    acc_pgd = _acc(fn, x_pgd, y)
    acc_ce = _acc(fn, _run("apgd_ce", _mlp, params, key, x, y, eps), y)
    acc_dlr = _acc(fn, _run("apgd_dlr", _mlp, params, key, x, y, eps), y)
    assert 0.05 < acc_pgd < 0.9, acc_pgd  # an informative budget: neither trivial nor saturated
    assert acc_ce <= acc_pgd + 0.02, (acc_ce, acc_pgd)
    assert acc_dlr <= acc_pgd + 0.05, (acc_dlr, acc_pgd)

    # best_loss=True returns the highest-loss point: never below the starting point
    start = A._apgd_init(jax.random.split(key, 1)[0], x, eps)  # pylint: disable=protected-access
    best_point = jax.jit(
        functools.partial(A.apgd_ce, fn, eps=eps, best_loss=True), static_argnames="steps"
    )
    same = best_point(key, x, y, steps=0)
    np.testing.assert_allclose(same, start, atol=1e-6)  # steps=0: the start itself
    best = best_point(key, x, y, steps=10)
    loss_start = A.cross_entropy(fn(start), y)
    loss_best = A.cross_entropy(fn(best), y)
    assert bool(jnp.all(loss_best >= loss_start - 1e-6))
    assert float(jnp.mean(loss_best - loss_start)) > 0.1
    # and, on average, at least as high as PGD's last iterate with the same budget
    loss_pgd = A.cross_entropy(fn(x_pgd), y)
    assert float(jnp.mean(loss_best)) >= float(jnp.mean(loss_pgd)) - 0.05


# ---------------------------------------------------------------------------------
# jit, gradients, sharding
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,unroll", [("pgd", True), ("apgd_dlr", 3)])
def test_unrolled_loops_match_rolled(mlp, data, name, unroll):
    """The tests' runner (rolled) vs full (pgd's default) or partial unrolling."""
    params, fn = mlp
    x, y, key = data[2], data[3], _key(6)
    rolled = _run(name, _mlp, params, key, x, y, 0.05)
    unrolled = jax.jit(functools.partial(_attack(name, 10, unroll=unroll), fn))(key, x, y, 0.05)
    mismatch = float(jnp.mean(jnp.abs(unrolled - rolled) > 1e-5))
    assert mismatch < 1e-3, mismatch


def test_no_gradient_flows_into_params_through_the_attacks(linear, data):
    """d/dparams of an adversarial-training loss treats x_adv as a constant (detach).

    Sign steps already have a zero derivative, so this property would survive removing
    the attacks' ``stop_gradient`` (which also spares the outer backward pass a walk
    through the attack loop); it guards against steps that do carry a derivative.
    """
    params, _ = linear
    x, y = data[2][:32], data[3][:32]
    key = _key(7)

    def attacks(p):
        fn = functools.partial(_linear, p)
        return (
            A.pgd(fn, key, x, y, eps=0.1, step_size=0.02, steps=2, unroll=1),
            A.apgd_ce(fn, key, x, y, eps=0.1, steps=2),
        )

    def outer(p, x_advs):
        return sum(A.cross_entropy(_linear(p, xa), y).mean() for xa in x_advs)

    @jax.jit
    def grads(p):
        through = jax.grad(lambda q: outer(q, attacks(q)))(p)
        frozen = jax.grad(outer)(p, attacks(p))
        return through, frozen

    got, want = grads(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got, want)


def test_pgd_on_an_eight_device_batch_matches_one_device(linear, data, mesh8):
    _, fn = linear
    x, y = data[2][:64], data[3][:64]
    attack = jax.jit(functools.partial(A.pgd, fn, eps=0.05, step_size=0.01, steps=2, unroll=1))
    key = _key(8)
    one = attack(key, x, y)
    sharded = attack(
        key,
        jax.device_put(x, NamedSharding(mesh8, P("data"))),
        jax.device_put(y, NamedSharding(mesh8, P("data"))),
    )
    np.testing.assert_allclose(sharded, one, atol=1e-6)


# ---------------------------------------------------------------------------------
# accuracy_under
# ---------------------------------------------------------------------------------


def test_accuracy_under_pads_and_masks_the_last_batch(linear, data):
    params, fn = linear
    x, y = np.asarray(data[2][:100]), np.asarray(data[3][:100])
    assert A.accuracy_under(None, fn, None, x, y, batch_size=32) == pytest.approx(_acc(fn, x, y))
    fgsm = functools.partial(A.fgsm, eps=0.1)
    want = _acc(fn, fgsm(fn, None, x, y), y)
    # 100 = 3 x 32 + 4: the last batch is padded with 28 copies and masked
    partial_fn = jax.tree_util.Partial(_linear, params)  # weights as jit arguments
    assert A.accuracy_under(fgsm, partial_fn, None, x, y, batch_size=32) == pytest.approx(want)
    pgd = functools.partial(A.pgd, eps=0.5, step_size=0.1, steps=5, unroll=1)
    assert A.accuracy_under(pgd, fn, jax.random.key(0), x, y, batch_size=48) == 0.0


# ---------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(linear):
    _, fn = linear
    x, y, key = jnp.full((4, 8, 8, 1), 0.5), jnp.zeros(4, jnp.int32), jax.random.key(0)
    pgd = functools.partial(A.pgd, fn, key, eps=0.1, step_size=0.01, steps=2)
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):
        A.pgd(fn, key, x, y, eps=-0.1, step_size=0.01, steps=2)
    with pytest.raises(ValueError, match="steps must be a Python int"):
        A.pgd(fn, key, x, y, eps=0.1, step_size=0.01, steps=2.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        pgd(x, y, loss="mse")
    with pytest.raises(ValueError, match="start must be one of"):
        pgd(x, y, start="zeros")
    with pytest.raises(ValueError, match="only used with loss='kl'"):
        pgd(x, y, target_logits=jnp.zeros((4, 10)))
    with pytest.raises(ValueError, match="target_logits must have shape"):
        pgd(x, y, loss="kl", target_logits=jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="y must have shape"):
        pgd(x, jnp.zeros(5, jnp.int32))
    with pytest.raises(ValueError, match="integer labels"):
        pgd(x, jnp.zeros(4))
    with pytest.raises(ValueError, match="floating point"):
        pgd(jnp.zeros((4, 8, 8, 1), jnp.int32), y)
    with pytest.raises(ValueError, match="logits"):
        A.fgsm(lambda v: v.sum(axis=(1, 2, 3)), None, x, y, eps=0.1)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        A.pgd(fn, None, x, y, eps=0.1, step_size=0.01, steps=2)
    A.pgd(fn, None, x, y, eps=0.1, step_size=0.01, steps=1, random_start=False)  # fine
    with pytest.raises(ValueError, match="restarts must be an int >= 1"):
        A.apgd(fn, key, x, y, eps=0.1, steps=2, restarts=0)
    with pytest.raises(ValueError, match="fixes loss"):
        A.apgd_ce(fn, key, x, y, eps=0.1, loss="dlr")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        A.accuracy_under(None, fn, None, x, y, batch_size=0)


def test_apgd_restarts_keep_the_best_of_each(mlp, data):
    """restarts=3: per example, the highest loss of the three independent runs."""
    params, fn = mlp
    x, y, key, eps = data[2][:32], data[3][:32], _key(9), 0.08
    loss_fn = lambda z: A.cross_entropy(z, y)  # noqa: E731
    single = jax.jit(
        lambda k: A._apgd_single_run(fn, loss_fn, k, x, y, eps, 5, 0.75, 0.75, 1)[1]  # noqa: SLF001
    )
    per_restart = jnp.stack([single(k) for k in jax.random.split(key, 3)])
    best = jax.jit(lambda k: A.apgd_ce(fn, k, x, y, eps=eps, steps=5, restarts=3, best_loss=True))
    np.testing.assert_allclose(loss_fn(fn(best(key))), per_restart.max(axis=0), rtol=1e-5)


def test_apgd_halves_the_step_at_every_checkpoint_on_a_flat_loss():
    """A constant loss never increases: condition 1 (≤ rho·window increases) holds at each
    checkpoint, so after N = 10 steps (9 checkpoints) the step is 2·eps / 2⁹."""
    flat = lambda v: jnp.zeros((v.shape[0], 3)) + 0.0 * v.reshape(v.shape[0], -1)[:, :3]  # noqa: E731
    x, y, eps = jnp.full((2, 4, 4, 1), 0.5), jnp.zeros(2, jnp.int32), 0.1
    loss_fn = lambda z: A.cross_entropy(z, y)  # noqa: E731
    run = A._apgd_single_run  # noqa: SLF001
    for steps in (10, 100):
        step = run(flat, loss_fn, _key(0), x, y, eps, steps, 0.75, 0.75, 1)[4]
        n_checks = len(A.apgd_checkpoints(steps))
        np.testing.assert_allclose(step, 2 * eps / 2**n_checks, rtol=1e-6)
