"""Paired significance tests: hand-computed values, pairing, mismatches, the trainer's files."""

import math

import numpy as np
import pytest

from jaxpapers.core import train as train_lib
from jaxpapers.recsys import metrics as rec_metrics
from jaxpapers.recsys import significance as sig


def test_per_user_matches_hand_values_and_means():
    ranks = np.array([0, 1, 9, 10, 3])
    hr = sig.per_user(ranks, "hr@10")
    nd = sig.per_user(ranks, "ndcg@10")
    np.testing.assert_array_equal(hr, [1, 1, 1, 0, 1])
    np.testing.assert_allclose(
        nd, [1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 1 / math.log2(5)]
    )
    assert nd.mean() == pytest.approx(rec_metrics.ndcg(ranks, 10))
    assert hr.mean() == pytest.approx(rec_metrics.hit_rate(ranks, 10))


@pytest.mark.parametrize("metric", ["mrr@10", "ndcg", "ndcg@0", "auc@5"])
def test_per_user_rejects_bad_metrics(metric):
    with pytest.raises(ValueError, match="metric must be"):
        sig.per_user(np.array([1, 2]), metric)


def test_paired_difference_hand_computed():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([0.0, 2.0, 2.0, 2.0])
    c = sig.paired_difference(a, b, metric="x")
    # d = [1, 0, 1, 2]: mean 1, sample std sqrt(2/3), se = sqrt(2/3) / 2.
    se = math.sqrt(2 / 3) / 2
    assert (c.a, c.b, c.difference, c.n) == (2.5, 1.5, 1.0, 4)
    assert c.stderr == pytest.approx(se)
    assert c.p_value == pytest.approx(math.erfc(1 / se / math.sqrt(2)))
    assert (c.ci_low, c.ci_high) == pytest.approx((1 - 1.96 * se, 1 + 1.96 * se))
    same = sig.paired_difference(a, a)
    assert (same.difference, same.stderr, same.p_value) == (0.0, 0.0, 1.0)


def test_pairing_detects_a_shift_that_unpaired_noise_hides():
    rng = np.random.default_rng(0)
    user = rng.normal(0.0, 1.0, 2000)  # per-user difficulty, shared by both runs
    b = user + rng.normal(0.0, 0.1, 2000)
    a = b + 0.02
    c = sig.paired_difference(a, b)
    assert c.difference == pytest.approx(0.02)
    assert c.significant and c.stderr < 1e-6 + 0.01
    unpaired_se = math.hypot(a.std(), b.std()) / math.sqrt(2000)
    assert unpaired_se > 0.02  # the two means' error bars overlap


def _ranking_outputs(rng, users, shift):
    label = np.tile([1.0, 0.0, 0.0], users)
    user = np.repeat(np.arange(users), 3)
    base = rng.normal(0.0, 1.0, 3 * users) + label
    return {"label": label, "user": user}, base, base + shift * label


def test_bootstrap_auc_finds_a_real_gain_and_not_a_null_one():
    rng = np.random.default_rng(1)
    common, base, better = _ranking_outputs(rng, 1000, 0.3)
    a = {**common, "prob": 1 / (1 + np.exp(-better))}
    b = {**common, "prob": 1 / (1 + np.exp(-base))}
    c = sig.compare_outputs(a, b, "auc", num_samples=300)
    assert c.difference == pytest.approx(
        rec_metrics.auc(a["label"], a["prob"]) - rec_metrics.auc(b["label"], b["prob"])
    )
    assert c.difference > 0 and c.significant and c.ci_low > 0 and c.method == "bootstrap"
    assert c.n == 1000
    null = sig.compare_outputs(b, dict(b), "auc", num_samples=50)
    assert (null.difference, null.p_value) == (0.0, 1.0)


def test_bootstrap_resamples_whole_groups():
    groups = np.array([5, 5, 7, 9, 9, 9])
    seen = []

    def stat(r):
        seen.append(r["g"].copy())
        return 0.0

    run = {"g": groups}
    sig.paired_bootstrap(stat, run, run, groups, num_samples=20, seed=3)
    for rows in seen[2:]:
        values, counts = np.unique(rows, return_counts=True)
        for v, n in zip(values, counts):
            assert n % int((groups == v).sum()) == 0  # a group is drawn whole, never in part


def test_mismatched_runs_are_refused():
    a = {"rank": np.array([0, 3]), "target": np.array([4, 5])}
    b = {"rank": np.array([1, 2]), "target": np.array([4, 6])}
    with pytest.raises(ValueError, match="same examples"):
        sig.compare_outputs(a, b, "ndcg@10")
    with pytest.raises(ValueError, match="needs ranking outputs"):
        sig.compare_outputs(a, a, "auc")


def test_compare_runs_reads_the_trainers_files(tmp_path):
    a = {"rank": np.array([0, 20, 3, 1]), "target": np.arange(4)}
    b = {"rank": np.array([5, 20, 30, 1]), "target": np.arange(4)}
    assert train_lib.save_outputs(str(tmp_path / "a"), "test", a).endswith("test.npz")
    train_lib.save_outputs(str(tmp_path / "b"), "test", b)
    c = sig.compare_runs(str(tmp_path / "a"), str(tmp_path / "b"), "hr@10")
    assert (c.a, c.b, c.difference) == (0.75, 0.5, 0.25)
    with pytest.raises(FileNotFoundError, match="no final outputs for split 'valid'"):
        sig.compare_runs(str(tmp_path / "a"), str(tmp_path / "b"), "hr@10", split="valid")


def test_outputs_over_the_size_limit_are_not_written(tmp_path, monkeypatch):
    monkeypatch.setattr(train_lib, "MAX_OUTPUT_BYTES", 100)
    assert train_lib.save_outputs(str(tmp_path), "test", {"x": np.zeros(100)}) == ""
    assert not (tmp_path / train_lib.FINAL_OUTPUTS / "test.npz").exists()


def test_several_seeds_average_per_user_values_before_pairing():
    target = np.arange(3)
    a = [
        {"rank": np.array([0, 50, 1]), "target": target},
        {"rank": np.array([0, 0, 50]), "target": target},
    ]
    b = [
        {"rank": np.array([50, 50, 1]), "target": target},
        {"rank": np.array([0, 50, 50]), "target": target},
    ]
    c = sig.compare_outputs(a, b, "hr@10")
    # per-user means: a = [1, .5, .5], b = [.5, 0, .5]; d = [.5, .5, 0]
    assert (c.a, c.b, c.difference, c.n) == pytest.approx((2 / 3, 1 / 3, 1 / 3, 3))
    with pytest.raises(ValueError, match="same non-zero number of runs"):
        sig.compare_outputs(a, b[:1], "hr@10")


def test_bootstrap_over_seeds_averages_the_per_seed_differences():
    rng = np.random.default_rng(2)
    pairs = []
    for shift in (0.2, 0.6):
        common, base, better = _ranking_outputs(rng, 400, shift)
        pairs.append(
            (
                {**common, "prob": 1 / (1 + np.exp(-better))},
                {**common, "prob": 1 / (1 + np.exp(-base))},
            )
        )
    c = sig.compare_outputs([p[0] for p in pairs], [p[1] for p in pairs], "auc", num_samples=100)
    per_seed = [
        rec_metrics.auc(x["label"], x["prob"]) - rec_metrics.auc(y["label"], y["prob"])
        for x, y in pairs
    ]
    assert c.difference == pytest.approx(np.mean(per_seed))
    assert c.n == 400 and c.significant
