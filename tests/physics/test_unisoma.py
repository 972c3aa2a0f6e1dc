"""Unisoma and the implicit Transolver baseline: symmetries, weights, shapes, known answers."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.physics import implicit, unisoma

LOAD_DIM, RIGID_DIM, IN_DIM, OUT_DIM, EMB, SLICES = 4, 2, 2, 3, 8, 4
PAIRS = ((0, 1), (0, 2), (1, 2))  # deformables 0, 1 then rigid 2


# Compile-time, not run-time, dominates these tiny graphs: skip LLVM's backend optimisations.
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def np_init(make, seed: int = 0):
    """Builds a module without compiling its initialisers: abstract shapes, NumPy values.

    Random init compiles one XLA program per shape on CPU (seconds for Unisoma); the
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


def _model(
    num_processors: int = 1,
    *,
    num_loads: int = 2,
    num_deformables: int = 2,
    contact_pairs=PAIRS,
    mlp_ratio: int = 2,
) -> unisoma.Unisoma:
    return unisoma.Unisoma(
        load_dim=LOAD_DIM,
        rigid_dim=RIGID_DIM,
        deformable_in_dim=IN_DIM,
        deformable_out_dim=OUT_DIM,
        num_loads=num_loads,
        num_rigids=1,
        num_deformables=num_deformables,
        contact_pairs=contact_pairs,
        emb_dim=EMB,
        slice_num=SLICES,
        num_processors=num_processors,
        num_heads=2,
        mlp_ratio=mlp_ratio,
        rngs=nnx.Rngs(0),
    )


def _scene(rng, batch, loads, rigids, deformables):
    def make(n, d):
        return jnp.asarray(rng.normal(size=(batch, n, d)), jnp.float32)

    return (
        [make(n, LOAD_DIM) for n in loads],
        [make(n, RIGID_DIM) for n in rigids],
        [make(n, IN_DIM) for n in deformables],
    )


@pytest.fixture(scope="module")
def probe():
    """One jitted call: 7 variants of one scene stacked on the batch axis."""
    model = np_init(_model)
    rng = np.random.default_rng(0)
    loads, rigids, defs = _scene(rng, 1, (5, 4), (6,), (7, 9))
    perms = [rng.permutation(n) for n in (7, 9, 6, 5, 4)]
    variants = [
        (loads, rigids, defs),
        (loads, rigids, [defs[0][:, perms[0]], defs[1]]),
        (loads, rigids, [defs[0], defs[1][:, perms[1]]]),
        (loads, [rigids[0][:, perms[2]]], defs),
        ([loads[0][:, perms[3]], loads[1][:, perms[4]]], rigids, defs),
        ([loads[0] + 0.5, loads[1]], rigids, defs),  # a changed load must matter
        (loads, [rigids[0] * 1.5], defs),  # a changed rigid must matter
    ]
    stacked = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *variants)
    out_a, weights = fast_jit(lambda a: model(*a, return_weights=True))(stacked)
    out_a, weights = jax.tree.map(np.asarray, (out_a, weights))  # no eager jax ops in checks
    return {"model": model, "perms": perms, "out_a": out_a, "weights": weights}


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_output_shapes(probe):
    assert [o.shape for o in probe["out_a"]] == [(7, 7, OUT_DIM), (7, 9, OUT_DIM)]
    assert all(np.isfinite(o).all() for o in probe["out_a"])


def test_equivariance_over_each_deformable(probe):
    (d0, d1), (p0, p1) = probe["out_a"], probe["perms"][:2]
    _close(d0[1], d0[0][p0])  # permuting deformable 0 permutes its output ...
    _close(d1[1], d1[0])  # ... and leaves deformable 1's unchanged
    _close(d1[2], d1[0][p1])
    _close(d0[2], d0[0])


def test_invariance_to_rigid_and_load_point_order(probe):
    for out in probe["out_a"]:
        _close(out[3], out[0])  # rigid points permuted
        _close(out[4], out[0])  # both loads' points permuted
        # ... while changing the load or the rigid does change the prediction.
        assert np.abs(out[5] - out[0]).max() > 1e-3
        assert np.abs(out[6] - out[0]).max() > 1e-3


