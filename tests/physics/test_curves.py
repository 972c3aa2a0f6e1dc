"""Tests for jaxpapers.physics.curves and jaxpapers.physics.metrics (hand-computed answers)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.physics import curves, metrics
from jaxpapers.physics.curves import AxisScale


def _cubic_curve(t):
    return np.stack([t, t**2 - 0.5 * t, 2.0 * t**3], axis=-1)


# --------------------------------------------------------------------------- resample


def test_resample_reference_reproduces_cubics_in_index_parameter():
    # The reference parameterises by point index and fits a not-a-knot cubic spline, which
    # reproduces any cubic polynomial of the index exactly.
    coarse = _cubic_curve(np.linspace(0.0, 1.0, 7))
    fine = curves.resample(coarse, 13)
    np.testing.assert_allclose(fine, _cubic_curve(np.linspace(0.0, 1.0, 13)), atol=1e-12)


def test_resample_batched_and_keeps_ends():
    rng = np.random.default_rng(0)
    batch = np.cumsum(rng.normal(size=(3, 20, 3)), axis=1)
    out = curves.resample(batch, 301)
    assert out.shape == (3, 301, 3)
    np.testing.assert_allclose(out[:, 0], batch[:, 0], atol=1e-12)
    np.testing.assert_allclose(out[:, -1], batch[:, -1], atol=1e-12)
    np.testing.assert_allclose(out[1], curves.resample(batch[1], 301), atol=1e-12)
    # Same length in, same curve out (the reader relies on this being a no-op in effect).
    np.testing.assert_allclose(curves.resample(batch, 20), batch, atol=1e-12)


def test_resample_arclength_is_uniform_in_arc_length():
    # An L-shaped polyline of total length 2, sampled at 5 points -> steps of 0.5.
    ell = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    out = curves.resample(ell, 5, method="arclength")
    expected = [[0, 0, 0], [0.5, 0, 0], [1, 0, 0], [1, 0.5, 0], [1, 1, 0]]
    np.testing.assert_allclose(out, expected, atol=1e-12)
    # Unevenly spaced points on a straight line become evenly spaced.
    line = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.15, 0, 0], [3.0, 0, 0]])
    np.testing.assert_allclose(
        curves.resample(line, 4, method="arclength")[:, 0], [0.0, 1.0, 2.0, 3.0], atol=1e-12
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(curve=np.zeros((10, 2)), n_points=5), r"\(\.\.\., P, 3\)"),
        (dict(curve=np.zeros((3, 3)), n_points=5), "at least 4 points"),
        (dict(curve=np.zeros((10, 3)), n_points=1), "n_points"),
        (dict(curve=np.zeros((10, 3)), n_points=5, method="spline"), "method"),
        (dict(curve=np.zeros((10, 3)), n_points=5, method="arclength"), "positive length"),
        (dict(curve=np.full((10, 3), np.nan), n_points=5), "NaN"),
    ],
)
def test_resample_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        curves.resample(**kwargs)


# --------------------------------------------------------------------------- AxisScale


def test_reference_constants_and_weights():
    assert curves.MOULD_SCALE.to_reference() == [1.6669, 0.4628, -0.0002, 1.5532, 0.0002, -0.4709]
    np.testing.assert_allclose(curves.MOULD_SCALE.weights, [0.1137, 0.4626, 0.4707], atol=1e-12)
    np.testing.assert_allclose(curves.LOAD_SCALE.weights, [0.2605, 0.4975, 0.5078], atol=1e-12)
    np.testing.assert_allclose(curves.UNLOAD_SCALE.weights, [0.2385, 0.4582, 0.5605], atol=1e-12)
    assert curves.STRIP_SCALE == curves.UNLOAD_SCALE
    hash(curves.LOAD_SCALE)  # usable as a static jit argument


def test_axis_scale_validation():
    with pytest.raises(ValueError, match="6 numbers"):
        AxisScale.from_reference([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"\['y'\]"):
        AxisScale.from_reference([1.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def test_axis_scale_fit_and_degenerate_axis():
    diffs = np.array([[[1.0, -2.0, 0.0], [3.0, 5.0, 0.0]], [[2.0, 0.0, 0.0], [-1.0, 1.0, 0.0]]])
    s = AxisScale.fit(diffs, min_width=0.5)
    assert s.max == (3.0, 5.0, 0.25)
    assert s.min == (-1.0, -2.0, -0.25)
    np.testing.assert_allclose(s.weights, [4.0, 7.0, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        AxisScale.fit(np.array([[np.nan, 0.0, 0.0]]))


# --------------------------------------------------------------------------- scaled diffs


def test_to_scaled_diffs_hand_computed():
    c = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [3.0, 2.0, 5.0]])
    s = AxisScale.create([2.0, 2.0, 4.0], [0.0, 0.0, 2.0])
    # diffs (1, 2, 3) and (2, 0, 2) -> ((d - min) / (max - min))
    np.testing.assert_allclose(
        curves.to_scaled_diffs(c, s), [[0.5, 1.0, 0.5], [1.0, 0.0, 0.0]], atol=1e-15
    )


def test_scaled_diffs_round_trip_numpy_and_jit():
    rng = np.random.default_rng(1)
    c = np.cumsum(rng.normal(size=(4, 301, 3)), axis=1)
    s = AxisScale.fit(np.diff(c, axis=1))
    scaled = curves.to_scaled_diffs(c, s)
    assert scaled.shape == (4, 300, 3) and scaled.dtype == np.float64
    assert scaled.min() >= 0.0 and scaled.max() <= 1.0 + 1e-12
    # Default start is the origin (the reference's diff_recover).
    np.testing.assert_allclose(curves.from_scaled_diffs(scaled, s), c - c[:, :1], atol=1e-10)
    np.testing.assert_allclose(curves.from_scaled_diffs(scaled, s, start=c[:, 0]), c, atol=1e-10)
    back = jax.jit(lambda x: curves.from_scaled_diffs(x, s, start=jnp.ones(3)))(
        jnp.asarray(scaled, jnp.float32)
    )
    assert isinstance(back, jax.Array) and back.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(back), c - c[:, :1] + 1.0, atol=2e-4)


# --------------------------------------------------------------------------- params


def test_scale_params_like_reference():
    np.testing.assert_allclose(
        curves.scale_params([[1.0, 2.0, 3.0, 10.0, 30.0, 20.0]]), [0, 0.5, 1, 0, 1, 0.5]
    )
    # Rows are summed first: (1, 2, 0, 1, 1, 6); groups scaled separately.
    rows = [[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [0.0, 2.0, 0.0, 0.0, 0.0, 5.0]]
    np.testing.assert_allclose(curves.scale_params(rows), [0.5, 1.0, 0.0, 0.0, 0.0, 1.0])
    # 1D single row; a constant group gives zeros (the reference would give NaN).
    np.testing.assert_allclose(
        curves.scale_params([4.0, 4.0, 4.0, 1.0, 3.0, 2.0]), [0, 0, 0, 0, 1, 0.5]
    )
    batched = curves.scale_params(np.stack([rows, rows]))
    assert batched.shape == (2, 6) and batched.dtype == np.float32
    with pytest.raises(ValueError, match="shape"):
        curves.scale_params(np.zeros((2, 5)))


# --------------------------------------------------------------------------- metrics


def test_mad_te_shift_is_five():
    true = np.cumsum(np.ones((2, 301, 3)), axis=1)
    pred = true + np.array([3.0, 4.0, 0.0])
    np.testing.assert_allclose(metrics.mad(pred, true), [5.0, 5.0], atol=1e-12)
    np.testing.assert_allclose(metrics.te(pred, true), [5.0, 5.0], atol=1e-12)


def test_mad_te_linear_divergence():
    # Point k is off by (3, 4, 0) * k / (P - 1): distances 5k/(P-1), mean 2.5, tail 5.
    p = 301
    true = np.zeros((1, p, 3))
    pred = np.linspace(0.0, 1.0, p)[None, :, None] * np.array([3.0, 4.0, 0.0])
    np.testing.assert_allclose(metrics.mad(pred, true), [2.5], atol=1e-12)
    np.testing.assert_allclose(metrics.te(pred, true), [5.0], atol=1e-12)
    # JAX inputs give JAX outputs with the same values.
    out = jax.jit(metrics.mad)(jnp.asarray(pred, jnp.float32), jnp.asarray(true, jnp.float32))
    assert isinstance(out, jax.Array)
    np.testing.assert_allclose(np.asarray(out), [2.5], atol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        metrics.mad(pred, true[:, :-1])


def test_mad_te_from_scaled_diffs_reconstructs_curves():
    rng = np.random.default_rng(2)
    p = 301
    true = np.cumsum(rng.uniform(0.1, 0.2, size=(3, p, 3)), axis=1)
    true -= true[:, :1]
    pred = true + np.linspace(0.0, 1.0, p)[None, :, None] * np.array([0.0, 3.0, 4.0])
    scale = curves.UNLOAD_SCALE
    got = metrics.mad_te_from_scaled_diffs(
        curves.to_scaled_diffs(pred, scale), curves.to_scaled_diffs(true, scale), scale
    )
    np.testing.assert_allclose(got["mad"], [2.5] * 3, atol=1e-9)
    np.testing.assert_allclose(got["te"], [5.0] * 3, atol=1e-9)
    # Same as the reference's route: reconstruct the prediction from the origin, compare raw.
    rec = curves.from_scaled_diffs(curves.to_scaled_diffs(pred, scale), scale)
    np.testing.assert_allclose(metrics.mad(rec, true), got["mad"], atol=1e-9)
