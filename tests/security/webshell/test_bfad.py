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
    for k, v in overrides.items():
        setattr(c, k, v)
    c.lock()
    return c


def test_llm_methods_end_to_end_resume_and_no_leak(tmp_path, monkeypatch):
    backend = KeywordBackend()
    monkeypatch.setattr(backends, "make", lambda config: backend)
    shown = []
    original = bfad._Shower.__call__

    def spy(self, i, budget, *, bfad):
        shown.append((i, budget))
        return original(self, i, budget, bfad=bfad)

    monkeypatch.setattr(bfad._Shower, "__call__", spy)
    config = _config()
    workdir = str(tmp_path / "run")
    final = bfad.run(config, workdir)

    samples = bfad.load_samples(config, workdir)
    names = [s.name for s in samples]
    rows = [json.loads(line) for line in open(os.path.join(workdir, "predictions", "bfad.jsonl"))]
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
    # BFAD's prompts carry k demonstrations, the no-demonstration ablation none.
    per_method = len(backend.conversations) // 4
    assert all(len(m) == 2 + 2 * 2 for m in backend.conversations[:per_method])
    assert all(len(m) == 2 for m in backend.conversations[2 * per_method : 4 * per_method])
    assert os.path.exists(os.path.join(workdir, "plots", "f1.png"))

    # A rerun on the same workdir restores every prediction and classifies nothing.
    monkeypatch.setattr(backends, "make", lambda config: RefusingBackend())
    again = bfad.run(config, workdir)
    timing = "analyse_files_per_second"
    assert {k: v for k, v in again.items() if k != timing} == {
        k: v for k, v in final.items() if k != timing
    }


def test_bad_configs_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown BFAD method 'gpt'"):
        bfad.methods_of(_config(method="gpt"))
    config = _config()
    config.unlock()
    config.demos.k = 40
    with pytest.raises(ValueError, match="exceeds the backend's max_prompt_tokens=512"):
        bfad.check_budget(config, 512)
    dir_config = bfad_config.get_config("paper")
    with pytest.raises(FileNotFoundError, match="webshell/"):
        bfad.load_samples(dir_config, str(tmp_path))


def test_head_respects_the_budget():
    text = "<?php\n" + "echo $row['name'] . htmlspecialchars($x);\n" * 500
    for budget in (1, 7, 64, 300):
        cut = bfad.head(text, budget, extract.approx_tokens)
        assert extract.approx_tokens(cut) <= budget
        assert text.startswith(cut)


@pytest.mark.slow
def test_tiny_config_with_smollm2(tmp_path):
    config = bfad_config.get_config("tiny")
    final = bfad.run(config, str(tmp_path))
    for m in ("bfad", "plain"):
        for k in bfad.METRICS:
            assert 0.0 <= final[f"{m}/{k}"] <= 1.0
    rows = [json.loads(x) for x in open(tmp_path / "predictions" / "bfad.jsonl")]
    assert all(np.isfinite(r["score"]) and r["pred"] == int(r["score"] > 0) for r in rows)
