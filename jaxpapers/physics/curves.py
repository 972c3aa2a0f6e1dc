"""Curve utilities for stretch bending (LaDEEP / FilDeep): resampling, differences, scaling.

LaDEEP (therontau0054/LaDEEP) represents every 3D centre-line curve (the strip, the mould, the
loaded and the unloaded strip) by its point-to-point *differences*: a curve of 301 points becomes
300 difference vectors, each axis min-max scaled with fixed per-axis constants. The network
predicts scaled differences; metrics de-normalise them and take a cumulative sum starting at the
origin. This module holds those transforms so that models, data readers and metrics share them.

Facts taken from the reference code:

* ``resample_3d_curve`` does **not** resample by arc length: it parameterises the curve by the
  point *index* (``t = linspace(0, 1, len(curve))``) and evaluates a cubic interpolating spline
  per axis (``scipy.interpolate.interp1d(kind="cubic")``, i.e. not-a-knot end conditions) at
  ``n_points`` uniform values of ``t``. ``resample(..., method="reference")`` (the default) does
  exactly that; ``method="arclength"`` is the uniform arc-length linear resampling that the
  paper's wording suggests, offered as an option.
* Scale constants use the 6-number layout ``[max_x, max_y, max_z, min_x, min_y, min_z]`` and
  the reference's three sets are kept verbatim as :data:`MOULD_SCALE`, :data:`LOAD_SCALE` and
  :data:`UNLOAD_SCALE`. The reference scales the *input strip* with the unloading constants
  (``_read_line_diff``'s default argument), so :data:`STRIP_SCALE` is :data:`UNLOAD_SCALE`.
* Scaling is ``(diff - min) / (max - min)`` per axis, and the per-axis loss weights are
  ``max - min`` (``coordinate_weights`` in ``main.py``).
* Reconstruction (``diff_recover``) prepends a zero row and cumulative-sums, so a reconstructed
  curve starts at the origin; ``from_scaled_diffs(start=None)`` does the same.
* Process parameters (``_read_params``): the CSV rows are **summed** into one 6-vector, then the
  first three entries are min-max scaled *together* (over those three numbers, not over the
  data set) and so are the last three. So each group always contains an exact 0 and 1 and only
  the relative sizes inside a group survive; the absolute magnitudes are lost. We reproduce this
  oddity in :func:`scale_params` because the released models were trained with it.

Choices where the reference is silent:

* A group of three equal parameters makes the reference divide by zero (NaN); we return zeros.
* A single-row parameter file (a 1D ``np.loadtxt`` result, on which the reference's sum would
  collapse to a scalar) is treated as one row.
* :meth:`AxisScale.fit` widens an axis whose differences are constant (e.g. planar synthetic
  curves with z = 0) to ``min_width`` around the constant, so scaling never divides by zero and
  that axis gets a negligible loss weight.
* ``to_scaled_diffs`` / ``from_scaled_diffs`` keep NumPy inputs in NumPy (float64 stays exact)
  and use ``jax.numpy`` for JAX arrays, so they work inside ``jax.jit``.

Example::

    curves = np.cumsum(np.ones((2, 301, 3)), axis=1) - 1.0  # two straight lines from the origin
    scale = AxisScale.fit(np.diff(curves, axis=1))
    scaled = to_scaled_diffs(curves, scale)                  # (2, 300, 3) in [0, 1]
    back = from_scaled_diffs(scaled, scale)                  # (2, 301, 3), equals curves
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "AxisScale",
    "LOAD_SCALE",
    "MOULD_SCALE",
    "STRIP_SCALE",
    "UNLOAD_SCALE",
    "from_scaled_diffs",
    "resample",
    "scale_params",
    "to_scaled_diffs",
]


def _xp(*arrays: Any):
    """jax.numpy if any argument is a JAX array (or tracer), else numpy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _check_curves(x: Any, name: str, min_points: int = 2) -> None:
    shape = np.shape(x)
    if len(shape) < 2 or shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., P, 3), got {shape}.")
    if shape[-2] < min_points:
        raise ValueError(f"{name} needs at least {min_points} points, got shape {shape}.")


