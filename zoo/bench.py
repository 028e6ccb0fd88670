"""Benchmark suites: train agents on their tasks and write a results table and learning curves.

``zoo bench quick`` trains every agent that has a quick task (CPU, a few
minutes in all). The quick tasks are registered below with
:func:`register_quick_task`: a new agent joins the main job by adding one.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

from zoo.logger import read_progress, write_json_atomic


@dataclasses.dataclass
class QuickTask:
    """One agent's entry in ``zoo bench quick``."""

    agent: str
    env_id: str
    steps: int
    reference: str  # the published figure to compare with, and its source
    hyperparameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval_episodes: int = 10
    metric: str = "return_mean"  # or "success_rate"
    #: builds constructor arguments that need work first (an offline agent's dataset):
    #: ``setup(seed, scale) -> kwargs``, ``scale`` being the step-budget factor of the run
    setup: Callable[[int, float], dict[str, Any]] | None = None
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)  # for make_env (e.g. a horizon)
    curve: str = "return_mean"  # the progress column plotted against steps


_QUICK: dict[str, QuickTask] = {}


def register_quick_task(task: QuickTask) -> QuickTask:
    _QUICK[task.agent] = task
    return task


def quick_tasks() -> dict[str, QuickTask]:
    return dict(_QUICK)


register_quick_task(QuickTask("PPO", "gym/CartPole-v1", 100_000,
                              "500 (rl-baselines3-zoo benchmark, PPO CartPole-v1, 100k steps)"))
register_quick_task(QuickTask("DQN", "gym/CartPole-v1", 50_000,
                              "500 (rl-baselines3-zoo benchmark, DQN CartPole-v1, 50k steps)"))
register_quick_task(QuickTask("SAC", "gym/Pendulum-v1", 10_000,
                              "-202 ± 61 (rl-baselines3-zoo benchmark, SAC Pendulum-v0, 20k steps)"))

register_quick_task(QuickTask("GBRL", "gym/CartPole-v1", 100_000,
                              "500 (the return cap; NN PPO reaches it on this budget, see the PPO row)"))


def _drawer_open_preferences(seed: int, scale: float) -> dict[str, Any]:
    """CPL's quick dataset: 200 degraded-expert episodes on drawer-open-v3 (35.5% success), 4,000 dense pairs
    (fewer when the run is scaled down)."""
    from zoo.datasets.metaworld_prefs import make_preference_dataset

    episodes, pairs = max(10, int(200 * min(scale, 1.0))), max(50, int(4000 * min(scale, 1.0)))
    return {"dataset": make_preference_dataset("drawer-open-v3", episodes, pairs, regime="dense", seed=seed)}


register_quick_task(QuickTask(
    "CPL", "metaworld/drawer-open-v3", 6_000,
    "83.6% success (CPL paper, drawer-open-v2, dense 2.5k, 500k steps); tests/test_cpl_metaworld.py requires "
    "CPL >= 70% and 40 points above behaviour cloning on this data",
    hyperparameters=dict(hidden=(128, 128), dropout=0.0, batch_size=32, learning_rate=1e-3, bc_steps=1_000,
                         warmup_steps=600),
    eval_episodes=25, metric="success_rate", setup=_drawer_open_preferences, curve="accuracy",
    env_kwargs=dict(max_episode_steps=250)))

def _archer_warm_start(seed: int, scale: float) -> dict[str, Any]:
    """ArCHer's behaviour-cloning warm start (300 steps for the tiny actor), shortened with the run."""
    return {"sft_steps": max(10, int(300 * min(scale, 1.0)))}


register_quick_task(QuickTask(
    "ArCHer", "text/twenty-questions-subset", 8_000,
    "four-word game: weak scripted player -7.3, optimum -1.5; paper's CPU check (8 words): -7.4 -> -5.3 "
    "in 110 iterations",
    eval_episodes=64, setup=_archer_warm_start,
    env_kwargs=dict(num_envs=32, secrets=("dog", "banana", "truck", "chair"))))

COLUMNS = ["agent", "task", "steps", "wall_time_s", "sps", "final", "metric", "reference"]


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
        log(f"[bench quick] {name} on {task.env_id} for {steps} steps")
        try:
            extra = task.setup(seed, scale) if task.setup is not None else {}
            env = make_env(task.env_id, seed=seed, device=device, **task.env_kwargs) if task.env_kwargs else task.env_id
            agent = get_agent(name)(env, seed=seed, device=device, **task.hyperparameters, **extra)
        except MissingExtraError as exc:  # the other agents still run
            log(f"[bench quick] {name} skipped: {exc}")
            continue
        start = time.perf_counter()
        agent.learn(steps, progress=progress, log_dir=out / "runs" / name, log_interval_s=0.5)
        wall = time.perf_counter() - start
        result = agent.evaluate(task.eval_episodes)
        agent.save(out / "runs" / name / "model.safetensors")
        agent.env.close()
        rows.append({"agent": name, "task": task.env_id, "steps": agent.num_timesteps, "wall_time_s": round(wall, 1),
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
        task = _QUICK.get(row["agent"])
        column = task.curve if task is not None else "return_mean"
        progress = read_progress(out / "runs" / row["agent"])
        points = [(r["step"], r[column]) for r in progress if not math.isnan(r.get(column, math.nan))]
        if points:
            ax.plot(*zip(*points), color="tab:blue")
        ax.set_title(f"{row['agent']} on {row['task']}", fontsize=10)
        ax.set_xlabel("steps")
        ax.set_ylabel("training return (last 100 episodes)" if column == "return_mean" else column)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
