"""Tests for jaxpapers.recsys.metrics (exact AUC and logloss)."""

import math

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from sklearn import metrics as skm

from jaxpapers.recsys import metrics

# ----------------------------------------------------------------------------
# AUC: hand-computed cases.
# ----------------------------------------------------------------------------


def test_auc_perfect_and_reversed():
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0


def test_auc_hand_computed_without_ties():
    # Pairs (pos, neg): positives {0.35, 0.8}, negatives {0.1, 0.4}.
    # 0.35 beats 0.1 only; 0.8 beats both -> 3 of 4 pairs.
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75


def test_auc_hand_computed_with_ties():
    # Scores 0.5 are shared by one positive and one negative (counts 1/2).
    # Positives {0.5, 0.9}, negatives {0.5, 0.2, 0.9}.
    # 0.5 vs (0.5, 0.2, 0.9) -> 0.5 + 1 + 0 = 1.5
    # 0.9 vs (0.5, 0.2, 0.9) -> 1 + 1 + 0.5 = 2.5
    # AUC = 4 / 6.
    labels = [1, 0, 0, 1, 0]
    scores = [0.5, 0.5, 0.2, 0.9, 0.9]
    assert metrics.auc(labels, scores) == pytest.approx(4.0 / 6.0, abs=1e-15)


def test_auc_all_scores_tied_is_one_half():
    assert metrics.auc([0, 1, 1, 0, 1], np.zeros(5)) == 0.5


def test_auc_is_invariant_to_monotone_transforms_and_order():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=500)
    s = rng.normal(size=500)
    base = metrics.auc(y, s)
    assert metrics.auc(y, 1.0 / (1.0 + np.exp(-s))) == pytest.approx(base)
    perm = rng.permutation(500)
    assert metrics.auc(y[perm], s[perm]) == pytest.approx(base, abs=1e-15)


def test_auc_accepts_bool_and_float_labels_and_2d_inputs():
    labels = np.array([[True, False], [False, True]])
    scores = np.array([[0.9, 0.1], [0.3, 0.2]])
    # Positives {0.9, 0.2}, negatives {0.1, 0.3}: 0.9 beats both, 0.2 one.
    assert metrics.auc(labels, scores) == 0.75
    assert metrics.auc(labels.astype(np.float32), scores) == 0.75


def test_auc_large_input_matches_sklearn():
    rng = np.random.default_rng(1)
    n = 2_000_000
    y = rng.random(n) < 0.2
    # Coarsely rounded scores create many large groups of ties.
    s = np.round(rng.normal(size=n) + 0.7 * y, 2).astype(np.float32)
    assert metrics.auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize(
    "labels, scores, match",
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], "labels must be 0/1"),
        ([-1, 1], [0.1, 0.2], "labels must be 0/1"),
        ([0, 1, 1], [0.1, 0.2], "same shape"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "only one class"),
        ([0, 0], [0.1, 0.2], "only one class"),
        ([], [], "empty"),
        ([0, 1], [0.1, np.nan], "NaN"),
    ],
)
def test_auc_rejects_bad_inputs(labels, scores, match):
    with pytest.raises(ValueError, match=match):
        metrics.auc(labels, scores)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    data=st.data(),
    n=st.integers(min_value=2, max_value=300),
    num_distinct=st.integers(min_value=1, max_value=50),
)
def test_auc_matches_sklearn_property(data, n, num_distinct):
    labels = data.draw(hnp.arrays(np.int8, n, elements=st.integers(0, 1)))
    hypothesis.assume(0 < labels.sum() < n)
    # Scores from a small set of values so that ties are frequent.
    levels = data.draw(hnp.arrays(np.int32, n, elements=st.integers(0, num_distinct - 1)))
    scores = levels.astype(np.float64) / 7.0
    expected = skm.roc_auc_score(labels, scores)
    assert metrics.auc(labels, scores) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------
# Logloss.
# ----------------------------------------------------------------------------


def test_logloss_hand_computed():
    # -(log 0.8 + log(1 - 0.4)) / 2 = -(log 0.8 + log 0.6) / 2.
    expected = -(math.log(0.8) + math.log(0.6)) / 2.0
    assert metrics.logloss([1, 0], [0.8, 0.4]) == pytest.approx(expected, rel=1e-14)


