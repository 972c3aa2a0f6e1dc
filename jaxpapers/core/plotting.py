"""Plots written into ``<workdir>/plots`` (matplotlib, headless).

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly,
never through pyplot, so importing this module does not change a notebook's
plotting backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def learning_curves(
    events: Sequence[Mapping],
    path: str,
    panels: Sequence[tuple[str, Sequence[str]]],
    *,
    reference_lines: Mapping[str, Mapping[str, float]] | None = None,
    title: str | None = None,
) -> str:
    """One panel per metric name, one line per split, from ``metrics.jsonl`` events.

    Args:
      events: metric events (dicts with ``step``, ``split`` and metric keys).
      path: output PNG path (directories are created).
      panels: ``[(metric, [split, ...]), ...]``.
      reference_lines: ``{metric: {label: value}}`` horizontal lines (e.g. the
        oracle AUC of a synthetic dataset).
      title: figure title.
    """
    reference_lines = reference_lines or {}
    fig = Figure(figsize=(5 * len(panels), 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (metric, splits) in zip(axes[0], panels):
        for split in splits:
            pts = [
                (e["step"], e[metric])
                for e in events
                if e.get("split") == split and isinstance(e.get(metric), (int, float))
            ]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, ms=3, label=split)
        for label, value in reference_lines.get(metric, {}).items():
            ax.axhline(value, color="k", ls="--", lw=1, label=f"{label} {value:.4f}")
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
