"""Pictures of alerts: the attack subgraph behind an alarm, drawn with matplotlib.

Layout: the alarmed process on the right; every other node in a column by its
distance (in causes) from it, so the attack reads left to right from its entry
point; within a column, by the time the node first appeared. Processes are
boxes, files circles, sockets diamonds, pipes and memory files triangles. Each
edge is labelled with its operation and the labels it carried or the rule that
fired. No pyplot (the figure uses the Agg canvas directly).
"""

from __future__ import annotations

import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxpapers.security.provenance.detector import Alert, StreamingDetector

_MARKERS = {"process": "s", "file": "o", "socket": "D", "pipe": "^", "memfd": "v"}
_COLORS = {"process": "#4C72B0", "file": "#55A868", "socket": "#C44E52", "pipe": "#8172B2",
           "memfd": "#CCB974"}  # fmt: skip


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1) :]


def render_alert(detector: StreamingDetector, alert: Alert, path: str, max_nodes: int = 40) -> str:
    """Draws ``alert``'s explanation subgraph into ``path`` (PNG); returns ``path``."""
    nodes, causes = detector.explain(alert.node, max_nodes=max_nodes)
    depth = {alert.node: 0}
    for cause in causes:  # BFS order: a source is one further than its destination
        if cause.src >= 0 and cause.src not in depth and cause.dst in depth:
            depth[cause.src] = depth[cause.dst] + 1
    columns: dict[int, list[int]] = {}
    for n in nodes:
        columns.setdefault(depth.get(n, 0), []).append(n)
    width = max(columns) + 1
    height = max(len(c) for c in columns.values())
    pos = {}
    for d, members in columns.items():
        members.sort(key=lambda n: detector.graph.describe(n).first_ts)
        for i, n in enumerate(members):
            pos[n] = (
                width - 1 - d,
                (height - 1) / 2 - i + (len(members) - 1) / 2 - (height - 1) / 2,
            )
    fig = Figure(figsize=(max(6.0, 3.2 * width), max(3.5, 1.1 * height + 1.5)))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    rules = detector.rules
    drawn = set()
    for cause in causes:
        if cause.src < 0 or cause.src not in pos or (cause.src, cause.dst) in drawn:
            continue
        drawn.add((cause.src, cause.dst))
        (x0, y0), (x1, y1) = pos[cause.src], pos[cause.dst]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.0,
                                "shrinkA": 9, "shrinkB": 9})  # fmt: skip
        carried = [
            rules.labels[i]
            for i in range(len(rules.labels))
            if cause.added >> i & 1 and rules.tactic_of[i] >= 0
        ]
        text = cause.op + ("\n" + ",".join(carried[:3]) if carried else "")
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, text, fontsize=6, ha="center", va="bottom",
                color="#333333")  # fmt: skip
    for n in nodes:
        info = detector.graph.describe(n)
        x, y = pos[n]
        ax.scatter([x], [y], s=260 if n == alert.node else 140, marker=_MARKERS.get(info.kind, "o"),
                   color=_COLORS.get(info.kind, "#999999"),
                   edgecolors="red" if n == alert.node else "black", linewidths=2 if n == alert.node else 0.6,
                   zorder=3)  # fmt: skip
        fired = sorted({rules.rules[r].label for c in causes if c.dst == n for r in c.rules})
        name = _short(info.name) + (f" [{info.pid}]" if info.kind == "process" else "")
        sub = ("\n" + ", ".join(fired[:4])) if fired else ""
        ax.text(x, y - 0.22, name + sub, fontsize=7, ha="center", va="top", zorder=4)
    ax.set_title(
        f"alert: pid {alert.pid} {_short(alert.exe, 40)} — tactics: {', '.join(alert.tactics)}",
        fontsize=9,
    )
    ax.set_xlim(-0.7, width - 0.3)
    ax.set_ylim(-height / 2 - 0.8, height / 2 + 0.3)
    ax.axis("off")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
