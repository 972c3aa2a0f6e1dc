"""APTSHIELD experiment: audit log → parse → reduce → detect → evaluate against the truth.

``run(config, workdir)`` (the registry entry ``aptshield``):

1. **Data.** ``data.source = "generator"``: the embedded host simulator
   (:mod:`.generator`) writes ``<workdir>/host.audit.log`` and its truth once
   (reused on a rerun). ``"audit"``/``"cdm"``: the user's files at ``data.path``
   (a file, a directory of ``*.log``/``*.log.gz``/``*.json``/``*.json.gz``, or a
   list), with an optional truth JSON at ``data.truth`` in the generator's
   format (without it the attack metrics are -1).
2. **Streaming detection** (the paper's real-time mode, one core): events are
   parsed lazily, pulled in blocks of ``detect.block`` (:func:`~.detector.blocks`)
   and fed one by one to :class:`~.detector.StreamingDetector`;
   ``events_per_second`` is end to end (parse → reduce → detect) over the whole
   log, progress logged every ``log_every`` events.
3. **Batch detection** (``detect.batch``): the same log through the jitted JAX
   fixed point (:func:`~.detector.batch_labels`); ``batch_agrees`` says whether
   every node's labels equal the streaming detector's.
4. **Evaluation.** An attack is detected when an alarm is raised on one of its
   processes (pids from the truth) inside its time window; the false-positive
   rate is the fraction of benign process instances (every other process node)
   with an alarm. ``reduction_ratio`` is the fraction of events the reduction
   removed. Alarms go to ``alerts.jsonl``, and each detected attack's first alarm
   is drawn as its attack subgraph in ``plots/alert_<attack>.png``.
"""

from __future__ import annotations

import glob
import json
import os
import time

from absl import logging

from jaxpapers.core import metrics as metrics_lib
from jaxpapers.security.provenance import audit as audit_lib
from jaxpapers.security.provenance import detector as det
from jaxpapers.security.provenance import plot as plot_lib
from jaxpapers.security.provenance import rules as rules_lib

_PATTERNS = {
    "audit": ("*.log", "*.log.*", "audit.log*"),
    "cdm": ("*.json", "*.json.gz", "*.jsonl", "*.jsonl.gz", "*.avro.json"),
}


def _files(source: str, path) -> list[str]:
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not paths[0]:
        raise FileNotFoundError(
            f"data.source={source!r} needs --config.data.path=<file or directory> with "
            + ("raw Linux audit logs (/var/log/audit/audit.log*)" if source == "audit" else
               "DARPA TC CDM records as JSON lines (e.g. ta1-*-e3-official*.json)")
        )  # fmt: skip
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(
                {f for pat in _PATTERNS[source] for f in glob.glob(os.path.join(p, pat))}
            )
            if not found:
                raise FileNotFoundError(
                    f"no {source} files ({', '.join(_PATTERNS[source])}) in directory {p!r}"
                )
            out += found
        elif os.path.exists(p):
            out.append(p)
        else:
            raise FileNotFoundError(
                f"{p!r} does not exist: put the {source} log files there or pass "
                "--config.data.path=<file or directory>"
            )
    return out


def _events(config, workdir: str):
    """``events(stats)`` (a fresh pass over the input each call) and the truth (or None)."""
    source = config.data.source
    if source == "generator":
        from jaxpapers.security.provenance import generator  # pylint: disable=g-import-not-at-top

        path = os.path.join(workdir, "host.audit.log")
        truth_path = path + ".truth.json"
        if not (os.path.exists(path) and os.path.exists(truth_path)):
            host = getattr(generator.HostConfig, config.data.preset)()
            logging.info("writing the simulated host's audit log to %s", path)
            generator.write_log(path, host, config.seed)
        with open(truth_path, encoding="utf-8") as f:
            truth = json.load(f)
        return (lambda stats: audit_lib.read_audit(path, stats=stats)), truth
    if source not in _PATTERNS:
        raise ValueError(f"data.source must be generator, audit or cdm; got {source!r}")
    files = _files(source, config.data.path)
    truth = None
    if config.data.truth:
        with open(config.data.truth, encoding="utf-8") as f:
            truth = json.load(f)
    if source == "audit":
        return (lambda stats: audit_lib.read_audit(files, stats=stats)), truth
    from jaxpapers.security.provenance import cdm  # pylint: disable=g-import-not-at-top

    return (lambda stats: cdm.read_cdm(files, stats=stats)), truth


