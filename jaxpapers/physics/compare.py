r"""A physics paper's model against its baselines: runs, table and plot.

    python -m jaxpapers.physics.compare --paper=ladeep --variant=default --workdir=runs/ladeep_cmp
    python -m jaxpapers.physics.compare --paper=fildeep --variant=default --workdir=runs/fildeep_cmp
    python -m jaxpapers.physics.compare --paper=unisoma --variant=default --workdir=runs/uni_cmp \
        --sweep=data.num_deformables=1,2,3 --seeds=0,1
    python -m jaxpapers.physics.compare --paper=fisale --variant=default --workdir=runs/fis_cmp \
        --set=train.num_steps=500

Each entry runs as the launcher would with ``--config.model.name=<m>`` (LaDEEP: ladeep, mlp,
transformer; Unisoma: unisoma, transolver; Fisale: fisale, transolver) or
``--config.method=<m>`` (FilDeep: fildeep, hf_only, lf_only); ``--set=<key>=<value>``
overrides a config field for every entry (repeatable). ``--sweep=<key>=<v1>,<v2>`` repeats the
comparison at each value of one config field (e.g. Unisoma's number of deformable solids) and
``--seeds`` at each seed (``config.seed`` and, where the config has one,
``config.data.seed``: a new model initialisation *and* a new generated dataset). Runs go to
``<workdir>[/<key>=<v>][/seed<s>]/<entry>``; a finished run is only re-evaluated, so an
interrupted comparison resumes. Where the config can cache its generated data
(``data.cache_dir``, Unisoma's), the entries share ``<workdir>/data_cache``: each dataset is
generated once. Writes ``<workdir>/comparison.json`` (every run's final
metrics, with ``entry``, ``seed`` and the swept value), ``comparison.md`` (the table: means
over seeds ± their standard deviation, and the paper's model's relative error reduction
against each baseline) and ``plots/comparison.png``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ENTRIES = {
    "ladeep": ("model.name", ("ladeep", "mlp", "transformer")),
    "fildeep": ("method", ("fildeep", "hf_only", "lf_only")),
    "unisoma": ("model.name", ("unisoma", "transolver")),
    "fisale": ("model.name", ("fisale", "transolver")),
}
COLUMNS = {
    "ladeep": ("loaded_mad", "loaded_te", "unloaded_mad", "unloaded_te"),
    "fildeep": ("unloaded_mad", "unloaded_te"),
    "unisoma": ("rel_l2", "rel_l2_disp", "rel_l2_stress"),
    "fisale": ("rel_l1_solid", "rel_l1_fluid", "rel_l1_interface", "rel_l1"),
}
# The metric each paper ranks models by: the "reduction" column and the plot use it.
PRIMARY = {
    "ladeep": "unloaded_mad",
    "fildeep": "unloaded_mad",
    "unisoma": "rel_l2",
    "fisale": "rel_l1",
}


def _set(config, key: str, value: Any) -> None:
    section, _, field = key.rpartition(".")
    node = config
    for part in section.split(".") if section else ():
        node = node[part]
    node[field] = value


def _run_dir(workdir: str, sweep_key: str | None, value: Any, seed: int | None, entry: str):
    parts = [workdir]
    if sweep_key is not None:
        parts.append(f"{sweep_key}={value}")
    if seed is not None:
        parts.append(f"seed{seed}")
    return os.path.join(*parts, entry)


def compare(
    config,
    workdir: str,
    names: Sequence[str] | None = None,
    *,
    sweep: tuple[str, Sequence[Any]] | None = None,
    seeds: Sequence[int] = (),
) -> list[dict]:
    """Runs every entry of ``config.experiment`` (or ``names``) at every swept value and seed.

    Args:
      config: an experiment config (``experiments/configs/<paper>.py``).
      workdir: where the runs, ``comparison.{json,md}`` and ``plots/`` go.
      names: the entries to run, the paper's model first (default: all of the paper's).
      sweep: ``(config key, values)``: the comparison is repeated at each value.
      seeds: the comparison is repeated at each seed (default: once, at the config's seed).

    Returns:
      Every run's final metrics with ``entry``, ``seed`` and (when sweeping) the swept key.
    """
    from jaxpapers.core import registry  # pylint: disable=g-import-not-at-top

    paper = config.experiment
    if paper not in ENTRIES:
        raise ValueError(f"compare takes a config of one of {sorted(ENTRIES)}, got {paper!r}")
    key, known = ENTRIES[paper]
    names = tuple(names or known)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown entries {unknown}; {paper} has {known}")
    if sweep is not None and not sweep[1]:
        raise ValueError(f"sweep {sweep[0]!r} has no values")
    sweep_key, values = sweep if sweep is not None else (None, (None,))
    os.makedirs(workdir, exist_ok=True)
    finals = []
    for value in values:
        for seed in tuple(seeds) or (None,):
            for name in names:
                c = config.copy_and_resolve_references()
                _set(c, key, name)
                if sweep_key is not None:
                    _set(c, sweep_key, value)
                if seed is not None:
                    c.seed = int(seed)
                    if "data" in c and "seed" in c.data:
                        c.data.seed = int(seed)
                if "data" in c and "cache_dir" in c.data and not c.data.cache_dir:
                    c.data.cache_dir = os.path.join(workdir, "data_cache")  # shared by entries
                run_dir = _run_dir(workdir, sweep_key, value, seed, name)
                final = dict(registry.get(paper)(c, run_dir))
                final.update(entry=name, seed=int(c.seed))
                if sweep_key is not None:
                    final[sweep_key] = value
                finals.append(final)
    with open(os.path.join(workdir, "comparison.json"), "w", encoding="utf-8") as f:
        json.dump(finals, f, indent=1)
    with open(os.path.join(workdir, "comparison.md"), "w", encoding="utf-8") as f:
        f.write(table(finals, paper, sweep_key) + "\n")
    plot(finals, paper, os.path.join(workdir, "plots", "comparison.png"), sweep_key)
    return finals


def aggregate(
    finals: Sequence[dict], paper: str, sweep_key: str | None = None
) -> list[dict[str, Any]]:
    """One row per (swept value, entry), in order of appearance: each column's mean over the
    seeds (``<col>``), its standard deviation (``<col>_std``, ``ddof=1``; 0 for one seed),
    ``num_seeds``, and ``reduction``: the first entry's relative reduction of the paper's
    primary metric against this row, ``(row − first) / row`` on the means (the paper's
    "relative improvement"; negative: the first entry is worse; None on the first entry)."""
    cols, primary = COLUMNS[paper], PRIMARY[paper]
    groups: dict[tuple[Any, str], list[dict]] = {}
    for f in finals:
        groups.setdefault((f.get(sweep_key) if sweep_key else None, f["entry"]), []).append(f)
    rows = []
    for (value, entry), runs in groups.items():
        row: dict[str, Any] = {"entry": entry, "num_seeds": len(runs)}
        if sweep_key:
            row[sweep_key] = value
        for c in cols:
            v = np.array([r[c] for r in runs], np.float64)
            row[c] = float(v.mean())
            row[f"{c}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        rows.append(row)
    first: dict[Any, float] = {}
    for row in rows:
        value = row.get(sweep_key) if sweep_key else None
        if value not in first:
            first[value] = row[primary]
            row["reduction"] = None
        else:
            row["reduction"] = (row[primary] - first[value]) / row[primary]
    return rows


def table(finals: Sequence[dict], paper: str, sweep_key: str | None = None) -> str:
    """Markdown of :func:`aggregate`: mean ± std over seeds, then the reduction column."""
    rows = aggregate(finals, paper, sweep_key)
    cols = COLUMNS[paper]
    head = f"{rows[0]['entry']}'s {PRIMARY[paper]} reduction" if rows else ""
    lead = ((sweep_key,) if sweep_key else ()) + ("entry",)
    lines = [
        "| " + " | ".join(lead + cols + ("seeds", head)) + " |",
        "|---" * (len(lead) + len(cols) + 2) + "|",
    ]
    for row in rows:
        cells = [str(row[sweep_key])] if sweep_key else []
        cells.append(row["entry"])
        for c in cols:
            spread = f" ± {row[c + '_std']:.2g}" if row["num_seeds"] > 1 else ""
            cells.append(f"{row[c]:.4g}{spread}")
        cells.append(str(row["num_seeds"]))
        red = row["reduction"]
        cells.append("" if red is None else f"{100 * red:+.1f}%")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def relative_improvement(finals: Sequence[dict], key: str = "unloaded_mad") -> float:
    """The paper's measure: mean over baselines of ``(baseline - first) / baseline``."""
    first, rest = finals[0][key], [f[key] for f in finals[1:]]
    return sum((b - first) / b for b in rest) / len(rest) if rest else float("nan")


def plot(finals: Sequence[dict], paper: str, path: str, sweep_key: str | None = None) -> str:
    """Bars of each column per entry; with a sweep, the primary metric against the swept
    value, one line per entry (error bars: the standard deviation over seeds)."""
    rows = aggregate(finals, paper, sweep_key)
    if sweep_key:
        primary = PRIMARY[paper]
        fig = Figure(figsize=(5.0, 3.6))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        entries = list(dict.fromkeys(r["entry"] for r in rows))
        for i, entry in enumerate(entries):
            mine = [r for r in rows if r["entry"] == entry]
            ax.errorbar(
                [str(r[sweep_key]) for r in mine],
                [r[primary] for r in mine],
                yerr=[r[primary + "_std"] for r in mine],
                marker="o",
                capsize=3,
                color=f"C{i}",
                label=entry,
            )
        ax.set_xlabel(sweep_key)
        ax.set_ylabel(f"test {primary}")
        ax.grid(alpha=0.3)
        ax.legend()
    else:
        cols = COLUMNS[paper]
        fig = Figure(figsize=(2.2 * len(cols) + 1, 3.4))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(cols), squeeze=False)[0]
        for ax, col in zip(axes, cols):
            names = [r["entry"] for r in rows]
            ax.bar(
                names,
                [r[col] for r in rows],
                yerr=[r[col + "_std"] for r in rows],
                color=[f"C{i}" for i in range(len(rows))],
            )
            ax.set_title(col, fontsize=9)
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{paper}: test error (lower is better)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _parse_sweep(text: str) -> tuple[str, list[Any]] | None:
    """``"data.num_deformables=1,2,3"`` -> ``("data.num_deformables", [1, 2, 3])``."""
    if not text:
        return None
    key, sep, values = text.partition("=")
    if not sep or not key or not values:
        raise ValueError(f"--sweep must look like key=v1,v2,..., got {text!r}")
    out = []
    for v in values.split(","):
        try:
            out.append(json.loads(v))
        except json.JSONDecodeError:
            out.append(v)
    return key, out


