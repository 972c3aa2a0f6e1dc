from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.nn import wideresnet


def _wrn_params(depth, k, num_classes, in_channels=3):
    """Trainable parameters of the TRADES WRN-depth-k without its unused ``sub_block1``.

    Per block: BN(c_in) + conv3x3(c_in -> c_out) + BN(c_out) + conv3x3(c_out -> c_out),
    plus a 1x1 conv (c_in -> c_out) where the width changes; BN = scale + bias.
    """
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    total = 9 * in_channels * 16  # stem, no bias
    for g in range(3):
        for i in range(n):
            c_in, c_out = (widths[g] if i == 0 else widths[g + 1]), widths[g + 1]
            total += 2 * c_in + 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out
            total += c_in * c_out if c_in != c_out else 0
    return total + 2 * widths[3] + widths[3] * num_classes + num_classes


def _count(model):
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_wrn34_10_parameter_count_is_the_trades_figure():
    model = nnx.eval_shape(lambda: wideresnet.wrn34_10(10, rngs=nnx.Rngs(0)))
    assert _wrn_params(34, 10, 10) == 46_160_474  # the 46.16M quoted for WRN-34-10
    assert _count(model) == 46_160_474
    assert len(model.blocks) == 15


@pytest.mark.parametrize(
    "depth,k,classes,channels", [(10, 1, 10, 3), (16, 2, 100, 3), (22, 1, 7, 1)]
)
def test_parameter_count_matches_the_layer_formula(depth, k, classes, channels):
    model = nnx.eval_shape(
        lambda: wideresnet.WideResNet(depth, k, classes, in_channels=channels, rngs=nnx.Rngs(0))
    )
    assert _count(model) == _wrn_params(depth, k, classes, channels)


def test_wrn34_10_shapes_at_cifar_size_without_running_it():
    model = nnx.eval_shape(lambda: wideresnet.wrn34_10(10, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    fmap = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).feature_map(x), state, x)
    logits = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x)
    assert fmap.shape == (2, 8, 8, 640)  # avg_pool2d(8) in the reference = global pooling
    assert logits.shape == (2, 10)


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