class AxisScale(NamedTuple):
    """Per-axis (max, min) of curve differences; the reference's min-max scale factors.

    Fields are plain float tuples, so an ``AxisScale`` is hashable and can be a static argument
    of a jitted function.

    Example::

        s = AxisScale.from_reference([1.6669, 0.4628, -0.0002, 1.5532, 0.0002, -0.4709])
        s.weights  # array([0.1137, 0.4626, 0.4707])
    """

    max: tuple[float, float, float]
    min: tuple[float, float, float]

    @classmethod
    def from_reference(cls, factors: Sequence[float]) -> AxisScale:
        """From the reference's layout ``[max_x, max_y, max_z, min_x, min_y, min_z]``."""
        f = [float(v) for v in np.asarray(factors, dtype=np.float64).reshape(-1)]
        if len(f) != 6:
            raise ValueError(
                "scale factors need 6 numbers [max_x, max_y, max_z, min_x, min_y, min_z], "
                f"got {len(f)}."
            )
        return cls.create(f[:3], f[3:])

    @classmethod
    def create(cls, max_: Sequence[float], min_: Sequence[float]) -> AxisScale:
        """From per-axis maxima and minima (3 each); requires max > min on every axis."""
        hi = tuple(float(v) for v in np.asarray(max_, dtype=np.float64).reshape(-1))
        lo = tuple(float(v) for v in np.asarray(min_, dtype=np.float64).reshape(-1))
        if len(hi) != 3 or len(lo) != 3:
            raise ValueError(f"max and min need 3 values each, got {len(hi)} and {len(lo)}.")
        if not all(np.isfinite(hi + lo)):
            raise ValueError(f"scale factors must be finite, got max={hi}, min={lo}.")
        bad = [ax for ax, h, m in zip("xyz", hi, lo, strict=True) if not h > m]
        if bad:
            raise ValueError(f"max must exceed min on every axis; fails on {bad}: {hi} vs {lo}.")
        return cls(hi, lo)

    @classmethod
    def fit(cls, diffs: Any, *, min_width: float = 1e-6) -> AxisScale:
        """Per-axis max and min over all differences ``(..., 3)`` (e.g. a training set).

        An axis whose range is below ``min_width`` is widened symmetrically to ``min_width``.
        """
        d = np.asarray(diffs, dtype=np.float64)
        if d.ndim < 1 or d.shape[-1] != 3 or d.size == 0:
            raise ValueError(f"diffs must have shape (..., 3) and be non-empty, got {d.shape}.")
        if not np.isfinite(d).all():
            raise ValueError("diffs contain NaN or infinite values.")
        if not min_width > 0:
            raise ValueError(f"min_width must be positive, got {min_width}.")
        d = d.reshape(-1, 3)
        hi, lo = d.max(axis=0), d.min(axis=0)
        narrow = (hi - lo) < min_width
        mid = 0.5 * (hi + lo)
        hi = np.where(narrow, mid + 0.5 * min_width, hi)
        lo = np.where(narrow, mid - 0.5 * min_width, lo)
        return cls.create(hi, lo)

    @property
    def weights(self) -> np.ndarray:
        """``max - min`` per axis, (3,): the reference's coordinate weights for the loss."""
        return np.asarray(self.max, np.float64) - np.asarray(self.min, np.float64)

    def to_reference(self) -> list[float]:
        """Back to ``[max_x, max_y, max_z, min_x, min_y, min_z]``."""
        return [*self.max, *self.min]


MOULD_SCALE = AxisScale.from_reference([1.6669, 0.4628, -0.0002, 1.5532, 0.0002, -0.4709])
"""The reference's ``scale_factor_for_mould``."""
LOAD_SCALE = AxisScale.from_reference([1.8536, 0.4950, 0.0047, 1.5931, -0.0025, -0.5031])
"""The reference's ``scale_factor_for_load`` (loaded strip)."""
UNLOAD_SCALE = AxisScale.from_reference([1.8492, 0.4575, 0.0835, 1.6107, -0.0007, -0.4770])
"""The reference's ``scale_factor_for_unload`` (unloaded strip)."""
STRIP_SCALE = UNLOAD_SCALE
"""The input strip: the reference scales it with the unloading constants."""


def _not_a_knot_spline_eval(t: np.ndarray, y: np.ndarray, t_new: np.ndarray) -> np.ndarray:
    """Cubic not-a-knot interpolating spline through (t, y[..., :]) along axis -2, at t_new."""
    from scipy.interpolate import make_interp_spline  # scipy ships with scikit-learn

    return make_interp_spline(t, y, k=3, axis=-2)(t_new)


def _arclength_linear(curves: np.ndarray, n_points: int) -> np.ndarray:
    seg = np.linalg.norm(np.diff(curves, axis=-2), axis=-1)  # (B, P-1)
    s = np.concatenate([np.zeros(seg.shape[:-1] + (1,)), np.cumsum(seg, axis=-1)], axis=-1)
    total = s[:, -1]
    if not (total > 0).all():
        raise ValueError("arc-length resampling needs curves of positive length.")
    out = np.empty((curves.shape[0], n_points, 3), dtype=np.float64)
    for b in range(curves.shape[0]):
        u = np.linspace(0.0, total[b], n_points)
        for ax in range(3):
            out[b, :, ax] = np.interp(u, s[b], curves[b, :, ax])
    return out


