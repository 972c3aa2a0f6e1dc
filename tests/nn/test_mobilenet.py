from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.nn import mobilenet

# (expansion, channels, blocks, stride) of the reference CIFAR MobileNetV2, copied by hand
# from zibojia/RSLAD cifar10_models/mobilenet_v2.py (= ARD models/mobilenetv2.py).
REFERENCE_CFG = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _mbv2_params(num_classes, chans=None, stem=32, last=1280):
    """Trainable parameters, layer by layer, of the reference definition.

    Block (c_in -> c_out, expansion t, stride s), p = t * c_in: 1x1 conv c_in*p, BN 2p,
    depthwise 3x3 9p, BN 2p, 1x1 conv p*c_out, BN 2c_out, and for s = 1 with
    c_in != c_out a 1x1 conv c_in*c_out + BN 2c_out. No conv biases.
    """
    chans = chans or [c for _, c, _, _ in REFERENCE_CFG]
    total, c_in = 3 * stem * 9 + 2 * stem, stem
    for (t, _, n, s), c_out in zip(REFERENCE_CFG, chans):
        for i in range(n):
            p = t * c_in
            total += c_in * p + 2 * p + 9 * p + 2 * p + p * c_out + 2 * c_out
            if (s if i == 0 else 1) == 1 and c_in != c_out:
                total += c_in * c_out + 2 * c_out
            c_in = c_out
    return total + c_in * last + 2 * last + last * num_classes + num_classes


def _count(model):
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _abstract(**kw):
    return nnx.eval_shape(lambda: mobilenet.mobilenet_v2(rngs=nnx.Rngs(0), **kw))


def test_reference_parameter_count():
    assert _mbv2_params(10) == 2_296_922  # the "2.3M" MobileNetV2 student of ARD/RSLAD/CIARD
    assert _count(_abstract(num_classes=10)) == 2_296_922
    assert _count(_abstract(num_classes=100)) == _mbv2_params(100) == 2_296_922 + 90 * 1281
    model = _abstract(num_classes=10)
    assert len(model.blocks) == 17
    assert sum(b.proj is not None for b in model.blocks) == 4  # 32->16, 16->24, 64->96, 160->320


def test_scale_channels_by_hand():
    sc = mobilenet.scale_channels
    assert [sc(c, 1.0) for c in (32, 16, 24, 320, 1280)] == [32, 16, 24, 320, 1280]
    assert sc(24, 0.5) == 16  # 12 rounds half up to 16
    assert sc(16, 0.25) == 8  # 4 -> never below the divisor
    assert sc(96, 0.35) == 32  # 33.6 -> 32, within 90%
    assert sc(11, 1.0) == 16  # 11 -> 8 would lose more than 10%: bumped to 16
    assert sc(1280, 1.5) == 1920


def test_width_multiplier_parameter_count():
    chans = [8, 16, 16, 32, 48, 80, 160]  # 16, 24, 32, 64, 96, 160, 320 at width 0.5
    assert _count(_abstract(num_classes=10, width=0.5)) == _mbv2_params(10, chans, stem=16)
    wide = _abstract(num_classes=10, width=1.5)
    assert wide.feature_dim == 1920  # the last conv is widened only for width > 1


def test_cifar_shapes_without_running_it():
    graphdef, state = nnx.split(_abstract(num_classes=10))
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    fmap = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).feature_map(x), state, x)
    logits = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x)
    assert fmap.shape == (2, 4, 4, 1280)  # strides 1,1,1,2,2,1,2,1: avg_pool2d(4) is global
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