def main(argv: Sequence[str] | None = None) -> int:
    import argparse  # pylint: disable=g-import-not-at-top

    from jaxpapers.core import config as config_lib  # pylint: disable=g-import-not-at-top

    p = argparse.ArgumentParser(prog="python -m jaxpapers.physics.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--paper", default="ladeep", choices=sorted(ENTRIES))
    p.add_argument("--variant", default="default", help="tiny | default | paper")
    p.add_argument("--workdir", required=True)
    p.add_argument("--entries", default="", help="comma-separated (default: all)")
    p.add_argument("--sweep", default="", help="key=v1,v2,...: repeat at each value")
    p.add_argument("--seeds", default="", help="comma-separated seeds (default: the config's)")
    p.add_argument(
        "--set", action="append", default=[], help="key=value config override (repeatable)"
    )
    args = p.parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = config_lib.load_file(
        os.path.join(root, "experiments", "configs", f"{args.paper}.py"), args.variant
    )
    for item in args.set:
        parsed = _parse_sweep(item)
        if len(parsed[1]) != 1:
            raise ValueError(f"--set takes one value, key=value; got {item!r}")
        _set(config, parsed[0], parsed[1][0])
    names = [n for n in args.entries.split(",") if n] or None
    sweep = _parse_sweep(args.sweep)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    finals = compare(config, args.workdir, names, sweep=sweep, seeds=seeds)
    print(table(finals, args.paper, sweep[0] if sweep else None))
    if sweep is None and len(seeds) <= 1:
        key = PRIMARY[args.paper]
        print(f"mean relative improvement on {key}: {100 * relative_improvement(finals, key):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