def test_logloss_uniform_prediction_is_log2():
    assert metrics.logloss([0, 1, 1, 0], [0.5] * 4) == pytest.approx(math.log(2.0), rel=1e-14)


def test_logloss_clips_confident_mistakes():
    # p=0 for a positive is clipped to eps: loss -log(eps) / 2 over two rows.
    value = metrics.logloss([1, 0], [0.0, 0.0], eps=1e-7)
    assert value == pytest.approx(-math.log(1e-7) / 2.0, rel=1e-6)
    assert math.isfinite(metrics.logloss([0], [1.0]))


@pytest.mark.parametrize(
    "labels, probs, kwargs, match",
    [
        ([0, 2], [0.1, 0.2], {}, "labels must be 0/1"),
        ([0, 1], [0.1, 1.2], {}, r"\[0, 1\]"),
        ([0, 1], [-0.1, 0.2], {}, r"\[0, 1\]"),
        ([0, 1], [0.1], {}, "same shape"),
        ([0, 1], [0.1, np.nan], {}, "NaN"),
        ([0, 1], [0.1, 0.2], {"eps": 0.0}, "eps"),
    ],
)
def test_logloss_rejects_bad_inputs(labels, probs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        metrics.logloss(labels, probs, **kwargs)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    data=st.data(),
    n=st.integers(min_value=1, max_value=200),
)
def test_logloss_matches_sklearn_property(data, n):
    labels = data.draw(hnp.arrays(np.int8, n, elements=st.integers(0, 1)))
    probs = data.draw(hnp.arrays(np.float64, n, elements=st.floats(1e-3, 1.0 - 1e-3)))
    expected = skm.log_loss(labels, probs, labels=[0, 1])
    assert metrics.logloss(labels, probs) == pytest.approx(expected, rel=1e-10)


# ------------------------------------------------------------------ full ranking, HR, NDCG


def test_full_ranks_hand_computed():
    # items 1..5; column 0 is padding (its huge score must not count)
    scores = np.array(
        [
            [99.0, 0.1, 0.9, 0.5, 0.7, 0.2],  # target 3 (0.5): items 2 (0.9), 4 (0.7) beat it
            [99.0, 0.1, 0.9, 0.5, 0.7, 0.2],  # same, but item 2 is in the history: rank 1
            [99.0, 0.3, 0.3, 0.3, 0.0, 0.0],  # target 1 ties with 2 and 3: ties count against
            [99.0, 0.0, 0.0, 0.0, 0.0, 1.0],  # target 5 is the best: rank 0
        ]
    )
    target = np.array([3, 3, 1, 5])
    history = np.array([[0, 1], [0, 2], [0, 0], [5, 4]])  # row 3: the target in its history
    ranks = np.asarray(metrics.full_ranks(scores, target, exclude=history))
    np.testing.assert_array_equal(ranks, [2, 1, 2, 0])
    np.testing.assert_array_equal(np.asarray(metrics.full_ranks(scores, target)), [2, 2, 2, 0])


def test_hit_rate_and_ndcg_hand_computed():
    ranks = np.array([0, 1, 4, 9, 30])
    assert metrics.hit_rate(ranks, 1) == pytest.approx(1 / 5)
    assert metrics.hit_rate(ranks, 5) == pytest.approx(3 / 5)
    assert metrics.hit_rate(ranks, 10) == pytest.approx(4 / 5)
    expected10 = (1.0 + 1 / np.log2(3) + 1 / np.log2(6) + 1 / np.log2(11)) / 5
    assert metrics.ndcg(ranks, 10) == pytest.approx(expected10)
    assert metrics.ndcg(ranks, 1) == pytest.approx(1 / 5)


def test_rank_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="k must be"):
        metrics.hit_rate([0, 1], 0)
    with pytest.raises(ValueError, match=">= 0"):
        metrics.ndcg([-1], 5)
    with pytest.raises(ValueError, match="target"):
        metrics.full_ranks(np.zeros((2, 4)), np.zeros(3, int))
