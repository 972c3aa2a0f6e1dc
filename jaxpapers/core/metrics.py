"""Metric accumulation and writers: ``metrics.jsonl``, TensorBoard, the console.

Every log or eval event becomes one JSON object per line in
``<workdir>/metrics.jsonl`` with ``"step"`` and ``"split"`` keys plus metric
names (the launcher contract), a TensorBoard scalar per metric (tensorboardX, no
TensorFlow needed) under ``<split>/<name>``, and one console line.

On resume, :class:`MetricWriter` keeps only the events written before the
restored checkpoint (and TensorBoard purges the later ones), so a resumed run's
``metrics.jsonl`` reads like an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from absl import logging


def to_python(value: Any) -> Any:
    """Device/NumPy scalars -> plain Python numbers (JSON-serialisable)."""
    if isinstance(value, Mapping):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        arr = np.asarray(value)
        if arr.ndim:
            return arr.tolist()
        value = arr.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Inf; keep them visible
    return value


class Mean:
    """Running mean of scalar metrics, weighted by a count (e.g. examples).

    Its :meth:`state` goes into checkpoints, so a run resumed between two log
    steps reports the same train means as an uninterrupted one.
    """

    def __init__(self):
        self._sums: dict[str, float] = {}
        self._count = 0.0

    def update(self, metrics: Mapping[str, Any], weight: float = 1.0) -> None:
        for k, v in metrics.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v) * weight
        self._count += weight

    def result(self) -> dict[str, float]:
        if not self._count:
            return {}
        return {k: s / self._count for k, s in self._sums.items()}

    def reset(self) -> None:
        self._sums.clear()
        self._count = 0.0

    def state(self) -> dict:
        return {"sums": dict(self._sums), "count": self._count}

    def load(self, state: Mapping | None) -> None:
        self.reset()
        if state:
            self._sums.update({k: float(v) for k, v in state["sums"].items()})
            self._count = float(state["count"])


class MetricWriter:
    """Writes metric events to ``metrics.jsonl``, TensorBoard and the log.

    Args:
      workdir: the run's directory.
      keep: for a resumed run, which existing events to keep (a predicate on
        the event dict); ``None`` starts a fresh ``metrics.jsonl``.
      purge_step: TensorBoard drops its events from this step on (a resumed
        run rewrites them).
      tensorboard: also write TensorBoard event files.
    """

    def __init__(
        self,
        workdir: str,
        *,
        keep: Callable[[dict], bool] | None = None,
        purge_step: int | None = None,
        tensorboard: bool = True,
    ):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, "metrics.jsonl")
        kept = []
        if keep is not None and os.path.exists(self.path):
            kept = [e for e in read_jsonl(self.path) if keep(e)]
        with open(self.path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(e) + "\n" for e in kept)
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=purge_step)

    def write(
        self, step: int, split: str, metrics: Mapping[str, Any], *, console: bool = True
    ) -> dict:
        event = {"step": int(step), "split": split, **to_python(dict(metrics))}
        self._file.write(json.dumps(event) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                v = to_python(v)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(f"{split}/{k}", v, step)
            self._tb.flush()
        if console:
            logging.info("[%s] step %d: %s", split, step, _format(metrics))
        return event

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _format(metrics: Mapping[str, Any]) -> str:
    parts = []
    for k, v in metrics.items():
        v = to_python(v)
        parts.append(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


def read_jsonl(path: str) -> list[dict]:
    """Reads a ``metrics.jsonl`` file back (for plots, notebooks, tests and resume).

    A last line cut short by a killed process is skipped.
    """
    events = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events
