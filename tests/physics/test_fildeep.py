"""Tests for jaxpapers.physics.fildeep: freezing on the HF path, parameter groups, shapes.

Models are built abstractly and filled from NumPy (`jaxpapers.core.testing.materialize`).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.core.testing import compile_fast, materialize
from jaxpapers.physics import fildeep, ladeep

SMALL = dict(
    input_length=24,
    seq_length=6,
    emb_dim=16,
    cross_layers=1,
    self_layers=1,
    acf_layers=2,
    section_shape=(8, 4),
)
B, L, H, W = 3, 24, 8, 4
_IN = ("strip", "mould", "section", "params")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    d = {
        "strip": rng.uniform(size=(B, L, 3)),
        "mould": rng.uniform(size=(B, L, 3)),
        "section": rng.uniform(size=(B, H, W, 1)),
        "params": rng.uniform(size=(B, 6)),
        "unloaded": rng.uniform(size=(B, L, 3)),
    }
    return {k: jnp.asarray(v, jnp.float32) for k, v in d.items()}


def _hf_param(path, x):
    return isinstance(x, nnx.Param) and fildeep.param_group(path) == "hf"


@pytest.fixture(scope="module")
def steps(data):
    """One compiled program: the HF-step loss gradient w.r.t. every parameter, and the LF-step
    outputs and loss gradient w.r.t. the HF parameters (its gradient w.r.t. the LF ones is
    not needed by these tests, and leaving it out keeps the compilation small)."""
    model = materialize(lambda: fildeep.FilDeep(**SMALL, rngs=nnx.Rngs(0)))
    model.eval()
    graphdef, hf, lf, rest = nnx.split(model, _hf_param, nnx.Param, ...)
    args = [data[k] for k in _IN]
    w = jnp.array([0.3, 1.0, 2.0])

    def loss(hf_p, lf_p, fidelity):
        out = nnx.merge(graphdef, hf_p, lf_p, rest)(*args, fidelity=fidelity)
        return fildeep.fildeep_loss(out, data, w, fidelity=fidelity)[0], out

    def both(hf_p, lf_p):
        hf_step = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(hf_p, lf_p, "high")
        lf_step = jax.value_and_grad(loss, argnums=0, has_aux=True)(hf_p, lf_p, "low")
        return hf_step, lf_step

    (hf_val, (hf_g_hf, hf_g_lf)), (lf_val, lf_g_hf) = compile_fast(both, hf, lf)(hf, lf)

    def maxabs(g):
        return {p: float(np.abs(np.asarray(v[...])).max()) for p, v in nnx.to_flat_state(g)}

    return {
        "lf": lf_val,
        "hf": hf_val,
        "hf_step": {**maxabs(hf_g_hf), **maxabs(hf_g_lf)},
        "lf_step_hf_params": maxabs(lf_g_hf),
    }


def test_hf_step_freezes_every_lf_parameter(steps):
    grads = steps["hf_step"]
    lf = [p for p in grads if fildeep.param_group(p) in ("lf", "section")]
    hf = [p for p in grads if fildeep.param_group(p) == "hf"]
    assert len(lf) > 30 and len(hf) > 20
    for p in lf:
        assert grads[p] == 0.0, p  # exactly zero, including the shared decoder low.cld
    for p in hf:
        assert grads[p] > 0.0, p


def test_lf_step_leaves_hf_modules_untouched(steps):
    grads = steps["lf_step_hf_params"]
    assert len(grads) > 20 and all(fildeep.param_group(p) == "hf" for p in grads)
    for p, g in grads.items():
        assert g == 0.0, p


def test_outputs_shapes_and_range(steps):
    (lf_loss, (recon, lf_unloaded)), (hf_loss, hf_unloaded) = steps["lf"], steps["hf"]
    assert recon.shape == (B, H, W, 1)
    assert lf_unloaded.shape == hf_unloaded.shape == (B, L, 3)
    for out in (recon, lf_unloaded, hf_unloaded):
        out = np.asarray(out)
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    # The HF path is a different function of the same inputs.
    assert float(jnp.abs(hf_unloaded - lf_unloaded).max()) > 1e-4
    assert float(hf_loss) > 0.0 and float(lf_loss) > float(hf_loss) * 0.0


def test_param_group_labels_every_parameter_like_the_reference():
    m = nnx.eval_shape(lambda: fildeep.FilDeep(**SMALL, rngs=nnx.Rngs(0)))
    groups = {}
    for path, _ in nnx.to_flat_state(nnx.state(m)):
        groups.setdefault(fildeep.param_group(path), set()).add(path[:2])
    assert set(groups) == {"lf", "section", "hf"}
    assert {p[1] for p in groups["section"]} == {"cse", "csd"}
    assert {p[0] for p in groups["hf"]} == {"acf", "add_norm"}
    assert {p[1] for p in groups["lf"]} == {
        "cle_for_mould",
        "cle_for_strip",
        "wrfe",
        "mpe",
        "ecfe",
        "cross_attention",
        "self_attention",
        "cld",
    }


def test_default_parameter_count_matches_docstring():
    m = nnx.eval_shape(lambda: fildeep.FilDeep(rngs=nnx.Rngs(0)))
    hf = ladeep.count_params(m.acf) + ladeep.count_params(m.add_norm)
    # per layer: 2 x 4 bias-free 64x64 projections, 2 LayerNorms, FFN 64-128-64 with biases
    layer = 2 * 4 * 64 * 64 + 2 * 128 + (64 * 128 + 128 + 128 * 64 + 64)
    assert hf == 2 * layer + 2 * 60 + 128 == 99_448
    assert ladeep.count_params(m) == 3_703_627
    assert "3,703,627" in fildeep.__doc__ and "99,448" in fildeep.__doc__


def test_fildeep_loss_and_invalid_fidelity(data):
    target = jnp.zeros((2, 4, 3))
    pred = target.at[:, :, 1].set(0.5)  # each sample: norm 0.5 * 2 = 1 on axis 1
    w = jnp.array([1.0, 3.0, 1.0])
    loss, m = fildeep.fildeep_loss(pred, {"unloaded": target}, w, fidelity="high")
    np.testing.assert_allclose(float(loss), 3.0, rtol=1e-6)
    sec = jnp.ones((2, 2, 2, 1))
    loss, m = fildeep.fildeep_loss(
        (0.5 * sec, pred), {"unloaded": target, "section": sec}, w, fidelity="low"
    )
    np.testing.assert_allclose(float(loss), 3.25, rtol=1e-6)
    np.testing.assert_allclose(float(m["loss_section"]), 0.25, rtol=1e-6)
    model = nnx.eval_shape(lambda: fildeep.FilDeep(**SMALL, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="fidelity"):
        model(*[data[k] for k in _IN], fidelity="medium")
    with pytest.raises(ValueError, match="fidelity"):
        fildeep.fildeep_loss(pred, {"unloaded": target}, w, fidelity="hi")