def test_slice_and_allocation_weights_sum_to_one(probe):
    slices = probe["weights"]["slice"]
    sizes = {"loads": (5, 4), "rigids": (6,), "deformables": (7, 9)}
    for kind, ns in sizes.items():
        for w, n in zip(slices[kind], ns):
            assert w.shape == (7, n, SLICES)
            _close(w.sum(-1), 1.0)
    [per_deformable] = probe["weights"]["allocation"]  # one processor
    assert len(per_deformable) == 2
    for alloc in per_deformable:
        assert alloc["load"].shape == (7, SLICES, EMB, 2)  # softmax over the 2 loads
        assert alloc["contact"].shape == (7, SLICES, EMB, len(PAIRS))
        for w in alloc.values():
            _close(w.sum(-1), 1.0)
            assert (w > 0).all() and w.std() > 1e-3  # a real per-channel mixture
        _close(alloc["contact"][3], alloc["contact"][0])  # point order does not reach tokens


def test_same_weights_any_number_of_points_and_duplicated_points():
    """One load, rigid and deformable; the scene, then every object's points listed twice.

    Slice tokens are weighted averages, so duplicating all points of every object leaves the
    tokens unchanged (up to the 1e-5 in the denominator) and each copy of a point gets the
    same output as the original: the same weights on 2N points give the N-point answer twice.
    """
    model = np_init(
        lambda: _model(num_loads=1, num_deformables=1, contact_pairs=((0, 1),), mlp_ratio=4)
    )
    block = model.processors[0].load_module.load_blocks[0]
    assert not hasattr(block, "loads_allocation")  # one interaction: no allocation
    assert not hasattr(block, "contact_constraints_allocation")
    scene = _scene(np.random.default_rng(5), 2, (3,), (4,), (5,))
    twice = jax.tree.map(lambda x: jnp.concatenate([x, x], axis=1), scene)
    ([out], [out2]) = fast_jit(lambda a, b: (model(*a), model(*b)))(scene, twice)
    assert out.shape == (2, 5, OUT_DIM) and out2.shape == (2, 10, OUT_DIM)
    want = unisoma_param_count(EMB, SLICES, 4, 1, LOAD_DIM, RIGID_DIM, IN_DIM, OUT_DIM)
    assert unisoma.count_params(model) == want
    # The same formula at the reference's defaults (deforming plate: 6, 3, 3 -> 4).
    assert unisoma_param_count(128, 32, 4, 2, 6, 3, 3, 4) == 879_428
    np.testing.assert_allclose(out2, np.concatenate([out, out], axis=1), rtol=1e-3, atol=1e-4)


def test_attention_matches_numpy_with_full_width_scale():
    attn = np_init(lambda: unisoma.Attention(8, 2, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 3, 8)), rng.normal(size=(2, 5, 8))
    out = fast_jit(attn)(*(jnp.asarray(a, jnp.float32) for a in (x, y, y)))
    assert attn.W_q.bias is None and attn.W_o.bias is not None

    def lin(layer, a):
        b = 0.0 if layer.bias is None else np.asarray(layer.bias[...], np.float64)
        return a @ np.asarray(layer.kernel[...], np.float64) + b

    def heads(a):
        return a.reshape(2, -1, 2, 4).transpose(0, 2, 1, 3)

    q, k, v = heads(lin(attn.W_q, x)), heads(lin(attn.W_k, y)), heads(lin(attn.W_v, y))
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(8.0)  # the reference scales by output_dim
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    want = lin(attn.W_o, (a @ v).transpose(0, 2, 1, 3).reshape(2, 3, 8))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def test_interaction_allocation_of_identical_interactions():
    load = np_init(lambda: unisoma.InteractionAllocation(EMB, 2, "load", rngs=nnx.Rngs(0)))
    contact = np_init(lambda: unisoma.InteractionAllocation(EMB, 2, "contact", rngs=nnx.Rngs(0)))
    i = jnp.asarray(np.random.default_rng(2).normal(size=(2, SLICES, EMB)), jnp.float32)

    @fast_jit
    def run(i):
        return load([i, i, i]), contact([i, i]), contact.fc(i)

    (x_load, w_load), (x_contact, w_contact), fc = run(i)
    _close(w_load, 1.0 / 3.0)  # identical logits: uniform over the K interactions
    _close(x_load, i)
    _close(w_contact, 0.5)
    _close(x_contact, fc + i)  # contact allocations add fc(x) + x
    with pytest.raises(ValueError, match="interaction_type"):
        unisoma.InteractionAllocation(EMB, 2, "friction", rngs=nnx.Rngs(0))