def _dwconv_np(x, kernel, stride, pad=1):
    """float64 depthwise convolution (one 3x3 filter per channel, kernel (3, 3, 1, C))."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kernel = np.asarray(kernel, np.float64)
    h, w = (x.shape[1] - 3) // stride + 1, (x.shape[2] - 3) // stride + 1
    out = np.zeros((x.shape[0], h, w, x.shape[3]))
    for a in range(3):
        for b in range(3):
            out += (
                x[:, a : a + stride * h : stride, b : b + stride * w : stride, :] * kernel[a, b, 0]
            )
    return out


def _block_np(block, x, train):
    p = lambda v: np.asarray(v[...], np.float64)  # noqa: E731

    def bn(h, layer):
        stats = () if train else (p(layer.mean), p(layer.var))
        return _bn_np(h, p(layer.scale), p(layer.bias), *stats)

    h = np.maximum(bn(_conv_np(x, p(block.conv1.kernel), 1, 0), block.bn1), 0)
    h = np.maximum(bn(_dwconv_np(h, p(block.conv2.kernel), block.stride), block.bn2), 0)
    h = bn(_conv_np(h, p(block.conv3.kernel), 1, 0), block.bn3)
    if block.stride == 2:
        return h
    if block.proj is None:
        return h + np.asarray(x, np.float64)
    return h + bn(_conv_np(x, p(block.proj.kernel), 1, 0), block.proj_bn)


@pytest.mark.parametrize(
    "c_in,c_out,t,stride,kind",
    [(8, 8, 6, 1, "identity"), (4, 8, 1, 1, "projection"), (8, 8, 6, 2, "no residual")],
)
def test_block_forward_matches_numpy_in_both_modes(c_in, c_out, t, stride, kind):
    block = _numpy_model(
        lambda: mobilenet.InvertedResidual(c_in, c_out, t, stride, rngs=nnx.Rngs(0))
    )
    assert block.conv2.kernel.shape == (3, 3, 1, t * c_in)  # depthwise
    assert (block.proj is not None) == (kind == "projection")
    x = jax.random.normal(jax.random.key(1), (3, 6, 6, c_in))
    for train in (True, False):
        block.train() if train else block.eval()
        out = _call(block, x)
        assert out.shape == (3, 6 // stride, 6 // stride, c_out)
        np.testing.assert_allclose(out, _block_np(block, x, train), rtol=1e-4, atol=1e-4)


def test_init_is_pytorch_default():
    key = jax.random.key(0, impl="rbg")  # cheap to compile; the init is what is checked
    block = mobilenet.InvertedResidual(16, 24, 6, 1, rngs=nnx.Rngs(key))
    for conv, fan_in in ((block.conv1, 16), (block.conv2, 9), (block.conv3, 96)):
        k = np.asarray(conv.kernel[...])
        bound = 1 / np.sqrt(fan_in)  # U(-bound, bound): max near bound, std bound / sqrt(3)
        assert np.abs(k).max() <= bound and np.abs(k).max() > 0.95 * bound
        np.testing.assert_allclose(k.std(), bound / np.sqrt(3), rtol=0.1)
    assert block.bn1.momentum == 0.9 and block.bn1.epsilon == 1e-5  # PyTorch's 0.1 / 1e-5


@pytest.fixture(scope="module")
def small():
    return _numpy_model(lambda: mobilenet.mobilenet_v2(5, 0.25, rngs=nnx.Rngs(0)))


def test_train_and_eval_batch_norm(small):
    model = nnx.clone(small)
    x = jax.random.uniform(jax.random.key(2), (6, 8, 8, 3))
    x2 = x.at[2:].set(jax.random.uniform(jax.random.key(3), (4, 8, 8, 3)))  # same first two
    model.eval()
    e1, e2 = _call(model, x), _call(model, x)
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_allclose(_call(model, x2)[:2], e1[:2], rtol=1e-5, atol=1e-5)  # independent
    mean_before = np.asarray(model.bn_last.mean[...])
    model.train()
    t = _call(model, x)
    assert not np.allclose(t, e1, atol=1e-3)  # batch statistics, not the running ones
    assert not np.allclose(_call(model, x2)[:2], t[:2], atol=1e-3)  # depends on the batch
    assert not np.allclose(model.bn_last.mean[...], mean_before)  # running statistics moved
    assert small.bn_last.use_running_average is False  # clone only


@pytest.mark.slow
def test_gradients_reach_every_parameter_under_jit(small):
    graphdef, params, rest = nnx.split(small, nnx.Param, ...)
    x = jax.random.uniform(jax.random.key(3), (4, 8, 8, 3))
    y = jnp.array([0, 1, 2, 3])

    @jax.jit
    def grad_fn(params, rest, x):
        def loss(p):
            logits = nnx.merge(graphdef, p, rest, copy=True)(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        return jax.value_and_grad(loss)(params)

    value, grads = grad_fn(params, rest, x)
    assert np.isfinite(value)
    n_proj = sum(b.proj is not None for b in small.blocks)
    assert n_proj == 2  # at width 0.25 only 16->24 and 40->80 change width at stride 1
    leaves = jax.tree.leaves_with_path(grads)
    assert len(leaves) == 3 + 9 * 17 + 3 * n_proj + 3 + 2  # stem, blocks, projections, last, head
    for path, g in leaves:
        assert np.abs(np.asarray(g)).max() > 0, f"no gradient reaches {jax.tree_util.keystr(path)}"


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(width=0.0), "width must be a positive"),
        (dict(width="1"), "width must be a positive"),
        (dict(std=(1.0, -1.0, 1.0)), "std"),
        (dict(mean=(0.1, 0.2)), "mean must have 1 or 3"),
    ],
)
def test_invalid_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        _abstract(num_classes=10, **kw)