def resample(curve: Any, n_points: int, *, method: str = "reference") -> np.ndarray:
    """Resamples curves ``(P, 3)`` or ``(B, P, 3)`` to ``n_points`` points (float64 NumPy).

    ``method="reference"``: uniform in point index, cubic not-a-knot spline per axis (the
    reference's ``resample_3d_curve``; needs P >= 4). ``method="arclength"``: uniform in arc
    length, linear interpolation between the given points. Both keep the end points.

    Example::

        line = np.stack([np.linspace(0, 1, 5)] * 3, axis=-1)
        resample(line, 9)  # 9 evenly spaced points on the same segment
    """
    c = np.asarray(curve, dtype=np.float64)
    _check_curves(c, "curve")
    if c.ndim not in (2, 3):
        raise ValueError(f"curve must be (P, 3) or (B, P, 3), got {c.shape}.")
    if not isinstance(n_points, int | np.integer) or n_points < 2:
        raise ValueError(f"n_points must be an int >= 2, got {n_points!r}.")
    if not np.isfinite(c).all():
        raise ValueError("curve contains NaN or infinite values.")
    squeeze = c.ndim == 2
    batch = c[None] if squeeze else c
    if method == "reference":
        if batch.shape[1] < 4:
            raise ValueError(f"cubic resampling needs at least 4 points, got {batch.shape[1]}.")
        t = np.linspace(0.0, 1.0, batch.shape[1])
        out = _not_a_knot_spline_eval(t, batch, np.linspace(0.0, 1.0, n_points))
    elif method == "arclength":
        out = _arclength_linear(batch, int(n_points))
    else:
        raise ValueError(f"method must be 'reference' or 'arclength', got {method!r}.")
    return out[0] if squeeze else out


def to_scaled_diffs(curves: Any, scale: AxisScale) -> Any:
    """Curves ``(..., P, 3)`` -> min-max scaled differences ``(..., P-1, 3)``."""
    _check_curves(curves, "curves")
    xp = _xp(curves)
    c = xp.asarray(curves)
    diffs = c[..., 1:, :] - c[..., :-1, :]
    lo = xp.asarray(scale.min, dtype=diffs.dtype)
    width = xp.asarray(scale.weights, dtype=diffs.dtype)
    return (diffs - lo) / width


def from_scaled_diffs(scaled: Any, scale: AxisScale, start: Any = None) -> Any:
    """Scaled differences ``(..., P-1, 3)`` -> curves ``(..., P, 3)``.

    De-normalises (``scaled * (max - min) + min``) and cumulative-sums from ``start``
    (broadcastable to ``(..., 3)``); ``start=None`` starts at the origin as the reference's
    ``diff_recover``.
    """
    _check_curves(scaled, "scaled", min_points=1)
    xp = _xp(scaled, start)
    s = xp.asarray(scaled)
    if not xp.issubdtype(s.dtype, xp.floating):
        s = s.astype(xp.float32 if xp is jnp else np.float64)
    diffs = s * xp.asarray(scale.weights, dtype=s.dtype) + xp.asarray(scale.min, dtype=s.dtype)
    batch = s.shape[:-2]
    if start is None:
        first = xp.zeros(batch + (1, 3), dtype=s.dtype)
    else:
        st = xp.asarray(start, dtype=s.dtype)
        if st.ndim < 1 or st.shape[-1] != 3:
            raise ValueError(f"start must have shape (..., 3), got {st.shape}.")
        first = xp.broadcast_to(st, batch + (3,))[..., None, :]
    return xp.cumsum(xp.concatenate([first, diffs], axis=-2), axis=-2)


def scale_params(raw_rows: Any) -> np.ndarray:
    """Process parameters as the reference's ``_read_params`` (see the module docstring).

    ``raw_rows``: one CSV's rows ``(R, 6)`` (or ``(6,)`` for a single row), or a batch
    ``(B, R, 6)``. Rows are summed, then entries 0-2 and entries 3-5 are each min-max scaled
    over their own three values. Returns float32 ``(6,)`` or ``(B, 6)``.

    Example::

        scale_params([[1.0, 2.0, 3.0, 10.0, 30.0, 20.0]])  # [0, .5, 1, 0, 1, .5]
    """
    p = np.asarray(raw_rows, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    if p.ndim not in (2, 3) or p.shape[-1] != 6 or p.shape[-2] == 0:
        raise ValueError(f"params must have shape (R, 6), (6,) or (B, R, 6), got {p.shape}.")
    if not np.isfinite(p).all():
        raise ValueError("params contain NaN or infinite values.")
    total = p.sum(axis=-2)
    out = np.empty_like(total)
    for sl in (slice(0, 3), slice(3, 6)):
        g = total[..., sl]
        lo = g.min(axis=-1, keepdims=True)
        width = g.max(axis=-1, keepdims=True) - lo
        out[..., sl] = np.where(width > 0, (g - lo) / np.where(width > 0, width, 1.0), 0.0)
    return out.astype(np.float32)
