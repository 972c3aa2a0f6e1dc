"""Attentive MoE gate, Q-Former and LoRA adapters: known answers and invariances.

Speed: models are built abstractly and filled with NumPy weights (no random-init compiles),
inputs are prepared in NumPy, and each module structure/shape is compiled once by ``_apply``.
LoRA adapters are real (``add_lora`` initialises them; rank 2 and shared input widths keep it
to a few small compiles).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.core.sharding import LOGICAL_AXES
from jaxpapers.nn.lora import LORA, LoRALinear, add_lora, merge_lora
from jaxpapers.nn.moe import AttentiveGate, Expert, mixture
from jaxpapers.nn.qformer import QFormer

CTX, DIM, QUERIES, BATCH = 6, 8, 3, 4  # the tiny Q-Former


def _rngs(seed=0):
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))  # fast init compile on CPU


def _build(factory, seed=0):
    """Builds a module abstractly and fills every float variable with N(0, 0.5^2) NumPy values.

    The properties tested here hold for any weights; real initialisation would compile one
    random kernel per parameter shape (seconds on CPU), this compiles nothing.
    """
    graphdef, state = nnx.split(nnx.eval_shape(factory))
    rng = np.random.default_rng(seed)

    def fill(a):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.key(seed)
        if not jnp.issubdtype(a.dtype, jnp.floating):
            return np.zeros(a.shape, a.dtype)
        return np.asarray(0.5 * rng.standard_normal(a.shape), a.dtype)

    return nnx.merge(graphdef, jax.tree.map(fill, state))


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, *args):
    """One compiled call per (module structure, shapes), shared by all tests."""
    return nnx.merge(graphdef, state)(*args)


def _run(module, *args):
    return jax.tree.map(np.asarray, _apply(*nnx.split(module), *args))


def _x(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _np(a):
    return np.asarray(a, np.float64)


def _qformer(seed=0):
    return _build(
        lambda: QFormer(
            num_queries=QUERIES,
            dim=DIM,
            context_dim=CTX,
            num_layers=1,
            num_heads=2,
            ffn_dim=DIM,  # LoRA input widths DIM and CTX only: two adapter-init compiles
            rngs=nnx.Rngs(0),
        ),
        seed,
    )


# --------------------------------------------------------------------------- MoE


class _GateBoth(nnx.Module):
    """Unmasked and masked gate weights from one compiled call."""

    def __init__(self, gate):
        self.gate = gate

    def __call__(self, query, experts, mask):
        return self.gate(query, experts), self.gate(query, experts, mask)


def test_attentive_gate_matches_numpy_and_sums_to_one():
    gate = _build(lambda: AttentiveGate(5, 6, key_dim=4, rngs=nnx.Rngs(0)))
    query, experts = _x((2, 3, 5), 1), _x((2, 3, 4, 6), 2)  # [B, L, Dq], [B, L, K, De]
    mask = np.array([[[True, False, True, True]] * 3, [[False] * 4] * 3])
    w, wm = _run(_GateBoth(gate), query, experts, mask)
    assert w.shape == (2, 3, 4)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    q = _np(query) @ _np(gate.query.kernel[...])
    k = _np(experts) @ _np(gate.key.kernel[...])
    s = np.einsum("bld,blkd->blk", q, k) / 2.0  # sqrt(key_dim)
    want = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(w, want / want.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)
    # a masked expert gets weight 0, the others renormalise; nothing left -> zeros
    sub = want[0] * np.array([1, 0, 1, 1])
    np.testing.assert_allclose(wm[0], sub / sub.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(wm[1], 0.0)


def test_mixture_and_expert_match_numpy():
    w, e = _x((3, 4), 1), _x((3, 4, 5), 2)
    np.testing.assert_allclose(
        jax.jit(mixture)(w, e), np.einsum("bk,bkd->bd", _np(w), _np(e)), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="disagree"):
        mixture(w, e[:, :3])
    expert = _build(lambda: Expert(5, 3, hidden_dim=7, rngs=nnx.Rngs(0)))
    x = _x((2, 5), 3)
    h = _np(x) @ _np(expert.fc1.kernel[...]) + _np(expert.fc1.bias[...])
    gelu = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
    want = gelu @ _np(expert.fc2.kernel[...]) + _np(expert.fc2.bias[...])
    np.testing.assert_allclose(_run(expert, x), want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- Q-Former


def _context(t, seed=1):
    return _x((BATCH, t, CTX), seed), np.ones((BATCH, t), bool)


def test_qformer_output_shape_independent_of_context_length():
    model = _qformer()
    graphdef, state = nnx.split(model)
    for t in (1, 7, 30):  # shapes only: traced, not compiled
        out = jax.eval_shape(functools.partial(_apply, graphdef), state, *_context(t))
        assert out.shape == (BATCH, QUERIES, DIM)
    # numerically: 7 tokens of which only token 3 is visible == that one token alone
    ctx, mask = _context(7)
    only3 = np.zeros((BATCH, 7), bool)
    only3[:, 3] = True
    one = _run(model, ctx[:, 3:4], np.ones((BATCH, 1), bool))
    assert one.shape == (BATCH, QUERIES, DIM)
    np.testing.assert_allclose(_run(model, ctx, only3), one, rtol=1e-5, atol=1e-5)
    assert np.abs(one - _run(model, ctx, mask)).max() > 1e-3  # the other tokens matter
    with pytest.raises(ValueError, match="context must be"):
        model(_x((2, 7, CTX + 1)))


def test_qformer_masked_context_has_no_influence():
    model = _qformer()
    ctx, _ = _context(7)
    row = [True, True, False, True, False, False, True]
    mask = np.array([row, [False] * 7, row, row])
    changed = np.where(~mask[..., None], 50 * _x(ctx.shape, 2), ctx)
    changed[3, 0] = _x((CTX,), 3)  # row 3: a visible token changes
    out, out_changed = _run(model, ctx, mask), _run(model, changed, mask)
    np.testing.assert_allclose(out[:3], out_changed[:3], rtol=1e-5, atol=1e-6)
    assert np.abs(out[3] - out_changed[3]).max() > 1e-3
    assert np.isfinite(out).all()  # row 1 sees no context at all


# --------------------------------------------------------------------------- LoRA


def _param_arrays(module, filt):
    """``{path without 'base_module': array}`` of the variables matching ``filt``."""
    return {
        tuple(k for k in path if k != "base_module"): np.asarray(v)
        for path, v in nnx.to_flat_state(nnx.state(module, filt))
    }


def test_lora_wraps_every_qformer_linear_and_merges_into_kernels():
    model = _qformer()
    kernels = _param_arrays(model, nnx.Param)
    # 1 layer: self-attention q,k,v,out + cross-attention q,k,v,out + FFN fc1,fc2
    assert add_lora(model, 2, alpha=4.0, rngs=_rngs(1)) == 10
    assert isinstance(model.layers[0].cross_attention.value, LoRALinear)
    assert model.layers[0].ffn.fc1.scale == 2.0
    adapters = _param_arrays(model, LORA)
    assert len(adapters) == 20
    assert all(not b.any() for p, b in adapters.items() if p[-1] == "lora_b")  # B = 0
    axes = model.layers[0].ffn.fc1.base_module.kernel.get_metadata()[LOGICAL_AXES]
    assert model.layers[0].ffn.fc1.lora_a.get_metadata()[LOGICAL_AXES] == (axes[0], None)
    assert model.layers[0].ffn.fc1.lora_b.get_metadata()[LOGICAL_AXES] == (None, axes[1])
    assert add_lora(model, 2, rngs=_rngs(1)) == 0  # no stacking

    cross_value = model.layers[0].cross_attention.value
    cross_value.lora_b[...] = _x((2, DIM), 4)
    want = _np(cross_value.base_module.kernel[...]) + 2.0 * (
        _np(cross_value.lora_a[...]) @ _np(cross_value.lora_b[...])
    )
    assert merge_lora(model) == 10
    assert not nnx.state(model, LORA)
    assert type(model.layers[0].cross_attention.value) is nnx.Linear
    merged = _param_arrays(model, nnx.Param)
    assert merged.keys() == kernels.keys()
    np.testing.assert_allclose(
        model.layers[0].cross_attention.value.kernel[...], want, rtol=1e-5, atol=1e-6
    )
    for path, value in merged.items():  # B = 0 elsewhere: those kernels are unchanged
        if path[:3] != ("layers", 0, "cross_attention") or path[3] != "value":
            np.testing.assert_array_equal(value, kernels[path])


class _MLP(nnx.Module):
    def __init__(self, rngs):
        self.layers = nnx.List([nnx.Linear(CTX, DIM, rngs=rngs), nnx.Linear(DIM, 3, rngs=rngs)])

    def __call__(self, x):
        return self.layers[1](jax.nn.relu(self.layers[0](x)))


@nnx.jit
def _sgd_step(model, optimizer, x, target):
    def loss_fn(m):
        return jnp.mean((m(x) - target) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, LORA))(model)
    optimizer.update(model, grads)
    return loss


def test_lora_identical_at_init_only_adapters_train_and_merge_matches():
    model = _build(lambda: _MLP(nnx.Rngs(0)))
    x, target = _x((4, 5, CTX), 1), _x((4, 5, 3), 2)  # [B, T, in]: sequence inputs
    before = _run(model, x)
    base = _param_arrays(model, nnx.Param)
    assert add_lora(model, 2, alpha=2.0, rngs=_rngs(1)) == 2
    np.testing.assert_array_equal(_run(model, x), before)  # B = 0: identical at init

    opt = nnx.Optimizer(model, optax.sgd(0.1), wrt=LORA)
    start = _param_arrays(model, LORA)
    losses = [float(_sgd_step(model, opt, x, target)) for _ in range(3)]
    assert losses[-1] < losses[0]
    trained = _param_arrays(model, LORA)
    assert all(np.abs(trained[p] - start[p]).max() > 0 for p in start)  # A and B both moved
    frozen = _param_arrays(model, nnx.All(nnx.Param, nnx.Not(LORA)))
    assert frozen.keys() == base.keys()
    for path, value in frozen.items():  # every base weight bit-identical
        np.testing.assert_array_equal(value, base[path])

    adapted = _run(model, x)
    assert np.abs(adapted - before).max() > 1e-4
    assert merge_lora(model) == 2 and type(model.layers[0]) is nnx.Linear
    np.testing.assert_allclose(_run(model, x), adapted, rtol=1e-5, atol=1e-5)


def test_lora_scaling_selection_sharing_and_errors():
    base = _build(lambda: nnx.Linear(CTX, DIM, rngs=nnx.Rngs(0)))
    layer = LoRALinear(base, 2, alpha=8.0, rngs=_rngs(1))
    layer.lora_b[...] = _x((2, DIM), 3)
    x = _x((4, CTX), 4)
    delta = _np(x) @ _np(layer.lora_a[...]) @ _np(layer.lora_b[...])
    want = _np(x) @ _np(base.kernel[...]) + _np(base.bias[...]) + 4.0 * delta  # alpha/rank = 4
    np.testing.assert_allclose(_run(layer, x), want, rtol=1e-5, atol=1e-5)

    class Tied(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(DIM, DIM, rngs=rngs)
            self.b = self.a  # shared
            self.rest = nnx.List([nnx.Linear(DIM, DIM, rngs=rngs), nnx.Linear(DIM, 3, rngs=rngs)])

    tied = _build(lambda: Tied(nnx.Rngs(0)))
    assert add_lora(tied, 2, rngs=_rngs(1)) == 3
    assert tied.a is tied.b and isinstance(tied.a, LoRALinear)
    picked = _build(lambda: Tied(nnx.Rngs(0)))
    n = add_lora(picked, 2, rngs=_rngs(1), select=lambda path, lin: path[0] == "rest")
    assert n == 2 and type(picked.a) is nnx.Linear and isinstance(picked.rest[1], LoRALinear)

    with pytest.raises(ValueError, match="rank"):
        add_lora(tied, 0, rngs=_rngs(1))
    with pytest.raises(ValueError, match="single Linear"):
        add_lora(base, 2, rngs=_rngs(1))
