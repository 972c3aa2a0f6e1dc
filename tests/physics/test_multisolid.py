"""The multi-solid experiment's data plumbing: examples, noise injection, rollout, metrics."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

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


def _follow_rigid_point(raw):
    """Ground truth the oracle reproduces: every node follows rigid point 0."""
    rigid = raw["rigid_0/steps"]
    raw["deformable_0/steps"] = raw["deformable_0/steps"][:, :1] + (
        rigid[:, :, :1] - rigid[:, :1, :1]
    )


def _oracle_rollout(monkeypatch, raw, scene, batch_size):
    """``(prepared, rollout predictions)`` with the trained model replaced by :class:`_Oracle`."""
    prepared = multisolid.prepare(
        type("D", (), {"task": "rollout"})(), {"train": raw, "test": raw}, scene
    )
    monkeypatch.setattr(
        multisolid,
        "_predict",
        lambda g, s, batch, scene: _Oracle(prepared.normalizers)(
            *[[batch[f"{k}_0"]] for k in ("load", "rigid", "deformable")]
        ),
    )
    monkeypatch.setattr(multisolid.nnx, "split", lambda model: (None, None))
    return prepared, multisolid.rollout(object(), prepared, "test", batch_size=batch_size)


def test_rollout_feeds_predictions_back_and_rmse_is_per_frame(monkeypatch):
    raw = _raw(n=2, frames=4)
    _follow_rigid_point(raw)
    _, preds = _oracle_rollout(monkeypatch, raw, SCENE, batch_size=1)
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


def _ragged(*arrays):
    out = np.empty(len(arrays), dtype=object)
    for n, a in enumerate(arrays):
        out[n] = np.asarray(a, np.float32)
    return out


def test_pad_objects_shapes_masks_and_values():
    a, b = np.arange(4.0).reshape(2, 2), np.arange(6.0).reshape(3, 2) + 10  # 2 and 3 points
    splits = {
        "train": {
            "deformable_0/init": _ragged(a, b),
            "deformable_0/stress": _ragged([1, 2], [3, 4, 5]),
            "deformable_0/steps": _ragged(np.stack([a, a + 1]), np.stack([b, b + 1])),
            "rigid_0/init": np.ones((2, 4, 2), np.float32),  # one layout: untouched
            "load_0": _ragged(np.ones((1, 4)), np.ones((2, 4))),
        },
        # Not ragged here, but the object is ragged in train: padded to the overall width 4.
        "test": {
            "deformable_0/init": np.full((1, 4, 2), 7.0, np.float32),
            "deformable_0/stress": np.full((1, 4), 7.0, np.float32),
            "deformable_0/steps": np.full((1, 2, 4, 2), 7.0, np.float32),
            "rigid_0/init": np.ones((1, 5, 2), np.float32),
            "load_0": np.ones((1, 1, 4), np.float32),
        },
    }
    out = multisolid.pad_objects(splits)
    train, test = out["train"], out["test"]
    assert train["deformable_0/init"].shape == (2, 4, 2)
    assert train["deformable_0/stress"].shape == (2, 4)
    assert train["deformable_0/steps"].shape == (2, 2, 4, 2)  # the point axis after frames
    assert train["deformable_0/init"].dtype == np.float32
    np.testing.assert_array_equal(train["deformable_0/mask"], [[1, 1, 0, 0], [1, 1, 1, 0]])
    np.testing.assert_array_equal(test["deformable_0/mask"], [[1, 1, 1, 1]])
    np.testing.assert_array_equal(train["deformable_0/init"][1, :3], b)
    np.testing.assert_array_equal(train["deformable_0/init"][0, 2:], 0.0)  # zero padding
    np.testing.assert_array_equal(train["deformable_0/stress"][0], [1, 2, 0, 0])
    np.testing.assert_array_equal(train["deformable_0/steps"][1, 1, :3], b + 1)
    np.testing.assert_array_equal(test["deformable_0/init"], splits["test"]["deformable_0/init"])
    assert train["load_0"].shape == (2, 2, 4) and test["load_0"].shape == (1, 2, 4)
    np.testing.assert_array_equal(test["load_0/mask"], [[1, 0]])
    assert train["rigid_0/init"] is splits["train"]["rigid_0/init"]  # a fixed count per split
    assert "rigid_0/mask" not in train and "rigid_0/mask" not in test
    with pytest.raises(ValueError, match="belong to no object"):
        multisolid.pad_objects({"train": {"params": _ragged([1.0], [1.0, 2.0])}})
    bad = dict(splits["train"], **{"deformable_0/stress": _ragged([1, 2, 3], [3, 4, 5])})
    with pytest.raises(ValueError, match="disagree"):
        multisolid.pad_objects({"train": bad})


def _plate_split(sizes, seed):
    """Fake ``read_split`` output of the deforming plate: one mesh size per sample."""
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=(p, 3)) for p in sizes]
    rigid = rng.normal(size=(len(sizes), 4, 3)).astype(np.float32)
    return {
        "deformable_0/init": _ragged(*init),
        "deformable_0/final": _ragged(*[x + rng.normal(0, 0.1, x.shape) for x in init]),
        "deformable_0/stress": _ragged(*[rng.uniform(size=len(x)) for x in init]),
        "rigid_0/init": rigid,
        "rigid_0/final": rigid + 1.0,
        "load_0": np.concatenate([rigid, np.ones_like(rigid)], -1),
    }


def test_load_raw_pads_ragged_files_and_the_masks_reach_norms_losses_and_metrics(monkeypatch):
    from jaxpapers.physics import multisolid_files

    layouts = {"train": ((3, 5, 4), 0), "valid": ((2,), 1), "test": ((6, 3), 2)}
    monkeypatch.setattr(
        multisolid_files, "read_split", lambda d, name, split: _plate_split(*layouts[split])
    )
    data = multisolid.data_config()
    data.update(source="unisoma_files", dataset="deforming_plate", task="longtime")
    splits, scene = multisolid.load_raw(data)
    assert scene.masked and scene.fields == ("stress",) and scene.coord_dim == 3
    assert (scene.num_deformables, scene.num_rigids, scene.num_loads) == (1, 1, 1)
    assert splits["train"]["deformable_0/init"].shape == (3, 6, 3)  # the width of test
    np.testing.assert_array_equal(splits["valid"]["deformable_0/mask"], [[1, 1, 0, 0, 0, 0]])
    assert "rigid_0/mask" not in splits["train"]

    prepared = multisolid.prepare(data, splits, scene)
    train = prepared.arrays["train"]
    mask = train["mask_deformable_0"]
    np.testing.assert_array_equal(mask.sum(1), [3, 5, 4])  # masks are not normalised
    assert "mask_rigid_0" not in train
    real = np.concatenate(list(_plate_split(*layouts["train"])["deformable_0/init"]))
    norm = prepared.normalizers["deformable_0"]
    np.testing.assert_allclose(norm.mean, real.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.std, real.std(0), rtol=1e-5)

    # A "prediction" exact at the real points and wild at the padding: zero loss and error.
    keep = mask[..., None] > 0
    target = train["target_0"]
    pred = np.where(keep, target, 1e3).astype(np.float32)
    total, _ = multisolid.longtime_loss([jnp.asarray(pred)], train, scene)
    assert float(total) == 0.0
    total, _ = multisolid.rollout_loss([jnp.asarray(pred + keep)], train, scene)
    np.testing.assert_allclose(float(total), 1.0, rtol=1e-6)  # error 1 at every real point
    out = {"pred_0": pred, "true_0": target, "init_0": train["deformable_0"], "mask_0": mask}
    assert multisolid.summarize_fn(scene)(out)["rel_l2"] == 0.0

    # call() hands each object's mask (None where unpadded) to the model.
    seen = {}

    def fake_model(loads, rigids, deformables, **masks):
        seen.update(masks)
        return deformables

    multisolid.call(fake_model, train, scene)
    assert seen["rigid_masks"] == [None] and seen["load_masks"] == [None]
    assert seen["deformable_masks"][0] is mask


def test_masked_rollout_and_rmse_count_real_nodes_only(monkeypatch):
    raw = _raw(n=2, frames=4, p=5)
    _follow_rigid_point(raw)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], np.float32)  # 3 and 4 real nodes
    raw["deformable_0/steps"] = raw["deformable_0/steps"] * mask[:, None, :, None]
    raw["deformable_0/mask"] = mask
    scene = dataclasses.replace(SCENE, masked=True)
    prepared, preds = _oracle_rollout(monkeypatch, raw, scene, batch_size=2)
    np.testing.assert_array_equal(prepared.arrays["train"]["mask_deformable_0"][3], mask[1])
    # The oracle moves every node; the padded ones keep their zero padding.
    np.testing.assert_allclose(preds[0], raw["deformable_0/steps"], atol=1e-4)
    shifted = [preds[0].copy()]
    shifted[0][:, -1] += np.array([3.0, 4.0], np.float32) * mask[:, :, None]
    shifted[0][:, 1] += 100.0 * (1.0 - mask)[:, :, None]  # padding: ignored
    rmse = multisolid.rollout_rmse(shifted, raw)
    np.testing.assert_allclose(rmse, [0, 0, 0, 5.0], atol=1e-3)
