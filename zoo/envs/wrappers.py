"""Gymnasium wrappers that give every suite's single env the spaces zoo serves."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces


def _float32_space(space: gym.Space) -> gym.Space:
    if isinstance(space, spaces.Box) and space.dtype == np.float64:
        return spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32), dtype=np.float32)
    if isinstance(space, spaces.Dict):
        subs = {k: _float32_space(v) for k, v in space.spaces.items()}
        if any(subs[k] is not v for k, v in space.spaces.items()):
            return spaces.Dict(subs)
    return space


class Float32Observations(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Cast float64 observations (MuJoCo, dm-control, MetaWorld) to float32, spaces included."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        self.observation_space = _float32_space(env.observation_space)
        self._dict = isinstance(self.observation_space, spaces.Dict)

    def observation(self, observation):
        if self._dict:
            return {k: np.asarray(v, dtype=self.observation_space[k].dtype) for k, v in observation.items()}
        return np.asarray(observation, dtype=np.float32)


def standardize(env: gym.Env) -> gym.Env:
    """Apply the wrappers that make an env's spaces the ones zoo serves (float64 -> float32)."""
    if _float32_space(env.observation_space) is not env.observation_space:
        env = Float32Observations(env)
    return env


class SingleFromVec(gym.Env):
    """The single-env gymnasium form of a one-env ``VecEnv`` (numpy in, numpy out).

    Used for the torch-native suites, so that they pass gymnasium's env checker
    like every other suite. After an episode ends, ``step`` returns the true
    final observation; call ``reset`` before stepping again.
    """

    metadata = {"render_modes": []}

    def __init__(self, vec_env):
        if vec_env.num_envs != 1:
            raise ValueError(f"SingleFromVec needs a VecEnv with num_envs=1, got {vec_env.num_envs}")
        self.vec_env = vec_env
        self.observation_space = vec_env.single_observation_space
        self.action_space = vec_env.single_action_space

    @staticmethod
    def _numpy(x):
        if isinstance(x, dict):
            return {k: v[0].cpu().numpy() for k, v in x.items()}
        return x[0].cpu().numpy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**31))
        return self._numpy(self.vec_env.reset(seed=seed, options=options)), {}

    def step(self, action) -> tuple[Any, float, bool, bool, dict]:
        batch = torch.as_tensor(np.asarray(action)[None], device=self.vec_env.device)
        if batch.dtype == torch.float64:
            batch = batch.float()
        _, reward, terminated, truncated, info = self.vec_env.step(batch)
        extra = {k: float(v[0]) for k, v in info.items() if k != "final_obs"}
        return (self._numpy(info["final_obs"]), float(reward[0]), bool(terminated[0]), bool(truncated[0]), extra)

    def close(self):
        self.vec_env.close()
