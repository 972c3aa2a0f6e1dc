"""Tests for jaxpapers.physics.fluidsolid_files on tiny files in Fisale's released layouts."""

import pickle
import random

import h5py
import numpy as np
import pytest

from jaxpapers.physics import fluidsolid_files
from jaxpapers.physics.fluidsolid_files import domain_nodes, read_split, split_bounds

# Six nodes; cells 0, 1 fluid and 2, 3 solid. Fluid nodes {0, 1, 2, 4}, solid {1, 2, 3, 5}:
# interface {1, 2}, fluid only {0, 4}, solid only {3, 5}.
COORDS = np.array([[i, -i] for i in range(6)], dtype=np.float64)
TOPOLOGY = np.array([[0, 1, 2], [0, 2, 4], [1, 2, 3], [3, 5, 2]])
VALUES = np.array([[1], [1], [2], [2]])
# Folder -> trajectory id. The reference's loops visit x1 = 6.0 before 4.0, and skip the
# folders that `str` of its list values does not name ("mu=5.0", "x1=-2.0").
FOLDERS = {
    "mu=1.0/x1=-4.0/x2=-4.0": 1,
    "mu=1.0/x1=0.0/x2=6.0": 2,
    "mu=5/x1=2.0/x2=-2.0": 3,
    "mu=10.0/x1=6.0/x2=4.0": 4,
    "mu=10.0/x1=4.0/x2=2.0": 5,
    "mu=5.0/x1=2.0/x2=-2.0": 8,
    "mu=1.0/x1=-2.0/x2=-4.0": 9,
}
FRAMES, STRIDE = 24, 4  # frames 0, 4, ..., 20: five pairs per folder, 25 in all


def _write_oscillation_tree(root):
    base = root / "TF_fsi2_results"
    base.mkdir()
    with h5py.File(base / "mesh.h5", "w") as f:
        f["domains/coordinates"] = COORDS
        f["domains/topology"] = TOPOLOGY
        f["domains/values"] = VALUES
    node = np.arange(6)
    for folder, ident in FOLDERS.items():
        vis = base / folder / "Visualization"
        vis.mkdir(parents=True)
        with (
            h5py.File(vis / "displacement.h5", "w") as fd,
            h5py.File(vis / "pressure.h5", "w") as fp,
            h5py.File(vis / "velocity.h5", "w") as fv,
        ):
            for i in range(FRAMES):
                fd[f"VisualisationVector/{i}"] = np.tile([100.0 * ident + i, 0.0, 7.0], (6, 1))
                fp[f"VisualisationVector/{i}"] = (100.0 * ident + i + 0.01 * node)[:, None]
                fv[f"VisualisationVector/{i}"] = np.tile([float(i), -float(i), 99.0], (6, 1))
    return root


@pytest.fixture(scope="module")
def oscillation(tmp_path_factory):
    root = _write_oscillation_tree(tmp_path_factory.mktemp("fisale_so"))
    return {
        s: read_split(root, "structure_oscillation", s, frames=FRAMES, stride=STRIDE)
        for s in ("train", "valid", "test")
    }


def test_domain_nodes_by_hand():
    nodes = domain_nodes(TOPOLOGY, VALUES)
    assert nodes["solid"].tolist() == [3, 5]
    assert nodes["fluid"].tolist() == [0, 4]
    assert nodes["interface"].tolist() == [1, 2]


def test_structure_oscillation_split_sizes_and_shapes(oscillation):
    assert [len(oscillation[s]["params"]) for s in ("train", "valid", "test")] == [20, 2, 3]
    tr = oscillation["train"]
    assert tr["solid/pos"].shape == (20, 2, 2, 2)
    assert tr["fluid/pos"].shape == (20, 2, 2, 2) and tr["fluid/vel"].shape == (20, 2, 2, 2)
    assert tr["fluid/pressure"].shape == (20, 2, 2)
    assert tr["interface/pos"].shape == (20, 2, 2, 2)
    assert tr["interface/pressure"].shape == (20, 2, 2)
    assert "solid/stress" not in tr and "interface/vel" not in tr  # the reference has neither
    assert tr["fluid/pos"].dtype == np.float32


def test_structure_oscillation_pairs_follow_the_reference_shuffle(oscillation):
    # The reference: pairs of folders in loop order (ids 1, 2, 3, 4, 5; decoys skipped),
    # consecutive sampled frames, `random.seed(42); random.shuffle(pairs)`, then 80/10/10.
    pairs = [(ident, f) for ident in (1, 2, 3, 4, 5) for f in (0, 4, 8, 12, 16)]
    random.seed(42)
    random.shuffle(pairs)
    expected = {"train": pairs[:20], "valid": pairs[20:22], "test": pairs[22:]}
    for split, data in oscillation.items():
        got = [
            (int(p // 100), int(f))
            for p, f in zip(data["fluid/pressure"][:, 0, 0], data["frame"][:, 0])
        ]
        assert got == expected[split], split
        np.testing.assert_array_equal(data["frame"][:, 1], data["frame"][:, 0] + 4)


def test_structure_oscillation_values(oscillation):
    data = oscillation["test"]
    ident = int(data["fluid/pressure"][0, 0, 0] // 100)
    f = int(data["frame"][0, 0])
    shift = 100.0 * ident + f
    # Solid nodes 3, 5 at frame f: mesh coordinates + the first two displacement components.
    np.testing.assert_allclose(data["solid/pos"][0, 0], [[3 + shift, -3], [5 + shift, -5]])
    np.testing.assert_allclose(data["interface/pressure"][0, 0], [shift + 0.01, shift + 0.02])
    np.testing.assert_allclose(data["fluid/pressure"][0, 1], [shift + 4, shift + 4.04], rtol=1e-6)
    np.testing.assert_allclose(data["fluid/vel"][0, 1], [[f + 4, -(f + 4)]] * 2)
    params = {1: (1, -4, -4), 2: (1, 0, 6), 3: (5, 2, -2), 4: (10, 6, 4), 5: (10, 4, 2)}
    np.testing.assert_allclose(data["params"][0], params[ident])


def test_split_bounds_is_80_10_10():
    assert split_bounds(25, "train") == (0, 20)
    assert split_bounds(25, "valid") == (20, 22)
    assert split_bounds(25, "eval") == (20, 22)
    assert split_bounds(25, "test") == (22, 25)


def _valve_record(shift):
    t = np.arange(5, dtype=np.float64)[:, None, None]  # (T=5, 1, 1)
    return {
        "solid": {"position": t + np.zeros((5, 3, 2)) + shift, "stress": t + np.zeros((5, 3, 1))},
        "fluid": {
            "position": np.zeros((5, 4, 2)),
            "pressure": 2 * t + np.zeros((5, 4, 1)),
            "velocity": -t + np.zeros((5, 4, 2)),
        },
        "interface": {
            "position": np.ones((5, 2, 2)),
            "stress": 3 * t + np.zeros((5, 2, 1)),
            "pressure": np.zeros((5, 2, 1)),
            "velocity": t + np.zeros((5, 2, 2)),
        },
    }


def test_venous_valve_trajectories(tmp_path):
    with open(tmp_path / "venous_valve_eval.pkl", "wb") as f:
        pickle.dump([_valve_record(0.0), _valve_record(10.0)], f)
    data = read_split(tmp_path, "venous_valve", "valid", frames=5, stride=2)  # frames 0, 2, 4
    assert data["solid/pos"].shape == (2, 3, 3, 2)
    assert data["solid/stress"].shape == (2, 3, 3)
    assert data["interface/vel"].shape == (2, 3, 2, 2)
    np.testing.assert_allclose(data["solid/pos"][1, :, 0, 0], [10, 12, 14])
    np.testing.assert_allclose(data["interface/stress"][0, :, 1], [0, 6, 12])
    np.testing.assert_allclose(data["fluid/vel"][0, 2, 3], [-4, -4])
    assert set(fluidsolid_files.DATASETS["venous_valve"].quantities["interface"]) == {
        "stress",
        "pressure",
        "vel",
    }
    with pytest.raises(ValueError, match="T >= 101"):
        read_split(tmp_path, "venous_valve", "valid")


def test_flexible_wing_initial_and_final_frames(tmp_path):
    rec = {
        "wing_material": [1.0, 2.0, 3.0],
        "attack_angle": 5.0,
        "wind_velocity": np.array([30.0]),
        "solid": {
            "init_position": np.zeros((3, 3)),
            "final_position": np.ones((3, 3)),
            "stress": np.full((3, 1), 4.0),
        },
        "fluid": {
            "init_position": np.zeros((4, 3)),
            "final_position": np.ones((4, 3)),
            "pressure": np.full((4, 1), 2.0),
            "velocity": np.full((4, 3), -1.0),
        },
        "interface": {
            "init_position": np.zeros((2, 3)),
            "final_position": np.ones((2, 3)),
            "stress": np.ones((2, 1)),
            "pressure": np.ones((2, 1)),
            "velocity": np.ones((2, 3)),
        },
    }
    with open(tmp_path / "flexible_wing_test.pkl", "wb") as f:
        pickle.dump([rec], f)
    data = read_split(tmp_path, "flexible_wing", "test")
    assert data["fluid/pos"].shape == (1, 2, 4, 3)
    np.testing.assert_allclose(data["solid/pos"][0, :, 0], [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_allclose(data["solid/stress"][0], [[0, 0, 0], [4, 4, 4]])  # frame 0: zeros
    np.testing.assert_allclose(data["fluid/vel"][0, 1], -np.ones((4, 3)))
    np.testing.assert_allclose(data["params"], [[1, 2, 3, 5, 30]])


def test_missing_files_name_the_path_and_the_source(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        read_split(tmp_path, "structure_oscillation", "train")
    assert str(tmp_path / "TF_fsi2_results" / "mesh.h5") in str(err.value)
    assert fluidsolid_files.DATA_URLS["coda_no"] in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        read_split(tmp_path, "venous_valve", "valid")
    assert str(tmp_path / "venous_valve_eval.pkl") in str(err.value)
    assert fluidsolid_files.DATA_URLS["fisale"] in str(err.value)
    with pytest.raises(ValueError, match="dataset must be one of"):
        read_split(tmp_path, "flag", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        read_split(tmp_path, "venous_valve", "dev")
