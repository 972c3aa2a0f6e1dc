"""WebShell detection metrics, shared by the LLM methods and the trained baselines."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Accuracy, precision, recall and F1 with WebShell (label 1) as the positive class.

    A ratio whose denominator is zero is 0.0 (empty input: every metric 0.0).

    >>> classification_metrics([1, 1, 0, 0], [1, 0, 1, 0])
    {'accuracy': 0.5, 'precision': 0.5, 'recall': 0.5, 'f1': 0.5}
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or t.shape != p.shape:
        raise ValueError(
            f"y_true and y_pred must be 1-D of one length, got shapes {t.shape} and {p.shape}"
        )
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and not np.isin(a, (0, 1)).all():
            raise ValueError(
                f"{name} must hold labels 0 (benign) or 1 (WebShell), got "
                f"{sorted(set(np.unique(a).tolist()))[:5]}"
            )
    t, p = t.astype(bool), p.astype(bool)
    tp = int(np.sum(t & p))
    fp = int(np.sum(~t & p))
    fn = int(np.sum(t & ~p))

    def ratio(a: float, b: float) -> float:
        return float(a / b) if b else 0.0

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "accuracy": ratio(int(np.sum(t == p)), t.size),
        "precision": precision,
        "recall": recall,
        "f1": ratio(2 * precision * recall, precision + recall),
    }
