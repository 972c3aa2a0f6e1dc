"""Tests for jaxpapers.physics.multisolid_files on tiny pickles in Unisoma's released layout."""

import pickle

import numpy as np
import pytest

from jaxpapers.physics import multisolid_files
from jaxpapers.physics.multisolid_files import DATASETS, read_split, rollout_loads


def _dump(path, records):
    with open(path, "wb") as f:
        pickle.dump(records, f)


def _pts(n, base):
    """``n`` distinct 3D points offset by ``base``: row r is (base + r, 2r, -r)."""
    r = np.arange(n, dtype=np.float64)
    return np.stack([base + r, 2 * r, -r], axis=-1)


def _stamping_record(sample, unilateral=False):
    rec = {
        "init_metal_pos": _pts(4, 10.0 * sample),
        "final_metal_pos": _pts(4, 10.0 * sample) + 0.5,
        "init_rubber_pos": _pts(3, 100.0),
        "final_rubber_pos": _pts(3, 100.0) - 0.25,
        "final_metal_stress": np.array([[1.0], [2.0], [3.0], [4.0]]),
        "final_metal_peeq": np.array([0.1, 0.2, 0.3, 0.4]),
        "final_rubber_stress": np.array([5.0, 6.0, 7.0]),
        "final_rubber_peeq": np.array([0.0, 0.0, 0.5]),
    }
    moving = np.array([[1.0, 2.0, 3.0, 0.0, 0.0, -1.0], [4.0, 5.0, 6.0, 0.0, 0.0, -1.0]])
    if unilateral:
        rec["die_1_pos"] = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
        for i in range(1, 17):
            rec[f"die_2-{i}_pos"] = moving + np.array([i, 0, 0, 0, 0, 0])
    else:
        rec["die_1_pos"] = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 2.0]])
        rec["die_2_pos"] = moving
    return rec


