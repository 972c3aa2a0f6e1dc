"""ACU's claims: exact forgetting, without the retained data, refused when impossible."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import linalg
from jaxpapers.analytic import acu

from .conftest import synthetic_features

GAMMA = 0.5


def _learned(x, labels, batch=64, classes=6):
    state = acu.init(x.shape[1], classes, GAMMA)
    for start in range(0, len(x), batch):
        state = acu.learn(
            state, jnp.asarray(x[start : start + batch]), labels[start : start + batch]
        )
    return state


def _retrained(x, labels, classes=6):
    return acu.retrain(jnp.asarray(x), jax.nn.one_hot(labels, classes, dtype=jnp.float64), GAMMA)


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def test_unlearning_equals_retraining_without_the_forgotten_rows():
    with jax.enable_x64(True):
        x, y = synthetic_features()
        state = _learned(x, y)
        forget = np.random.default_rng(1).choice(len(y), 40, replace=False)
        keep = np.setdiff1d(np.arange(len(y)), forget)
        after = acu.unlearn(state, jnp.asarray(x[forget]), y[forget])
        assert _rel(after.rls.w, _retrained(x[keep], y[keep])) < 1e-9
        r_retrain = linalg.ridge_inverse(jnp.asarray(x[keep].T @ x[keep]), GAMMA)
        assert _rel(after.rls.r, r_retrain) < 1e-9
        np.testing.assert_array_equal(np.asarray(after.counts), np.bincount(y[keep], minlength=6))


def test_sequential_unlearning_equals_one_shot():
    with jax.enable_x64(True):
        x, y = synthetic_features(seed=2)
        state = _learned(x, y)
        a, b = np.arange(0, 30), np.arange(100, 125)
        both = np.concatenate([a, b])
        one_shot = acu.unlearn(state, jnp.asarray(x[both]), y[both])
        sequential = acu.unlearn(
            acu.unlearn(state, jnp.asarray(x[a]), y[a]), jnp.asarray(x[b]), y[b]
        )
        assert _rel(sequential.rls.w, one_shot.rls.w) < 1e-9
        assert _rel(sequential.rls.r, one_shot.rls.r) < 1e-9


def test_learn_then_unlearn_restores_r_and_w():
    with jax.enable_x64(True):
        x, y = synthetic_features(seed=3)
        state = _learned(x[:400], y[:400])
        extra = acu.learn(state, jnp.asarray(x[400:]), y[400:])
        restored = acu.unlearn(extra, jnp.asarray(x[400:]), y[400:])
        assert _rel(restored.rls.w, state.rls.w) < 1e-9
        assert _rel(restored.rls.r, state.rls.r) < 1e-9


def test_forgetting_a_class_zeroes_its_column_and_its_accuracy():
    with jax.enable_x64(True):
        x, y = synthetic_features(seed=4)
        state = _learned(x, y)
        rows = np.flatnonzero(y == 2)
        after = acu.unlearn(state, jnp.asarray(x[rows]), y[rows])
        w = np.asarray(after.rls.w)
        assert np.max(np.abs(w[:, 2])) < 1e-10 * np.max(np.abs(w))
        assert acu.accuracy(after.rls.w, jnp.asarray(x[rows]), y[rows]) < 0.05
        assert acu.accuracy(state.rls.w, jnp.asarray(x[rows]), y[rows]) > 0.9
        assert float(after.counts[2]) == 0.0


def test_requests_for_data_never_learned_are_refused():
    with jax.enable_x64(True):
        x, y = synthetic_features(seed=5)
        state = _learned(x[:300], y[:300])
        only_zeros = np.flatnonzero(y[:300] == 0)
        with pytest.raises(acu.UnlearningError, match="only data that was learned"):
            acu.unlearn(
                state,
                jnp.asarray(x[: len(only_zeros) + 5]),
                np.zeros(len(only_zeros) + 5, np.int32),
            )
        outlier = np.full((1, x.shape[1]), 50.0)  # leverage >= 1: never part of the Gram matrix
        with pytest.raises(acu.UnlearningError, match="never learned"):
            acu.unlearn(state, jnp.asarray(outlier), np.array([1], np.int32))
        with pytest.raises(ValueError, match="label"):
            acu.learn(state, jnp.asarray(x[:2]), np.array([0, 9], np.int32))
