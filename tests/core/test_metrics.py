import json
import os

import numpy as np

from jaxpapers.core import metrics


def test_mean_is_weighted():
    m = metrics.Mean()
    m.update({"a": 1.0}, weight=1)
    m.update({"a": 4.0}, weight=3)
    assert m.result() == {"a": 13.0 / 4}
    m.reset()
    assert m.result() == {}


def test_to_python_handles_arrays_and_non_finite():
    assert metrics.to_python({"a": np.float32(2.5), "b": np.array([1, 2])}) == {
        "a": 2.5,
        "b": [1, 2],
    }
    assert metrics.to_python(float("nan")) == "nan"


def test_writer_writes_jsonl_and_tensorboard(tmp_path):
    with metrics.MetricWriter(str(tmp_path)) as w:
        w.write(10, "train", {"loss": np.float32(0.5)})
        w.write(10, "valid", {"auc": 0.7, "note": "x"})
    events = metrics.read_jsonl(os.path.join(tmp_path, "metrics.jsonl"))
    assert events == [
        {"step": 10, "split": "train", "loss": 0.5},
        {"step": 10, "split": "valid", "auc": 0.7, "note": "x"},
    ]
    tb = os.listdir(tmp_path / "tensorboard")
    assert any(name.startswith("events.out.tfevents") for name in tb)


def test_writer_keeps_only_what_a_resumed_run_keeps(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": s, "split": "train", "loss": s} for s in (5, 10, 15)]
    path.write_text("\n".join(json.dumps(e) for e in lines) + '\n{"step": 20, "spl')  # cut line
    assert [e["step"] for e in metrics.read_jsonl(str(path))] == [5, 10, 15]
    metrics.MetricWriter(str(tmp_path), keep=lambda e: e["step"] <= 10, tensorboard=False).close()
    assert [e["step"] for e in metrics.read_jsonl(str(path))] == [5, 10]
    metrics.MetricWriter(str(tmp_path), keep=None, tensorboard=False).close()
    assert metrics.read_jsonl(str(path)) == []  # a fresh run starts a fresh file


def test_mean_state_roundtrip():
    m = metrics.Mean()
    m.update({"a": 1.0})
    m.update({"a": 2.0})
    other = metrics.Mean()
    other.load(json.loads(json.dumps(m.state())))
    other.update({"a": 6.0})
    assert other.result() == {"a": 3.0}
    other.load(None)
    assert other.result() == {}
