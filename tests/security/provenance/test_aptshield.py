"""APTSHIELD end to end: the simulated host's tiny log through the launcher's entry."""

import json
import logging
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


def test_hostile_log_content_stays_data(tmp_path, caplog):
    """Shell, format-string and terminal-escape payloads in a log are only ever text."""
    from jaxpapers.security.provenance import audit, detector, plot

    sentinel = tmp_path / "pwned"
    payload = f"$(touch {sentinel}) `touch {sentinel}`; %s%n {{0}} \x1b[31m ../../etc"
    name = f"/tmp/x; touch {sentinel}"

    def hexed(s):
        return s.encode().hex().upper()

    serial = iter(range(1, 100))

    def call(nr, pid, exe, extra=(), items=0, exit_=0, a0="3", title=payload):
        n = next(serial)
        key = f"1700000000.{n:03d}:{n}"
        lines = [
            f"type=SYSCALL msg=audit({key}): arch=c000003e syscall={nr} success=yes "
            f"exit={exit_} a0={a0} a1=0 a2=0 a3=0 items={items} ppid=1 pid={pid} auid=33 "
            f"uid=33 gid=33 euid=33 suid=33 fsuid=33 egid=33 sgid=33 fsgid=33 tty=(none) "
            f'ses=1 comm="x" exe={hexed(exe)} subj=unconfined key=(null)'
        ]
        lines += [f"type={t} msg=audit({key}): {b}" for t, b in extra]
        lines += [f"type=PROCTITLE msg=audit({key}): proctitle={hexed(title)}"]
        return lines + [f"type=EOE msg=audit({key}): "]

    def path_rec(item, p):
        return (
            "PATH",
            f"item={item} name={hexed(p)} inode=1 dev=08:01 mode=0100755 ouid=0 ogid=0 "
            "rdev=00:00 nametype=NORMAL",
        )

    log = call(57, 10, "/usr/sbin/nginx", exit_=11)  # fork → 11
    log += call(59, 11, "/usr/sbin/nginx", [("EXECVE", f"argc=3 a0=\"sh\" a1=\"-c\" a2={hexed(payload)}"),
                                             path_rec(0, "/bin/sh")], items=1)  # fmt: skip
    log += call(257, 11, "/bin/sh", [path_rec(0, name)], items=1, a0="ffffff9c", exit_=4)
    events = list(audit.parse_audit(log))
    assert [e.op for e in events] == ["fork", "execve", "read"]
    assert events[1].cmdline == f"sh -c {payload}" and events[2].obj == name
    det = detector.StreamingDetector(min_tactics=1)
    alerts = list(det.run(events))
    assert alerts, "the web server's shell is labelled"
    for alert in alerts:
        json.dumps(alert.as_dict())
        plot.render_alert(det, alert, str(tmp_path / f"alert_{alert.pid}.png"))
    logging.getLogger("test").warning("ALERT %s %s", alerts[0].cmdline, events[2].obj)
    assert not sentinel.exists()
    assert payload in caplog.records[-1].getMessage()