def evaluate(alerts, truth, benign_processes: int) -> dict:
    """Detected attacks and false-positive rate of ``alerts`` against ``truth``."""
    if truth is None:
        return {"detected_attacks": -1, "total_attacks": -1, "false_positive_rate": -1.0}
    attacks = truth["attacks"]
    attack_pids = {int(p) for a in attacks for p in a["pids"]}
    detected = {}
    for a in attacks:
        pids = {int(p) for p in a["pids"]}
        hits = [x for x in alerts if x.pid in pids and a["start_ts"] - 1 <= x.ts <= a["end_ts"] + 1]
        if hits:
            detected[a["id"]] = hits[0]
    false_nodes = {x.node for x in alerts if x.pid not in attack_pids}
    return {
        "detected_attacks": len(detected),
        "total_attacks": len(attacks),
        "false_positive_rate": len(false_nodes) / max(benign_processes, 1),
        "false_alarms": len(false_nodes),
        "benign_processes": benign_processes,
        "_detected": detected,
    }


def run(config, workdir: str) -> dict:
    """Registry entry (see the module docstring)."""
    os.makedirs(workdir, exist_ok=True)
    rules = rules_lib.load_rules(config.detect.rules or None)
    stats = audit_lib.ParseStats()
    events_fn, truth = _events(config, workdir)
    attack_pids = {int(p) for a in (truth or {}).get("attacks", ()) for p in a["pids"]}
    detector = det.StreamingDetector(
        rules,
        min_tactics=config.detect.min_tactics,
        reduce=config.detect.reduce,
        max_objects=config.detect.max_objects,
        max_cache=config.detect.max_cache,
        max_labelled=config.detect.max_labelled,
    )
    detector.graph.watch_pids = attack_pids
    writer = metrics_lib.MetricWriter(workdir)
    alerts_path = os.path.join(workdir, "alerts.jsonl")
    start = time.perf_counter()
    with open(alerts_path, "w", encoding="utf-8") as alerts_file:
        feed = detector.feed
        next_log = config.log_every
        for chunk in det.blocks(events_fn(stats), config.detect.block):
            for event in chunk:
                alert = feed(event)
                if alert is not None:
                    alerts_file.write(json.dumps(alert.as_dict()) + "\n")
                    logging.info(
                        "ALERT pid %d %s: %s", alert.pid, alert.exe, ", ".join(alert.tactics)
                    )
            if detector.stats.events >= next_log:
                n = detector.stats.events
                rate = n / (time.perf_counter() - start)
                logging.info("%d events, %.0f events/s, %d alerts", n, rate, len(detector.alerts))
                next_log = (n // config.log_every + 1) * config.log_every
    seconds = time.perf_counter() - start
    s = detector.stats
    processes = detector.graph.processes_created
    benign = processes - detector.graph.watched_created
    result = evaluate(detector.alerts, truth, benign)
    detected = result.pop("_detected", {})
    final = {
        **result,
        "reduction_ratio": s.reduction_ratio,
        "events_per_second": s.events / max(seconds, 1e-9),
        "events": s.events,
        "redundant_events": s.redundant,
        "nonviable_events": s.nonviable,
        "kept_edges": s.kept,
        "nodes": detector.graph.nodes_created,
        "kept_nodes": detector.kept_nodes,
        "alerts": len(detector.alerts),
        "stream_seconds": seconds,
        "malformed_lines": getattr(stats, "malformed", 0),
    }
    if config.detect.batch:
        start = time.perf_counter()
        batch = det.collect(events_fn(audit_lib.ParseStats()), rules)
        arrival, rounds = det.batch_labels(batch, rules)
        final["batch_seconds"] = time.perf_counter() - start
        final["batch_rounds"] = rounds
        final["batch_agrees"] = det.masks_from_arrival(arrival) == detector.labels
    writer.write(s.events, "test", final)
    writer.close()
    for attack_id, alert in detected.items():
        plot_lib.render_alert(
            detector, alert, os.path.join(workdir, "plots", f"alert_{attack_id}.png")
        )
    logging.info("parser: %s", stats.summary())
    return final
