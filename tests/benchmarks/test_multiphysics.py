"""The multiphysics benchmark's pieces: input shapes against hand counts, the PyTorch port of
the implicit baseline against ours (same weights, same outputs and loss), the per-sample
ratio, argument checks, and (slow) a smoke-size run of a few entries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmarks import harness
from benchmarks import multiphysics as mp
from jaxpapers.physics import multisolid
from jaxpapers.physics.generators import fsi


@pytest.fixture(scope="module")
def cfgs():
    return mp.experiment_configs()


def test_contact_shapes_match_the_default_generator(cfgs):
    shapes = mp.contact_scene(mp.contact_generator_config(cfgs["unisoma"]))
    scene = shapes.scene
    # 16 x 5 quadrilaterals per block -> 17 x 6 nodes; 32 boundary points per rigid body
    assert (shapes.deformable_points, shapes.rigid_points) == (17 * 6, 32)
    assert (scene.num_deformables, scene.num_rigids, scene.num_loads) == (2, 2, 2)
    # blocks 0, 1; die 2 under block 0, punch 3 on block 1
    assert scene.contact_pairs == ((0, 2), (0, 1), (1, 3))
    batch = mp.contact_batch(shapes, 3)
    assert batch["load_1"].shape == (3, 32, 4)  # [x0, y0, xT, yT]
    assert batch["rigid_0"].shape == (3, 32, 2)
    assert batch["deformable_1"].shape == (3, 102, 2)
    assert batch["target_0"].shape == (3, 102, 3)  # [dx, dy, stress]
    if getattr(scene, "material_dim", 0):
        assert batch["material_0"].shape == (3, 102, 2)  # [log E, nu]
    assert all(v.dtype == np.float32 for v in batch.values())
    # different seeds, different pool batches
    assert not np.array_equal(batch["rigid_0"], mp.contact_batch(shapes, 3, seed=1)["rigid_0"])


def test_fsi_shapes_and_warmup_factor():
    points, dims, coord = mp.fsi_shapes(mp.fsi_bench_config(1))
    # flag: 28 segments -> 29 nodes; 3 solid layers, 2 interface surfaces. Fluid: a stride-4
    # grid of 40 x 10 nodes (x = 0..156, y = 2..38) minus the 6 inside the cylinder of
    # radius 5 at (20, 19.5): x in {16, 20, 24}, y in {18, 22}.
    assert points == {"solid": 3 * 29, "fluid": 40 * 10 - 6, "interface": 2 * 29}
    assert dims == {"solid": 1, "fluid": 3, "interface": 1} and coord == 2
    # default: ceil(5000 / 40) = 125 warm-up frames + 150 recorded, per recorded frame
    assert mp.fsi_warmup_factor(fsi.FSIConfig()) == pytest.approx(275 / 150)
    cfg = mp.fsi_bench_config(7)
    assert (cfg.warmup_steps, cfg.num_frames, cfg.nx) == (0, 7, 160)
    batch = mp.fsi_batch(points, dims, coord, 2)
    assert batch["current_fluid"].shape == (2, 394, 5) and batch["next_solid"].shape == (2, 87, 3)


def _tiny_transolver(cfgs):
    shapes = mp.contact_scene(mp.contact_generator_config(cfgs["unisoma"]))
    m = mp.model_config(cfgs["unisoma"], "transolver")
    m.emb_dim, m.num_heads, m.slice_num, m.num_layers, m.mlp_ratio = 8, 2, 3, 2, 2
    rngs = nnx.Rngs(jax.random.key(0, impl="rbg"))  # eager init: rbg is faster than threefry
    return shapes, m, multisolid.make_model(m, shapes.scene, rngs)


def test_torch_port_matches_the_jax_baseline(cfgs):
    torch = pytest.importorskip("torch")
    shapes, m, model = _tiny_transolver(cfgs)
    scene = shapes.scene
    port = mp.torch_transolver(**mp.transolver_dims(scene, m))
    params = nnx.state(model, nnx.Param)
    copied = mp.copy_jax_params(port, params, ("model", "transolver"))
    assert copied == multisolid.count_params(model) == sum(p.numel() for p in port.parameters())

    batch = mp.contact_batch(shapes, 2)
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, batch):
        outs = multisolid.call(nnx.merge(graphdef, state), batch, scene)
        return outs, multisolid.longtime_loss(outs, batch, scene)[0]

    outs, loss = forward(state, {k: jnp.asarray(v) for k, v in batch.items()})
    tb = {k: torch.from_numpy(v) for k, v in batch.items()}
    with torch.no_grad():
        t_outs = port(mp.torch_contact_objects(tb, scene))
        deformables = t_outs[scene.num_loads + scene.num_rigids :]
        t_loss = mp.torch_longtime_loss(deformables, tb, scene)
    assert len(deformables) == len(outs) == 2
    for a, b in zip(outs, deformables):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(float(loss), float(t_loss), rtol=1e-5)

    # a port of another width cannot take these weights
    wide = mp.torch_transolver(**{**mp.transolver_dims(scene, m), "emb_dim": 16})
    with pytest.raises(ValueError, match="shape"):
        mp.copy_jax_params(wide, params, ("model", "transolver"))


@pytest.mark.slow  # ~5 s (a Unisoma init and compile); the Transolver port's test stays fast
def test_torch_unisoma_port_matches_ours(cfgs):
    torch = pytest.importorskip("torch")
    shapes = mp.contact_scene(mp.contact_generator_config(cfgs["unisoma"]))
    scene = shapes.scene
    m = mp.model_config(cfgs["unisoma"], "unisoma")
    m.emb_dim, m.num_heads, m.slice_num, m.num_processors, m.mlp_ratio = 8, 2, 3, 1, 2
    model = multisolid.make_model(m, scene, nnx.Rngs(jax.random.key(1, impl="rbg")))
    port = mp.torch_unisoma(**mp.unisoma_dims(scene, m))
    copied = mp.copy_jax_params(port, nnx.state(model, nnx.Param))
    assert copied == multisolid.count_params(model) == sum(p.numel() for p in port.parameters())
    batch = mp.contact_batch(shapes, 2)
    graphdef, state = nnx.split(model)
    outs = jax.jit(lambda st, b: multisolid.call(nnx.merge(graphdef, st), b, scene))(
        state, {k: jnp.asarray(v) for k, v in batch.items()}
    )
    objects = mp.torch_contact_objects({k: torch.from_numpy(v) for k, v in batch.items()}, scene)
    call = mp._TorchInferCall(port, objects, scene)  # pylint: disable=protected-access
    with torch.inference_mode():
        t_outs = port(*call.args)
    assert [tuple(t.shape) for t in t_outs] == [(2, 102, 3), (2, 102, 3)]
    for a, b in zip(outs, t_outs):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), atol=1e-6, rtol=1e-4)


def test_per_sample_ratio_by_hand():
    sim = harness.Entry("sim", lambda: None, samples=[8.0, 12.0], round_means=[8.0, 12.0])
    net = harness.Entry("net", lambda: None, samples=[1.0, 2.0], round_means=[1.0, 2.0])
    # sim: 4 samples per call, net: 32 -> per sample 10/4 = 2.5 s vs 1.5/32 s
    c = mp.per_sample_ratio(sim, net, 4, 32)
    assert c["ratio_per_sample"] == pytest.approx(2.5 / (1.5 / 32))
    # per round: 8/1 * 32/4 = 64 and 12/2 * 8 = 48
    assert c["per_round"]["median"] == pytest.approx(56.0)
    assert (c["per_round"]["q1"], c["per_round"]["q3"]) == pytest.approx((52.0, 60.0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"only": ["no_such_entry"]}, "unknown entries"),
        ({"gen_batch": 0}, "gen_batch"),
        ({"fsi_frames": -1}, "fsi_frames"),
        ({"train_batch": -2}, "train_batch"),
    ],
)
def test_run_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mp.run(**kwargs)


@pytest.mark.slow
def test_smoke_run_reports_ratios(tmp_path):
    results, table = mp.run(
        batch=2,
        train_batch=2,
        fsi_trajectories=1,
        fsi_frames=1,
        rounds=1,
        matmul_n=64,
        only=["fsi_generator", "transolver_fsi_infer", "transolver_fsi_train"],
    )
    entries = results["entries"]
    assert set(entries) == {"fsi_generator", "transolver_fsi_infer", "transolver_fsi_train"}
    assert entries["transolver_fsi_train"]["last_step_finite"]
    ratio = results["comparisons"]["fsi_generator_over_transolver_fsi_infer"]
    expected = (
        entries["fsi_generator"]["per_sample_s"] / entries["transolver_fsi_infer"]["per_sample_s"]
    )
    assert ratio["ratio_per_sample"] == pytest.approx(expected)
    assert "fsi_generator" in table and "sim/this" in table
