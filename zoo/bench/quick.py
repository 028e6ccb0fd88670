"""Benchmark suites: train agents on their tasks and write a results table and learning curves.

``zoo bench quick`` trains every agent that has a quick task (CPU, a few
minutes in all). Each agent registers its quick task in its own module
(:func:`zoo.agents.quick.register_quick_task`); this runner reads them.
"""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path
from typing import Callable

from zoo.agents.quick import QuickTask, quick_tasks  # noqa: F401  (QuickTask re-exported for scripts)
from zoo.logger import read_progress, write_json_atomic

COLUMNS = ["agent", "task", "steps", "unit", "wall_time_s", "sps", "final", "metric", "reference"]


def run_quick(out_dir: str | os.PathLike, agents: list[str] | None = None, scale: float = 1.0, seed: int = 0,
              device: str = "cpu", progress: bool = True, log: Callable[[str], None] = print) -> list[dict]:
    """Train each quick task (``scale`` multiplies the step budgets), write results.{md,csv} and curves.png."""
    from zoo.agents import get_agent
    from zoo.envs import make_env
    from zoo.errors import MissingExtraError

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = quick_tasks()
    names = agents or sorted(tasks)
    unknown = [n for n in names if n not in tasks]
    if unknown:
        raise ValueError(f"no quick task for {unknown}; agents with one: {', '.join(sorted(tasks))}")
    rows = []
    for name in names:
        task = tasks[name]
        steps = max(1, int(task.steps * scale))
        unit = get_agent(name).budget_unit
        log(f"[bench quick] {name} on {task.env_id} for {steps} {unit}")
        try:
            extra = task.setup(seed, scale) if task.setup is not None else {}
            env = make_env(task.env_id, seed=seed, device=device, **task.env_kwargs) if task.env_kwargs else task.env_id
            agent = get_agent(name)(env, seed=seed, device=device, **task.hyperparameters, **extra)
        except MissingExtraError as exc:  # the other agents still run
            log(f"[bench quick] {name} skipped: {exc}")
            continue
        start = time.perf_counter()
        # a re-run of the suite into the same folder replaces each agent's run
        agent.learn(steps, progress=progress, log_dir=out / "runs" / name, log_interval_s=0.5, log_mode="overwrite")
        wall = time.perf_counter() - start
        result = agent.evaluate(task.eval_episodes)
        agent.save(out / "runs" / name / "model.safetensors")
        agent.env.close()
        rows.append({"agent": name, "task": task.env_id, "steps": agent.num_timesteps, "unit": unit,
                     "wall_time_s": round(wall, 1),
                     "sps": round(agent.num_timesteps / wall), "final": round(result.get(task.metric, math.nan), 2),
                     "metric": task.metric, "reference": task.reference})
    write_results(out, rows)
    plot_curves(out, rows)
    return rows


def results_markdown(rows: list[dict], columns: list[str] | None = None) -> str:
    """A markdown table of ``rows`` (``columns`` default: the quick tasks' columns)."""
    columns = columns or COLUMNS
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def write_results(out: Path, rows: list[dict], columns: list[str] | None = None, footer: str = "") -> None:
    """``results.md`` (the table, then ``footer``), ``results.csv`` and ``results.json`` in ``out``."""
    columns = columns or COLUMNS
    (out / "results.md").write_text(results_markdown(rows, columns) + "\n" + (f"\n{footer}\n" if footer else ""))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    write_json_atomic(out / "results.json", rows)


def plot_curves(out: Path, rows: list[dict]) -> Path:
    """Each task's curve column (training return by default) against steps, one panel per agent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(1, len(rows)), figsize=(4.5 * max(1, len(rows)), 3.4), squeeze=False)
    for ax, row in zip(axes[0], rows):
        task = quick_tasks().get(row["agent"])
        column = task.curve if task is not None else "return_mean"
        progress = read_progress(out / "runs" / row["agent"])
        points = [(r["step"], r[column]) for r in progress if not math.isnan(r.get(column, math.nan))]
        if points:
            ax.plot(*zip(*points), color="tab:blue")
        ax.set_title(f"{row['agent']} on {row['task']}", fontsize=10)
        ax.set_xlabel(row.get("unit", "steps"))
        ax.set_ylabel("training return (last 100 episodes)" if column == "return_mean" else column)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
