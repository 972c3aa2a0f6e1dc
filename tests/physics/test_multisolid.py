"""The multi-solid experiment's data plumbing: examples, noise injection, rollout, metrics."""

import dataclasses

import numpy as np

from jaxpapers.physics import fields, multisolid

SCENE = multisolid.Scene(
    num_deformables=1,
    num_rigids=1,
    num_loads=1,
    contact_pairs=((0, 1),),
    coord_dim=2,
    fields=("stress",),
)


def _raw(n=3, frames=4, p=5, q=2, seed=0):
    rng = np.random.default_rng(seed)
    rigid = np.cumsum(rng.normal(size=(n, frames, q, 2)), axis=1).astype(np.float32)
    body = np.cumsum(rng.normal(size=(n, frames, p, 2)), axis=1).astype(np.float32)
    stress = rng.uniform(size=(n, frames, p)).astype(np.float32)
    raw = {
        "deformable_0/init": body[:, 0],
        "deformable_0/final": body[:, -1],
        "deformable_0/steps": body,
        "deformable_0/stress": stress[:, -1],
        "deformable_0/stress_steps": stress,
        "rigid_0/init": rigid[:, 0],
        "rigid_0/final": rigid[:, -1],
        "rigid_0/steps": rigid,
    }
    multisolid._add_loads(raw, 1)
    return raw


def test_longtime_examples_follow_the_reference_layout():
    raw = _raw()
    ex = multisolid.longtime_examples(raw, SCENE)
    np.testing.assert_array_equal(ex["load_0"][..., :2], raw["rigid_0/init"])
    np.testing.assert_array_equal(ex["load_0"][..., 2:], raw["rigid_0/final"])  # [x0, xT]
    np.testing.assert_allclose(
        ex["target_0"][..., :2], raw["deformable_0/final"] - raw["deformable_0/init"]
    )
    np.testing.assert_array_equal(ex["target_0"][..., 2], raw["deformable_0/stress"])


def test_rollout_examples_pair_every_frame_with_the_next():
    raw = _raw(n=2, frames=4)
    ex = multisolid.rollout_examples(raw, SCENE)
    assert ex["deformable_0"].shape == (2 * 3, 5, 2)
    # Row 4 is scene 1, frame 1 -> 2.
    body, rigid = raw["deformable_0/steps"], raw["rigid_0/steps"]
    np.testing.assert_allclose(ex["target_0"][4, :, :2], body[1, 2] - body[1, 1])
    np.testing.assert_array_equal(ex["target_0"][4, :, 2], raw["deformable_0/stress_steps"][1, 2])
    np.testing.assert_allclose(
        ex["load_0"][4], np.concatenate([rigid[1, 1], rigid[1, 2] - rigid[1, 1]], -1)
    )


def test_material_inputs_and_stress_over_youngs_modulus():
    raw = _raw(n=2, frames=4, p=5)
    raw["params"] = np.array([[10.0, 0.3], [1000.0, 0.45]], np.float32)  # (E, ν) of block 0
    stress, stress_steps = raw["deformable_0/stress"].copy(), raw["deformable_0/stress_steps"]
    multisolid._add_material(raw, ("block0_youngs_modulus", "block0_poisson_ratio"))
    material = raw["deformable_0/material"]
    assert material.shape == (2, 5, 2)
    np.testing.assert_allclose(material[1, 3], [np.log(1000.0), 0.45], rtol=1e-6)
    np.testing.assert_allclose(raw["deformable_0/stress"][0], stress[0] / 10.0, rtol=1e-6)
    np.testing.assert_allclose(
        raw["deformable_0/stress_steps"][1], stress_steps[1] / 1000.0, rtol=1e-6
    )
    scene = dataclasses.replace(SCENE, material_dim=2)
    longtime = multisolid.longtime_examples(raw, scene)
    np.testing.assert_array_equal(longtime["material_0"], material)
    rollout = multisolid.rollout_examples(raw, scene)
    assert rollout["material_0"].shape == (2 * 3, 5, 2)
    np.testing.assert_array_equal(rollout["material_0"][4], material[1])  # scene 1, frame 1


