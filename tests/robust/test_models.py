from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.nn import mobilenet, resnet, wideresnet
from jaxpapers.robust import attacks, models

CIFAR = (32, 32, 3)

# Trainable parameters for 10 classes, derived by hand:
# resnet18: the CIFAR ResNet-18 of the references (kuangliu layout), 11,173,962.
# resnet56: 853,018 for He et al.'s option-A network + the two 1x1 conv + BN projections
#   (16*32 + 2*32) + (32*64 + 2*64) = 2,752.
# mobilenet_v2, wrn34_10: derived layer by layer in tests/nn/test_{mobilenet,wideresnet}.py.
# wrn_tiny (WRN-10-1): stem 3*16*9 = 432; block 16->16: 2*16 + 2304 + 2*16 + 2304 = 4,672;
#   16->32: 32 + 4608 + 64 + 9216 + 512 = 14,432; 32->64: 64 + 18432 + 128 + 36864 + 2048
#   = 57,536; final BN 128; head 650: 77,850.
# small_cnn on 8x8x1: 288 + 64 + 18432 + 128 + 73728 + 256 + 1290 = 94,186.
COUNTS = {
    "resnet18": (CIFAR, 11_173_962),
    "resnet56": (CIFAR, 855_770),
    "mobilenet_v2": (CIFAR, 2_296_922),
    "wrn34_10": (CIFAR, 46_160_474),
    "wrn_tiny": (CIFAR, 77_850),
    "small_cnn": ((8, 8, 1), 94_186),
}


def _abstract(name, shape, num_classes=10, **kw):
    return nnx.eval_shape(
        lambda: models.make(name, num_classes, rngs=nnx.Rngs(0), input_shape=shape, **kw)
    )


def test_counts_cover_every_name():
    assert sorted(COUNTS) == sorted(models.NAMES)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_counts_and_logit_shapes(name):
    shape, count = COUNTS[name]
    model = _abstract(name, shape)
    assert models.param_count(model) == count
    graphdef, state = nnx.split(model)
    assert models.param_count(state) == count
    x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
    logits = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x)
    assert logits.shape == (2, 10)
    bns = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)]
    assert bns and not any(bn.use_running_average for bn in bns)  # built in train mode


def test_factory_builds_the_documented_classes():
    assert isinstance(_abstract("resnet18", CIFAR), resnet.ResNet)
    assert _abstract("resnet18", CIFAR).small_input  # 3x3 stride-1 stem, no max-pool
    assert not _abstract("resnet18", (96, 96, 3)).small_input
    assert isinstance(_abstract("mobilenet_v2", CIFAR), mobilenet.MobileNetV2)
    wrn = _abstract("wrn_tiny", CIFAR)
    assert (
        isinstance(wrn, wideresnet.WideResNet) and (wrn.depth, wrn.widen_factor) == models.WRN_TINY
    )
    assert _abstract("mobilenet_v2", (8, 8, 3), width=0.5).width == 0.5
    assert _abstract("resnet56", CIFAR, mean=(0.5, 0.4, 0.3), std=(0.2,)).mean == (0.5, 0.4, 0.3)
    # a small image through a CIFAR network: every stride-2 stage still has pixels
    model = _abstract("wrn34_10", (8, 8, 3), num_classes=3)
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
    assert jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x).shape == (1, 3)


@pytest.mark.parametrize(
    "name,kw,match",
    [
        (
            "resnet50",
            {},
            "valid names: mobilenet_v2, resnet18, resnet56, small_cnn, wrn34_10, wrn_tiny",
        ),
        ("resnet18", dict(input_shape=(32, 32)), "input_shape"),
        ("resnet18", dict(input_shape=(32, 0, 3)), "input_shape"),
        ("resnet18", dict(num_classes=0), "num_classes"),
        ("wrn_tiny", dict(width=0.5), "width applies to mobilenet_v2 only"),
        ("resnet18", dict(mean=(0.1, 0.2)), "mean must have 1 or 3"),
        ("small_cnn", dict(std=(0.0,)), "std"),
    ],
)
def test_invalid_arguments(name, kw, match):
    kw = dict(dict(num_classes=10, input_shape=CIFAR), **kw)
    with pytest.raises(ValueError, match=match):
        nnx.eval_shape(lambda: models.make(name, rngs=nnx.Rngs(0), **kw))


def _numpy_model(ctor, seed=0):
    """The module ``ctor`` builds, with NumPy-drawn weights and running statistics.

    Skips compiling the PRNG initialisers (seconds per model on this CPU); the
    statistics are not the init's, but every test below holds for any weights.
    """
    graphdef, state = nnx.split(nnx.eval_shape(ctor))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name, shape = path[-2].key, leaf.shape
        if name == "kernel":
            v = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        elif name in ("scale", "var"):
            v = 1.0 + 0.5 * rng.random(shape)
        else:  # bias, running mean
            v = 0.2 * rng.normal(size=shape)
        return jnp.asarray(v, leaf.dtype)

    return nnx.merge(graphdef, jax.tree.map_with_path(fill, state))


@partial(jax.jit, static_argnames=("graphdef", "method"))
def _apply(graphdef, state, *args, method):
    module = nnx.merge(graphdef, state, copy=True)
    return getattr(module, method)(*args), nnx.state(module)


