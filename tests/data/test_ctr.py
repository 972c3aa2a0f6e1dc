"""Tests for jaxpapers.data.ctr: the synthetic CTR generator and the containers."""

import itertools
import json
import math

import numpy as np
import pytest
import scipy.sparse
from sklearn import linear_model

from jaxpapers.data import ctr
from jaxpapers.recsys import metrics

# =============================================================================
# Synthetic data.
# =============================================================================

_SMALL = dict(num_train=20_000, num_valid=2_000, num_test=20_000)


@pytest.fixture(scope="module")
def small_synthetic():
    return ctr.synthetic_ctr(**_SMALL, seed=3)


def test_synthetic_shapes_dtypes_and_ranges(small_synthetic):
    ds = small_synthetic
    assert ds.name == "synthetic"
    assert ds.num_fields == 16 == len(ds.field_names) == len(ds.vocab_sizes)
    assert all(10 <= v <= 100 for v in ds.vocab_sizes)
    for split, n in ((ds.train, 20_000), (ds.valid, 2_000), (ds.test, 20_000)):
        assert len(split) == n
        assert split.features.dtype == np.int32
        assert split.features.shape == (n, 16)
        assert split.labels.dtype == np.float32
        assert split.oracle_prob.dtype == np.float32
        assert set(np.unique(split.labels)) <= {0.0, 1.0}
        assert (split.features >= 0).all()
        assert (split.features < np.array(ds.vocab_sizes)).all()
        assert ((split.oracle_prob > 0) & (split.oracle_prob < 1)).all()


def test_synthetic_is_deterministic_and_seed_dependent(small_synthetic):
    again = ctr.synthetic_ctr(**_SMALL, seed=3)
    for name in ("train", "valid", "test"):
        a, b = small_synthetic.split(name), again.split(name)
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.oracle_prob, b.oracle_prob)
    assert small_synthetic.info == again.info
    other = ctr.synthetic_ctr(**_SMALL, seed=4)
    assert not np.array_equal(other.train.features, small_synthetic.train.features)


def test_synthetic_splits_are_different_draws(small_synthetic):
    ds = small_synthetic
    # Same model (same first rows would mean the same random stream).
    assert not np.array_equal(ds.train.features[:100], ds.test.features[:100])
    assert not np.array_equal(ds.train.features[:100], ds.valid.features[:100])
    # ...but the same distribution: per-field top value agrees.
    for f in range(ds.num_fields):
        top_train = np.bincount(ds.train.features[:, f]).argmax()
        top_test = np.bincount(ds.test.features[:, f]).argmax()
        assert top_train == top_test


def test_synthetic_ctr_and_oracle_metrics(small_synthetic):
    ds = small_synthetic
    info = ds.info
    json.dumps(info)  # JSON-serialisable.
    for name in ("train", "test"):
        assert abs(info["ctr"][name] - 0.25) < 0.015
        # Labels are Bernoulli(oracle_prob): their means agree.
        split = ds.split(name)
        assert abs(split.labels.mean() - split.oracle_prob.mean()) < 0.015
    assert info["oracle_auc"] == pytest.approx(metrics.auc(ds.test.labels, ds.test.oracle_prob))
    assert info["oracle_logloss"] == pytest.approx(
        metrics.logloss(ds.test.labels, ds.test.oracle_prob)
    )
    # Ordering of the diagnostic oracles: interactions carry real signal.
    assert 0.76 <= info["oracle_auc"] <= 0.86
    assert info["first_order_oracle_auc"] <= info["oracle_auc"] - 0.04
    assert info["pairwise_oracle_auc"] <= info["oracle_auc"] - 0.005  # local non-linear part
    assert info["first_order_oracle_auc"] <= info["pairwise_oracle_auc"] - 0.02
    constant = metrics.logloss(ds.test.labels, np.full(len(ds.test), ds.test.labels.mean()))
    assert info["oracle_logloss"] < constant - 0.05
    assert info["first_order_oracle_logloss"] > info["oracle_logloss"]


