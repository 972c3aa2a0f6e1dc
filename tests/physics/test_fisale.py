"""Tests for Fisale (jaxpapers/physics/fisale.py) and Galerkin attention (jaxpapers/nn/galerkin.py).

One tiny two-scale model is built once per module and run once (jit) on a batch whose rows
are one sample and its per-domain permutations, so equivariance, assignment weights, grid
positions and shapes are all read from that single call. Known answers are float64 NumPy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.nn.galerkin import GalerkinAttention, galerkin_attention
from jaxpapers.physics import fisale as fs

IN = {"solid": 0, "fluid": 3, "interface": 1}
OUT = {"solid": 1, "fluid": 3, "interface": 2}
TINY = dict(
    dim=2,
    input_dims=IN,
    output_dims=OUT,
    grid_shapes=((3, 3), (2, 2)),
    hidden_dims=(8, 8),
    neighbors=(2, 1),
    num_heads=2,
    mlp_ratio=2,
    coupling_steps=1,
)
N = {"solid": 6, "fluid": 9, "interface": 5}
# The tiny graphs run in milliseconds; XLA's CPU optimisation passes dominate the test time.
FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}


def _inputs(seed: int, n: dict[str, int], batch: int = 1) -> list[np.ndarray]:
    """Random float32 inputs per domain (NumPy: a jax.random call compiles per shape)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, n[d], 2 + IN[d])).astype(np.float32) for d in fs.DOMAINS]


def _forward(model: fs.Fisale):
    """A jitted ``forward_with_aux`` that runs in float64 (float32 weights, float64 inputs).

    Float64 because the reference's architecture amplifies float32 rounding noise (LayerNorms
    over nearly constant vectors, e.g. over the 2 coordinates of the grid nodes): in float32
    the outputs of a permuted input agree only to ~1e-2 relative; in float64 to ~1e-14.
    """
    graph, state = nnx.split(model)
    fn = jax.jit(
        lambda st, s, f, i: nnx.merge(graph, st).forward_with_aux(s, f, i),
        compiler_options=FAST_COMPILE,
    )

    def run(*xs):
        with jax.enable_x64(True):
            return fn(state, *(jnp.asarray(x, jnp.float64) for x in xs))

    return run


@pytest.fixture(scope="module")
def tiny():
    """(model, jitted forward, inputs with rows [x, P_solid x, P_fluid x, P_interface x],
    the permutations, outputs, aux)."""
    model = fs.Fisale(**TINY, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
    fwd = _forward(model)
    base = [np.asarray(x, np.float64) for x in _inputs(1, N)]
    perms = [np.random.default_rng(i).permutation(N[d]) for i, d in enumerate(fs.DOMAINS)]
    rows = [base]
    for d in range(3):
        rows.append([x[:, perms[d]] if e == d else x for e, x in enumerate(base)])
    batch = [np.concatenate([r[e] for r in rows], axis=0) for e in range(3)]
    out, aux = fwd(*batch)
    return model, fwd, batch, perms, out, aux


# --------------------------------------------------------------------------- Galerkin attention


def _np_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_galerkin(q, k, v, softmax: bool) -> np.ndarray:
    """float64 loop over samples and heads: ``φ(q) (φ(k)ᵀ v) / N_queries``."""
    qf, kf = (_np_softmax(q, -1), _np_softmax(k, -1)) if softmax else (q, k)
    out = np.zeros(q.shape[:-1] + v.shape[-1:])
    for b in range(q.shape[0]):
        for h in range(q.shape[2]):
            out[b, :, h] = qf[b, :, h] @ (kf[b, :, h].T @ v[b, :, h]) / q.shape[1]
    return out


def test_galerkin_attention_known_answer():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 5, 3, 4))  # (B, Nq, H, C); keys have a different count
    k, v = rng.normal(size=(2, 7, 3, 4)), rng.normal(size=(2, 7, 3, 2))
    got = jax.jit(
        lambda *a: [galerkin_attention(*a, feature_map=m) for m in ("softmax", "identity")],
        compiler_options=FAST_COMPILE,
    )(*(jnp.asarray(a, jnp.float32) for a in (q, k, v)))
    for g, softmax in zip(got, (True, False)):
        np.testing.assert_allclose(np.asarray(g), _np_galerkin(q, k, v, softmax), atol=2e-6)
    with pytest.raises(ValueError, match="feature_map"):
        galerkin_attention(*(jnp.ones((2, 1, 2)),) * 3, feature_map="x")