def _conv_np(x, kernel, stride, pad):
    """float64 NHWC convolution, HWIO kernel, symmetric zero padding (PyTorch's)."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kernel = np.asarray(kernel, np.float64)
    kh, kw = kernel.shape[:2]
    h, w = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], h, w, kernel.shape[3]))
    for a in range(kh):
        for b in range(kw):
            out += x[:, a : a + stride * h : stride, b : b + stride * w : stride, :] @ kernel[a, b]
    return out


def _bn_np(x, scale, bias, mean=None, var=None):
    """float64 batch norm; batch statistics (train mode) unless mean/var are given."""
    x = np.asarray(x, np.float64)
    if mean is None:
        mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    return (x - mean) / np.sqrt(np.asarray(var, np.float64) + 1e-5) * scale + bias


def _block(c_in, c_out, stride, seed=0):
    return _numpy_model(
        lambda: wideresnet.WideBlock(c_in, c_out, stride, dropout=0.0, rngs=nnx.Rngs(0)), seed
    )


def test_stride2_conv_pads_like_pytorch():
    block = _block(3, 4, 2)
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 3))
    got = _call(block.conv1, x)
    want = _conv_np(x, block.conv1.kernel[...], stride=2, pad=1)
    assert got.shape == (2, 3, 3, 4)  # XLA's SAME would pad (0, 1) and shift the grid
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_block_forward_matches_numpy_in_both_modes():
    block = _block(3, 5, 2)
    x = jax.random.normal(jax.random.key(2), (4, 6, 6, 3)) * 2.0 + 1.0
    p = lambda v: np.asarray(v[...], np.float64)  # noqa: E731

    def bn(h, layer, train):
        stats = () if train else (p(layer.mean), p(layer.var))
        return _bn_np(h, p(layer.scale), p(layer.bias), *stats)

    for train in (True, False):
        block.train() if train else block.eval()
        a = np.maximum(bn(x, block.bn1, train), 0)
        h = np.maximum(bn(_conv_np(a, p(block.conv1.kernel), 2, 1), block.bn2, train), 0)
        want = _conv_np(h, p(block.conv2.kernel), 1, 1) + _conv_np(
            a, p(block.shortcut.kernel), 2, 0
        )
        # the projection sees the pre-activated input a = relu(bn1(x)), not x
        np.testing.assert_allclose(_call(block, x), want, rtol=1e-4, atol=1e-4)


def test_identity_block_adds_the_raw_input():
    block = _block(4, 4, 1)
    assert block.shortcut is None
    block.conv2.kernel[...] = jnp.zeros_like(block.conv2.kernel[...])
    x = jax.random.normal(jax.random.key(3), (3, 5, 5, 4))
    np.testing.assert_array_equal(_call(block, x), x)  # x itself, not relu(bn1(x))


def test_init_follows_the_reference():
    key = jax.random.key(0, impl="rbg")  # cheap to compile; the init is what is checked
    model = wideresnet.WideResNet(10, 4, 10, rngs=nnx.Rngs(key))
    kernel = np.asarray(model.blocks[0].conv2.kernel[...])  # 3x3, 64 -> 64
    np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / (9 * 64)), rtol=0.05)
    assert np.abs(kernel).max() > 3.5 * kernel.std()  # untruncated normal
    head = np.asarray(model.head.kernel[...])
    assert np.abs(head).max() <= 1 / np.sqrt(256) and head.std() > 0.8 / np.sqrt(3 * 256)
    np.testing.assert_array_equal(model.head.bias[...], 0.0)
    np.testing.assert_array_equal(model.bn.scale[...], 1.0)
    assert model.bn.momentum == 0.9 and model.bn.epsilon == 1e-5  # PyTorch's 0.1 / 1e-5


@pytest.fixture(scope="module")
def tiny():
    return _numpy_model(lambda: wideresnet.WideResNet(10, 1, 5, rngs=nnx.Rngs(0)))


def test_train_and_eval_batch_norm(tiny):
    model = nnx.clone(tiny)
    x = jax.random.uniform(jax.random.key(2), (6, 8, 8, 3))
    x2 = x.at[2:].set(jax.random.uniform(jax.random.key(3), (4, 8, 8, 3)))  # same first two
    model.eval()
    e1, e2 = _call(model, x), _call(model, x)
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_allclose(_call(model, x2)[:2], e1[:2], rtol=1e-5, atol=1e-5)  # independent
    mean_before = np.asarray(model.bn.mean[...])
    model.train()
    t = _call(model, x)
    assert not np.allclose(t, e1, atol=1e-3)  # batch statistics, not the running ones
    assert not np.allclose(_call(model, x2)[:2], t[:2], atol=1e-3)  # depends on the batch
    assert not np.allclose(model.bn.mean[...], mean_before)  # running statistics moved
    assert tiny.blocks[0].bn1.use_running_average is False  # clone only


def test_gradients_reach_every_parameter_under_jit(tiny):
    graphdef, params, rest = nnx.split(tiny, nnx.Param, ...)
    x = jax.random.uniform(jax.random.key(5), (4, 8, 8, 3))
    y = jnp.array([0, 1, 2, 3])

    @jax.jit
    def grad_fn(params, rest, x):
        def loss(p):
            logits = nnx.merge(graphdef, p, rest, copy=True)(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        return jax.value_and_grad(loss)(params)

    value, grads = grad_fn(params, rest, x)
    assert np.isfinite(value)
    leaves = jax.tree.leaves_with_path(grads)
    assert len(leaves) == 1 + 3 * 6 + 2 + 2 + 2  # stem, 3 blocks, 2 shortcuts, bn, head
    for path, g in leaves:
        assert np.abs(np.asarray(g)).max() > 0, f"no gradient reaches {jax.tree_util.keystr(path)}"


def test_dropout_is_random_in_train_mode_only():
    keys = jax.random.split(jax.random.key(0, impl="rbg"))
    model = wideresnet.WideResNet(
        10, 1, 3, dropout=0.5, rngs=nnx.Rngs(params=keys[0], dropout=keys[1])
    )
    x = jax.random.uniform(jax.random.key(6), (2, 8, 8, 3))
    assert not np.allclose(_call(model, x), _call(model, x))
    model.eval()
    np.testing.assert_array_equal(_call(model, x), _call(model, x))


def test_normalisation_inside_the_model():
    make = lambda **kw: _numpy_model(  # noqa: E731
        lambda: wideresnet.WideResNet(10, 1, 3, in_channels=2, rngs=nnx.Rngs(0), **kw)
    )
    plain, normed = make(), make(mean=(0.5, 0.25), std=(0.25, 2.0))
    plain.eval(), normed.eval()
    x = jax.random.uniform(jax.random.key(7), (2, 8, 8, 2))
    want = _call(plain, (x - jnp.array([0.5, 0.25])) / jnp.array([0.25, 2.0]))
    np.testing.assert_allclose(_call(normed, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "args,match",
    [
        (dict(depth=33, widen_factor=1), "depth must be 6n"),
        (dict(depth=4, widen_factor=1), "depth must be 6n"),
        (dict(depth=10, widen_factor=0), "widen_factor"),
        (dict(depth=10, widen_factor=1, dropout=1.0), "dropout"),
        (dict(depth=10, widen_factor=1, std=(0.0,)), "std"),
        (dict(depth=10, widen_factor=1, mean=(0.1, 0.2)), "mean must have 1 or 3"),
    ],
)
def test_invalid_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        nnx.eval_shape(lambda: wideresnet.WideResNet(num_classes=10, rngs=nnx.Rngs(0), **args))
