"""Physics checks of the stretch-bending generator (jaxpapers.physics.generators.stretch_bending)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.physics.generators import stretch_bending as sb

# small but complete: every test below that calls the solver reuses these two compilations
CFG = sb.GeneratorConfig(
    num_points=65,
    section_shape=(32, 16),
    elements_high=12,
    elements_low=4,
    section_grid_high=(8, 4),
    section_grid_low=(4, 2),
    bend_steps_high=4,
    bend_steps_low=2,
    chunk_size=8,
)
B = 8


def _key(seed):
    return jax.random.key(seed, impl="rbg")


def _np(tree):
    return jax.tree.map(np.asarray, tree)


def _springback(out):
    return np.linalg.norm(out["unloaded"] - out["loaded"], axis=-1).mean(-1)


@pytest.fixture(scope="module")
def inputs():
    return sb.sample_inputs(_key(0), B, CFG)


# ---------------------------------------------------------------- building blocks


def test_rectangle_section_properties_match_closed_form():
    h, b = 24.3, 11.7
    sdf = sb.section_sdf(0, (h, b, 2.0), (64, 32), (40.0, 20.0))
    assert float(sdf[32, 16]) < 0 and float(sdf[0, 0]) > 0  # negative inside
    p = _np(sb.section_properties(sdf, (40.0, 20.0)))
    assert p["area"] == pytest.approx(b * h, rel=5e-3)
    assert p["i_yy"] == pytest.approx(b * h**3 / 12, rel=1e-2)
    assert p["i_zz"] == pytest.approx(h * b**3 / 12, rel=1e-2)
    np.testing.assert_allclose(p["centroid"], 0.0, atol=1e-3)
    assert abs(p["i_yz"]) < 1e-3 * p["i_yy"]


AREAS = {
    "rectangle": lambda h, b, t: b * h,
    "l": lambda h, b, t: t * h + (b - t) * t,
    "t": lambda h, b, t: b * t + (h - t) * t,
    "channel": lambda h, b, t: t * h + 2 * (b - t) * t,
    "hollow_box": lambda h, b, t: b * h - (b - 2 * t) * (h - 2 * t),
}


@pytest.mark.parametrize("kind", range(len(sb.SECTION_TYPES)))
def test_section_cells_exact_area_and_sdf_agrees(kind):
    h, b, t = 27.0, 13.0, 2.7
    exact = AREAS[sb.SECTION_TYPES[kind]](h, b, t)
    for grid in [(5, 3), (16, 8)]:
        y, z, w = _np(sb.section_cells(kind, (h, b, t), grid))
        assert w.sum() == pytest.approx(exact, rel=1e-5)
        assert abs((w * y).sum()) < 1e-3 * exact and abs((w * z).sum()) < 1e-3 * exact
    sdf = sb.section_sdf(kind, (h, b, t), (64, 32), (40.0, 20.0))
    assert float(sb.section_properties(sdf)["area"]) == pytest.approx(exact, rel=0.03)


def test_section_cells_second_moment_converges():
    h, b, t = 30.0, 15.0, 3.0
    exact = (b * h**3 - (b - 2 * t) * (h - 2 * t) ** 3) / 12
    errors = []
    for n in [4, 8, 16]:
        y, _, w = _np(sb.section_cells(4, (h, b, t), (n, n // 2)))
        errors.append(abs((w * y**2).sum() - exact) / exact)
    assert all(e2 < e1 for e1, e2 in zip(errors, errors[1:])), errors
    assert errors[-1] < 2e-2


def test_return_map_known_answers():
    mat = sb.Material(70e3, 280.0, 700.0, 0.1)
    s, ep, al, et = sb.return_map(0.01, 0.0, 0.0, mat, "linear")
    assert float(s) == pytest.approx(280 + 70e3 * 700 / 70.7e3 * (0.01 - 0.004), rel=1e-5)
    assert float(et) == pytest.approx(70e3 * 700 / 70.7e3, rel=1e-5)
    # elastic unloading from the plastic state
    s2, _, _, et2 = sb.return_map(0.009, ep, al, mat, "linear")
    assert float(s2) == pytest.approx(float(s) - 70.0, rel=1e-5) and float(et2) == 70e3
    # below yield: purely elastic
    s3, ep3, _, _ = sb.return_map(0.003, 0.0, 0.0, mat, "power")
    assert float(s3) == pytest.approx(210.0) and float(ep3) == 0.0
    # power law: the returned stress lies on the flow curve, compression is symmetric
    for strain in [0.01, -0.03]:
        s4, ep4, al4, _ = sb.return_map(strain, 0.0, 0.0, mat, "power", iterations=4)
        sig_f, _ = sb.flow_stress(al4, mat, "power")
        assert abs(float(s4)) == pytest.approx(float(sig_f), rel=1e-4)
        assert float(s4) == pytest.approx(70e3 * (strain - float(ep4)), rel=1e-4)


def test_fit_linear_hardening_is_close_to_power_law():
    mat = sb.Material(70e3, 300.0, 0.0, 0.12)
    fit = sb.fit_linear_hardening(mat, 0.05)
    alpha = jnp.linspace(0.005, 0.05, 10)
    sp, _ = sb.flow_stress(alpha, mat, "power")
    sl, _ = sb.flow_stress(alpha, fit, "linear")
    assert float(fit.hardening_modulus) > 0
    assert float(jnp.abs(sl - sp).max() / sp.max()) < 0.1


def test_curve_integration_circle_and_lines():
    r, n = 100.0, 50
    ds = jnp.pi * r / n
    half = sb.integrate_centreline(jnp.tile(jnp.array([1 / r, 0.0]), (n, 1)), ds)
    np.testing.assert_allclose(half[-1], [0.0, 2 * r, 0.0], atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(half - np.array([0, r, 0]), axis=-1), r, rtol=1e-5)
    up = sb.integrate_centreline(jnp.tile(jnp.array([0.0, 1 / r]), (n, 1)), ds)
    np.testing.assert_allclose(up[-1], [0.0, 0.0, 2 * r], atol=1e-3)
    line = sb.integrate_centreline(jnp.zeros((10, 2)), 3.0)
    np.testing.assert_allclose(line[:, 0], 3.0 * np.arange(11), atol=1e-5)
    np.testing.assert_allclose(line[:, 1:], 0.0, atol=1e-6)
    with pytest.raises(ValueError):
        sb.integrate_centreline(jnp.zeros((10, 3)), 1.0)


def test_elastic_section_response_and_springback():
    y, z, w = sb.section_cells(2, (20.0, 10.0, 2.0), (16, 8))
    mat = sb.Material(70e3, 1e9, 0.0, 0.1)
    e = jnp.array([1e-3, 2e-4, -1e-4])
    f, _, _, kt = sb.section_response(e, 0 * y, 0 * y, y, z, w, mat, "power")
    k_el = sb.elastic_stiffness(y, z, w, 70e3)
    np.testing.assert_allclose(kt, k_el, rtol=1e-5, atol=1e-6 * float(k_el.max()))
    assert float(f[0]) == pytest.approx(70e3 * float(w.sum()) * 1e-3, rel=1e-5)
    assert float(f[1]) == pytest.approx(
        70e3 * float((w * y * y).sum()) * 2e-4 - 70e3 * float((w * y * z).sum()) * 1e-4, rel=1e-4
    )
    np.testing.assert_allclose(sb.springback(f, y, z, w, 70e3), -e, rtol=1e-4, atol=1e-9)


# ---------------------------------------------------------------- one element


@functools.partial(jax.jit, static_argnames=("coupled", "steps", "newton"))
def _element(dk, pre, post, sy, coupled=True, steps=8, newton=2):
    y, z, w = sb.section_cells(1, (24.0, 12.0, 2.5), (16, 8))
    mat = sb.Material(70e3, sy, 0.0, 0.12)
    n_pre, _, _, _ = sb.section_response(jnp.stack([pre, 0.0, 0.0]), 0 * y, 0 * y, y, z, w, mat)
    return sb.element_response(
        dk, n_pre[0], pre, post, y, z, w, mat, "power", coupled, steps, newton
    )


def test_element_elastic_and_no_plasticity_leave_no_permanent_set():
    dk = jnp.array([2e-3, 3e-4])
    for pre, post in [(0.01, 0.005), (0.0, 0.0)]:
        _, eps_perm, dk_perm = _element(dk, pre, post, 1e9)
        assert abs(float(eps_perm)) < 1e-7 and float(jnp.abs(dk_perm).max()) < 1e-5 * 2e-3
    # real yield stress, curvature strain k*c = 1e-4 * 12 well below yield strain 4.3e-3
    small = jnp.array([1e-4, 0.0])
    _, eps_perm, dk_perm = _element(small, 0.0, 0.0, 300.0)
    assert abs(float(eps_perm)) < 1e-8 and float(jnp.abs(dk_perm).max()) < 1e-5 * 1e-4
    # the same section bent plastically keeps a permanent curvature: same sign, smaller
    _, _, dk_perm = _element(jnp.array([2e-3, 0.0]), 0.0, 0.0, 300.0)
    assert 0.2 * 2e-3 < float(dk_perm[0]) < 2e-3


def test_element_more_tension_less_springback():
    dk = jnp.array([1.5e-3, 2e-4])
    recovered = []
    for pre in [0.0, 0.005, 0.01, 0.02]:
        _, _, dk_perm = _element(dk, pre, 0.0, 300.0)
        recovered.append(float(jnp.linalg.norm(dk - dk_perm)))
    assert all(b < a for a, b in zip(recovered, recovered[1:])), recovered
    assert recovered[-1] < 0.35 * recovered[0]
    _, _, with_post = _element(dk, 0.005, 0.01, 300.0)
    assert float(jnp.linalg.norm(dk - with_post)) < recovered[1]


# ---------------------------------------------------------------- full generator


def test_generate_shapes_dtypes_determinism():
    a = sb.generate(_key(3), B, CFG)
    b = sb.generate(_key(3), B, CFG)
    c = sb.generate(_key(4), B, CFG)
    p = CFG.num_points
    shapes = {
        "strip": (B, p, 3),
        "mould": (B, p, 3),
        "loaded": (B, p, 3),
        "unloaded": (B, p, 3),
        "section": (B, 32, 16),
        "params": (B, 6),
        "section_type": (B,),
    }
    for name, shape in shapes.items():
        assert a[name].shape == shape, name
        assert a[name].dtype == (np.int32 if name == "section_type" else np.float32), name
        assert np.isfinite(a[name]).all(), name
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.allclose(a["unloaded"], c["unloaded"])
    for name in ["strip", "mould", "loaded", "unloaded"]:
        np.testing.assert_allclose(a[name][:, 0], 0.0, atol=1e-6)  # first point at the origin
        assert (a[name][:, 1, 0] > 0).all()  # leaving along +x
    assert ((a["section_type"] >= 0) & (a["section_type"] < len(sb.SECTION_TYPES))).all()
    assert (a["section"].min(axis=(1, 2)) < 0).all() and (a["section"].max(axis=(1, 2)) > 0).all()
    assert (_springback(a) > 0.01).all()  # springback is visible
    # the loaded strip is stretched: longer than the initial one
    length = lambda x: np.linalg.norm(np.diff(x, axis=1), axis=-1).sum(-1)  # noqa: E731
    assert (length(a["loaded"]) > length(a["strip"])).all()


@pytest.mark.slow
def test_generate_pair_same_inputs_correlated_outputs():
    low, high = sb.generate_pair(_key(5), B, CFG)
    for name in ["strip", "mould", "section", "params", "section_type"]:
        np.testing.assert_array_equal(low[name], high[name])
    stats = sb.summarize(low, high)
    assert 0.01 < stats["lf_hf_gap_relative"] < 0.8, stats
    assert np.corrcoef(_springback(low), _springback(high))[0, 1] > 0.8


def test_elastic_strip_springs_back_to_initial_shape(inputs):
    elastic = dict(inputs, yield_stress=jnp.full_like(inputs["yield_stress"], 1e8))
    out = _np(sb.solve(elastic, CFG, "high"))
    bent = np.linalg.norm(out["loaded"] - out["strip"], axis=-1).max(-1)
    back = np.linalg.norm(out["unloaded"] - out["strip"], axis=-1).max(-1)
    assert (bent > 10.0).all()
    assert (back < 1e-3 * bent).all(), back / bent


def test_no_plasticity_no_permanent_curvature(inputs):
    gentle = dict(
        inputs,
        radius=jnp.full_like(inputs["radius"], 2e5),
        pre_stretch=jnp.zeros_like(inputs["pre_stretch"]),
        post_stretch=jnp.zeros_like(inputs["post_stretch"]),
    )
    out = _np(sb.solve(gentle, CFG, "high"))
    bent = np.linalg.norm(out["loaded"] - out["strip"], axis=-1).max(-1)
    back = np.linalg.norm(out["unloaded"] - out["strip"], axis=-1).max(-1)
    assert (bent > 0.2).all()
    assert (back < 1e-2 * bent).all(), back / bent


def test_more_tension_less_springback(inputs):
    def run(pre, post):
        x = dict(
            inputs,
            pre_stretch=jnp.full_like(inputs["pre_stretch"], pre),
            post_stretch=jnp.full_like(inputs["post_stretch"], post),
        )
        return _springback(_np(sb.solve(x, CFG, "high")))

    weak, strong, post = run(0.002, 0.0), run(0.02, 0.0), run(0.002, 0.01)
    assert (strong < weak).all() and (post < weak).all()
    assert strong.mean() < 0.5 * weak.mean()


def test_config_validation():
    with pytest.raises(ValueError, match="fidelity"):
        sb.GeneratorConfig(fidelity="medium")
    with pytest.raises(ValueError, match="hardening"):
        sb.GeneratorConfig(hardening="cubic")
    with pytest.raises(ValueError, match="pre_stretch"):
        sb.GeneratorConfig(pre_stretch=(0.02, 0.01))
    with pytest.raises(ValueError, match="num_samples"):
        sb.generate(_key(0), 0, CFG)


@pytest.mark.slow
def test_generator_converges_with_discretisation():
    inp = sb.sample_inputs(_key(7), 8, CFG)
    fine = dataclasses.replace(
        CFG, elements_high=96, section_grid_high=(32, 16), bend_steps_high=32, newton_iterations=4
    )
    ref = _np(sb.solve(inp, fine, "high"))
    scale = _springback(ref).mean()
    errors = []
    for n, grid, steps in [(4, (4, 2), 2), (8, (8, 4), 4), (16, (16, 8), 8)]:
        cfg = dataclasses.replace(
            CFG, elements_high=n, section_grid_high=grid, bend_steps_high=steps
        )
        out = _np(sb.solve(inp, cfg, "high"))
        errors.append(np.linalg.norm(out["unloaded"] - ref["unloaded"], axis=-1).mean() / scale)
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