def test_galerkin_module_heads_and_errors():
    """Head-major "(h c)" split, no bias on Q/K/V, output projection with bias."""
    attn = GalerkinAttention(6, 6, 6, 6, num_heads=3, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(1, 4, 6)), rng.normal(size=(1, 3, 6))
    got = jax.jit(lambda m, a, b: m(a, b, b), compiler_options=FAST_COMPILE)(
        attn, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    )
    w = {
        n: np.asarray(getattr(attn, n).kernel[...], np.float64)
        for n in ("W_q", "W_k", "W_v", "W_o")
    }
    heads = lambda a: a.reshape(*a.shape[:-1], 3, 2)  # noqa: E731
    mid = _np_galerkin(heads(x @ w["W_q"]), heads(y @ w["W_k"]), heads(y @ w["W_v"]), True)
    want = mid.reshape(1, 4, 6) @ w["W_o"] + np.asarray(attn.W_o.bias[...])
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    assert attn.W_q.bias is None and attn.W_o.bias is not None
    with pytest.raises(ValueError, match="multiple of num_heads"):
        GalerkinAttention(6, 6, 6, 6, num_heads=4, rngs=nnx.Rngs(0))


# --------------------------------------------------------------------------- grid, kNN, GAT


def test_lattice_order_and_extent():
    got = fs.lattice((2, 3))
    want = np.array([[-3.5, -3.5], [-3.5, 0.0], [-3.5, 3.5], [3.5, -3.5], [3.5, 0.0], [3.5, 3.5]])
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError):
        fs.lattice((0, 2))


def test_knn_graph_known_answer_and_ties():
    x = jnp.asarray(
        [[[0.0], [1.0], [3.0], [7.0], [7.5]], [[0.0], [1.0], [-1.0 + 1e-6], [5.0], [9.0]]]
    )
    exact, rounded = jax.jit(
        lambda a: (fs.knn_graph(a, 2, tie_tol=0.0), fs.knn_graph(a, 1)),
        compiler_options=FAST_COMPILE,
    )(x)
    np.testing.assert_array_equal(np.asarray(exact)[0], [[1, 2], [0, 2], [1, 0], [4, 2], [3, 2]])
    # Node 0 of the second set: nodes 1 and 2 are equally far up to rounding noise (node 2
    # nearer by 1e-6); with the default tolerance the tie goes to the lower index.
    assert np.asarray(exact)[1, 0, 0] == 2 and np.asarray(rounded)[1, 0, 0] == 1
    with pytest.raises(ValueError, match="k must be"):
        fs.knn_graph(x, 5)


def test_gat_conv_matches_edge_list_numpy():
    """PyG GATConv semantics on an explicit edge list with self loops, float64 NumPy."""
    m, heads, c = 5, 2, 3
    gat = fs.GATConv(4, c, heads, rngs=nnx.Rngs(3))
    x = np.random.default_rng(1).normal(size=(1, m, 4)).astype(np.float32)
    nbrs = np.array([[[1, 2], [0, 4], [3, 1], [2, 4], [0, 3]]], np.int32)
    got = np.asarray(
        jax.jit(lambda g, a, b: g(a, b), compiler_options=FAST_COMPILE)(
            gat, jnp.asarray(x), jnp.asarray(nbrs)
        )
    )
    w = np.asarray(gat.lin.kernel[...], np.float64)
    res = np.asarray(gat.res.kernel[...], np.float64)
    a_s, a_d = np.asarray(gat.att_src[...], np.float64), np.asarray(gat.att_dst[...], np.float64)
    hx = (x[0].astype(np.float64) @ w).reshape(m, heads, c)
    want = np.zeros((m, heads * c))
    for i in range(m):
        sources = [*nbrs[0, i], i]  # edges j -> i plus the self loop
        for h in range(heads):
            e = np.array([(hx[j, h] * a_s[h]).sum() + (hx[i, h] * a_d[h]).sum() for j in sources])
            e = np.where(e > 0, e, 0.2 * e)
            alpha = _np_softmax(e, 0)
            want[i, h * c : (h + 1) * c] = sum(a * hx[j, h] for a, j in zip(alpha, sources))
    want += x[0] @ res + np.asarray(gat.bias[...])
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- the model


def test_output_shapes_and_channels(tiny):
    _, _, batch, _, out, _ = tiny
    for d, x, y in zip(fs.DOMAINS, batch, out):
        assert y.shape == (4, x.shape[1], 2 + OUT[d]), d
        assert np.isfinite(np.asarray(y)).all()


def test_permutation_equivariance_per_domain(tiny):
    """Row 1+e permutes only domain e: that output is permuted alike, the others unchanged."""
    _, _, _, perms, out, aux = tiny
    for e in range(3):
        for d in range(3):
            ref = np.asarray(out[d][0])
            if d == e:
                ref = ref[perms[d]]
            scale = np.abs(ref).max()
            np.testing.assert_allclose(np.asarray(out[d][1 + e]), ref, rtol=0, atol=1e-10 * scale)
        for g, nb in enumerate(aux["neighbors"]):  # the latent kNN graph does not move
            np.testing.assert_array_equal(np.asarray(nb[1 + e]), np.asarray(nb[0]), err_msg=str(g))
    # The comparison can fail: a wrong permutation is far off.
    assert np.abs(np.asarray(out[1][2]) - np.asarray(out[1][0])).max() > 1e-2


