"""The physics comparison tool: sweep and seed layout, aggregation by hand, the plots."""

import json
import os

import pytest

from jaxpapers.core import registry
from jaxpapers.physics import compare


def _final(entry, seed, d, rel):
    return {
        "entry": entry,
        "seed": seed,
        "data.num_deformables": d,
        "rel_l2": rel,
        "rel_l2_disp": 10 * rel,
        "rel_l2_stress": 0.5,
    }


FINALS = [
    _final("unisoma", 0, 1, 0.010),
    _final("transolver", 0, 1, 0.020),
    _final("unisoma", 1, 1, 0.014),
    _final("transolver", 1, 1, 0.024),
    _final("unisoma", 0, 2, 0.010),
    _final("transolver", 0, 2, 0.040),
]


def test_aggregate_means_stds_and_reduction_by_hand():
    rows = compare.aggregate(FINALS, "unisoma", "data.num_deformables")
    assert [(r["data.num_deformables"], r["entry"]) for r in rows] == [
        (1, "unisoma"),
        (1, "transolver"),
        (2, "unisoma"),
        (2, "transolver"),
    ]
    uni1, tr1, uni2, tr2 = rows
    assert uni1["rel_l2"] == pytest.approx(0.012)
    assert uni1["rel_l2_std"] == pytest.approx(0.004 / 2**0.5)  # ddof=1 of (0.010, 0.014)
    assert uni1["num_seeds"] == 2 and uni2["num_seeds"] == 1 and uni2["rel_l2_std"] == 0.0
    assert uni1["reduction"] is None and uni2["reduction"] is None
    assert tr1["reduction"] == pytest.approx((0.022 - 0.012) / 0.022)
    assert tr2["reduction"] == pytest.approx(0.75)  # the margin at 2 solids
    text = compare.table(FINALS, "unisoma", "data.num_deformables")
    assert "| 2 | transolver | 0.04 | 0.4 | 0.5 | 1 | +75.0% |" in text


def test_parse_sweep():
    assert compare._parse_sweep("data.num_deformables=1,2,3") == ("data.num_deformables", [1, 2, 3])
    assert compare._parse_sweep("model.name=a,b") == ("model.name", ["a", "b"])
    assert compare._parse_sweep("") is None
    with pytest.raises(ValueError, match="key=v1"):
        compare._parse_sweep("data.num_deformables")


def test_compare_runs_every_value_seed_and_entry_in_its_own_folder(tmp_path, monkeypatch):
    from experiments.configs import unisoma as unisoma_config

    calls = []

    def fake_run(config, workdir):
        calls.append((config.model.name, config.data.num_deformables, config.seed, workdir))
        assert config.data.seed == config.seed
        assert config.data.cache_dir == os.path.join(str(tmp_path), "data_cache")
        rel = 0.01 * config.data.num_deformables * (1 if config.model.name == "unisoma" else 2)
        return {"rel_l2": rel, "rel_l2_disp": rel, "rel_l2_stress": rel}

    monkeypatch.setattr(registry, "get", lambda name: fake_run)
    finals = compare.compare(
        unisoma_config.get_config("tiny"),
        str(tmp_path),
        sweep=("data.num_deformables", [1, 3]),
        seeds=[4, 5],
    )
    assert len(calls) == len(finals) == 2 * 2 * 2
    assert calls[0][3] == os.path.join(str(tmp_path), "data.num_deformables=1", "seed4", "unisoma")
    assert {(c[1], c[2]) for c in calls} == {(1, 4), (1, 5), (3, 4), (3, 5)}
    with open(tmp_path / "comparison.json", encoding="utf-8") as f:
        assert json.load(f) == finals
    assert "+50.0%" in (tmp_path / "comparison.md").read_text()
    assert os.path.getsize(tmp_path / "plots" / "comparison.png") > 0
    with pytest.raises(ValueError, match="unknown entries"):
        compare.compare(unisoma_config.get_config("tiny"), str(tmp_path), ["mlp"])


def test_main_applies_set_overrides(tmp_path, monkeypatch):
    seen = []

    def fake_run(config, workdir):
        seen.append(config.train.num_steps)
        return {"rel_l1_solid": 1.0, "rel_l1_fluid": 1.0, "rel_l1_interface": 1.0, "rel_l1": 1.0}

    monkeypatch.setattr(registry, "get", lambda name: fake_run)
    argv = ["--paper=fisale", "--variant=tiny", f"--workdir={tmp_path}", "--set=train.num_steps=7"]
    assert compare.main(argv) == 0
    assert seen == [7, 7]  # fisale and its Transolver
    with pytest.raises(ValueError, match="one value"):
        compare.main(argv[:-1] + ["--set=train.num_steps=1,2"])
