"""The BFAD experiment with a stand-in backend (fast), and with SmolLM2 (slow)."""

import json
import os

import numpy as np
import pytest

from experiments.configs import bfad as bfad_config
from jaxpapers.security.webshell import backends, bfad, extract


class KeywordBackend:
    """Says yes when the query's code mentions eval or system; records what it saw."""

    name = "keyword"
    max_prompt_tokens = 4096

    def __init__(self):
        self.conversations = []

    def count_tokens(self, text):
        return extract.approx_tokens(text)

    def classify(self, conversations):
        self.conversations.extend(conversations)
        out = []
        for messages in conversations:
            code = messages[-1]["content"]
            label = int("eval" in code or "system" in code)
            out.append(backends.Verdict(label, float(2 * label - 1)))
        return out


class RefusingBackend(KeywordBackend):
    def classify(self, conversations):
        if conversations:
            raise AssertionError("a resumed run must not classify finished files again")
        return []


def _config(**overrides):
    c = bfad_config.get_config("tiny")
    c.unlock()
    c.compare = "bfad_random,bfad_nodemo,plain"
    c.demos.k = 2
    c.budget.query = 120
    c.budget.demo = 40  # distinct from the query budget: tells demonstrations apart
    c.llm.max_prompt_tokens = 1024
    for k, v in overrides.items():
        setattr(c, k, v)
    c.lock()
    return c


def test_llm_methods_end_to_end_resume_and_no_leak(tmp_path, monkeypatch):
    backend = KeywordBackend()
    monkeypatch.setattr(backends, "make", lambda config: backend)
    shown = []
    original = bfad.Shower.__call__

    def spy(self, i, budget, *, bfad):
        shown.append((i, budget))
        return original(self, i, budget, bfad=bfad)

    monkeypatch.setattr(bfad.Shower, "__call__", spy)
    config = _config()
    workdir = str(tmp_path / "run")
    final = bfad.run(config, workdir)

    samples, _ = bfad.deduplicate(bfad.load_samples(config, workdir))
    names = [s.name for s in samples]
    pred_path = os.path.join(workdir, "predictions", "bfad.jsonl")
    lines = open(pred_path).read().splitlines()
    assert json.loads(lines[0])["fingerprint"] == bfad.fingerprint(config, "bfad")
    rows = [json.loads(line) for line in lines[1:]]
    test_names = {r["name"] for r in rows}
    assert len(rows) == final["test_files"] == 8
    # Demonstrations come from the training files only, never from a test file.
    demo_files = {names[i] for i, budget in shown if budget == config.budget.demo}
    assert demo_files and not demo_files & test_names
    assert {names[i] for i, budget in shown if budget == config.budget.query} == test_names
    # The metrics are those of the stored predictions.
    y = np.array([r["label"] for r in rows])
    p = np.array([r["pred"] for r in rows])
    tp = np.sum((y == 1) & (p == 1))
    assert final["bfad/recall"] == pytest.approx(tp / max(np.sum(y == 1), 1))
    assert final["f1"] == final["bfad/f1"]
    # bfad and bfad_random carry k demonstrations, bfad_nodemo and plain none.
    per_method = len(backend.conversations) // 4
    assert all(len(m) == 2 + 2 * 2 for m in backend.conversations[: 2 * per_method])
    assert all(len(m) == 2 for m in backend.conversations[2 * per_method :])
    assert os.path.exists(os.path.join(workdir, "plots", "f1.png"))

    # A rerun on the same workdir restores every prediction and classifies nothing.
    monkeypatch.setattr(backends, "make", lambda config: RefusingBackend())
    assert bfad.run(config, workdir) == final

    # Interrupted after 3 files, mid-write: only the other 5 are classified again.
    with open(pred_path, "w") as f:
        f.write("\n".join(lines[:4]) + "\n" + lines[4][:10])
    again = KeywordBackend()
    monkeypatch.setattr(backends, "make", lambda config: again)
    config.unlock()
    config.compare = ""
    assert bfad.run(config, workdir)["bfad/f1"] == final["bfad/f1"]
    assert len(again.conversations) == 5

    # Predictions made with another configuration are never mixed in.
    config.budget.query = 100
    with pytest.raises(ValueError, match="another configuration"):
        bfad.run(config, workdir)


def test_bad_configs_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown BFAD method 'gpt'"):
        bfad.methods_of(_config(method="gpt"))
    config = _config()
    config.unlock()
    config.demos.k = 40
    with pytest.raises(ValueError, match="exceeds llm.max_prompt_tokens=512"):
        bfad.check_budget(config, 512)
    dir_config = bfad_config.get_config("paper")
    with pytest.raises(FileNotFoundError, match="webshell/"):
        bfad.load_samples(dir_config, str(tmp_path))


def test_deduplicate_drops_copies_and_label_conflicts():
    from jaxpapers.security.webshell.corpus import Sample

    samples = [
        Sample("a", b"<?php eval($_POST[1]);", 1, "x"),
        Sample("b", b"<?php echo 1;", 0, "y"),
        Sample("c", b"<?php eval($_POST[1]);", 1, "x"),
        Sample("d", b"<?php echo 2;", 0, "y"),
        Sample("e", b"<?php echo 2;", 1, "z"),
    ]
    kept, dropped = bfad.deduplicate(samples)
    assert [s.name for s in kept] == ["a", "b"] and dropped == 3


@pytest.mark.slow
def test_tiny_config_with_smollm2(tmp_path):
    config = bfad_config.get_config("tiny")
    final = bfad.run(config, str(tmp_path))
    for m in ("bfad", "plain"):
        for k in bfad.METRICS:
            assert 0.0 <= final[f"{m}/{k}"] <= 1.0
    rows = [json.loads(x) for x in open(tmp_path / "predictions" / "bfad.jsonl")][1:]
    assert all(np.isfinite(r["score"]) and r["pred"] == int(r["score"] > 0) for r in rows)
