"""APTSHIELD end to end: the simulated host's tiny log through the launcher's entry."""

import json
import os

import pytest

from jaxpapers.core import config as config_lib
from jaxpapers.core import registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CONFIG = os.path.join(ROOT, "experiments", "configs", "aptshield.py")


def test_tiny_detects_every_attack_without_false_alarms(tmp_path):
    config = config_lib.load_file(CONFIG, "tiny")
    final = registry.get("aptshield")(config, str(tmp_path))
    assert final["total_attacks"] == 3
    assert final["detected_attacks"] == 3
    assert final["false_positive_rate"] == 0.0
    assert final["batch_agrees"] is True
    assert 0.5 < final["reduction_ratio"] < 1.0
    assert (
        final["kept_edges"] + final["redundant_events"] + final["nonviable_events"]
        == final["events"]
    )
    assert final["events_per_second"] > 0
    alerts = [json.loads(line) for line in open(tmp_path / "alerts.jsonl")]
    assert len(alerts) == final["alerts"] > 0
    plots = sorted(os.listdir(tmp_path / "plots"))
    assert plots == ["alert_fileless-0.png", "alert_rat-0.png", "alert_web_exploit-0.png"]


def test_paper_variant_says_where_to_put_the_logs(tmp_path):
    config = config_lib.load_file(CONFIG, "paper")
    try:
        registry.get("aptshield")(config, str(tmp_path))
    except FileNotFoundError as e:
        assert "--config.data.path" in str(e)
    else:
        raise AssertionError("the paper variant without data must fail")
    config.data.path = str(tmp_path / "missing")
    try:
        registry.get("aptshield")(config, str(tmp_path))
    except FileNotFoundError as e:
        assert "does not exist" in str(e)
    else:
        raise AssertionError("a missing path must fail")


def _default_run(tmp_path, seed, batch):
    config = config_lib.load_file(CONFIG, "default")
    config.seed = seed
    config.detect.batch = batch
    return registry.get("aptshield")(config, str(tmp_path))


def test_default_host_every_attack_detected_and_no_benign_alarm(tmp_path):
    # 3 simulated hours, ≈ 1.5M audit lines: web, cron, ssh, CI, package updates
    final = _default_run(tmp_path, seed=0, batch=False)
    assert final["detected_attacks"] == final["total_attacks"] == 3
    assert final["false_alarms"] == 0 and final["benign_processes"] > 500
    assert final["reduction_ratio"] > 0.99


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_default_host_other_seeds_with_batch_mode(tmp_path, seed):
    final = _default_run(tmp_path, seed=seed, batch=True)
    assert final["detected_attacks"] == final["total_attacks"] == 3
    assert final["false_alarms"] == 0
    assert final["batch_agrees"] is True
