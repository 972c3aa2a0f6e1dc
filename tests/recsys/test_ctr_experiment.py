"""FGCNN's experiment in-process: devices agree, resume is exact, baselines run."""

import os

import numpy as np
import pytest

from jaxpapers.core import config as config_lib
from jaxpapers.recsys import fgcnn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(**overrides):
    overrides = {"train.progress": False, **overrides}
    return config_lib.override(
        config_lib.load_file(os.path.join(ROOT, "experiments", "configs", "fgcnn.py"), "tiny"),
        overrides,
    )


@pytest.mark.parametrize("shape", [(-1, 1), (4, 2)])
def test_one_device_and_eight_devices_agree(tmp_path, devices, shape):
    one = fgcnn.run(_config(**{"mesh.shape": (1, 1)}), str(tmp_path / "one"))
    many = fgcnn.run(_config(**{"mesh.shape": shape}), str(tmp_path / "many"))
    for key in ("auc", "logloss", "valid_auc", "valid_logloss"):
        np.testing.assert_allclose(many[key], one[key], rtol=2e-4, err_msg=key)


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(tmp_path):
    full = fgcnn.run(_config(**{"train.num_steps": 32}), str(tmp_path / "full"))
    work = str(tmp_path / "cut")
    fgcnn.run(_config(**{"train.num_steps": 16}), work)  # "interrupted" after step 16
    resumed = fgcnn.run(_config(**{"train.num_steps": 32}), work)
    for key in ("auc", "logloss", "valid_auc", "valid_logloss"):
        assert resumed[key] == full[key], key


@pytest.mark.parametrize("name", ["ipnn", "lr"])
def test_baselines_train(tmp_path, name):
    final = fgcnn.run(_config(**{"model.name": name}), str(tmp_path))
    assert 0.5 < final["auc"] < final["oracle_auc"]


def test_unknown_model_name(tmp_path):
    with pytest.raises(ValueError, match="model.name must be one of"):
        fgcnn.run(_config(**{"model.name": "deepfm"}), str(tmp_path))