def test_bad_config_and_inputs_raise(probe):
    kwargs = dict(
        load_dim=1, rigid_dim=1, deformable_in_dim=1, deformable_out_dim=1, rngs=nnx.Rngs(0)
    )
    counts = dict(num_loads=1, num_rigids=1, num_deformables=1)
    with pytest.raises(ValueError, match="contact pair"):
        unisoma.Unisoma(**kwargs, **counts, contact_pairs=((0, 2),))
    with pytest.raises(ValueError, match="at least one"):
        unisoma.Unisoma(**kwargs, **counts, contact_pairs=())
    with pytest.raises(ValueError, match="num_loads >= 1"):
        unisoma.Unisoma(**kwargs, **{**counts, "num_loads": 0}, contact_pairs=((0, 1),))
    model, z = probe["model"], jnp.zeros
    with pytest.raises(ValueError, match="expected 2 loads"):
        model([z((1, 3, LOAD_DIM))], [z((1, 3, RIGID_DIM))], [z((1, 3, IN_DIM))] * 2)
    with pytest.raises(ValueError, match=r"deformables\[1\]"):
        model([z((1, 3, LOAD_DIM))] * 2, [z((1, 3, RIGID_DIM))], [z((1, 3, IN_DIM)), z((1, 3, 5))])


# --------------------------------------------------------------------------- implicit baseline


