"""BFAD's plots: the methods' scores side by side and the heaviest WBFP weights."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(fig: Figure, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def f1_bars(results: Mapping[str, Mapping[str, float]], path: str) -> str:
    """Grouped bars of precision, recall and F1 per method."""
    keys = ("precision", "recall", "f1")
    fig = Figure(figsize=(1.4 + 1.3 * len(results), 3.4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / len(keys)
    for k, key in enumerate(keys):
        xs = [m + (k - 1) * width for m in range(len(results))]
        ax.bar(xs, [r[key] for r in results.values()], width, label=key)
    ax.set_xticks(range(len(results)), list(results), rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("WebShell = positive")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def weight_bars(weights: Sequence[tuple[str, float]], path: str) -> str:
    """Horizontal bars of the heaviest WBFP function weights."""
    fig = Figure(figsize=(5, 0.25 * max(len(weights), 4) + 1))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    names = [n for n, _ in weights][::-1]
    ax.barh(names, [w for _, w in weights][::-1], color="tab:red")
    ax.set_xlabel("WBFP weight (log ratio of malicious to benign document frequency)")
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, path)
