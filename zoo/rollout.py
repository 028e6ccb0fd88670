"""Rollout collection into preallocated device tensors, with episode statistics tracked on the way.

A policy is any callable on a batch of observations (tensors on the env's
device) that returns a :class:`PolicyStep` (or just the actions). The
collector runs it for ``num_steps`` steps of a :class:`~zoo.envs.VecEnv` and
writes observations, actions, log-probs, values, rewards, terminated and
truncated flags, and the bootstrap values of truncated episodes into tensors
allocated once. Nothing is appended to Python lists per step, and for
torch-native envs nothing leaves the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Union

import torch

from zoo.envs.host import observation_fields
from zoo.envs.vec import Obs, VecEnv, torch_dtype


class PolicyStep(NamedTuple):
    """What a policy returns for a batch: actions, and optionally their log-probs and state values.

    ``env_action`` is what the env receives when it differs from the stored
    ``action`` (e.g. a Gaussian sample clipped to the action bounds).
    """

    action: torch.Tensor
    log_prob: Optional[torch.Tensor] = None
    value: Optional[torch.Tensor] = None
    env_action: Optional[torch.Tensor] = None

    @property
    def to_env(self) -> torch.Tensor:
        """What ``VecEnv.step`` receives."""
        return self.action if self.env_action is None else self.env_action


Policy = Callable[[Obs], Union[PolicyStep, torch.Tensor]]
ValueFn = Callable[[Obs], torch.Tensor]


def _as_step(out) -> PolicyStep:
    if isinstance(out, PolicyStep):
        return out
    if isinstance(out, torch.Tensor):
        return PolicyStep(out)
    if isinstance(out, tuple):
        return PolicyStep(*out)
    raise TypeError(f"a policy must return a PolicyStep or an action tensor, got {type(out).__name__}")


def obs_index(obs: Obs, index) -> Obs:
    """``obs[index]`` for a tensor or a dict of tensors."""
    return {k: v[index] for k, v in obs.items()} if isinstance(obs, dict) else obs[index]


def obs_copy_(dst: Obs, src: Obs) -> None:
    """In-place copy of a tensor or dict of tensors."""
    if isinstance(dst, dict):
        for k in dst:
            dst[k].copy_(src[k])
    else:
        dst.copy_(src)


class EpisodeStats:
    """Running episode return, length and success per env, and a window of finished episodes.

    Everything stays on the device (no host sync per step): finished episodes
    are scattered into ring buffers; :meth:`summary` reads them out.
    ``success`` counts an episode as a success if ``info["success"]`` was
    non-zero at any of its steps (MetaWorld's convention).
    """

    def __init__(self, num_envs: int, device: torch.device, window: int = 100):
        self.window = window
        self.device = torch.device(device)
        self.running_return = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.running_length = torch.zeros(num_envs, dtype=torch.int64, device=device)
        self.running_success = torch.zeros(num_envs, dtype=torch.bool, device=device)
        # one spare slot at the end receives the writes of envs that did not finish
        self.returns = torch.zeros(window + 1, dtype=torch.float64, device=device)
        self.lengths = torch.zeros(window + 1, dtype=torch.int64, device=device)
        self.successes = torch.zeros(window + 1, dtype=torch.float32, device=device)
        self.count = torch.zeros((), dtype=torch.int64, device=device)
        self.has_success = False

    def update(self, reward: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
               success: torch.Tensor | None = None) -> None:
        self.running_return += reward
        self.running_length += 1
        if success is not None:
            self.has_success = True
            self.running_success |= success.bool()
        done = terminated | truncated
        slot = (self.count + torch.cumsum(done, 0) - 1) % self.window
        slot = torch.where(done, slot, self.window)
        self.returns.scatter_(0, slot, self.running_return)
        self.lengths.scatter_(0, slot, self.running_length)
        self.successes.scatter_(0, slot, self.running_success.float())
        self.count += done.sum()
        keep = ~done
        self.running_return *= keep
        self.running_length *= keep
        self.running_success &= keep

    @property
    def episodes(self) -> int:
        """Number of finished episodes so far (syncs with the device)."""
        return int(self.count)

    def summary(self, first: int | None = None) -> dict[str, float]:
        """Mean return, length (and success rate) over the last ``window`` finished episodes, or over
        the first ``first`` ones when the window has not wrapped (as ``evaluate_policy`` arranges)."""
        n = min(int(self.count), self.window)
        if first is not None:
            n = min(n, first)
        if n == 0:
            return {"episodes": 0}
        out = {"episodes": int(self.count) if first is None else n, "return_mean": float(self.returns[:n].mean()),
               "return_std": float(self.returns[:n].std(unbiased=False)),
               "length_mean": float(self.lengths[:n].double().mean())}
        if self.has_success:
            out["success_rate"] = float(self.successes[:n].mean())
        return out


@dataclass
class Rollout:
    """``num_steps x num_envs`` of experience (views into the collector's storage).

    ``bootstrap_values[t, i]`` is the value of the true final observation where
    env ``i``'s episode was truncated at step ``t`` (0 elsewhere); ``next_obs``
    is the observation after the last step, to bootstrap the rollout's tail.
    """

    obs: Obs
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    bootstrap_values: torch.Tensor
    next_obs: Obs

    @property
    def num_steps(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_envs(self) -> int:
        return self.rewards.shape[1]


class RolloutCollector:
    """Runs a policy in a ``VecEnv`` for ``num_steps`` steps at a time into preallocated tensors.

    Storage lives on ``env.device``. The env is reset on the first
    :meth:`collect` and then carried over between calls. ``info["success"]``
    is tracked when the env provides it.
    """

    def __init__(self, env: VecEnv, num_steps: int, stats_window: int = 100):
        if num_steps < 1:
            raise ValueError(f"num_steps must be positive, got {num_steps}")
        self.env, self.num_steps = env, int(num_steps)
        T, N, dev = self.num_steps, env.num_envs, env.device
        fields = observation_fields(env.single_observation_space)
        self._dict_obs = list(fields) != [None]
        obs = {k: torch.zeros((T, N, *shape), dtype=torch_dtype(dtype), device=dev) for k, (shape, dtype) in fields.items()}
        self._obs_store: Obs = obs if self._dict_obs else obs[None]
        self.actions = torch.zeros((T, N, *env._action_shape), dtype=env._action_dtype, device=dev)
        self.log_probs = torch.zeros((T, N), dtype=torch.float32, device=dev)
        self.values = torch.zeros((T, N), dtype=torch.float32, device=dev)
        self.rewards = torch.zeros((T, N), dtype=torch.float32, device=dev)
        self.terminated = torch.zeros((T, N), dtype=torch.bool, device=dev)
        self.truncated = torch.zeros((T, N), dtype=torch.bool, device=dev)
        self.bootstrap_values = torch.zeros((T, N), dtype=torch.float32, device=dev)
        self.stats = EpisodeStats(N, dev, window=stats_window)
        self.next_obs: Obs | None = None
        self.total_steps = 0
        # On the host, "did any episode get truncated?" is free; on a GPU it is a sync,
        # so there the bootstrap values are computed for the whole batch every step.
        self._check_truncation_on_host = dev.type == "cpu"

    def reset(self, seed: int | None = None) -> Obs:
        self.next_obs = self.env.reset(seed=seed)
        return self.next_obs

    @torch.no_grad()
    def collect(self, policy: Policy, value_fn: ValueFn | None = None) -> Rollout:
        """Collect ``num_steps`` steps with ``policy``; ``value_fn`` gives bootstrap values for truncations."""
        if self.next_obs is None:
            self.reset()
        obs = self.next_obs
        for t in range(self.num_steps):
            obs_copy_(obs_index(self._obs_store, t), obs)
            step = _as_step(policy(obs))
            self.actions[t] = step.action
            self.log_probs[t] = 0.0 if step.log_prob is None else step.log_prob
            self.values[t] = 0.0 if step.value is None else step.value.reshape(-1)
            obs, reward, terminated, truncated, info = self.env.step(step.to_env)
            self.rewards[t] = reward
            self.terminated[t] = terminated
            self.truncated[t] = truncated
            if value_fn is not None and (not self._check_truncation_on_host or bool(truncated.any())):
                final_values = value_fn(info["final_obs"]).reshape(-1)
                self.bootstrap_values[t] = torch.where(truncated, final_values, 0.0)
            else:
                self.bootstrap_values[t] = 0.0
            self.stats.update(reward, terminated, truncated, info.get("success"))
        self.next_obs = obs
        self.total_steps += self.num_steps * self.env.num_envs
        return Rollout(self._obs_store, self.actions, self.log_probs, self.values, self.rewards, self.terminated,
                       self.truncated, self.bootstrap_values, self.next_obs)


@torch.no_grad()
def evaluate_policy(env: VecEnv, policy: Policy, n_episodes: int, seed: int | None = None,
                    max_steps: int = 1_000_000) -> dict[str, float]:
    """Run ``policy`` until ``n_episodes`` episodes have finished; return mean/std return, length, success.

    Episodes are counted in the order they finish, over all envs, so that every
    env contributes (the first ``n_episodes`` finished are reported).
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be positive, got {n_episodes}")
    # a window that never wraps: the first n_episodes finished sit in slots 0..n_episodes-1
    stats = EpisodeStats(env.num_envs, env.device, window=n_episodes + env.num_envs)
    obs = env.reset(seed=seed)
    steps = 0
    while stats.episodes < n_episodes:
        obs, reward, terminated, truncated, info = env.step(_as_step(policy(obs)).to_env)
        stats.update(reward, terminated, truncated, info.get("success"))
        steps += 1
        if steps >= max_steps:
            raise RuntimeError(f"evaluate_policy: {n_episodes} episodes did not finish within {max_steps} steps")
    return stats.summary(first=n_episodes)
