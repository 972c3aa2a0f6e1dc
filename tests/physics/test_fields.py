"""Point-field normaliser and the references' relative errors, against hand-computed values."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.physics import fields


def test_normalizer_is_per_channel_and_inverts():
    x = np.array([[[1.0, 5.0], [3.0, 5.0]], [[1.0, 5.0], [3.0, 5.0]]])  # channel 1 constant
    norm = fields.Normalizer.fit(x)
    np.testing.assert_allclose(norm.mean, [2.0, 5.0])
    assert norm.std[0] == pytest.approx(1.0)
    z = norm(x)
    np.testing.assert_allclose(z[..., 0], [[-1, 1], [-1, 1]])
    np.testing.assert_array_equal(z[..., 1], 0.0)  # a constant channel is exactly zero
    np.testing.assert_allclose(norm.inverse(z), x, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(norm.inverse(norm(jnp.asarray(x)))), x, rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(\.\.\., C\)"):
        fields.Normalizer.fit(np.zeros(3))


def test_relative_l2_and_l1_known_answers():
    true = np.array([[[3.0, 0.0], [0.0, 4.0]]])
    np.testing.assert_allclose(fields.relative_l2(true * 1.1, true), [0.1])
    # ||(1, 0), (0, 0)|| / ||true|| = 1 / 5
    np.testing.assert_allclose(fields.relative_l2(true + [[1.0, 0.0], [0.0, 0.0]], true), [0.2])
    # channel 0: |1| + |1| over 3 + 0; channel 1: 0 over 4 -> mean (2/3 + 0) / 2
    pred = true + np.array([1.0, 0.0])
    np.testing.assert_allclose(fields.relative_l1_per_channel(pred, true), [1.0 / 3.0])
    got = fields.relative_l1_per_channel(jnp.asarray(pred), jnp.asarray(true))
    np.testing.assert_allclose(np.asarray(got), [1.0 / 3.0], rtol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        fields.relative_l2(true, true[:, :1])


def test_masked_metrics_and_normalizer_ignore_the_padding():
    # Sample 0 has 2 real points, sample 1 one; the padding holds garbage (even NaN).
    true = np.array([[[3.0, 0.0], [0.0, 4.0], [9.0, 9.0]], [[1.0, 2.0], [np.nan, 7.0], [5, 5]]])
    pred = true + np.array([[[0.3, 0.0], [0.0, 0.4], [1.0, 1.0]], [[0.0, 1.0], [2.0, 2.0], [0, 0]]])
    mask = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # By hand on the real points: 0.5 / 5 and 1 / sqrt(5).
    want_l2 = [0.1, 1.0 / np.sqrt(5.0)]
    # Channel sums: sample 0 (0.3/3, 0.4/4) -> 0.1; sample 1 (0/1, 1/2) -> 0.25.
    want_l1 = [0.1, 0.25]
    np.testing.assert_allclose(fields.relative_l2(pred, true, mask), want_l2)
    np.testing.assert_allclose(fields.relative_l1_per_channel(pred, true, mask), want_l1)
    # The same as the unmasked metric on the unpadded sample.
    np.testing.assert_allclose(fields.relative_l2(pred[1:, :1], true[1:, :1]), want_l2[1:])
    got = fields.relative_l2(jnp.asarray(pred), jnp.asarray(true), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(got), want_l2, rtol=1e-6)
    with pytest.raises(ValueError, match=r"mask must have shape \(B, P\)"):
        fields.relative_l2(pred, true, mask[:, :2])

    norm = fields.Normalizer.fit(true, mask)
    real = np.array([[3.0, 0.0], [0.0, 4.0], [1.0, 2.0]])
    np.testing.assert_allclose(norm.mean, real.mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.std, real.std(0), rtol=1e-6)
    np.testing.assert_array_equal(fields.Normalizer.fit(real).mean, norm.mean)
    with pytest.raises(ValueError, match="no point"):
        fields.Normalizer.fit(true, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="without channels"):
        fields.Normalizer.fit(true, mask[:, :2])
