"""DynamicTanh and the SASRec causal encoder: known answers and masking properties.

Speed: models are built abstractly and filled with NumPy weights (no random-init compiles),
inputs are prepared in NumPy, and each model structure/shape is compiled once by ``_apply``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.core.sharding import LOGICAL_AXES
from jaxpapers.nn.transformer import CausalTransformer, DyT, attention, make_norm

DIM, HEADS, MAX_LEN = 8, 2, 6


def _build(factory, seed=0):
    """Builds a module abstractly and fills every float variable with N(0, 0.5^2) NumPy values.

    The properties tested here hold for any weights; real initialisation would compile one
    random kernel per parameter shape (seconds on CPU), this compiles nothing.
    """
    graphdef, state = nnx.split(nnx.eval_shape(factory))
    rng = np.random.default_rng(seed)

    def fill(a):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):  # dropout streams
            return jax.random.key(seed)
        if not jnp.issubdtype(a.dtype, jnp.floating):
            return np.zeros(a.shape, a.dtype)
        return np.asarray(0.5 * rng.standard_normal(a.shape), a.dtype)

    return nnx.merge(graphdef, jax.tree.map(fill, state))


def _factory(norm="layernorm", dropout=0.0, num_layers=1):
    return lambda: CausalTransformer(
        DIM,
        num_layers=num_layers,
        num_heads=HEADS,
        max_len=MAX_LEN,
        dropout=dropout,
        norm=norm,
        rngs=nnx.Rngs(0),
    )


def _model(norm="layernorm", dropout=0.0, seed=0):
    return _build(_factory(norm, dropout), seed)


@functools.partial(jax.jit, static_argnums=0, static_argnames="deterministic")
def _apply(graphdef, state, x, mask, deterministic=True):
    """One compiled forward per (model structure, shape): tests stay fast."""
    return nnx.merge(graphdef, state)(x, mask, deterministic=deterministic)


def _run(model, x, mask, **kw):
    return np.asarray(_apply(*nnx.split(model), x, mask, **kw))


def _x(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_dyt_matches_formula():
    norm = DyT(5, alpha_init=0.7)
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal(5), rng.standard_normal(5)
    norm.weight[...] = w.astype(np.float32)
    norm.bias[...] = b.astype(np.float32)
    x = 3 * rng.standard_normal((2, 3, 5))
    want = w * np.tanh(0.7 * x) + b
    np.testing.assert_allclose(norm(x.astype(np.float32)), want, rtol=1e-5, atol=1e-6)
    fresh = DyT(4)
    assert float(fresh.alpha[...]) == 0.5 and fresh.alpha[...].shape == ()
    np.testing.assert_array_equal(fresh.weight[...], np.ones(4))
    np.testing.assert_array_equal(fresh.bias[...], np.zeros(4))
    assert fresh.weight.get_metadata()[LOGICAL_AXES] == ("embed",)


def test_attention_matches_numpy_and_fully_masked_rows_are_zero():
    q, k, v = _x((1, 3, 2, 4), 1), _x((1, 5, 2, 4), 2), _x((1, 5, 2, 4), 3)
    mask = np.array([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 1]], bool)
    out = np.asarray(jax.jit(attention)(q, k, v, mask[None, None]))
    qn, kn, vn = (a[0].astype(np.float64) for a in (q, k, v))
    for i in range(3):
        for h in range(2):
            if not mask[i].any():
                np.testing.assert_array_equal(out[0, i, h], 0.0)
                continue
            s = kn[mask[i], h] @ qn[i, h] / 2.0
            p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
            np.testing.assert_allclose(out[0, i, h], p @ vn[mask[i], h], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ["layernorm", "dyt"])
def test_causal_and_left_padding_invisible(norm):
    model = _model(norm)
    t, pad = 3, 2
    x = _x((1, MAX_LEN, DIM))
    changed = x.copy()
    changed[:, t + 1 :] = _x((1, MAX_LEN - t - 1, DIM), 7)  # the future of position t
    padded, padded_other = x.copy(), x.copy()
    padded[:, :pad] = 100 * _x((1, pad, DIM), 5)  # whatever sits at padded positions
    padded_other[:, :pad] = _x((1, pad, DIM), 6)
    full, left, none = [True] * MAX_LEN, [False] * pad + [True] * (MAX_LEN - pad), [False] * 6
    out = _run(
        model,
        np.concatenate([x, changed, padded, padded_other, padded]),
        np.array([full, full, left, left, none]),
    )
    # causality: positions <= t ignore later inputs, later positions do see them
    np.testing.assert_allclose(out[0, : t + 1], out[1, : t + 1], rtol=1e-5, atol=1e-6)
    assert np.abs(out[0, t + 1 :] - out[1, t + 1 :]).max() > 1e-3
    # left padding: zero outputs, padded content irrelevant, fully padded row finite zeros
    np.testing.assert_array_equal(out[2, :pad], 0.0)
    np.testing.assert_allclose(out[2], out[3], rtol=1e-6, atol=1e-6)
    assert np.abs(out[2, pad:] - out[0, pad:]).max() > 1e-3  # the padded items did count
    np.testing.assert_array_equal(out[4], 0.0)
    if norm == "layernorm":  # one more compile: the valid outputs equal the unpadded tail's
        tail = _run(model, x[:, pad:], np.ones((1, MAX_LEN - pad), bool))
        np.testing.assert_allclose(out[2, pad:], tail[0], rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # ~3 s of compiling (forward + backward with dropout); kept out of CI
def test_fully_padded_gradients_finite_and_dropout_only_in_training():
    model = _model(dropout=0.5)
    x = _x((2, MAX_LEN, DIM))
    mask = np.array([[False] * MAX_LEN, [False] + [True] * (MAX_LEN - 1)])

    @jax.jit
    def loss_and_grads(state, x):
        def loss(m):
            return jnp.sum(m(x, mask, deterministic=False) ** 2)

        m = nnx.merge(graphdef, state)
        return nnx.value_and_grad(loss)(m), m(x, mask, deterministic=False), m(x, mask)

    graphdef, state = nnx.split(model)
    (loss, grads), train, evaluation = loss_and_grads(state, x)
    assert np.isfinite(float(loss))
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
    np.testing.assert_array_equal(train[0], 0.0)
    np.testing.assert_array_equal(train[1, 0], 0.0)
    assert not np.allclose(train[1, 1:], evaluation[1, 1:])
    np.testing.assert_allclose(evaluation, _run(model, x, mask), rtol=1e-6)


def test_norm_choice_and_logical_axes():
    dyt = nnx.eval_shape(_factory("dyt", num_layers=2))
    kinds = [type(node) for _, node in nnx.iter_graph(dyt)]
    assert nnx.LayerNorm not in kinds and kinds.count(DyT) == 2 * 2 + 1
    assert all("scale" not in path for path, _ in nnx.to_flat_state(nnx.state(dyt)))
    ln = _model("layernorm")
    assert [type(n) for _, n in nnx.iter_graph(ln)].count(nnx.LayerNorm) == 3
    assert ln.pos_embedding.get_metadata()[LOGICAL_AXES] == (None, "embed")
    assert ln.attentions[0].query.kernel.get_metadata()[LOGICAL_AXES] == ("embed", "heads")
    assert ln.ffns[0].fc1.kernel.get_metadata()[LOGICAL_AXES] == ("embed", "mlp")
    with pytest.raises(ValueError, match="layernorm, dyt"):
        nnx.eval_shape(_factory("rmsnorm"))
    with pytest.raises(ValueError, match="layernorm, dyt"):
        make_norm("batchnorm", 4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="exceeds max_len"):
        ln(np.zeros((1, MAX_LEN + 1, DIM)), np.ones((1, MAX_LEN + 1), bool))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        nnx.eval_shape(
            lambda: CausalTransformer(6, num_layers=1, num_heads=4, max_len=3, rngs=nnx.Rngs(0))
        )
