"""The frozen-backbone pipeline and every analytic paper's `tiny` run end to end."""

import json
import os

import numpy as np
import pytest

from jaxpapers.analytic import features
from jaxpapers.core import config as config_lib
from jaxpapers.core import registry
from jaxpapers.data import images, incremental

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(paper, **overrides):
    path = os.path.join(ROOT, "experiments", "configs", f"{paper}.py")
    return config_lib.override(
        config_lib.load_file(path, "tiny"), {"backbone.progress": False, **overrides}
    )


def test_phases_and_relabelling():
    assert [p.tolist() for p in incremental.phases(np.arange(6), 2, 2)] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError, match="equal phases"):
        incremental.phases(np.arange(10), 5, 3)
    data = images.digits(seed=0)
    assert data.train_images.shape[1:] == (8, 8, 1) and data.num_classes == 10
    assert 0.25 < len(data.test_labels) / 1797 < 0.35
    # every class keeps ~30% of its rows for test
    for c in range(10):
        n_test, n_train = np.sum(data.test_labels == c), np.sum(data.train_labels == c)
        assert 0.27 < n_test / (n_test + n_train) < 0.33


def test_backbone_trains_on_base_classes_and_features_are_cached(tmp_path, monkeypatch):
    config = _config("afcl")
    feats = features.prepare(config, str(tmp_path))
    assert feats.train.shape == (len(feats.train_labels), 128)  # ConvNet's pooled width
    assert set(np.unique(feats.train_labels)) == set(range(10))
    assert [len(p) for p in feats.phases] == [5, 1, 1, 1, 1, 1]
    assert "backbone_base_accuracy" in feats.info
    assert os.path.exists(tmp_path / "backbone" / "checkpoints")

    def must_not_train(*args, **kwargs):
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(features.train_lib, "train_and_evaluate", must_not_train)
    again = features.prepare(config, str(tmp_path))
    np.testing.assert_array_equal(again.train, feats.train)


def test_pixels_backbone_and_user_features(tmp_path):
    feats = features.prepare(_config("afcl", **{"backbone.name": "none"}), str(tmp_path))
    assert feats.train.shape[1] == 64 and feats.train.max() <= 1.0
    own = features.from_arrays(
        np.ones((4, 3)), [0, 1, 2, 1], np.ones((2, 3)), [2, 0], 3, base_classes=1, num_phases=2
    )
    assert own.seen(0) == 1 and own.seen(2) == 3


@pytest.mark.parametrize(
    "paper,keys",
    [
        ("afcl", {"accuracy", "gap_to_centralized"}),
        # acu and deepafl: the analytic colab runs both tiny experiments in the fast suite
        # (tests/colabs), so here they are slow (CI time budget).
        pytest.param(
            "acu",
            {
                "forgotten_accuracy",
                "retained_accuracy",
                "gap_to_retrain",
                "unlearn_seconds",
                "retrain_seconds",
            },
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "deepafl",
            {"accuracy", "accuracy_layer_0", "accuracy_layer_3", "gap_to_centralized"},
            marks=pytest.mark.slow,
        ),
    ],
)
def test_tiny_runs_end_to_end(tmp_path, paper, keys):
    final = registry.get(paper)(_config(paper), str(tmp_path))
    assert keys <= set(final)
    json.dumps(final)
    assert final.get("gap_to_centralized", 0.0) < 1e-9
    assert final.get("gap_to_retrain", 0.0) < 1e-9
    assert os.listdir(tmp_path / "plots")
    events = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert events and all("step" in e and "split" in e for e in events)
