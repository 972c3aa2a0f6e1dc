"""Checks of the two-way FSI generator (jaxpapers.physics.generators.fsi)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.physics.generators import fsi

TINY = fsi.tiny_config()
S = 2


def _key(seed):
    return jax.random.key(seed, impl="rbg")


@jax.jit(static_argnames=("steps",))
def _lbm_run(f, bounce, tau, magic, steps, force=None, u_in=None):
    """``steps`` collide–stream steps (a channel when ``u_in`` is given)."""
    op = 1.0 / tau
    om = 1.0 / (0.5 + magic / (tau - 0.5))
    force = jnp.zeros(f.shape[1:] + (2,), f.dtype) if force is None else force

    def body(_, f):
        post, _, _ = fsi.collide(f, force, op, om)
        f = fsi.stream(post, bounce)
        return f if u_in is None else fsi.channel_boundaries(f, u_in)

    return jax.lax.fori_loop(0, steps, body, f)


# ---------------------------------------------------------------- lattice Boltzmann


@pytest.mark.parametrize("magic, tol", [(3.0 / 16.0, 2e-3), (TINY.trt_magic, 3e-2)])
def test_body_force_poiseuille_profile(magic, tol):
    """Periodic channel driven by a uniform force: u(y) = g/(2ν)(y+½)(H-y-½), walls at -½, H-½."""
    nx, h, nu, g = 3, 12, 1.0 / 6.0, 1e-5
    bounce = jnp.asarray(fsi.bounce_mask(np.zeros((nx, h), bool), walls=True))
    f0 = fsi.equilibrium(jnp.ones((nx, h)), jnp.zeros((nx, h, 2)))
    force = jnp.zeros((nx, h, 2)).at[..., 0].set(g)
    f = _lbm_run(f0, bounce, nu / fsi.CS2 + 0.5, magic, steps=1500, force=force)
    _, u = fsi.macroscopic(f, force)
    y = np.arange(h) + 0.5
    exact = g / (2 * nu) * y * (h - y)
    err = np.abs(np.asarray(u[1, :, 0]) - exact).max() / exact.max()
    assert err < tol
    assert np.abs(np.asarray(u[..., 1])).max() < 1e-3 * exact.max()


@pytest.mark.parametrize("x64", [pytest.param(False, marks=pytest.mark.slow), True])
def test_mass_conserved_periodic_box_with_obstacle(x64):
    nx, ny = 24, 20
    x, y = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    solid = (x - 12) ** 2 + (y - 10) ** 2 < 9
    u = 0.05 * np.stack([np.sin(2 * np.pi * y / ny), np.cos(2 * np.pi * x / nx)], -1)
    rho = 1.0 + 0.01 * np.cos(2 * np.pi * (x + y) / nx)
    fluid = ~solid  # populations entering solid nodes are replaced: only the fluid's mass counts
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        bounce = jnp.asarray(fsi.bounce_mask(solid, walls=False))
        f0 = fsi.equilibrium(jnp.asarray(rho, dtype), jnp.asarray(u, dtype))
        f = _lbm_run(f0, bounce, 0.6, TINY.trt_magic, steps=400)
        assert f.dtype == dtype
        m0, m1 = (float(np.sum(np.asarray(a, np.float64)[:, fluid])) for a in (f0, f))
    # exact up to round-off: float32's is systematic, ~1e-8 per step
    assert abs(m1 - m0) / m0 < (1e-13 if x64 else 2e-5)
    assert np.isfinite(np.asarray(f)).all()


def test_equilibrium_moments():
    rng = np.random.default_rng(0)
    rho = jnp.asarray(1 + 0.1 * rng.random((5,)), jnp.float32)
    u = jnp.asarray(0.1 * rng.standard_normal((5, 2)), jnp.float32)
    r2, u2 = fsi.macroscopic(fsi.equilibrium(rho, u))
    np.testing.assert_allclose(r2, rho, rtol=1e-6)
    np.testing.assert_allclose(u2, u, atol=1e-6)


# ---------------------------------------------------------------- immersed boundary


def test_peskin_kernel_partition_of_unity_and_overlap():
    r = jnp.asarray(np.random.default_rng(1).random(7), jnp.float32)
    j = jnp.arange(-3, 4, dtype=jnp.float32)
    phi = fsi.peskin_phi(r[:, None] - j[None, :])
    np.testing.assert_allclose(phi.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose((phi**2).sum(1), fsi.KERNEL_SELF_OVERLAP, atol=1e-6)
    np.testing.assert_allclose((phi * (r[:, None] - j)).sum(1), 0.0, atol=1e-6)  # first moment


def test_spread_is_adjoint_of_interpolate_and_conserves_force():
    rng = np.random.default_rng(2)
    shape = (20, 15)
    pts = jnp.asarray(rng.uniform([3, 3], [16, 11], (6, 2)), jnp.float32)
    vals = jnp.asarray(rng.standard_normal((6, 2)), jnp.float32)
    field = jnp.asarray(rng.standard_normal(shape + (2,)), jnp.float32)
    lin = jnp.stack(jnp.meshgrid(jnp.arange(20.0), jnp.arange(15.0), indexing="ij"), -1)

    @jax.jit
    def compute(pts, vals, field, lin):
        spread = fsi.spread(vals, pts, shape)
        lhs = jnp.sum(fsi.interpolate(field, pts) * vals)
        rhs = jnp.sum(field * spread)
        return (
            spread.sum((0, 1)),
            lhs,
            rhs,
            fsi.interpolate(lin, pts),
            fsi.bilinear(lin[..., 0], pts),
        )

    total, lhs, rhs, lin_i, lin_b = compute(pts, vals, field, lin)
    np.testing.assert_allclose(total, vals.sum(0), rtol=1e-5, atol=1e-5)
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-4)
    np.testing.assert_allclose(lin_i, pts, atol=1e-4)  # exact for linear fields
    np.testing.assert_allclose(lin_b, pts[:, 0], atol=1e-4)


# ---------------------------------------------------------------- the flag


@jax.jit(static_argnames=("length",))
def _static(loads, length, rigidity):
    """Relax the flag under nodal loads (``(n, 2)``) with the coupling term as damping."""
    n = loads.shape[0]
    beam = fsi.Beam(
        root=jnp.zeros(2),
        ds=length / n,
        rigidity=rigidity,
        line_density=jnp.float32(1.0),
        gain=jnp.float32(1.0),
    )

    def body(_, c):
        th, om = c
        th, om, _, _ = fsi.beam_step(th, om, jnp.zeros((n, 2)), loads, beam)
        return th, om

    th, om = jax.lax.fori_loop(0, 600, body, (jnp.zeros(n), jnp.zeros(n)))
    return fsi.node_positions(th, beam.root, beam.ds), om


def test_static_deflection_matches_euler_bernoulli():
    length, rigidity, n = 10.0, 50.0, 20
    p = 0.02 * rigidity / length**2  # small: δ/L = 0.7%, geometric nonlinearity negligible
    q = 0.03 * rigidity / length**3
    w = np.asarray(fsi.node_weights(n, length / n))
    cases = {
        "tip": (np.zeros((n, 2)), p * length**3 / (3 * rigidity)),
        "uniform": (np.stack([np.zeros(n), -q * w], -1), q * length**4 / (8 * rigidity)),
    }
    cases["tip"][0][-1, 1] = -p
    for name, (loads, exact) in cases.items():
        nodes, omega = _static(jnp.asarray(loads, jnp.float32), length=length, rigidity=rigidity)
        assert float(jnp.abs(omega).max()) < 1e-6, name  # at rest
        assert -float(nodes[-1, 1]) == pytest.approx(exact, rel=1e-2), name
        # inextensible: every segment keeps its length
        seg = np.linalg.norm(np.diff(np.asarray(nodes), axis=0), axis=-1)
        np.testing.assert_allclose(seg, length / n, rtol=1e-5)


def test_bending_matrix_energy():
    theta = jnp.asarray([0.1, -0.2, 0.05, 0.3])
    k = fsi.bending_matrix(4, 2.0, 0.5)
    t = np.asarray(theta, np.float64)
    energy = 2.0 / (2 * 0.5) * (2 * t[0] ** 2 + np.sum(np.diff(t) ** 2))
    assert float(0.5 * theta @ k @ theta) == pytest.approx(energy, rel=1e-5)
    kappa = fsi.nodal_curvature(theta, 0.5)
    np.testing.assert_allclose(kappa, np.r_[2 * t[0], np.diff(t), 0.0] / 0.5, rtol=1e-5)


# ---------------------------------------------------------------- the coupled simulator


@pytest.fixture(scope="module")
def data():
    return fsi.generate(_key(0), S, TINY)


def test_generate_keys_shapes_and_units(data):
    t = TINY.num_frames
    c = fsi.point_counts(TINY)
    expect = {
        "solid/pos": (S, t, c["solid"], 2),
        "solid/stress": (S, t, c["solid"]),
        "fluid/pos": (S, t, c["fluid"], 2),
        "fluid/vel": (S, t, c["fluid"], 2),
        "fluid/pressure": (S, t, c["fluid"]),
        "interface/pos": (S, t, c["interface"], 2),
        "interface/pressure": (S, t, c["interface"]),
        "params": (S, len(fsi.PARAM_NAMES)),
        "time": (t,),
    }
    assert {k: v.shape for k, v in data.items()} == expect
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in data.values())
    p = data["params"].astype(np.float64)
    assert np.all((p[:, 0] >= TINY.inflow[0]) & (p[:, 0] <= TINY.inflow[1]))
    np.testing.assert_allclose(
        p[:, 2], p[:, 0] * 2 * TINY.cylinder_radius / TINY.viscosity, rtol=1e-5
    )
    np.testing.assert_allclose(p[:, 3], p[:, 1] / (p[:, 0] ** 2 * TINY.flag_length**3), rtol=1e-5)
    warm = fsi.warmup_frames(TINY)
    np.testing.assert_array_equal(data["time"], TINY.frame_every * (warm + 1 + np.arange(t)))


def test_output_geometry(data):
    n1 = TINY.num_segments + 1
    h = TINY.flag_thickness
    solid = data["solid/pos"].reshape(S, -1, TINY.solid_layers, n1, 2)
    centre = solid[:, :, TINY.solid_layers // 2]
    # root clamped at the cylinder's rear, inextensible centre line
    cx, cy = TINY.cylinder_center
    np.testing.assert_allclose(
        centre[:, :, 0], np.broadcast_to([cx + 2.5, cy], centre[:, :, 0].shape)
    )
    seg = np.linalg.norm(np.diff(centre, axis=2), axis=-1)
    np.testing.assert_allclose(seg, TINY.segment_length, rtol=1e-4)
    # the interface is the two surfaces, h/2 from the centre line
    iface = data["interface/pos"].reshape(S, -1, 2, n1, 2)
    np.testing.assert_allclose(
        np.linalg.norm(iface - centre[:, :, None], axis=-1), h / 2, rtol=1e-4
    )
    np.testing.assert_allclose(iface[:, :, 0], solid[:, :, 0], atol=1e-5)
    # bending stress antisymmetric across the thickness, zero on the centre line and at the tip
    st = data["solid/stress"].reshape(S, -1, TINY.solid_layers, n1)
    np.testing.assert_allclose(st[:, :, 0], -st[:, :, -1], atol=1e-6)
    assert np.abs(st[:, :, TINY.solid_layers // 2]).max() == 0.0
    assert np.abs(st[..., -1]).max() == 0.0
    # fluid points: fixed lattice nodes outside the cylinder, velocities of the inflow's size
    fp = data["fluid/pos"]
    assert np.all(fp == fp[:1, :1])
    assert np.all(np.hypot(fp[..., 0] - cx, fp[..., 1] - cy) >= TINY.cylinder_radius)
    assert 0.3 * TINY.inflow[0] < np.abs(data["fluid/vel"][..., 0]).mean() < 3 * TINY.inflow[1]


def test_deterministic_and_keyed(data):
    again = fsi.generate(_key(0), S, TINY)
    for k in data:
        np.testing.assert_array_equal(data[k], again[k])
    other = fsi.generate(_key(1), S, TINY)
    assert not np.allclose(other["params"], data["params"])


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(viscosity=0.0005), "relaxation time"),
        (dict(flag_length=40.0), "too long"),
        (dict(num_segments=4), "leak"),
        (dict(inflow=(0.05, 0.2)), "inflow"),
        (dict(cylinder_center=(8.0, 2.0)), "cylinder"),
        (dict(stiffness=(0.0, 1.0)), "stiffness"),
        (dict(num_frames=0), "num_frames"),
    ],
)
def test_bad_configs_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        fsi.generate(_key(0), 1, dataclasses.replace(TINY, **overrides))


def test_bad_simulate_arguments_raise():
    with pytest.raises(ValueError, match="inflow"):
        fsi.simulate(0.3, 1.0, TINY)
    with pytest.raises(ValueError, match="num_trajectories"):
        fsi.generate(_key(0), 0, TINY)


# ---------------------------------------------------------------- slow physics checks


@pytest.mark.slow
def test_channel_poiseuille_and_mass_flux():
    """Empty channel with the inlet/outlet boundaries: developed parabola, flux in = flux out."""
    nx, h, u_mean, nu = 80, 21, 0.05, 0.1
    bounce = jnp.asarray(fsi.bounce_mask(np.zeros((nx, h), bool), walls=True))
    u_in = fsi.inlet_profile(h, u_mean)
    f0 = fsi.equilibrium(jnp.ones((nx, h)), jnp.broadcast_to(u_in, (nx, h, 2)) * 0.5)
    f = _lbm_run(f0, bounce, nu / fsi.CS2 + 0.5, TINY.trt_magic, steps=6000, u_in=u_in)
    rho, u = (np.asarray(a, np.float64) for a in fsi.macroscopic(f))
    y = np.arange(h) + 0.5
    exact = 6 * u_mean * y * (h - y) / h**2
    err = np.abs(u[nx // 2, :, 0] - exact).max() / exact.max()
    assert err < 0.02, err
    flux = (rho * u[..., 0]).sum(1)
    assert abs(flux[1] - flux[-2]) / flux[1] < 1e-3, (flux[1], flux[-2])


@pytest.mark.slow
def test_flag_flutters_above_critical_inflow_only():
    """Default geometry: Re 30 stays straight, Re 90 flutters (Turek–Hron FSI1 vs FSI2-like)."""
    cfg = dataclasses.replace(fsi.FSIConfig(), warmup_steps=5000, num_frames=30, frame_every=100)
    out = fsi._simulate_batch(
        jnp.asarray([0.03, 0.09]), jnp.asarray([10.0, 10.0]), jnp.asarray([0.75, 0.75]), cfg
    )
    n1 = cfg.num_segments + 1
    tip = np.asarray(out["solid/pos"]).reshape(2, -1, cfg.solid_layers, n1, 2)[:, :, 1, -1, 1]
    amplitude = 0.5 * (tip.max(1) - tip.min(1))
    assert amplitude[0] < 0.05 and amplitude[1] > 3.0, amplitude
