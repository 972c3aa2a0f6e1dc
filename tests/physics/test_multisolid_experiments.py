"""Unisoma and Fisale experiments end to end on their tiny configs (each ~45 s: slow)."""

import math
import os

import pytest

from jaxpapers.core import config as config_lib
from jaxpapers.core import metrics as metrics_lib
from jaxpapers.core import registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(paper, **overrides):
    """The tiny config on one device (the test session has 8 fake ones; batches of 4)."""
    path = os.path.join(ROOT, "experiments", "configs", f"{paper}.py")
    overrides = {"mesh.shape": (1, 1), **overrides}
    return config_lib.override(config_lib.load_file(path, "tiny"), overrides)


def _events(workdir):
    return metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["unisoma", "transolver"])
def test_unisoma_tiny_end_to_end(tmp_path, model):
    work = str(tmp_path / model)
    final = registry.get("unisoma")(_config("unisoma", **{"model.name": model}), work)
    for key in ("rel_l2", "rel_l2_disp", "rel_l2_stress", "rel_l2_d0", "rel_l2_d1"):
        assert math.isfinite(final[key]) and final[key] > 0, key
    assert final["num_steps"] == 2 * (16 // 4)
    assert {"train", "valid", "test"} <= {e["split"] for e in _events(work)}
    for name in ("fields", "learning_curves"):
        assert os.path.getsize(os.path.join(work, "plots", f"{name}.png")) > 0


@pytest.mark.slow
def test_unisoma_tiny_rollout(tmp_path):
    work = str(tmp_path / "rollout")
    final = registry.get("unisoma")(_config("unisoma", **{"data.task": "rollout"}), work)
    assert math.isfinite(final["rollout_rmse"]) and final["rollout_rmse"] > 0
    assert os.path.getsize(os.path.join(work, "plots", "rollout_rmse.png")) > 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["fisale", "transolver"])
def test_fisale_tiny_end_to_end(tmp_path, model):
    work = str(tmp_path / model)
    final = registry.get("fisale")(_config("fisale", **{"model.name": model}), work)
    for d in ("solid", "fluid", "interface"):
        assert math.isfinite(final[f"rel_l1_{d}"]) and final[f"rel_l1_{d}"] > 0
    assert final["rel_l1"] == pytest.approx(
        sum(final[f"rel_l1_{d}"] for d in ("solid", "fluid", "interface")) / 3
    )
    assert 0 < final["persist_rel_l1"] < 1
    assert final["num_steps"] == 4
    assert os.path.getsize(os.path.join(work, "plots", "fields.png")) > 0