def test_bilateral_stamping_keys_loads_and_fields(tmp_path):
    _dump(tmp_path / "bilateral_stamping_dataset_train.pkl", [_stamping_record(s) for s in (0, 1)])
    data = read_split(tmp_path, "bilateral_stamping", "train")
    assert data["deformable_0/init"].shape == (2, 4, 3)
    assert data["deformable_1/final"].shape == (2, 3, 3)
    assert data["deformable_0/init"].dtype == np.float32
    np.testing.assert_allclose(data["deformable_0/init"][1, 2], [12.0, 4.0, -2.0])
    np.testing.assert_allclose(data["deformable_0/final"][0, 0], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(data["deformable_0/stress"][0], [1, 2, 3, 4])
    np.testing.assert_allclose(data["deformable_1/peeq"][1], [0, 0, 0.5])
    # Rigid = the die's first three columns; load = [position, position + displacement].
    np.testing.assert_allclose(data["rigid_0/init"][0], [[0, 0, 0]])
    np.testing.assert_allclose(data["rigid_0/final"][0], [[0, 0, 2]])
    np.testing.assert_allclose(data["load_0"][0], [[0, 0, 0, 0, 0, 2]])
    np.testing.assert_allclose(data["load_1"][0], [[1, 2, 3, 1, 2, 2], [4, 5, 6, 4, 5, 5]])
    assert data["load_1"].shape == (2, 2, 6)
    assert not any(k.startswith("load_2") or k.startswith("rigid_2") for k in data)


def test_unilateral_stamping_has_17_rigids_and_16_loads(tmp_path):
    _dump(tmp_path / "unilateral_stamping_dataset_test.pkl", [_stamping_record(0, True)])
    data = read_split(tmp_path, "unilateral_stamping", "test")
    rigids = sorted(k for k in data if k.startswith("rigid_") and k.endswith("/init"))
    loads = sorted(k for k in data if k.startswith("load_"))
    assert len(rigids) == 17 and len(loads) == 16
    np.testing.assert_allclose(data["rigid_0/init"][0], [[0, 0, 0], [1, 0, 0]])
    np.testing.assert_allclose(data["rigid_0/final"][0], [[0, 0, 0], [1, 0, 0]])  # fixed die
    # load_0 is built from die_2-1 (rigid 1): x shifted by 1, end = start - (0, 0, 1).
    np.testing.assert_allclose(data["rigid_1/init"][0], [[2, 2, 3], [5, 5, 6]])
    np.testing.assert_allclose(data["load_0"][0], [[2, 2, 3, 2, 2, 2], [5, 5, 6, 5, 5, 5]])
    np.testing.assert_allclose(data["load_15"][0, 0], [17, 2, 3, 17, 2, 2])
    spec = DATASETS["unilateral_stamping"]
    assert spec.contact_pairs == tuple((0, i) for i in range(1, 19))
    assert (spec.num_rigids, spec.num_loads, spec.deformable_out_dim) == (17, 16, 5)


def _plate_record(num_nodes, shifts):
    frames = len(shifts)
    rigid0 = _pts(2, 50.0)
    return {
        "deformable_solid_pos": [_pts(num_nodes, 0.0) + 0.1 * t for t in range(frames)],
        "rigid_solid_pos": [rigid0 + np.array([0.0, 0.0, -s]) for s in shifts],
        "deformable_solid_stress": [np.full((num_nodes, 1), 1000.0 * t) for t in range(frames)],
    }


def test_deforming_plate_target_is_first_frame_of_largest_rigid_motion(tmp_path):
    # Rigid shifts 0, 2, 5, 5, 3: the first maximum is frame 2.
    _dump(tmp_path / "deforming_plate_dataset_eval.pkl", [_plate_record(3, [0, 2, 5, 5, 3])])
    data = read_split(tmp_path, "deforming_plate", "valid")  # valid reads the eval pickle
    np.testing.assert_allclose(data["deformable_0/init"][0], _pts(3, 0.0))
    np.testing.assert_allclose(data["deformable_0/final"][0], _pts(3, 0.0) + 0.2, rtol=1e-6)
    np.testing.assert_allclose(data["deformable_0/stress"][0], [2.0, 2.0, 2.0])  # 2000 / 1e3
    np.testing.assert_allclose(data["rigid_0/final"][0, :, 2] - data["rigid_0/init"][0, :, 2], -5)
    np.testing.assert_allclose(data["load_0"][0, 0], [50, 0, 0, 0, 0, -5])
    assert "deformable_0/steps" not in data


def test_ragged_point_counts_give_object_arrays(tmp_path):
    _dump(
        tmp_path / "deforming_plate_dataset_train.pkl",
        [_plate_record(3, [0, 1]), _plate_record(5, [0, 1])],
    )
    data = read_split(tmp_path, "deforming_plate", "train")
    assert data["deformable_0/init"].dtype == object
    assert [a.shape for a in data["deformable_0/init"]] == [(3, 3), (5, 3)]
    assert data["rigid_0/init"].shape == (2, 2, 3)  # same size in both samples: stacked


def _tissue_record(frames):
    gripper = [np.array([[0.0, 0.0, 1.0 * t]]) for t in range(frames)]
    return {
        "tissue_mesh_positions": [_pts(4, 0.0) + t for t in range(frames)],
        "gripper_position": gripper,
        "grasping_position": np.array([7.0, 8.0, 9.0]),
    }


def test_trajectory_dataset_steps_final_and_loads(tmp_path):
    _dump(tmp_path / "tissue_manipulation_dataset_train.pkl", [_tissue_record(6)] * 3)
    data = read_split(tmp_path, "tissue_manipulation", "train", frames=4)
    assert data["deformable_0/steps"].shape == (3, 4, 4, 3)
    assert data["rigid_0/steps"].shape == (3, 4, 1, 3)
    assert data["rigid_1/steps"].shape == (3, 4, 1, 3)
    np.testing.assert_allclose(data["deformable_0/steps"][0, 3], _pts(4, 0.0) + 3)
    # Long-time: init = frame 0, final = the file's last frame (target_frame = -1).
    np.testing.assert_allclose(data["deformable_0/final"][0], _pts(4, 0.0) + 5)
    np.testing.assert_allclose(data["load_0"][0], [[0, 0, 0, 0, 0, 5]])
    np.testing.assert_allclose(data["load_1"][0], [[7, 8, 9, 0, 0, 0]])
    np.testing.assert_allclose(data["rigid_1/steps"][0, :, 0], [[7, 8, 9]] * 4)
    with pytest.raises(ValueError, match="has 6 frames, the rollout needs 105"):
        read_split(tmp_path, "tissue_manipulation", "train")


def test_rollout_loads_by_hand():
    steps = np.array([[[0.0, 0, 0]], [[1.0, 0, 0]], [[1.0, 2, 0]]])  # (F=3, Q=1, 3)
    np.testing.assert_allclose(rollout_loads(steps), [[[0, 0, 0, 1, 0, 0]], [[1, 0, 0, 0, 2, 0]]])
    np.testing.assert_allclose(rollout_loads(steps, static=True)[1], [[1, 0, 0, 0, 0, 0]])


def test_specs_match_the_reference_configs():
    # (deformable_num, rigid_num, load_num, output_deformable_dim, contact pairs) from configs/.
    expected = {
        "deforming_plate": (1, 1, 1, 4, 1),
        "bilateral_stamping": (2, 2, 2, 5, 5),
        "cavity_grasping": (1, 2, 2, 3, 2),
        "tissue_manipulation": (1, 2, 2, 3, 2),
        "rice_grip": (1, 2, 2, 3, 2),
        "cavity_extruding": (3, 4, 4, 3, 6),
    }
    for name, (d, r, k, out, c) in expected.items():
        s = DATASETS[name]
        assert (s.num_deformables, s.num_rigids, s.num_loads) == (d, r, k), name
        assert (s.deformable_out_dim, len(s.contact_pairs), s.load_dim) == (out, c, 6), name
        assert all(max(p) < d + r for p in s.contact_pairs), name
    assert DATASETS["cavity_extruding"].frames == 121 and DATASETS["rice_grip"].frames == 41


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        read_split(tmp_path, "cavity_extruding", "valid")
    msg = str(err.value)
    assert str(tmp_path / "cavity_extruding_dataset_eval.pkl") in msg
    assert multisolid_files.DATA_URLS["created"] in msg
    with pytest.raises(FileNotFoundError, match="GGNS"):
        read_split(tmp_path, "tissue_manipulation", "test")
    with pytest.raises(ValueError, match="dataset must be one of"):
        read_split(tmp_path, "flag", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        read_split(tmp_path, "rice_grip", "validation")
