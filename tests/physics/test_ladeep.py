"""Tests for jaxpapers.physics.ladeep and jaxpapers.physics.baselines.

Models are built abstractly (``nnx.eval_shape``) and their parameters filled from NumPy: eager
Flax initialisation compiles one random-number kernel per parameter shape (~0.25 s each on
this CPU), which would dominate the run time. The reference initialisation is exercised once,
in a test marked slow.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.core.testing import compile_fast, materialize
from jaxpapers.physics import baselines, ladeep
from jaxpapers.physics.curves import AxisScale, to_scaled_diffs

SMALL = dict(
    input_length=24,
    seq_length=6,
    emb_dim=16,
    loading_layers=1,
    unloading_layers=1,
    section_shape=(8, 4),
)
L, H, W = 24, 8, 4


def inputs(batch=3, seed=1, length=L, shape=(H, W)):
    rng = np.random.default_rng(seed)
    scale = AxisScale.create([1.0, 1.0, 1.0], [-1.0, -1.0, -1.0])
    strip = np.cumsum(rng.uniform(-0.9, 0.9, size=(batch, length + 1, 3)), axis=1)
    mould = np.cumsum(rng.uniform(-0.9, 0.9, size=(batch, length + 1, 3)), axis=1)
    return dict(
        raw_strip=strip,
        raw_mould=mould,
        scale=scale,
        strip=jnp.asarray(to_scaled_diffs(strip, scale), jnp.float32),
        mould=jnp.asarray(to_scaled_diffs(mould, scale), jnp.float32),
        section=jnp.asarray(rng.uniform(size=(batch, *shape, 1)), jnp.float32),
        params=jnp.asarray(rng.uniform(size=(batch, 6)), jnp.float32),
    )


def _call(model, d):
    args = [d[k] for k in ("strip", "mould", "section", "params")]
    return nnx.jit(lambda m, *a: m(*a))(model, *args)


def _sequence_param(path, x):
    """Every trainable parameter outside the section encoder/decoder."""
    return isinstance(x, nnx.Param) and path[0] not in ("cse", "csd")


@pytest.fixture(scope="module")
def run():
    """One compiled program for the model tests.

    ``run(extra_kernel_shift)`` evaluates the small model on four stacked input sets — base,
    translated curves, a bent strip, extreme values (eval mode: samples are independent) — and
    returns the outputs split per set plus the gradient of ``sum(loaded**2)`` on the base set
    w.r.t. every non-section parameter. The section encoder is left out of the gradient only
    to keep the compilation small.
    """
    model = materialize(lambda: ladeep.LaDEEP(**SMALL, rngs=nnx.Rngs(0)))
    model.eval()
    graphdef, seq_params, rest = nnx.split(model, _sequence_param, ...)
    d = inputs()
    offset = np.array([3.0, -2.0, 5.0])
    moved = {
        k: jnp.asarray(to_scaled_diffs(d[f"raw_{k}"] + sign * offset, d["scale"]), jnp.float32)
        for k, sign in (("strip", 1.0), ("mould", -1.0))
    }
    bent = jnp.asarray(
        to_scaled_diffs(d["raw_strip"] * np.array([1.0, 1.3, 1.0]), d["scale"]), jnp.float32
    )
    sets = [
        (d["strip"], d["mould"], d["section"], d["params"]),
        (moved["strip"], moved["mould"], d["section"], d["params"]),
        (bent, d["mould"], d["section"], d["params"]),
        (50.0 * d["strip"], -50.0 * d["mould"], 9.0 * d["section"], d["params"]),
    ]
    stacked = [jnp.concatenate(parts) for parts in zip(*sets)]
    n = d["strip"].shape[0]

    def program(p):
        def loss(q):
            outs = nnx.merge(graphdef, q, rest)(*stacked)
            return jnp.sum(outs[1][:n] ** 2), outs

        return jax.grad(loss, has_aux=True)(p)

    compiled = compile_fast(program, seq_params)

    def call(params=seq_params):
        grads, outs = compiled(params)
        per_set = [tuple(o[i * n : (i + 1) * n] for o in outs) for i in range(len(sets))]
        return per_set, grads

    return {"call": call, "params": seq_params, "base": call()}


def test_translating_input_curves_leaves_predictions_unchanged(run):
    (base, moved, bent, _), _ = run["base"]
    for a, b in zip(base, moved):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    # ...whereas bending the strip (not a translation) does change the prediction.
    assert float(jnp.abs(bent[2] - base[2]).max()) > 1e-3


def test_outputs_lie_in_the_scaled_range_and_have_the_right_shapes(run):
    per_set, _ = run["base"]
    recon, loaded, unloaded = per_set[0]
    assert recon.shape == (3, H, W, 1)
    assert loaded.shape == unloaded.shape == (3, L, 3)
    for outs in per_set:  # the last set has extreme inputs: still finite and in [0, 1]
        for out in outs:
            out = np.asarray(out)
            assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def test_loaded_prediction_has_zero_gradient_wrt_unloading_stage(run):
    (base, *_), grads = run["base"]
    norm = {p: float(np.abs(np.asarray(g[...])).max()) for p, g in nnx.to_flat_state(grads)}
    unloading = [p for p in norm if p[0] in ("dp_unloading", "cld_for_unloading")]
    loading = [p for p in norm if p[0] in ("dp_loading", "cld_for_loading")]
    assert len(unloading) > 8 and len(loading) > 8
    for p in unloading:
        assert norm[p] == 0.0, p
    for p in loading:
        assert norm[p] > 0.0, p
    for module in ("mpe", "cle_for_mould", "cle_for_strip", "off"):
        assert max(norm[p] for p in norm if p[0] == module) > 0.0, module
    # The zero is structural, not a dead unit: the unloaded output moves with the same weight.
    shifted = jax.tree.map(lambda x: x, run["params"])
    kernel = shifted["dp_unloading"]["layers"][0]["attention"]["W_v"]["kernel"]
    kernel[...] = kernel[...] + 0.5
    (after, *_), _ = run["call"](shifted)
    np.testing.assert_array_equal(np.asarray(base[1]), np.asarray(after[1]))
    assert float(jnp.abs(after[2] - base[2]).max()) > 1e-4


def test_resnet18_encoder_and_another_section_shape():
    kw = {**SMALL, "section_shape": (32, 16), "section_encoder": "resnet18"}
    model = nnx.eval_shape(lambda: ladeep.LaDEEP(**kw, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    args = [
        jax.ShapeDtypeStruct((2, L, 3), jnp.float32),
        jax.ShapeDtypeStruct((2, L, 3), jnp.float32),
        jax.ShapeDtypeStruct((2, 32, 16, 1), jnp.float32),
        jax.ShapeDtypeStruct((2, 6), jnp.float32),
    ]
    out = jax.eval_shape(lambda s, *a: nnx.merge(graphdef, s)(*a), state, *args)
    assert [o.shape for o in out] == [(2, 32, 16, 1), (2, L, 3), (2, L, 3)]
    assert ladeep.count_params(model.cse) == 11_205_249  # ResNet-18 body (1 input channel)
    # every BN (decoder: log2(16) = 4 stages; ResNet: stem, 8 blocks x 2, 3 projections)
    bns = [mod for _, mod in nnx.iter_modules(model) if isinstance(mod, nnx.BatchNorm)]
    assert len(bns) == 4 + 1 + 8 * 2 + 3
    model.eval()
    assert all(bn.use_running_average for bn in bns)
    model.train()
    assert not any(bn.use_running_average for bn in bns)


@pytest.mark.slow
def test_resnet18_section_encoder_runs_and_trains():
    m = materialize(
        lambda: ladeep.CrossSectionEncoder(
            backbone="resnet18", section_shape=(H, W), rngs=nnx.Rngs(0)
        )
    )
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, H, W, 1)), jnp.float32)
    g = nnx.jit(nnx.grad(lambda m: jnp.sum(m(x) ** 2)))(m)
    assert float(jnp.abs(g.section_encoder.stem.kernel[...]).max()) > 0.0


def test_default_parameter_count_matches_docstring():
    m = nnx.eval_shape(lambda: ladeep.LaDEEP(rngs=nnx.Rngs(0)))
    assert ladeep.count_params(m) == 3_609_066
    assert ladeep.count_params(m.cse) == 556_993
    assert ladeep.count_params(m.csd) == 2_803_233
    assert "3,609,066" in ladeep.__doc__
    # A hand count of the sequence parts: encoder = 2 Linear(3, 64) + 60 x (5 + 1) + (300 + 1).
    assert ladeep.count_params(m.cle_for_strip) == 2 * (3 * 64 + 64) + 60 * 6 + 301
    # decoder = 60 x (5 + 5) + Linear(64, 3); parameters encoder = Linear(1, 64) + 6 x (10 + 10)
    assert ladeep.count_params(m.cld_for_loading) == 600 + 64 * 3 + 3
    assert ladeep.count_params(m.mpe) == 128 + 120


def test_param_group_matches_reference_split():
    m = nnx.eval_shape(lambda: ladeep.LaDEEP(**SMALL, rngs=nnx.Rngs(0)))
    groups = {}
    for path, _ in nnx.to_flat_state(nnx.state(m, nnx.Param)):
        groups.setdefault(ladeep.param_group(path), set()).add(path[0])
    assert groups["unloading"] == {"dp_unloading", "cld_for_unloading"}
    assert groups["section"] == {"cse", "csd"}
    assert groups["loading"] == {
        "cle_for_mould",
        "cle_for_strip",
        "off",
        "mpe",
        "dp_loading",
        "cld_for_loading",
    }


def test_batch_norm_follows_train_and_eval():
    # and the decoder's output does differ between the two modes (batch vs running statistics)
    csd = materialize(lambda: ladeep.CrossSectionDecoder(section_shape=(2, 2), rngs=nnx.Rngs(0)))
    f = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 512)), jnp.float32)
    apply = nnx.jit(lambda m, x: m(x))
    csd.eval()
    ev = apply(csd, f)
    csd.train()
    tr = apply(csd, f)
    assert ev.shape == tr.shape == (3, 2, 2, 1)
    assert float(jnp.abs(ev - tr).max()) > 1e-4
    assert float(jnp.abs(csd.rear_bn.mean[...]).max()) > 0.0  # running statistics updated


def test_invalid_inputs_raise():
    model = nnx.eval_shape(lambda: ladeep.LaDEEP(**SMALL, rngs=nnx.Rngs(0)))
    data = inputs()
    with pytest.raises(ValueError, match="strip"):
        model(data["strip"][:, :-1], data["mould"], data["section"], data["params"])
    with pytest.raises(ValueError, match="section"):
        model(data["strip"], data["mould"], data["section"][:, :4], data["params"])
    with pytest.raises(ValueError, match="params"):
        model(data["strip"], data["mould"], data["section"], data["params"][:, :5])
    with pytest.raises(ValueError, match="power of two"):
        ladeep.LaDEEP(section_shape=(48, 24), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="multiple"):
        ladeep.LaDEEP(seq_length=7, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="section_encoder"):
        nnx.eval_shape(lambda: ladeep.LaDEEP(section_encoder="vit", rngs=nnx.Rngs(0)))


@pytest.mark.slow
def test_reference_initialisation_runs():
    m = ladeep.LaDEEP(**SMALL, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
    d = inputs()
    for out in _call(m, d):
        assert np.isfinite(np.asarray(out)).all()
    # Kaiming fan-out for a Conv1d(5, 1, 1) bank: std sqrt(2); Xavier-ReLU Linear limits.
    k = np.asarray(m.cle_for_strip.local_region_kernel[...])
    assert 0.8 < k.std() < 2.5
    wq = np.asarray(m.dp_loading.layers[0].attention.W_q.kernel[...])
    assert np.abs(wq).max() <= np.sqrt(2.0) * np.sqrt(6.0 / (32 + 16)) + 1e-6


# --------------------------------------------------------------------------- losses


def test_loss_p_hand_computed():
    target = jnp.zeros((2, 6, 3))
    pred = target.at[0, :4, 0].set(1.0).at[1, :, 2].set(0.5)
    # axis 0: norms (2, 0) -> mean 1; axis 2: norms (0, 0.5 * sqrt(6)) -> mean sqrt(6) / 4.
    w = jnp.array([2.0, 5.0, 4.0])
    value_and_grad = jax.jit(jax.value_and_grad(lambda p: ladeep.loss_p(target, p, w)))
    np.testing.assert_allclose(float(value_and_grad(pred)[0]), 2.0 + np.sqrt(6.0), rtol=1e-6)
    # gradient at a zero residual is finite (0), as torch.norm's
    value, g = value_and_grad(target)
    assert float(value) == 0.0
    assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).max()) == 0.0
    with pytest.raises(ValueError):
        ladeep.loss_p(target, pred, jnp.ones(2))


def test_ladeep_loss_sums_the_three_terms_and_skips_missing_section():
    rng = np.random.default_rng(0)
    batch = {k: jnp.asarray(rng.uniform(size=(2, 6, 3))) for k in ("loaded", "unloaded")}
    batch["section"] = jnp.asarray(rng.uniform(size=(2, 4, 2, 1)))
    outs = (jnp.zeros((2, 4, 2, 1)), jnp.zeros((2, 6, 3)), jnp.ones((2, 6, 3)))
    w = jnp.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    loss, m = ladeep.ladeep_loss(outs, batch, w)
    want_l = ladeep.loss_p(batch["loaded"], outs[1], w[0])
    want_u = ladeep.loss_p(batch["unloaded"], outs[2], w[1])
    want_r = jnp.mean(batch["section"] ** 2)
    np.testing.assert_allclose(float(loss), float(want_l + want_u + want_r), rtol=1e-6)
    np.testing.assert_allclose(float(m["loss_section"]), float(want_r), rtol=1e-6)
    loss2, m2 = ladeep.ladeep_loss((None, *outs[1:]), batch, w)
    np.testing.assert_allclose(float(loss2), float(want_l + want_u), rtol=1e-6)
    assert "loss_section" not in m2


# --------------------------------------------------------------------------- baselines


@pytest.mark.parametrize("name", ["MLPBaseline", "TransformerBaseline"])
def test_baselines_same_contract(name):
    data = inputs()
    cls = getattr(baselines, name)
    kw = {"num_layers": 2} if name == "TransformerBaseline" else {"hidden": (32,)}
    m = materialize(lambda: cls(input_length=L, section_shape=(H, W), **kw, rngs=nnx.Rngs(0)))
    recon, loaded, unloaded = _call(m, data)
    assert recon is None
    assert loaded.shape == unloaded.shape == (3, L, 3)
    for out in (loaded, unloaded):
        out = np.asarray(out)
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    batch = {"loaded": loaded * 0.5, "unloaded": unloaded * 0.5, "section": data["section"]}
    loss, _ = ladeep.ladeep_loss((recon, loaded, unloaded), batch, jnp.ones(3))
    assert float(loss) > 0.0
