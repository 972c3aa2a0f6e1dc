"""Transolver-style slicing: known answers against float64 NumPy, permutation properties."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.nn import slicing

# Compile-time, not run-time, dominates these tiny graphs: skip LLVM's backend optimisations.
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def np_init(make, seed: int = 0):
    """Builds a module without compiling its initialisers: abstract shapes, NumPy values.

    Random init compiles one XLA program per shape on CPU (seconds for a block); the
    properties tested here hold for any weights, so generic NumPy normals are used
    (temperatures uniform in [0.3, 1)).
    """
    graphdef, state = nnx.split(nnx.eval_shape(make))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if "temperature" in jax.tree_util.keystr(path):
            return jnp.asarray(rng.uniform(0.3, 1.0, leaf.shape), leaf.dtype)
        return jnp.asarray(rng.normal(0.0, 0.3, leaf.shape), leaf.dtype)

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _linear(layer: nnx.Linear, x: np.ndarray) -> np.ndarray:
    y = x @ np.asarray(layer.kernel[...], np.float64)
    return y if layer.bias is None else y + np.asarray(layer.bias[...], np.float64)


def test_slice_tokens_and_deslice_match_float64_numpy():
    rng = np.random.default_rng(0)
    w = _softmax(rng.normal(size=(2, 7, 3)))
    f = rng.normal(size=(2, 7, 5))
    want = np.einsum("bng,bnc->bgc", w, f) / (w.sum(1)[..., None] + 1e-5)

    @fast_jit
    def run(w, f):
        tokens = slicing.slice_tokens(w, f)
        return tokens, slicing.deslice(w, tokens)

    got, back = run(jnp.asarray(w, jnp.float32), jnp.asarray(f, jnp.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(back, np.einsum("bng,bgc->bnc", w, want), rtol=1e-5, atol=1e-6)


def test_slice_weights_softmax_temperature_and_clip():
    logits = jnp.asarray([[[1.0, -2.0, 0.5]]])
    tau = jnp.asarray([0.5, 2.0, 0.001])
    w = fast_jit(lambda a, t: slicing.slice_weights(a, t, clip=(0.01, 5.0)))(logits, tau)
    want = _softmax(np.asarray([[[1.0 / 0.5, -2.0 / 2.0, 0.5 / 0.01]]]))
    np.testing.assert_allclose(w, want, rtol=1e-5)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="slices"):
        slicing.deslice(w, jnp.ones((1, 4, 2)))
    with pytest.raises(ValueError, match="agree"):
        slicing.slice_tokens(w, jnp.ones((1, 2, 2)))


def test_slice_block_identical_points_and_single_slice():
    block = np_init(lambda: slicing.SliceBlock(8, 4, rngs=nnx.Rngs(0)))
    single = np_init(lambda: slicing.SliceBlock(8, 1, rngs=nnx.Rngs(0)), seed=1)
    rng = np.random.default_rng(2)
    point = jnp.asarray(rng.normal(size=(1, 1, 8)), jnp.float32)
    x = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)

    @fast_jit
    def run(point, x):
        return (
            block(jnp.repeat(point, 6, axis=1)),
            block.in_project_fx(point),
            single(x),
            single.in_project_fx(x),
            slicing.deslice(*single(x)[::-1]),
        )

    (tokens, w), fx, (tokens1, w1), fx1, back1 = run(point, x)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w, np.repeat(w[:, :1], 6, axis=1), rtol=1e-6)
    # Every slice token is the (one) projected feature, up to the 1e-5 in the denominator.
    np.testing.assert_allclose(tokens, np.repeat(fx, 4, axis=1), rtol=1e-3, atol=1e-6)
    # One slice: all weights 1, the token is the mean feature, de-slicing hands it to all.
    np.testing.assert_array_equal(w1, 1.0)
    mean = np.asarray(fx1).mean(axis=1, keepdims=True) * 5 / (5 + 1e-5)
    np.testing.assert_allclose(tokens1, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(back1, np.repeat(tokens1, 5, axis=1), rtol=1e-6)


def test_slice_and_deslice_blocks_permutation():
    block = np_init(lambda: slicing.SliceBlock(8, 4, rngs=nnx.Rngs(0)))
    de = np_init(lambda: slicing.DesliceBlock(8, 2, rngs=nnx.Rngs(0)), seed=1)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 9, 8)), jnp.float32)
    perm = np.random.default_rng(0).permutation(9)

    @fast_jit
    def run(x):
        tokens, w = block(x)
        return tokens, w, de(tokens, w, x)

    tokens, w, out = run(x)
    tokens_p, w_p, out_p = run(x[:, perm])
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(tokens_p, tokens, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w_p, w[:, perm], rtol=1e-6)
    np.testing.assert_allclose(out_p, out[:, perm], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="expects 8 features"):
        block(jnp.ones((1, 3, 5)))


def test_physics_attention_matches_numpy_and_is_equivariant():
    attn = np_init(lambda: slicing.PhysicsAttention(8, num_heads=2, slice_num=3, rngs=nnx.Rngs(0)))
    x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 6, 8)), jnp.float32)
    perm = np.random.default_rng(1).permutation(6)
    run = fast_jit(lambda x: attn(x, return_weights=True))
    out, w = run(x)
    out_p, _ = run(x[:, perm])
    assert w.shape == (2, 2, 6, 3)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out_p, out[:, perm], rtol=1e-5, atol=1e-6)

    xn = np.asarray(x, np.float64)
    tau = np.asarray(attn.temperature[...], np.float64)  # (heads, 1, 1)
    heads = lambda a: a.reshape(2, 6, 2, 4).transpose(0, 2, 1, 3)  # noqa: E731
    fx, xm = heads(_linear(attn.in_project_fx, xn)), heads(_linear(attn.in_project_x, xn))
    wn = _softmax(_linear(attn.in_project_slice, xm) / tau)
    tok = np.einsum("bhng,bhnc->bhgc", wn, fx) / (wn.sum(2)[..., None] + 1e-5)
    q, k, v = (_linear(p, tok) for p in (attn.to_q, attn.to_k, attn.to_v))
    a = _softmax(q @ k.transpose(0, 1, 3, 2) / 2.0) @ v  # scale dim_head**-0.5 = 1/2
    y = np.einsum("bhng,bhgc->bnhc", wn, a).reshape(2, 6, 8)
    np.testing.assert_allclose(w, wn, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out, _linear(attn.to_out, y), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        slicing.PhysicsAttention(6, num_heads=4, rngs=nnx.Rngs(0))


def test_masked_slicing_ignores_padded_points():
    """Padding (garbage features, even NaN, mask 0) changes nothing at the real points."""
    block = np_init(lambda: slicing.SliceBlock(8, 4, rngs=nnx.Rngs(0)))
    attn = np_init(lambda: slicing.PhysicsAttention(8, num_heads=2, slice_num=3, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 5, 8))
    # Row 0: padding after the points; row 1: padding interleaved (the mask says which is which).
    real = np.array([[1, 1, 1, 1, 1, 0, 0, 0], [0, 1, 1, 0, 1, 1, 0, 1]], np.float32)
    padded = rng.normal(0.0, 50.0, size=(2, 8, 8))
    for row in range(2):
        padded[row, real[row] > 0] = x[0]
    padded = jnp.asarray(padded, jnp.float32)
    w = _softmax(rng.normal(size=(1, 5, 3)))
    f = rng.normal(size=(1, 5, 2))
    w_pad, f_pad = np.full((1, 8, 3), 0.7), np.full((1, 8, 2), np.nan)
    w_pad[0, real[1] > 0], f_pad[0, real[1] > 0] = w[0], f[0]

    @fast_jit
    def run(x, padded, w, f, w_pad, f_pad, real):
        return (
            block(x),
            block(padded, real),
            attn(x, return_weights=True),
            attn(padded, mask=real, return_weights=True),
            slicing.slice_tokens(w, f),
            slicing.slice_tokens(w_pad, f_pad, mask=real[1:]),
        )

    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    (tok, w_b), (tok_p, w_bp), (out, w_a), (out_p, w_ap), t, t_p = run(
        f32(x), padded, f32(w), f32(f), f32(w_pad), f32(f_pad), real
    )
    for row in range(2):
        keep = real[row] > 0
        np.testing.assert_allclose(tok_p[row], tok[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w_bp[row, keep], w_b[0], rtol=1e-6)
        np.testing.assert_array_equal(w_bp[row, ~keep], 0.0)  # padded rows: zero weight
        np.testing.assert_allclose(out_p[row, keep], out[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(w_ap[row][:, keep], w_a[0], rtol=1e-6)
        np.testing.assert_array_equal(w_ap[row][:, ~keep], 0.0)
    np.testing.assert_allclose(t_p, t, rtol=1e-6, atol=1e-7)  # NaN features in the padding
    assert np.isfinite(t_p).all()
    with pytest.raises(ValueError, match="broadcast"):
        slicing.slice_tokens(w_pad, f_pad, mask=np.ones((1, 7)))
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        attn(padded, mask=real[:, :5])
