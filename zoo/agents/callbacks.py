"""Callbacks for ``Agent.learn``: periodic evaluation."""

from __future__ import annotations

from typing import Any


class EvalCallback:
    """Evaluate the agent every ``every_steps`` env steps on fresh episodes; keep the history.

    ``history`` is a list of ``(num_timesteps, metrics)``; ``best`` the highest
    mean return seen. With ``stop_at``, training stops once the mean return
    reaches it.
    """

    def __init__(self, every_steps: int, n_episodes: int = 10, deterministic: bool = True,
                 stop_at: float | None = None):
        if every_steps < 1 or n_episodes < 1:
            raise ValueError("every_steps and n_episodes must be positive")
        self.every_steps, self.n_episodes = every_steps, n_episodes
        self.deterministic, self.stop_at = deterministic, stop_at
        self.history: list[tuple[int, dict[str, Any]]] = []
        self._next = every_steps

    @property
    def best(self) -> float:
        return max((m["return_mean"] for _, m in self.history), default=float("-inf"))

    def __call__(self, agent, metrics: dict) -> bool:
        if agent.num_timesteps < self._next:
            return True
        self._next = agent.num_timesteps + self.every_steps
        result = agent.evaluate(self.n_episodes, deterministic=self.deterministic)
        self.history.append((agent.num_timesteps, result))
        metrics["eval_return_mean"] = result["return_mean"]
        if agent.logger is not None:
            agent.logger.log(agent.num_timesteps, {f"eval/{k}": v for k, v in result.items()})
        return not (self.stop_at is not None and result["return_mean"] >= self.stop_at)