def test_synthetic_values_are_skewed_and_missing_is_rare(small_synthetic):
    x = small_synthetic.train.features
    for f, vocab in enumerate(small_synthetic.vocab_sizes):
        counts = np.bincount(x[:, f], minlength=vocab)
        # Zipf: the most frequent value is much more common than the median.
        nonzero = counts[1:][counts[1:] > 0]
        assert counts[1:].max() >= 4 * np.median(nonzero)
        assert counts[0] / len(x) < 0.03  # missing_prob = 0.01


def test_synthetic_linear_model_is_far_below_oracle():
    ds = ctr.synthetic_ctr(num_train=60_000, num_valid=10, num_test=30_000, seed=1)
    offsets = np.concatenate([[0], np.cumsum(ds.vocab_sizes)[:-1]])

    def one_hot(x):
        cols = (x + offsets).ravel()
        rows = np.repeat(np.arange(len(x)), x.shape[1])
        return scipy.sparse.csr_matrix(
            (np.ones(cols.size), (rows, cols)), shape=(len(x), int(sum(ds.vocab_sizes)))
        )

    model = linear_model.LogisticRegression(C=0.1, max_iter=200)
    model.fit(one_hot(ds.train.features), ds.train.labels)
    lr_auc = metrics.auc(ds.test.labels, model.decision_function(one_hot(ds.test.features)))
    assert lr_auc <= ds.info["oracle_auc"] - 0.05
    # ... but it does learn the additive signal: first_order_oracle_auc is
    # about what a model without interactions can reach.
    assert abs(lr_auc - ds.info["first_order_oracle_auc"]) < 0.03


def _probs_of(model, f):
    cdf = model.sample_cdf[f]
    probs = np.zeros(len(cdf))
    probs[model.sample_ids[f]] = np.diff(cdf, prepend=0.0)
    return probs


def test_synthetic_model_parameters_are_standardised():
    model = ctr._build_synthetic_model(
        seed=0,
        num_fields=6,
        vocab_min=5,
        vocab_max=50,
        zipf_exponent=1.1,
        missing_prob=0.02,
        first_order_scale=1.0,
        pairwise_scale=1.0,
        local_scale=1.0,
        local_width=3,
        local_gain=2.0,
        interaction_rank=3,
    )
    for f in range(6):
        probs = _probs_of(model, f)
        assert probs.sum() == pytest.approx(1.0)
        assert probs[0] == pytest.approx(0.02)
        for values in (model.first[f], model.pair[f]):
            np.testing.assert_allclose(probs @ values, 0.0, atol=1e-12)
            np.testing.assert_allclose(probs @ values**2, 1.0, atol=1e-9)
    assert len(model.local) == 6 - 3 + 1
    for start, factors in enumerate(model.local):
        for j, c in enumerate(factors):
            probs = _probs_of(model, start + j)
            assert probs @ c == pytest.approx(0.0, abs=1e-12)
            assert probs @ c**2 == pytest.approx(1.0, abs=1e-9)


def test_tanh_moments_match_monte_carlo():
    z = np.random.default_rng(0).standard_normal(2_000_000)
    for gain in (0.5, 3.0):
        rms, slope = ctr._tanh_moments(gain)
        t = np.tanh(gain * z)
        assert rms == pytest.approx(np.sqrt(np.mean(t**2)), rel=2e-3)
        assert slope == pytest.approx(np.mean(gain * z * t) / gain**2, rel=5e-3)
    assert ctr._tanh_moments(1e-4)[1] == pytest.approx(1.0, rel=1e-6)


