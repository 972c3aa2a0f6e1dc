r"""LaDEEP against its baselines, or FilDeep against single-fidelity training: table and plot.

    python -m jaxpapers.physics.compare --paper=ladeep --variant=default --workdir=runs/ladeep_cmp
    python -m jaxpapers.physics.compare --paper=fildeep --variant=default --workdir=runs/fildeep_cmp

Each entry runs as the launcher would with ``--config.model.name=<m>`` (LaDEEP:
ladeep, mlp, transformer) or ``--config.method=<m>`` (FilDeep: fildeep, hf_only,
lf_only), in ``<workdir>/<m>`` (a finished run is only re-evaluated). Writes
``<workdir>/comparison.json`` (every entry's final metrics), ``comparison.md`` (the
table, with each baseline's relative gap to the paper's model) and
``plots/comparison.png``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ENTRIES = {
    "ladeep": ("model.name", ("ladeep", "mlp", "transformer")),
    "fildeep": ("method", ("fildeep", "hf_only", "lf_only")),
}
COLUMNS = {
    "ladeep": ("loaded_mad", "loaded_te", "unloaded_mad", "unloaded_te"),
    "fildeep": ("unloaded_mad", "unloaded_te"),
}


def compare(config, workdir: str, names: Sequence[str] | None = None) -> list[dict]:
    """Runs every entry of ``config.experiment`` (or ``names``); returns their final metrics."""
    from jaxpapers.core import registry  # pylint: disable=g-import-not-at-top

    paper = config.experiment
    if paper not in ENTRIES:
        raise ValueError(f"compare takes a ladeep or fildeep config, got {paper!r}")
    key, known = ENTRIES[paper]
    names = tuple(names or known)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown entries {unknown}; {paper} has {known}")
    os.makedirs(workdir, exist_ok=True)
    finals = []
    for name in names:
        c = config.copy_and_resolve_references()
        section, _, field = key.rpartition(".")
        (c[section] if section else c)[field] = name
        final = dict(registry.get(paper)(c, os.path.join(workdir, name)))
        final["entry"] = name
        finals.append(final)
    with open(os.path.join(workdir, "comparison.json"), "w", encoding="utf-8") as f:
        json.dump(finals, f, indent=1)
    with open(os.path.join(workdir, "comparison.md"), "w", encoding="utf-8") as f:
        f.write(table(finals, paper) + "\n")
    plot(finals, paper, os.path.join(workdir, "plots", "comparison.png"))
    return finals


def table(finals: Sequence[dict], paper: str) -> str:
    """Markdown: one row per entry; the last column is the first entry's relative reduction
    of the unloaded MAD against that row, ``(row - first) / row`` (the paper's "relative
    improvement"; negative: the first entry is worse)."""
    cols = COLUMNS[paper]
    head = f"{finals[0]['entry']}'s MAD reduction" if finals else ""
    lines = [
        "| " + " | ".join(("entry",) + cols + (head,)) + " |",
        "|---" * (len(cols) + 2) + "|",
    ]
    first = finals[0]["unloaded_mad"] if finals else float("nan")
    for f in finals:
        gap = (f["unloaded_mad"] - first) / f["unloaded_mad"]
        cells = [f"{f[c]:.4g}" for c in cols] + [f"{100 * gap:+.1f}%" if f is not finals[0] else ""]
        lines.append(f"| {f['entry']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def relative_improvement(finals: Sequence[dict], key: str = "unloaded_mad") -> float:
    """The paper's measure: mean over baselines of ``(baseline - first) / baseline``."""
    first, rest = finals[0][key], [f[key] for f in finals[1:]]
    return sum((b - first) / b for b in rest) / len(rest) if rest else float("nan")


def plot(finals: Sequence[dict], paper: str, path: str) -> str:
    """Bars of each MAD/TE column per entry."""
    cols = COLUMNS[paper]
    fig = Figure(figsize=(2.2 * len(cols) + 1, 3.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(cols), squeeze=False)[0]
    for ax, col in zip(axes, cols):
        names = [f["entry"] for f in finals]
        ax.bar(names, [f[col] for f in finals], color=[f"C{i}" for i in range(len(finals))])
        ax.set_title(col, fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{paper}: test error (lower is better)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    import argparse  # pylint: disable=g-import-not-at-top

    from jaxpapers.core import config as config_lib  # pylint: disable=g-import-not-at-top

    p = argparse.ArgumentParser(prog="python -m jaxpapers.physics.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--paper", default="ladeep", choices=sorted(ENTRIES))
    p.add_argument("--variant", default="default", help="tiny | default | paper")
    p.add_argument("--workdir", required=True)
    p.add_argument("--entries", default="", help="comma-separated (default: all)")
    args = p.parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = config_lib.load_file(
        os.path.join(root, "experiments", "configs", f"{args.paper}.py"), args.variant
    )
    names = [n for n in args.entries.split(",") if n] or None
    finals = compare(config, args.workdir, names)
    print(table(finals, args.paper))
    print(f"mean relative improvement on unloaded MAD: {100 * relative_improvement(finals):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