def test_concat_and_split_objects_known_answer_and_round_trip():
    a = jnp.asarray([[[1.0], [2.0]]])  # (1, 2, 1)
    b = jnp.asarray([[[3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]])  # (1, 3, 2)
    x = implicit.concat_objects([a, b], 2)
    want = [[1, 0, 1, 0], [2, 0, 1, 0], [3, 4, 0, 1], [5, 6, 0, 1], [7, 8, 0, 1]]
    np.testing.assert_array_equal(x, np.asarray([want], np.float32))
    back = implicit.split_objects(x, [2, 3])
    np.testing.assert_array_equal(back[0][..., :1], a)
    np.testing.assert_array_equal(back[1][..., :2], b)
    # Masks concatenate like the points; an object without one is all real points.
    np.testing.assert_array_equal(implicit.concat_masks([a, b], [None, None]), None)
    masks = implicit.concat_masks([a, b], [None, np.array([[1.0, 0.0, 1.0]])])
    np.testing.assert_array_equal(masks, [[1, 1, 1, 0, 1]])
    with pytest.raises(ValueError, match="mask 1"):
        implicit.concat_masks([a, b], [None, np.ones((1, 2))])
    with pytest.raises(ValueError, match="d_o <= dim"):
        implicit.concat_objects([b], 1)
    with pytest.raises(ValueError, match="sum to the 5 points"):
        implicit.split_objects(x, [2, 2])


def test_transolver_equivariance_and_slice_weights():
    model = np_init(
        lambda: implicit.Transolver(
            in_dim=3 + 2,
            out_dim=3,
            emb_dim=8,
            num_layers=2,
            num_heads=2,
            slice_num=4,
            rngs=nnx.Rngs(0),
        )
    )
    rng = np.random.default_rng(3)
    a = jnp.asarray(rng.normal(size=(1, 4, 2)), jnp.float32)
    b = jnp.asarray(rng.normal(size=(1, 6, 3)), jnp.float32)
    perm = rng.permutation(6)

    @fast_jit
    def run(a, b):
        x = jnp.concatenate(
            [implicit.concat_objects([a, b], 3), implicit.concat_objects([a, b[:, perm]], 3)]
        )
        out, weights = model(x, return_weights=True)
        return implicit.split_objects(out, [4, 6]), weights

    (out_a, out_b), weights = run(a, b)
    assert out_a.shape == (2, 4, 3) and out_b.shape == (2, 6, 3)
    _close(out_b[1], out_b[0][perm])  # permuting one object's points permutes its outputs
    _close(out_a[1], out_a[0])  # and leaves the other object's unchanged
    assert len(weights) == 2 and weights[0].shape == (2, 2, 10, 4)
    for w in weights:
        _close(w.sum(-1), 1.0)
    with pytest.raises(ValueError, match="inputs"):
        model(jnp.zeros((1, 3, 4)))


def unisoma_param_count(e, g, r, processors, load_dim, rigid_dim, in_dim, out_dim):
    """Hand count for one load, rigid and deformable and one contact pair (no allocation)."""
    ffn = lambda i, h, o: i * h + h + h * o + o  # noqa: E731
    ln = 2 * e
    slice_block = 2 * (e * e + e) + e * g + g + g + e  # in_project_x/fx/slice, tau, place_holder
    attention_layer = 3 * e * e + e * e + e + 3 * ln  # W_q/k/v without bias, W_o, ln_x/y/z
    contact_block = attention_layer + 2 * ln
    load_block = attention_layer + ffn(e, r * e, e) + ln + 3 * ln  # ffn, ln_t, triplet LNs
    return (
        (load_dim * e + e)
        + (rigid_dim * e + e)
        + ffn(in_dim, 2 * e, e)
        + 3 * slice_block
        + processors * (contact_block + load_block)
        + (ffn(e, r * e, e) + e)  # DesliceBlock
        + ffn(e, r * e, out_dim)
    )


@pytest.mark.slow
def test_unisoma_loss_decreases_on_a_toy_mapping():
    model = _model()
    rng = np.random.default_rng(4)
    loads, rigids, defs = _scene(rng, 4, (5, 4), (6,), (7, 9))
    # Target: each deformable point shifted by the mean of load 0's first two features.
    shift = jnp.mean(loads[0][..., :2], axis=1, keepdims=True)
    targets = [jnp.concatenate([d + shift, d[..., :1] * 0.5], axis=-1) for d in defs]
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    def loss_fn(m):
        return sum(jnp.mean((o - t) ** 2) for o, t in zip(m(loads, rigids, defs), targets))

    @nnx.jit
    def step(m, opt):
        loss, grads = nnx.value_and_grad(loss_fn)(m)
        opt.update(m, grads)
        return loss

    losses = [float(step(model, opt)) for _ in range(80)]
    assert losses[-1] < 0.3 * losses[0], losses[::10]


def _pad(rng, x, real):
    """``x`` (1, n, d) spread over the points where ``real`` (rows, N) is 1; garbage elsewhere."""
    out = rng.normal(0.0, 30.0, size=(len(real), real.shape[1], x.shape[-1]))
    for row, keep in enumerate(real > 0):
        out[row, keep] = x[0]
    return jnp.asarray(out, jnp.float32)


def _real(rng, n, extra):
    """Two rows of masks with ``n`` real points among ``n + extra``: at the front, shuffled."""
    front = np.r_[np.ones(n), np.zeros(extra)]
    return np.stack([front, rng.permutation(front)]).astype(np.float32)


def test_padded_points_change_nothing_at_the_real_points():
    """Unisoma and the implicit Transolver: a scene padded with garbage (mask 0) in every
    object gives the unpadded scene's outputs at the real points (float32 tolerance)."""
    model = np_init(lambda: _model(num_deformables=1, contact_pairs=((0, 1),), mlp_ratio=1))
    baseline = np_init(
        lambda: implicit.ObjectsTransolver(
            num_objects=4,
            in_dim=LOAD_DIM,
            out_dim=OUT_DIM,
            emb_dim=8,
            num_layers=1,
            num_heads=2,
            slice_num=4,
            mlp_ratio=1,
            rngs=nnx.Rngs(0),
        ),
        seed=1,
    )
    rng = np.random.default_rng(7)
    sizes = {"loads": (5, 4), "rigids": (6,), "deformables": (7,)}
    scene = _scene(rng, 1, *sizes.values())
    extras = {"loads": (3, 0), "rigids": (2,), "deformables": (4,)}
    masks = [[_real(rng, n, e) for n, e in zip(sizes[k], extras[k])] for k in sizes]
    padded = [[_pad(rng, x, m) for x, m in zip(xs, ms)] for xs, ms in zip(scene, masks)]
    masks[0][1] = None  # load 1 has no padding: no mask needed

    @fast_jit
    def run(scene, padded, masks):
        loads, rigids, defs = padded
        kw = dict(zip(("load_masks", "rigid_masks", "deformable_masks"), masks))
        return (
            model(*scene)[0],
            model(loads, rigids, defs, **kw)[0],
            baseline([*scene[0], *scene[1], *scene[2]])[-1],
            baseline([*loads, *rigids, *defs], [*masks[0], *masks[1], *masks[2]])[-1],
        )

    out, out_p, base, base_p = run(scene, padded, masks)
    for row, keep in enumerate(masks[2][0] > 0):  # padding at the end, then interleaved
        _close(out_p[row, keep], out[0])
        _close(base_p[row, keep], base[0])
    with pytest.raises(ValueError, match="expected 2 load masks"):
        model(*padded, load_masks=[None])
    with pytest.raises(ValueError, match=r"deformable mask 0 has shape"):
        model(*padded, deformable_masks=[masks[2][0][:, :3]])
