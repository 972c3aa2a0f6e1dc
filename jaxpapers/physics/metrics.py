"""Curve metrics for stretch bending (LaDEEP / FilDeep): MAD and TE.

Definitions, as in the reference's ``test()`` (therontau0054/LaDEEP ``main.py``):

* **MAD** (mean absolute distance) of one sample: the mean over the curve's points of the
  Euclidean distance between predicted and true point. The reported number is the mean of the
  per-sample values over the test set.
* **TE** (tail error) of one sample: the Euclidean distance between the predicted and the true
  *last* point; reported as the mean over samples.
* Both are computed on **de-normalised, cumulative-summed** curves: the predicted scaled
  differences are mapped back with the scale constants and summed from the origin
  (``diff_recover``), and compared with the ground-truth curve as read from its file.

:func:`mad` and :func:`te` return per-sample values ``(...,)``; average them yourself.
:func:`mad_te_from_scaled_diffs` reconstructs both prediction and target from scaled differences
with the same start point. Distances do not depend on that shared start, so this equals the
reference whenever the ground-truth curve starts at the origin (as the released curves do, since
the reference compares origin-started predictions with them directly). If your ground truth does
not start at the origin, reconstruct with :func:`~jaxpapers.physics.curves.from_scaled_diffs`
and call :func:`mad` / :func:`te` on the raw curves instead.

NumPy inputs give NumPy (float64-exact) results; JAX inputs use ``jax.numpy`` (jit-safe).

Example::

    true = np.zeros((1, 301, 3))
    pred = true + np.array([3.0, 4.0, 0.0])
    mad(pred, true), te(pred, true)  # (array([5.]), array([5.]))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxpapers.physics.curves import AxisScale, _xp, from_scaled_diffs

__all__ = ["mad", "mad_te_from_scaled_diffs", "te"]


def _check_pair(pred: Any, true: Any, what: str) -> None:
    ps, ts = np.shape(pred), np.shape(true)
    if ps != ts:
        raise ValueError(f"pred and true {what} must have the same shape, got {ps} and {ts}.")
    if len(ps) < 2 or ps[-1] != 3 or ps[-2] < 1:
        raise ValueError(f"{what} must have shape (..., P, 3) with P >= 1, got {ps}.")


def mad(pred_curves: Any, true_curves: Any) -> Any:
    """Per-sample mean Euclidean point distance: ``(..., P, 3) x2 -> (...)``."""
    _check_pair(pred_curves, true_curves, "curves")
    xp = _xp(pred_curves, true_curves)
    d = xp.asarray(pred_curves) - xp.asarray(true_curves)
    return xp.mean(xp.sqrt(xp.sum(d * d, axis=-1)), axis=-1)


def te(pred_curves: Any, true_curves: Any) -> Any:
    """Per-sample Euclidean distance of the last points: ``(..., P, 3) x2 -> (...)``."""
    _check_pair(pred_curves, true_curves, "curves")
    xp = _xp(pred_curves, true_curves)
    d = xp.asarray(pred_curves)[..., -1, :] - xp.asarray(true_curves)[..., -1, :]
    return xp.sqrt(xp.sum(d * d, axis=-1))


def mad_te_from_scaled_diffs(
    pred_scaled: Any, true_scaled: Any, scale: AxisScale
) -> dict[str, Any]:
    """MAD and TE per sample from scaled differences ``(..., P-1, 3)`` of one stage.

    Both inputs are de-normalised with ``scale`` and cumulative-summed from the origin, then
    compared. Returns ``{"mad": (...), "te": (...)}``.

    Example::

        from jaxpapers.physics.curves import UNLOAD_SCALE
        m = mad_te_from_scaled_diffs(pred, target, UNLOAD_SCALE)
        float(m["mad"].mean()), float(m["te"].mean())
    """
    _check_pair(pred_scaled, true_scaled, "scaled differences")
    pred = from_scaled_diffs(pred_scaled, scale)
    true = from_scaled_diffs(true_scaled, scale)
    return {"mad": mad(pred, true), "te": te(pred, true)}
