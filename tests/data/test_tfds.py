"""Tests for jaxpapers.data.tfds (offline tfds.data_source wrapper)."""

import os
import subprocess
import sys

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from jaxpapers.data import tfds as jp_tfds  # noqa: E402


def test_importing_the_helper_does_not_import_tfds():
    code = "import sys, jaxpapers.data.tfds; assert 'tensorflow_datasets' not in sys.modules"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_missing_dataset_raises_file_not_found_with_instructions(tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        jp_tfds.data_source("mnist", split="train", data_dir=tmp_path)
    message = str(excinfo.value)
    assert "'mnist'" in message
    assert str(tmp_path) in message
    assert f"tfds build mnist --data_dir={tmp_path}" in message
    assert "--file_format=array_record" in message
    assert "--config.data.data_dir=<dir>" in message
    # Nothing was downloaded or prepared.
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_unknown_dataset_keeps_the_tfds_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        jp_tfds.data_source("no_such_dataset_xyz", split="train", data_dir=tmp_path)


def test_reads_records_through_mocked_tfds(tmp_path):
    # tfds.testing.mock_data patches builder.as_data_source with random
    # examples generated from the dataset's feature spec; this works without
    # TensorFlow installed.
    with tfds.testing.mock_data(num_examples=7):
        source = jp_tfds.data_source("mnist", split="train", data_dir=tmp_path)
        assert len(source) == 7
        first = source[0]
        assert set(first) == {"image", "label"}
        assert first["image"].shape == (28, 28, 1)
        assert first["image"].dtype == np.uint8
        assert 0 <= int(first["label"]) < 10
        # Random access is deterministic.
        np.testing.assert_array_equal(source[3]["image"], source[3]["image"])
