"""Point-field helpers shared by the multi-solid (Unisoma) and FSI (Fisale) experiments.

* :class:`Normalizer` — the references' unit-Gaussian normaliser: one mean and one standard
  deviation per channel, accumulated over every point of every training sample
  (``utils/normalizers.py`` of both references: ``std = max(sqrt(E[x²] − E[x]²), 1e-8)``).
  We accumulate in float64 and floor the deviation at ``1e-8 + 1e-6·|mean|`` instead of a bare
  ``1e-8``: a channel that is constant in the data (fluid points sampled on a fixed Eulerian
  grid, a rigid body that does not move along one axis) then normalises to exactly zero rather
  than to float32 round-off divided by 1e-8.
* :func:`relative_l2` — the references' training criterion: per sample,
  ``‖pred − true‖₂ / ‖true‖₂`` over all points and channels, averaged over the batch.
* :func:`relative_l1_per_channel` — Fisale's evaluation criterion: per sample and channel,
  ``Σ_points |pred − true| / Σ_points |true|``, averaged over channels (and the batch).

The metric functions return per-sample values ``(B,)`` (average them yourself, with a mask if
the batch is padded) and accept NumPy (float64-exact) or JAX arrays.

Padded point sets (samples with different numbers of points, padded to one count: see
:mod:`jaxpapers.physics.multisolid`): ``Normalizer.fit``, :func:`relative_l2` and
:func:`relative_l1_per_channel` take an optional point ``mask`` (``(..., P)`` for the fit,
``(B, P)`` for the metrics; 1 = real point, 0 = padding). Padded points are left out of every
sum (``where``, so any garbage there, even non-finite, is ignored), which gives exactly the
values of the unpadded arrays. ``mask=None`` is the unmasked computation, unchanged.

Example::

    true = np.array([[[3.0, 0.0], [0.0, 4.0]]])      # (B=1, P=2, C=2)
    relative_l2(true * 1.1, true)                      # array([0.1])
    relative_l1_per_channel(true + [1.0, 0.0], true)   # channel 0: 2/3, channel 1: 0 -> [1/3]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxpapers.physics.curves import _xp

__all__ = ["Normalizer", "relative_l1_per_channel", "relative_l2"]


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Per-channel unit-Gaussian scaling of point fields ``(..., C)``."""

    mean: np.ndarray  # (C,) float32
    std: np.ndarray  # (C,) float32

    @classmethod
    def fit(cls, values: np.ndarray, mask: np.ndarray | None = None) -> Normalizer:
        """Mean and deviation per channel (last axis) over every other axis of ``values``.

        ``mask`` (optional, ``values.shape[:-1]``): only the points where it is > 0 count.
        """
        values = np.asarray(values)
        if values.ndim < 2 or values.shape[-1] < 1:
            raise ValueError(f"values must have shape (..., C) with C >= 1, got {values.shape}")
        if mask is None:
            flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
        else:
            mask = np.asarray(mask)
            if mask.shape != values.shape[:-1]:
                raise ValueError(
                    f"mask must have the values' shape without channels {values.shape[:-1]}, "
                    f"got {mask.shape}"
                )
            flat = values[mask > 0].astype(np.float64)
            if not len(flat):
                raise ValueError("mask leaves no point to fit the normaliser on")
        mean = flat.mean(0)
        std = np.sqrt(np.maximum((flat * flat).mean(0) - mean * mean, 0.0))
        std = np.maximum(std, 1e-8 + 1e-6 * np.abs(mean))
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def __call__(self, values: Any) -> Any:
        xp = _xp(values)
        return (values - xp.asarray(self.mean)) / xp.asarray(self.std)

    def inverse(self, values: Any) -> Any:
        xp = _xp(values)
        return values * xp.asarray(self.std) + xp.asarray(self.mean)


def _check(pred: Any, true: Any, mask: Any = None) -> None:
    if np.shape(pred) != np.shape(true):
        raise ValueError(
            f"pred and true must have the same shape, got {np.shape(pred)} and {np.shape(true)}"
        )
    if len(np.shape(pred)) != 3:
        raise ValueError(f"fields must have shape (B, P, C), got {np.shape(pred)}")
    if mask is not None and np.shape(mask) != np.shape(pred)[:2]:
        raise ValueError(
            f"mask must have shape (B, P) = {np.shape(pred)[:2]}, got {np.shape(mask)}"
        )


def _masked(xp, values: Any, mask: Any) -> Any:
    """``values`` ``(B, P, C)`` with the padded points (``mask`` 0) replaced by 0."""
    keep = xp.asarray(mask)[..., None] > 0
    return xp.where(keep, values, xp.zeros((), values.dtype))


def relative_l2(pred: Any, true: Any, mask: Any = None) -> Any:
    """``‖pred − true‖ / ‖true‖`` per sample over points and channels: ``(B, P, C) -> (B,)``.

    ``mask`` (optional, ``(B, P)``): only points where it is > 0 count.
    """
    _check(pred, true, mask)
    xp = _xp(pred, true, mask)
    if mask is None:
        diff = xp.sqrt(xp.sum((pred - true) ** 2, axis=(1, 2)))
        return diff / xp.sqrt(xp.sum(true**2, axis=(1, 2)))
    diff = xp.sqrt(xp.sum(_masked(xp, (pred - true) ** 2, mask), axis=(1, 2)))
    return diff / xp.sqrt(xp.sum(_masked(xp, true**2, mask), axis=(1, 2)))


def relative_l1_per_channel(pred: Any, true: Any, mask: Any = None) -> Any:
    """Mean over channels of ``Σ_p |pred − true| / Σ_p |true|``: ``(B, P, C) -> (B,)``.

    ``mask`` (optional, ``(B, P)``): only points where it is > 0 count.
    """
    _check(pred, true, mask)
    xp = _xp(pred, true, mask)
    if mask is None:
        err = xp.sum(xp.abs(pred - true), axis=1) / xp.sum(xp.abs(true), axis=1)
    else:
        err = xp.sum(_masked(xp, xp.abs(pred - true), mask), axis=1) / xp.sum(
            _masked(xp, xp.abs(true), mask), axis=1
        )
    return xp.mean(err, axis=-1)