def test_assignment_and_offset_weights_sum_to_one(tiny):
    _, _, batch, _, _, aux = tiny
    for g, m in enumerate((9, 4)):
        for d, x in zip(fs.DOMAINS, batch):
            pw = np.asarray(aux["projection_weights"][g][0][d])
            dw = np.asarray(aux["deprojection_weights"][g][0][d])
            ow = np.asarray(aux["offset_weights"][g][d])
            assert pw.shape == dw.shape == ow.shape == (4, x.shape[1], m)
            np.testing.assert_allclose(pw.sum(axis=1), 1.0, atol=1e-12)  # each node: over points
            np.testing.assert_allclose(ow.sum(axis=1), 1.0, atol=1e-12)
            np.testing.assert_allclose(dw.sum(axis=2), 1.0, atol=1e-12)  # each point: over nodes


def test_grid_positions_are_lattice_plus_weighted_offsets(tiny):
    """positions_m = g_m + Σ_domains Σ_n w_nm (u_n - g_m), recomputed in float64."""
    _, _, batch, _, _, aux = tiny
    for g, shape in enumerate(((3, 3), (2, 2))):
        grid = fs.lattice(shape).astype(np.float64)
        want = grid[None].repeat(4, axis=0)
        for d, x in zip(fs.DOMAINS, batch):
            w = np.asarray(aux["offset_weights"][g][d], np.float64)
            u = np.asarray(x[..., :2], np.float64)
            want += np.einsum("bnm,bnmd->bmd", w, u[:, :, None, :] - grid[None, None])
        np.testing.assert_allclose(np.asarray(aux["grid_positions"][g]), want, atol=1e-9)
        assert np.abs(want - grid).max() > 0.1  # the nodes really moved


def test_any_number_of_points_same_weights(tiny):
    """The fixture's weights on other point counts (traced: shapes only; the numerics of
    the same graph are covered by the fixture's run)."""
    model = tiny[0]
    graph, state = nnx.split(model)
    for n in ({"solid": 1, "fluid": 4, "interface": 2}, {"solid": 13, "fluid": 2, "interface": 8}):
        xs = _inputs(0, n, 3)
        out = jax.eval_shape(lambda st, *a: nnx.merge(graph, st)(*a), state, *xs)
        assert [o.shape for o in out] == [(3, n[d], 2 + OUT[d]) for d in fs.DOMAINS]


def _formula_params(dim, ins, outs, grids, hiddens, steps, heads, r, layers):
    """Parameter count written out from the reference's modules."""
    lin = lambda a, b, bias=True: a * b + (b if bias else 0)  # noqa: E731
    ln = lambda a: 2 * a  # noqa: E731
    s = sum(hiddens)
    total = 0
    for shape, h in zip(grids, hiddens):
        m = int(np.prod(shape))
        total += ln(dim) + lin(dim, h) + ln(m) + lin(m, m)  # ALEGrid fc, w
        total += sum(lin(dim + ins[d], r * h) + lin(r * h, h) for d in fs.DOMAINS)  # pre FFNs
        proj = h + ln(m) + lin(m, m) + 2 * (ln(h) + lin(h, h))  # placeholder, ww, wq, wk
        attn = 3 * ln(h) + 3 * lin(h, h, False) + lin(h, h)
        gat = lin(h, h, False) + 2 * h + lin(h, h, False) + h  # lin, att_src/dst, res, bias
        grid_update = ln(3 * h) + lin(3 * h, h) + 2 * (ln(h) + gat)
        deproj = ln(h) + lin(h, h)
        ffn_grid = ln(h) + lin(h, r * h) + lin(r * h, h)
        total += steps * (3 * proj + 3 * attn + grid_update + 3 * deproj + ffn_grid)
    total += steps * 3 * (ln(s) + lin(s, r * s) + lin(r * s, s))  # multiscale fusion
    w = max(hiddens) * r
    total += lin(s, w) + layers * (ln(w) + lin(w, w)) + lin(w, dim + max(outs.values()))
    return total


def test_param_count_matches_formula(tiny):
    assert fs.count_params(tiny[0]) == _formula_params(
        2, IN, OUT, ((3, 3), (2, 2)), (8, 8), 1, 2, 2, 2
    )
    # The structure-oscillation config (the reference's defaults), as in the module docstring.
    so = {"solid": 0, "fluid": 3, "interface": 1}
    assert _formula_params(2, so, so, ((16, 16), (8, 8)), (64, 64), 2, 8, 2, 2) == 1_538_125


