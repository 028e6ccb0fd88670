"""Quick tasks: each agent's entry in ``zoo bench quick``, registered beside the agent it trains.

An agent module calls :func:`register_quick_task` once; the bench runner
reads :func:`quick_tasks`. A new agent joins the main job by adding one entry
in its own module.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass
class QuickTask:
    """One agent's entry in ``zoo bench quick``: a task, a budget (in the agent's budget unit) and the
    published figure to compare with."""

    agent: str
    env_id: str
    steps: int
    reference: str  # the published figure to compare with, and its source
    hyperparameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval_episodes: int = 10
    metric: str = "return_mean"  # or "success_rate"
    #: builds constructor arguments that need work first (an offline agent's data):
    #: ``setup(seed, scale) -> kwargs``, ``scale`` being the step-budget factor of the run
    setup: Callable[[int, float], dict[str, Any]] | None = None
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)  # for make_env (e.g. a horizon)
    curve: str = "return_mean"  # the progress column plotted against the budget


_QUICK: dict[str, QuickTask] = {}


def register_quick_task(task: QuickTask) -> QuickTask:
    """Make ``task`` the quick task of ``task.agent`` (one per agent)."""
    _QUICK[task.agent] = task
    return task


def quick_tasks() -> dict[str, QuickTask]:
    """Every registered quick task, by agent name (importing every agent module first)."""
    import zoo.agents  # noqa: F401  (the agent modules register their tasks on import)

    return dict(_QUICK)