def test_synthetic_logit_matches_documented_formula():
    num_fields, width, rank, gain = 5, 2, 3, 1.7
    model = ctr._build_synthetic_model(
        seed=7,
        num_fields=num_fields,
        vocab_min=4,
        vocab_max=9,
        zipf_exponent=1.0,
        missing_prob=0.05,
        first_order_scale=0.7,
        pairwise_scale=0.6,
        local_scale=0.5,
        local_width=width,
        local_gain=gain,
        interaction_rank=rank,
    )
    x = ctr._sample_features(model, np.random.default_rng(0), 50)
    first, pair, local, local_linear = ctr._logit_parts(model, x)
    num_pairs = num_fields * (num_fields - 1) / 2
    num_windows = num_fields - width + 1
    rms, slope = ctr._tanh_moments(gain)
    local_coef = 0.5 / (math.sqrt(num_windows) * rms)
    for r in range(len(x)):
        row = x[r]
        exp_first = sum(model.first[f][row[f]] for f in range(num_fields))
        exp_pair = sum(
            model.pair[f][row[f]] @ model.pair[g][row[g]]
            for f, g in itertools.combinations(range(num_fields), 2)
        )
        args = [
            gain / math.sqrt(width) * sum(model.local[i][j][row[i + j]] for j in range(width))
            for i in range(num_windows)
        ]
        assert first[r] == pytest.approx(0.7 / math.sqrt(num_fields) * exp_first)
        assert pair[r] == pytest.approx(0.6 / math.sqrt(num_pairs * rank) * exp_pair, abs=1e-12)
        assert local[r] == pytest.approx(local_coef * sum(math.tanh(t) for t in args), abs=1e-12)
        assert local_linear[r] == pytest.approx(local_coef * slope * sum(args), abs=1e-12)


def test_synthetic_logit_terms_have_the_requested_scales():
    model = ctr._build_synthetic_model(
        seed=1,
        num_fields=12,
        vocab_min=10,
        vocab_max=100,
        zipf_exponent=1.1,
        missing_prob=0.01,
        first_order_scale=1.1,
        pairwise_scale=0.8,
        local_scale=0.5,
        local_width=3,
        local_gain=3.0,
        interaction_rank=4,
    )
    x = ctr._sample_features(model, np.random.default_rng(1), 100_000)
    first, pair, local, local_linear = ctr._logit_parts(model, x)
    assert first.std() == pytest.approx(1.1, rel=0.05)
    assert pair.std() == pytest.approx(0.8, rel=0.05)
    assert local.std() == pytest.approx(0.5, rel=0.1)
    # Terms are mutually (nearly) uncorrelated.
    corr = np.corrcoef(np.stack([first, pair, local]))
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.05
    # local_linear is the linear part of local: the residual is uncorrelated
    # with it, and it explains most (but not all) of the variance.
    residual = local - local_linear
    assert abs(np.corrcoef(residual, local_linear)[0, 1]) < 0.05
    explained = 1.0 - residual.var() / local.var()
    assert 0.6 < explained < 0.9


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(local_width=30), ValueError, "local_width"),
        (dict(target_ctr=1.0), ValueError, "target_ctr"),
        (dict(vocab_min=1), ValueError, "vocab_min"),
        (dict(vocab_min=50, vocab_max=20), ValueError, "vocab_max"),
        (dict(num_test=1), ValueError, "num_test"),
        (dict(missing_prob=1.0), ValueError, "missing_prob"),
        (dict(pairwise_scale=-1.0), ValueError, "pairwise_scale"),
        (dict(local_gain=0.0), ValueError, "local_gain"),
        (dict(num_train=10.5), TypeError, "num_train"),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs, error, match):
    args = dict(num_train=10, num_valid=10, num_test=10)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ctr.synthetic_ctr(**args)


def test_ctrsplit_validates_shapes():
    with pytest.raises(ValueError, match="labels"):
        ctr.CTRSplit(np.zeros((3, 2), np.int32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="2-D"):
        ctr.CTRSplit(np.zeros(3, np.int32), np.zeros(3, np.float32))
