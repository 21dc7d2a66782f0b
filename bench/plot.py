"""PNG plots of the cluster benchmarks' CSV output (matplotlib, headless).

* :func:`timeline`: task durations over time (agent-info, integrity, agent-groups, changed
  file) and master/worker CPU and memory, from ``cluster_timeline*.csv``.
* :func:`growth`: how each stable-phase figure grows with workers and with agents, from
  ``cluster_sweep*.csv``.
* :func:`bars`: a simple labelled bar chart (agent-info and enrollment benchmarks).

matplotlib is a benchmark-only dependency: ``.venv/bin/pip install matplotlib``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TIMED = (
    "agent-info master",
    "agent-info workers",
    "integrity check master",
    "integrity check workers",
    "integrity sync master",
    "integrity sync workers",
    "agent-groups send master",
    "changed file on all workers",
)
RESOURCES = ("master CPU %", "worker CPU %", "master USS KB", "worker USS KB")


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def timeline(csv_path: Path, png_path: Path) -> None:
    """Durations of every timed task over the run, then CPU and USS of the nodes."""
    rows = _read(csv_path)
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(11, 11), sharex=True)
    by_figure: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        by_figure[row["figure"]].append((float(row["t"]), float(row["value"])))
    for name in TIMED:
        points = by_figure.get(name)
        if points:
            top.plot(*zip(*points, strict=True), ".", label=name, markersize=4)
    top.set_ylabel("seconds")
    top.set_yscale("log")
    top.set_title("Task durations (each dot one run, from the nodes' cluster.log / health)")
    top.legend(fontsize=7, ncol=2)
    per_node: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        if row["figure"] in RESOURCES:
            per_node[(row["figure"], row["node"])].append((float(row["t"]), float(row["value"])))
    for (name, node), points in sorted(per_node.items()):
        axis = middle if name.endswith("%") else bottom
        value = [(t, v / 1024 if name.endswith("KB") else v) for t, v in points]
        style = "-" if node == "master" else ":"
        width = 1.6 if node == "master" else 0.6
        axis.plot(
            *zip(*value, strict=True),
            style,
            linewidth=width,
            label=node if node == "master" else None,
        )
    middle.set_ylabel("CPU % (master solid, workers dotted)")
    bottom.set_ylabel("USS MiB (master solid, workers dotted)")
    bottom.set_xlabel("seconds since the cluster started")
    setup_end = max((float(r["t"]) for r in rows if r["phase"] == "setup"), default=None)
    if setup_end is not None:
        for axis in (top, middle, bottom):
            axis.axvline(setup_end, color="grey", linestyle="--", linewidth=0.8)
    figure.tight_layout()
    figure.savefig(png_path, dpi=80)
    plt.close(figure)


def growth(csv_path: Path, png_path: Path) -> None:
    """Stable-phase max of each figure against workers (at the most agents) and agents
    (at the most workers)."""
    rows = [r for r in _read(csv_path) if r["phase"] == "stable"]
    if not rows:
        return
    most_agents = max(int(r["agents"]) for r in rows)
    most_workers = max(int(r["workers"]) for r in rows)
    names = [n for n in TIMED + RESOURCES if any(r["figure"] == n for r in rows)]
    figure, axes = plt.subplots(2, 1, figsize=(11, 10))
    for axis, key, fixed_key, fixed in (
        (axes[0], "workers", "agents", most_agents),
        (axes[1], "agents", "workers", most_workers),
    ):
        for index, name in enumerate(names):
            points = sorted(
                (int(r[key]), float(r["max"]))
                for r in rows
                if r["figure"] == name and int(r[fixed_key]) == fixed
            )
            if len(points) < 2:
                continue
            first = points[0][1] or 1e-9
            style = "o-" if index < 10 else "s--"  # the colour cycle has ten colours
            axis.plot([p[0] for p in points], [p[1] / first for p in points], style, label=name)
        xs = sorted({int(r[key]) for r in rows if int(r[fixed_key]) == fixed})
        if xs:
            axis.plot(xs, [x / xs[0] for x in xs], "k--", linewidth=1, label="linear")
        axis.set_xlabel(f"{key} ({fixed_key} = {fixed})")
        axis.set_ylabel(f"stable max / value at {xs[0] if xs else '?'} {key}")
        axis.set_yscale("log")
        axis.legend(fontsize=7, ncol=2)
    axes[0].set_title("Growth of each stable-phase figure (relative to the smallest run)")
    figure.tight_layout()
    figure.savefig(png_path, dpi=80)
    plt.close(figure)


def bars(labels: list[str], values: list[float], ylabel: str, title: str, png_path: Path) -> None:
    """A labelled bar chart."""
    figure, axis = plt.subplots(figsize=(8, 4.5))
    bars_drawn = axis.bar(labels, values)
    axis.bar_label(bars_drawn, fmt="%.3g")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    plt.setp(axis.get_xticklabels(), rotation=15, ha="right")
    figure.tight_layout()
    figure.savefig(png_path, dpi=80)
    plt.close(figure)