def test_coupling_steps_configurable(tiny):
    """3 coupling steps vs the fixture's 1: blocks and fusion FFNs per step, and it runs
    (traced abstractly: the tiny fixture already covers the numerics)."""
    one = tiny[0]
    three = fs.Fisale(**{**TINY, "coupling_steps": 3}, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
    assert [len(b) for b in one.ale_blocks] == [1, 1]
    assert [len(b) for b in three.ale_blocks] == [3, 3]
    assert len(three.ffn_solid) == len(three.ffn_fluid) == len(three.ffn_interface) == 3
    per_step = _formula_params(2, IN, OUT, ((3, 3), (2, 2)), (8, 8), 1, 2, 2, 2)
    fixed = _formula_params(2, IN, OUT, ((3, 3), (2, 2)), (8, 8), 0, 2, 2, 2)
    assert fs.count_params(three) - fs.count_params(one) == 2 * (per_step - fixed)
    graph, state = nnx.split(three)
    out = jax.eval_shape(lambda st, *xs: nnx.merge(graph, st)(*xs), state, *_inputs(0, N, 2))
    assert [o.shape for o in out] == [(2, N[d], 2 + OUT[d]) for d in fs.DOMAINS]


def test_config_errors():
    with pytest.raises(ValueError, match="dim=3"):
        fs.Fisale(**{**TINY, "dim": 3}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="input_dims"):
        fs.Fisale(**{**TINY, "input_dims": {"solid": 0, "fluid": 3}}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="one entry per scale"):
        fs.Fisale(**{**TINY, "neighbors": (2,)}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="neighbors_num"):
        fs.Fisale(**{**TINY, "neighbors": (2, 4)}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="coupling_steps"):
        fs.Fisale(**{**TINY, "coupling_steps": 0}, rngs=nnx.Rngs(0))


def test_input_shape_errors(tiny):
    model = tiny[0]
    s, f, i = _inputs(0, N)
    with pytest.raises(ValueError, match="fluid must have shape"):
        model(s, f[..., :4], i)
    with pytest.raises(ValueError, match="same batch"):
        model(s, jnp.concatenate([f, f]), i)


# --------------------------------------------------------------------------- losses


def test_relative_l2_known_values():
    true = jnp.asarray([[[3.0, 0.0], [0.0, 4.0]], [[1.0, 0.0], [0.0, 0.0]]])  # norms 5 and 1
    pred = true + jnp.asarray([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [0.0, 0.0]]])  # err 1, 2
    np.testing.assert_allclose(np.asarray(fs.relative_l2(pred, true, reduction="none")), [0.2, 2.0])
    np.testing.assert_allclose(float(fs.relative_l2(pred, true)), 1.1, rtol=1e-6)


def test_relative_l1_per_channel_known_values():
    true = jnp.asarray([[[1.0, -2.0], [3.0, 2.0]]])  # Σ|y| per channel: 4 and 4
    pred = jnp.asarray([[[2.0, -2.0], [3.0, 0.0]]])  # Σ|err| per channel: 1 and 2
    np.testing.assert_allclose(
        np.asarray(fs.relative_l1_per_channel(pred, true, reduction="none")), [0.375]
    )
    np.testing.assert_allclose(float(fs.relative_l1_per_channel(pred, true)), 0.375)
    loss, metrics = fs.fisale_loss((pred, pred, true), (true, true, true))
    np.testing.assert_allclose(float(metrics["rel_l1"]), 0.25, rtol=1e-6)
    np.testing.assert_allclose(float(loss), 2 * float(fs.relative_l2(pred, true)) / 3, rtol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        fs.relative_l2(pred, true[:, :1])


@pytest.mark.slow
def test_few_steps_reduce_loss_on_toy_mapping():
    """Adam on a fixed toy mapping (next state = a smooth function of the current one)."""
    model = fs.Fisale(**TINY, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
    xs = _inputs(5, N, batch=4)
    ys = [
        jnp.concatenate([jnp.sin(x[..., :2]), jnp.tanh(x[..., :1]) * jnp.ones((1, 1, OUT[d]))], -1)
        for d, x in zip(fs.DOMAINS, xs)
    ]
    graph, state = nnx.split(model)
    opt = optax.adam(3e-3)
    opt_state = opt.init(state)

    def loss_fn(st):
        return fs.fisale_loss(nnx.merge(graph, st)(*xs), ys)[0]

    @jax.jit(compiler_options=FAST_COMPILE)
    def step(st, o):
        loss, grads = jax.value_and_grad(loss_fn)(st)
        updates, o = opt.update(grads, o, st)
        return optax.apply_updates(st, updates), o, loss

    losses = []
    for _ in range(30):
        state, opt_state, loss = step(state, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses
