"""Tests for jaxpapers.physics.stretch_files on a tiny fake tree in LaDEEP's released layout."""

import os

import numpy as np
import pytest
from PIL import Image

from jaxpapers.physics import stretch_files
from jaxpapers.physics.stretch_files import FOLDERS, read_split, split_bounds

N_TYPES, N_FILES = 2, 10


def _ident(type_id, i):
    return 100 * type_id + i  # unique per sample; written into every kind's file


def _write_curve(path, ident, n_points):
    x = np.linspace(0.0, 3.0, n_points)
    pts = np.stack([x, np.full_like(x, float(ident)), 0.5 * x], axis=-1)
    np.savetxt(path, pts, fmt="%.10f", delimiter=" ")


def _make_tree(root, n_types=N_TYPES, n_files=N_FILES):
    for t in range(n_types):
        for folder in FOLDERS.values():
            os.makedirs(root / folder / f"type_{t}")
        # Create files out of order: the reader must sort them.
        for i in reversed(range(n_files)):
            ident = _ident(t, i)
            stem = f"{i:04d}"
            for key in ("strip", "mould", "loaded", "unloaded"):
                n_points = 31 if (key == "loaded" and i == 3) else 301  # one needs resampling
                _write_curve(root / FOLDERS[key] / f"type_{t}" / f"{stem}.txt", ident, n_points)
            img = np.full((8, 4), float(ident), np.float32)
            img[0, 0] = -1.5  # signed distances are stored unnormalised
            Image.fromarray(img).save(root / FOLDERS["section"] / f"type_{t}" / f"{stem}.tiff")
            # Two rows summing to (1, 3, 2, ident+1, 1, 0): scaled (0, 1, .5, 1, 1/(ident+1), 0).
            rows = np.array([[1.0, 1.0, 1.0, ident, 0.0, 0.0], [0.0, 2.0, 1.0, 1.0, 1.0, 0.0]])
            np.savetxt(root / FOLDERS["params"] / f"type_{t}" / f"{stem}.csv", rows, delimiter=",")
        (root / FOLDERS["strip"] / f"type_{t}" / ".DS_Store").write_text("ignored")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return _make_tree(tmp_path_factory.mktemp("ladeep_data"))


def test_split_bounds_like_reference():
    assert [split_bounds(10, s) for s in ("train", "eval", "test")] == [(0, 8), (8, 9), (9, 10)]
    # Integer division first: the remainder goes to test.
    assert [split_bounds(15, s) for s in ("train", "eval", "test")] == [(0, 8), (8, 9), (9, 15)]
    with pytest.raises(ValueError, match="split"):
        split_bounds(10, "val")


def test_read_split_shapes_splits_and_pairing(tree):
    data = {s: read_split(tree, s) for s in ("train", "eval", "test")}
    for split, n in (("train", 16), ("eval", 2), ("test", 2)):
        d = data[split]
        assert set(d) == {
            "strip",
            "mould",
            "section",
            "params",
            "loaded",
            "unloaded",
            "section_type",
        }
        for key in ("strip", "mould", "loaded", "unloaded"):
            assert d[key].shape == (n, 301, 3), (split, key)
        assert d["section"].shape == (n, 8, 4) and d["section"].dtype == np.float32
        assert d["params"].shape == (n, 6) and d["params"].dtype == np.float32
        assert d["section_type"].dtype == np.int32
        # 80/10/10 per type.
        np.testing.assert_array_equal(np.bincount(d["section_type"], minlength=2), [n // 2] * 2)
        # Every kind of one sample comes from the same file stem.
        ident = d["section"][:, 1, 1]
        for key in ("strip", "mould", "loaded", "unloaded"):
            np.testing.assert_allclose(d[key][:, :, 1], np.repeat(ident[:, None], 301, 1))
        np.testing.assert_array_equal(ident // 100, d["section_type"])
        np.testing.assert_allclose(d["params"][:, 4], 1.0 / (ident + 1.0), rtol=1e-6)
    ids = {s: set(data[s]["section"][:, 1, 1].astype(int).tolist()) for s in data}
    assert not (ids["train"] & ids["eval"]) and not (ids["train"] & ids["test"])
    assert not (ids["eval"] & ids["test"])
    everything = {_ident(t, i) for t in range(N_TYPES) for i in range(N_FILES)}
    assert ids["train"] | ids["eval"] | ids["test"] == everything
    # Sorted by name: eval holds file 8 of each type, test file 9.
    assert ids["eval"] == {8, 108} and ids["test"] == {9, 109}


def test_values_params_sections_and_resampling(tree):
    d = read_split(tree, "train")
    i = int(np.flatnonzero(d["section"][:, 1, 1] == 5)[0])
    np.testing.assert_allclose(d["params"][i], [0.0, 1.0, 0.5, 1.0, 1.0 / 6.0, 0.0], rtol=1e-6)
    assert d["section"][i, 0, 0] == -1.5
    np.testing.assert_allclose(d["strip"][i, :, 0], np.linspace(0.0, 3.0, 301), atol=1e-9)
    # File 3's loaded curve had 31 points: resampled to 301 on the same straight line.
    j = int(np.flatnonzero(d["section"][:, 1, 1] == 3)[0])
    np.testing.assert_allclose(d["loaded"][j, :, 0], np.linspace(0.0, 3.0, 301), atol=1e-9)
    np.testing.assert_allclose(d["loaded"][j, :, 2], 0.5 * d["loaded"][j, :, 0], atol=1e-9)
    small = read_split(tree, "test", section_shape=(4, 2), n_types=1)
    assert small["section"].shape == (1, 4, 2) and small["section_type"].tolist() == [0]


def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        read_split(tmp_path / "nowhere", "train")
    msg = str(err.value)
    assert stretch_files.DATA_URL in msg and str(tmp_path / "nowhere") in msg
    for folder in FOLDERS.values():
        assert folder in msg
    root = _make_tree(tmp_path / "partial", n_types=1, n_files=1)
    os.rename(root / FOLDERS["params"], root / "params_elsewhere")
    with pytest.raises(FileNotFoundError, match="stretch_bending_params does not exist"):
        read_split(root, "train")


def test_mismatched_file_counts_rejected(tmp_path):
    root = _make_tree(tmp_path / "d", n_types=1, n_files=2)
    os.remove(root / FOLDERS["mould"] / "type_0" / "0001.txt")
    with pytest.raises(ValueError, match="same number of files"):
        read_split(root, "test")
