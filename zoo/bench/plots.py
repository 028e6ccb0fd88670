"""The report's figures: learning curves per task (``curves.png``) and interval estimates (``aggregate.png``).

Both are drawn with matplotlib's Agg backend (no display needed); the interval plot is rliable's
``plot_utils.plot_interval_estimates``.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from zoo.bench.report import RunRecord

__all__ = ["mean_curve", "plot_aggregate", "plot_curves"]

#: points on the common step grid a group's seeds are interpolated onto
GRID_POINTS = 200


def _pyplot():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # leave a backend the caller chose alone
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mean_curve(curves: Sequence[Sequence[tuple[float, float]]], points: int = GRID_POINTS
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds' (step, value) curves on a common grid: (steps, mean, min, max), only where every seed reaches
    (from the latest first step to the earliest last step). Empty arrays when they do not overlap."""
    curves = [np.asarray(c, dtype=float) for c in curves if len(c)]
    if not curves:
        return (np.array([]),) * 4
    start, stop = max(c[0, 0] for c in curves), min(c[-1, 0] for c in curves)
    if stop < start:
        return (np.array([]),) * 4
    grid = np.linspace(start, stop, points) if stop > start else np.array([start])
    values = np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in curves])
    return grid, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def _group_curves(records: Sequence[RunRecord]) -> dict[str, dict[str, tuple[list, str, bool]]]:
    """task -> display -> (the seeds' curves, their source, whether they are unfinished runs'): finished runs'
    curves, or an unfinished group's partial ones; of mixed sources, the one most seeds have."""
    by_group: dict[tuple[str, str], list] = {}
    for record in records:
        if record.curve and not record.stale:
            by_group.setdefault((record.task, record.display), []).append(record)
    out: dict[str, dict[str, tuple[list, str, bool]]] = {}
    for (task, display), group in sorted(by_group.items()):
        finished = [r for r in group if r.finished]
        chosen = finished or group
        sources = [r.curve_source for r in chosen]
        source = max(sorted(set(sources), key=lambda s: not s.startswith("evals")), key=sources.count)
        out.setdefault(task, {})[display] = ([r.curve for r in chosen if r.curve_source == source], source,
                                             not finished)
    return out


def plot_curves(path: str | os.PathLike, records: Sequence[RunRecord]) -> None:
    """One panel per task, one line per agent: the mean over seeds against steps, shaded from min to max."""
    plt = _pyplot()
    by_task = _group_curves(records)
    tasks = sorted(by_task) or ["(no curves yet)"]
    columns = min(3, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.8 * columns, 3.6 * rows), squeeze=False)
    displays = sorted({d for groups in by_task.values() for d in groups})
    colors = dict(zip(displays, plt.get_cmap("tab10")(np.arange(len(displays)) % 10)))
    units = {str((r.result or {}).get("unit") or r.spec.get("unit") or "steps") for r in records}
    for ax, task in zip(axes.flat, tasks):
        ax.set_title(task, fontsize="medium")
        ylabels = set()
        for display, (curves, source, unfinished) in by_task.get(task, {}).items():
            steps, mean, low, high = mean_curve(curves)
            if not len(steps):
                continue
            label = f"{display} ({len(curves)} seed{'s' * (len(curves) != 1)}{', unfinished' * unfinished})"
            ax.plot(steps, mean, color=colors[display], label=label, linestyle="--" if unfinished else "-")
            if len(curves) > 1:
                ax.fill_between(steps, low, high, color=colors[display], alpha=0.2, linewidth=0)
            ylabels.add(source.split(":", 1)[-1])
        ax.set_xlabel(" / ".join(sorted(units)) if task in by_task else "")
        ax.set_ylabel(" / ".join(sorted(ylabels)))
        ax.grid(True, alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        if task not in by_task:
            ax.text(0.5, 0.5, "no curves yet", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    fig.suptitle("mean over seeds, band: min to max", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_aggregate(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """rliable's interval plot: per agent, IQM and mean of normalized scores across tasks when the suite
    normalizes, else the IQM of the raw score, one panel per task. Bars span the 95% CI, ticks mark the point."""
    plt = _pyplot()
    overall = [r for r in rows if r["kind"] == "overall"]
    if overall:
        names = ["IQM", "Mean"]
        points = {r["display"]: np.array([r["normalized_iqm"], r["normalized_mean"]]) for r in overall}
        intervals = {r["display"]: np.array([[r["normalized_iqm_ci_low"], r["normalized_mean_ci_low"]],
                                             [r["normalized_iqm_ci_high"], r["normalized_mean_ci_high"]]])
                     for r in overall}
        xlabel = "Normalized score"
    else:
        finished = [r for r in rows if r["kind"] == "task" and r["seeds_finished"]]
        names = sorted({r["task"] for r in finished})
        displays = sorted({r["display"] for r in finished})
        by_pair = {(r["display"], r["task"]): r for r in finished}
        points, intervals = {}, {}
        for display in displays:
            got = [by_pair.get((display, task)) for task in names]
            points[display] = np.array([r["iqm"] if r else math.nan for r in got])
            intervals[display] = np.array([[r["iqm_ci_low"] if r else math.nan for r in got],
                                           [r["iqm_ci_high"] if r else math.nan for r in got]])
        xlabel = "IQM of " + " / ".join(sorted({r["metric"] for r in finished}))
    if not points:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return
    for display, bounds in intervals.items():  # no interval (one seed): a zero-width bar at the point
        missing = ~np.isfinite(bounds)
        bounds[missing] = np.broadcast_to(points[display], bounds.shape)[missing]
    from rliable import plot_utils

    row_height = max(0.45, 1.6 / len(points))  # inches per agent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig, _ = plot_utils.plot_interval_estimates(
            points, intervals, metric_names=names, algorithms=sorted(points), xlabel=xlabel,
            subfigure_width=max(3.4, 2.4 + 0.05 * max(len(n) for n in names)),
            row_height=row_height, xlabel_y_coordinate=-0.6 / (row_height * len(points)))
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
