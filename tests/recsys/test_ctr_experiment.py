"""FGCNN's experiment in-process: devices agree, resume is exact, baselines run."""

import os

import numpy as np
import pytest

from jaxpapers.core import config as config_lib
from jaxpapers.recsys import ctr, fgcnn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(**overrides):
    overrides = {"train.progress": False, **overrides}
    return config_lib.override(
        config_lib.load_file(os.path.join(ROOT, "experiments", "configs", "fgcnn.py"), "tiny"),
        overrides,
    )


# Slow: tests/core/test_train.py checks one- against eight-device training in the fast suite.
@pytest.mark.slow
@pytest.mark.parametrize("shape", [(-1, 1), (4, 2)])
def test_one_device_and_eight_devices_agree(tmp_path, devices, shape):
    one = fgcnn.run(_config(**{"mesh.shape": (1, 1)}), str(tmp_path / "one"))
    many = fgcnn.run(_config(**{"mesh.shape": shape}), str(tmp_path / "many"))
    for key in ("auc", "logloss", "valid_auc", "valid_logloss"):
        np.testing.assert_allclose(many[key], one[key], rtol=2e-4, err_msg=key)


@pytest.mark.slow  # resumption is tested fast in tests/core/test_train.py and the launcher test
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


@pytest.mark.slow  # the raw-file reader itself is tested fast in tests/data/test_ctr_files.py
def test_runs_on_a_raw_criteo_file(tmp_path):
    """The `paper` data path end to end on a small file in Criteo's raw format."""
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(3000):
        c1 = rng.choice(["68fd1e64", "80e26c9b", "0b153874", ""])
        label = int(rng.random() < (0.6 if c1 == "68fd1e64" else 0.15))
        ints = [str(rng.integers(0, 50)) if rng.random() > 0.1 else "" for _ in range(13)]
        cats = [c1] + [f"{rng.integers(0, 30):08x}" for _ in range(25)]
        lines.append("\t".join([str(label), *ints, *cats]))
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    config = _config(
        **{
            "data.source": "criteo",
            "data.data_dir": str(tmp_path),
            "data.min_count": 2,
            "train.num_epochs": 2.0,
        }
    )
    final = fgcnn.run(config, str(tmp_path / "run"))
    assert "oracle_auc" not in final  # real data has no oracle
    assert final["auc"] > 0.6  # C1 carries the signal


def test_learning_rate_decays_after_the_listed_epochs():
    config = _config(**{"optim.learning_rate": 0.01, "optim.decay_epochs": (1.5, 2.0)})
    schedule = ctr.learning_rate(config.optim, batches_per_epoch=10)
    # optax counts updates from 0: update i (0-based) uses schedule(i); step 15 is update 14.
    assert float(schedule(14)) == pytest.approx(0.01)
    assert float(schedule(15)) == pytest.approx(0.001)
    assert float(schedule(19)) == pytest.approx(0.001)
    assert float(schedule(20)) == pytest.approx(0.0001)


def test_eval_cadence_in_epochs():
    config = _config(**{"train.eval_every": 0, "train.eval_every_epochs": 0.5})
    assert ctr.loop_config(config, steps=100, num_train=8192).eval_every == 16  # 32 batches/epoch
    with pytest.raises(ValueError, match="exceeds the 100 training examples"):
        ctr.make_task(_config(**{"train.num_steps": 5}), _tiny_data(100), fgcnn.MODELS["lr"], 5)


def _tiny_data(n):
    from jaxpapers.data import ctr as ctr_data

    return ctr_data.synthetic_ctr(num_train=n, num_valid=10, num_test=10, num_fields=4, seed=0)