def _call(module, *args, method="__call__"):
    """``module.method(*args)`` compiled, writing back batch statistics / RNG counts."""
    out, state = _apply(*nnx.split(module), *args, method=method)
    nnx.update(module, state)
    return out


def _small_cnn(seed=0, **kw):
    return _numpy_model(
        lambda: models.make("small_cnn", 4, rngs=nnx.Rngs(0), input_shape=(8, 8, 1), **kw), seed
    )


def test_small_cnn_normalises_inside():
    plain, normed = _small_cnn(), _small_cnn(mean=(0.5,), std=(0.25,))
    plain.eval(), normed.eval()
    x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1))
    np.testing.assert_allclose(
        _call(normed, x), _call(plain, (x - 0.5) / 0.25), rtol=1e-5, atol=1e-5
    )
    assert models.param_count(normed) == COUNTS["small_cnn"][1] - 129 * (10 - 4)  # 4 classes


@pytest.fixture(scope="module")
def cnn():
    return _small_cnn(seed=1)


def test_logits_fn_eval_view_is_pure_and_per_example(cnn):
    model = nnx.clone(cnn)  # in train mode
    graphdef, state = nnx.split(model)
    before = jax.tree.map(np.asarray, state)
    f = models.logits_fn(graphdef, state)
    x = jax.random.uniform(jax.random.key(1), (6, 8, 8, 1))
    x2 = x.at[2:].set(jax.random.uniform(jax.random.key(2), (4, 8, 8, 1)))
    out = f(x)
    np.testing.assert_array_equal(out, f(x))
    np.testing.assert_allclose(f(x2)[:2], out[:2], rtol=1e-5, atol=1e-6)
    eval_model = nnx.clone(cnn)
    eval_model.eval()
    np.testing.assert_allclose(out, _call(eval_model, x), rtol=1e-5, atol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(model), before)  # nothing mutated
    assert model.net.bn1.use_running_average is False  # the caller's model keeps its mode


def test_logits_fn_train_view_uses_batch_statistics_without_side_effects(cnn):
    model = nnx.clone(cnn)
    model.eval()  # the view does not depend on the mode the model was split in
    graphdef, state = nnx.split(model)
    f = models.logits_fn(graphdef, state, train=True)
    x = jax.random.uniform(jax.random.key(3), (6, 8, 8, 1))
    train_model = nnx.clone(cnn)
    want = _call(train_model, x)  # train mode; updates train_model's statistics
    np.testing.assert_allclose(f(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(f(x), f(x))  # statistics update discarded: same output
    np.testing.assert_array_equal(
        nnx.state(model)["net"]["bn1"]["mean"][...], cnn.net.bn1.mean[...]
    )
    assert not np.allclose(f(x), models.logits_fn(graphdef, state)(x), atol=1e-3)


def test_logits_fn_under_jit_and_grad_takes_weights_as_arguments(cnn):
    graphdef, state = nnx.split(cnn)
    traces = []

    @jax.jit
    def input_grad(f, x, y):
        traces.append(1)

        def loss(x):
            return optax.softmax_cross_entropy_with_integer_labels(f(x), y).sum()

        return jax.grad(loss)(x)

    x = jax.random.uniform(jax.random.key(4), (4, 8, 8, 1))
    y = jnp.array([0, 1, 2, 3])
    for train in (False, True):  # the train view writes (discarded) statistics inside grad
        g1 = input_grad(models.logits_fn(graphdef, state, train=train), x, y)
        assert np.abs(np.asarray(g1)).max() > 0
    other = jax.tree.map(lambda v: v * 1.5, state)
    g2 = input_grad(models.logits_fn(graphdef, other), x, y)
    assert len(traces) == 2  # one trace per mode; new weights reuse the compiled program
    assert not np.allclose(g1, g2)


def test_logits_fn_drives_an_attack(cnn):
    graphdef, state = nnx.split(cnn)
    f = models.logits_fn(graphdef, state)
    x = jax.random.uniform(jax.random.key(5), (8, 8, 8, 1))
    y = jnp.arange(8) % 4
    attack = jax.jit(partial(attacks.pgd, eps=0.1, step_size=0.05, steps=3))
    x_adv = attack(f, jax.random.key(6), x, y)
    assert float(jnp.abs(x_adv - x).max()) <= 0.1 + 1e-6
    ce = lambda z: optax.softmax_cross_entropy_with_integer_labels(f(z), y).mean()  # noqa: E731
    assert ce(x_adv) > ce(x)


def test_logits_fn_rejects_a_model():
    with pytest.raises(ValueError, match="graphdef must be an nnx.GraphDef"):
        models.logits_fn(_abstract("wrn_tiny", CIFAR), None)


@pytest.mark.parametrize("train", [False, True])
def test_logits_fn_on_a_batch_sharded_over_eight_devices(cnn, mesh8, train):
    graphdef, state = nnx.split(cnn)
    f = models.logits_fn(graphdef, state, train=train)
    x = jax.random.uniform(jax.random.key(7), (16, 8, 8, 1))
    xs = jax.device_put(x, jax.sharding.NamedSharding(mesh8, jax.sharding.PartitionSpec("data")))
    out = jax.jit(lambda f, x: f(x))(f, xs)
    # train mode: statistics of the global batch, as on one device (no per-device BN)
    np.testing.assert_allclose(out, f(x), rtol=1e-5, atol=1e-5)
