"""The `default` variants' claims on digits (slow: trains the ConvNet backbone)."""

import os

import jax
import pytest

from jaxpapers.analytic import acu, afcl, deepafl, features
from jaxpapers.core import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.slow


def _config(paper, **overrides):
    path = os.path.join(ROOT, "experiments", "configs", f"{paper}.py")
    return config_lib.override(
        config_lib.load_file(path, "default"), {"backbone.progress": False, **overrides}
    )


def test_afcl_default_is_identical_to_centralized_for_every_alpha(tmp_path):
    feats = features.prepare(_config("afcl"), str(tmp_path))
    for alpha in (0.01, 0.1, 1.0, 100.0):
        with jax.enable_x64(True):
            out = afcl.run_stream(_config("afcl", **{"federated.alpha": alpha}), feats)
        assert round(out["accuracy"][-1], 4) == round(out["centralized_accuracy"][-1], 4)
        assert max(out["gap"]) < 1e-9
        assert out["accuracy"][-1] > 0.95


def test_acu_default_forgets_the_class_and_matches_retraining(tmp_path):
    final = acu.run(_config("acu"), str(tmp_path))
    assert final["forgotten_accuracy"] < 0.02
    assert abs(final["retained_accuracy"] - final["retrain_retained_accuracy"]) <= 0.005
    assert final["gap_to_retrain"] < 1e-9


def test_deepafl_default_beats_single_layer_afl(tmp_path):
    final = deepafl.run(_config("deepafl"), str(tmp_path))
    assert final["accuracy"] > final["afl_accuracy"] + 0.02
    assert final["gap_to_centralized"] < 1e-9
    assert final["objective_non_increasing"]