def test_noise_injection_keeps_the_true_next_position():
    raw = _raw()
    ex = multisolid.rollout_examples(raw, SCENE)
    norms = {k: fields.Normalizer.fit(v) for k, v in ex.items()}
    batch = {k: norms[k](v) for k, v in ex.items()}
    noisy = multisolid._noise_transform(SCENE, norms, 0.3)(
        {k: v.copy() for k, v in batch.items()}, np.random.default_rng(0)
    )
    assert not np.allclose(noisy["deformable_0"], batch["deformable_0"])
    before = (
        norms["deformable_0"].inverse(batch["deformable_0"])
        + norms["target_0"].inverse(batch["target_0"])[..., :2]
    )
    after = (
        norms["deformable_0"].inverse(noisy["deformable_0"])
        + norms["target_0"].inverse(noisy["target_0"])[..., :2]
    )
    np.testing.assert_allclose(after, before, atol=1e-4)
    np.testing.assert_array_equal(noisy["target_0"][..., 2], batch["target_0"][..., 2])


class _Oracle:
    """Moves the body with the first rigid point's increment (in physical units)."""

    def __init__(self, norms):
        self.norms = norms

    def __call__(self, loads, rigids, deformables):
        load = self.norms["load_0"].inverse(np.asarray(loads[0]))
        inc = np.broadcast_to(load[:, :1, 2:], deformables[0].shape)
        out = np.concatenate([inc, np.zeros(inc.shape[:-1] + (1,), inc.dtype)], -1)
        return [self.norms["target_0"](out)]


def test_rollout_feeds_predictions_back_and_rmse_is_per_frame(monkeypatch):
    raw = _raw(n=2, frames=4)
    # Ground truth that the oracle can reproduce: every node follows rigid point 0.
    rigid = raw["rigid_0/steps"]
    raw["deformable_0/steps"] = raw["deformable_0/steps"][:, :1] + (
        rigid[:, :, :1] - rigid[:, :1, :1]
    )
    prepared = multisolid.prepare(
        type("D", (), {"task": "rollout"})(), {"train": raw, "test": raw}, SCENE
    )
    monkeypatch.setattr(
        multisolid,
        "_predict",
        lambda g, s, batch, scene: _Oracle(prepared.normalizers)(
            *[[batch[f"{k}_0"]] for k in ("load", "rigid", "deformable")]
        ),
    )
    monkeypatch.setattr(multisolid.nnx, "split", lambda model: (None, None))
    preds = multisolid.rollout(object(), prepared, "test", batch_size=1)
    np.testing.assert_allclose(preds[0], raw["deformable_0/steps"], atol=1e-4)
    rmse = multisolid.rollout_rmse(preds, raw)
    np.testing.assert_allclose(rmse, 0.0, atol=1e-4)
    # A constant (3, 4) error at the last frame only: RMSE 5 there, 0 elsewhere.
    shifted = [preds[0].copy()]
    shifted[0][:, -1] += np.array([3.0, 4.0], np.float32)
    np.testing.assert_allclose(multisolid.rollout_rmse(shifted, raw)[-1], 5.0, atol=1e-3)


def test_generated_scenes_are_cached_by_config_count_and_seed(tmp_path, monkeypatch):
    from jaxpapers.physics.generators import contact

    calls = []

    def fake_generate(key, num, config):
        calls.append(num)
        return {"deformable_0/init": np.full((num, 3, 2), float(len(calls)), np.float32)}

    monkeypatch.setattr(contact, "generate", fake_generate)
    gen = contact.ContactConfig(num_deformables=1)
    first = multisolid._generate_cached(gen, 4, 0, str(tmp_path))
    again = multisolid._generate_cached(gen, 4, 0, str(tmp_path))
    assert calls == [4]  # the second call read the file
    np.testing.assert_array_equal(again["deformable_0/init"], first["deformable_0/init"])
    multisolid._generate_cached(gen, 4, 1, str(tmp_path))  # another seed: generated anew
    multisolid._generate_cached(dataclasses.replace(gen, nx=8), 4, 0, str(tmp_path))
    assert calls == [4, 4, 4] and len(list(tmp_path.glob("contact-*.npz"))) == 3
    multisolid._generate_cached(gen, 4, 0, "")  # no cache: always generated
    assert len(calls) == 4
