r"""Every distillation method from one config, the same teachers and attacks: table and plot.

    python -m jaxpapers.robust.compare --variant=default --workdir=runs/ciard_compare \
        [--methods=ard,rslad,mtard,bmtard,ciard] [--out=comparison.json]

Each method runs as ``python -m experiments.main --config=.../ciard.py:<variant>
--config.method=<m>`` would, in ``<workdir>/<method>``, with the teachers trained
once in ``<workdir>/teachers`` and shared. Writes ``<workdir>/comparison.json``
(every method's final metrics), ``<workdir>/comparison.md`` (the table) and
``<workdir>/plots/comparison.png`` (robustness against clean accuracy).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxpapers.robust import ciard, distill

COLUMNS = ("clean_acc", "fgsm_acc", "pgd20_acc", "cw_acc", "apgd_acc", "mean_clean_pgd20")


def compare(config, workdir: str, methods: Sequence[str] = distill.METHODS) -> list[dict]:
    """Runs ``methods`` with ``config`` (teachers shared); returns their final metrics."""
    unknown = set(methods) - set(distill.METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {distill.METHODS}")
    os.makedirs(workdir, exist_ok=True)
    finals = []
    for method in methods:
        c = config.copy_and_resolve_references()
        c.method = method
        if not c.teachers.dir:
            c.teachers.dir = os.path.join(os.path.abspath(workdir), "teachers")
        finals.append(ciard.run(c, os.path.join(workdir, method)))
    with open(os.path.join(workdir, "comparison.json"), "w", encoding="utf-8") as f:
        json.dump(finals, f, indent=1)
    with open(os.path.join(workdir, "comparison.md"), "w", encoding="utf-8") as f:
        f.write(table(finals) + "\n")
    plot(finals, os.path.join(workdir, "plots", "comparison.png"))
    return finals


def table(finals: Sequence[dict]) -> str:
    """A Markdown table: one row per method (and the teachers'), accuracies in %."""
    cols = [c for c in COLUMNS if any(c in f for f in finals)]
    lines = [
        "| method | " + " | ".join(c.removesuffix("_acc") for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for f in finals:
        cells = [f"{100 * f[c]:.1f}" if c in f else "" for c in cols]
        lines.append(f"| {f['method']} | " + " | ".join(cells) + " |")
    first = finals[0] if finals else {}
    for role in ("robust_teacher", "clean_teacher"):
        if any(f"{role}_clean_acc" in f for f in finals):
            f = next(f for f in finals if f"{role}_clean_acc" in f)
            cells = [f"{100 * f[f'{role}_{c}']:.1f}" if f"{role}_{c}" in f else "" for c in cols]
            lines.append(f"| {role.replace('_', ' ')} | " + " | ".join(cells) + " |")
    if first:
        lines.append(f"\n{first['data']}, ε = {first['eps']:.4f}")
    return "\n".join(lines)


def plot(finals: Sequence[dict], path: str) -> str:
    """Robust accuracy (PGD-20 and APGD) against clean accuracy, one point per method."""
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for f in finals:
        ax.scatter(f["clean_acc"], f["pgd20_acc"], s=40, zorder=3)
        ax.annotate(f["method"], (f["clean_acc"], f["pgd20_acc"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=9)  # fmt: skip
        if "apgd_acc" in f:
            ax.plot([f["clean_acc"]] * 2, [f["apgd_acc"], f["pgd20_acc"]], color="0.6", lw=1)
    for role, marker in (("robust_teacher", "^"), ("clean_teacher", "v")):
        f = next((f for f in finals if f"{role}_clean_acc" in f), None)
        if f is not None:
            ax.scatter(f[f"{role}_clean_acc"], f[f"{role}_pgd20_acc"], marker=marker, s=60,
                       color="k", label=role.replace("_", " "))  # fmt: skip
    ax.set_xlabel("clean accuracy")
    ax.set_ylabel("PGD-20 accuracy (line down to APGD)")
    if finals:
        ax.set_title(f"students on {finals[0]['data']}, ε = {finals[0]['eps']:.4f}")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    import argparse  # pylint: disable=g-import-not-at-top

    from jaxpapers.core import config as config_lib  # pylint: disable=g-import-not-at-top

    p = argparse.ArgumentParser(prog="python -m jaxpapers.robust.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--variant", default="default", help="tiny | default | paper")
    p.add_argument("--workdir", required=True)
    p.add_argument("--methods", default=",".join(distill.METHODS))
    args = p.parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = config_lib.load_file(
        os.path.join(root, "experiments", "configs", "ciard.py"), args.variant
    )
    finals = compare(config, args.workdir, [m for m in args.methods.split(",") if m])
    print(table(finals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
