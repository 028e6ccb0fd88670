"""The shared loop of replay-based agents (SAC, DQN and the paper agents built on them).

Subclasses implement ``explore(obs, progress)`` (actions while collecting),
``train_step(batch, progress)`` (one gradient step on a replay sample) and
``_act``; the loop collects with the ``VecEnv``, stores true next
observations (``info["final_obs"]``) so that truncated episodes bootstrap,
and trains ``gradient_steps`` times every ``train_freq`` env steps after
``learning_starts``. A training checkpoint holds the replay buffer (and the
window of episode statistics); a plain one does not, and a loaded agent
refills its buffer with random actions until ``learning_starts``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

from zoo.agents.base import Agent
from zoo.agents.config import AgentConfig, in_unit_interval, non_negative, positive, positive_or_none
from zoo.errors import ConfigError
from zoo.buffers.replay import PrioritizedReplayBuffer, ReplayBuffer, ReplaySample
from zoo.rollout import EpisodeStats, Obs


@dataclasses.dataclass
class OffPolicyConfig(AgentConfig):
    """Replay and schedule settings shared by off-policy agents."""

    num_envs: int = 1
    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 5_000
    train_freq: int = 1
    gradient_steps: int = 1
    gamma: float = 0.99
    n_step: int = 1
    prioritized_replay: bool = False
    per_alpha: float = 0.6
    per_beta: float = 0.4
    #: env steps the exploration and prioritisation schedules run over (None: the first ``learn()``'s total)
    schedule_steps: int | None = None

    def validate(self) -> None:
        positive(self, "num_envs", "buffer_size", "batch_size", "train_freq", "gradient_steps", "n_step")
        in_unit_interval(self, "gamma", "per_beta")
        non_negative(self, "learning_starts", "per_alpha")
        if self.batch_size > self.buffer_size or self.learning_starts > self.buffer_size:
            raise ConfigError(f"batch_size ({self.batch_size}) and learning_starts ({self.learning_starts}) must not "
                              f"exceed buffer_size ({self.buffer_size}): training would never start")
        positive_or_none(self, "schedule_steps")


class OffPolicyAgent(Agent):
    """Base of replay-based agents: collection, replay buffer, training schedule."""

    config: OffPolicyConfig

    def _build_replay(self) -> ReplayBuffer:
        c = self.config
        kwargs = dict(num_envs=self.env.num_envs, device=self.device, n_step=c.n_step, gamma=c.gamma, seed=self.seed)
        if c.prioritized_replay:
            return PrioritizedReplayBuffer(c.buffer_size, self.env.single_observation_space,
                                           self.env.single_action_space, alpha=c.per_alpha, beta=c.per_beta,
                                           **kwargs)
        return ReplayBuffer(c.buffer_size, self.env.single_observation_space, self.env.single_action_space, **kwargs)

    # -- to implement ---------------------------------------------------------
    def explore(self, obs: Obs, progress: float) -> torch.Tensor:
        """Actions to take while collecting (after ``learning_starts``)."""
        raise NotImplementedError

    def train_step(self, batch: ReplaySample, progress: float) -> dict[str, torch.Tensor]:
        """One gradient step; returns scalar tensors to log."""
        raise NotImplementedError

    def on_env_step(self) -> None:
        """Called after every batched env step (e.g. target-network syncs counted in env steps)."""

    def on_priorities(self, batch: ReplaySample, td_errors: torch.Tensor) -> None:
        """Feed TD errors back to a prioritized buffer."""
        if isinstance(self.replay, PrioritizedReplayBuffer):
            self.replay.update_priorities(batch.indices, td_errors.detach().abs().cpu())

    # -- training checkpoints -----------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"replay": self.replay.state_dict()}
        if hasattr(self, "_stats"):
            state["episode_stats"] = self._stats.state_dict()
        return state

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.replay.load_state_dict(state["replay"])
        if "episode_stats" in state:
            self._stats = EpisodeStats(self.env.num_envs, self.env.device)
            self._stats.load_state_dict(state["episode_stats"])

    # -- the loop -------------------------------------------------------------
    def _learn(self, total_steps: int, report: Callable[[dict], bool]) -> None:
        c, env = self.config, self.env
        if not hasattr(self, "_obs"):  # the first call, or the first after a load: the envs start new episodes
            self._obs = env.reset()
            self.replay.truncate_open_episodes()  # a resumed buffer's open episodes end where the run stopped
            if not hasattr(self, "_stats"):
                self._stats = EpisodeStats(env.num_envs, env.device)
        start = self.num_timesteps
        end = start + total_steps
        metrics: dict[str, torch.Tensor] = {}
        next_report = start
        while self.num_timesteps < end:
            progress = self.schedule_progress()
            # warm-up counts what the buffer holds, so a loaded agent (empty buffer) warms up again
            warm = len(self.replay) >= max(c.learning_starts, c.batch_size)
            with torch.no_grad():
                if not warm:
                    actions = env.sample_actions()
                else:
                    actions = self.explore(self._obs, progress)
            next_obs, reward, terminated, truncated, info = env.step(actions)
            self.replay.add(self._obs, actions, reward, info["final_obs"], terminated, truncated)
            self._stats.update(reward, terminated, truncated, info.get("success"))
            self._obs = next_obs
            before = self.num_timesteps
            self.num_timesteps += env.num_envs
            if warm and self.num_timesteps // c.train_freq > before // c.train_freq:
                if isinstance(self.replay, PrioritizedReplayBuffer):  # anneal beta to 1 (Schaul et al., 2016)
                    self.replay.beta = c.per_beta + (1.0 - c.per_beta) * progress
                for _ in range(c.gradient_steps):
                    metrics = self.train_step(self.replay.sample(c.batch_size), progress)
            self.on_env_step()
            if self.num_timesteps >= next_report or self.num_timesteps >= end:
                next_report = self.num_timesteps + max(1000, total_steps // 100)
                out = {k: float(v) for k, v in metrics.items()}
                out.update(self._stats.summary())
                if not report(out):
                    break
