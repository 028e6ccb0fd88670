"""Environments whose step is batched torch ops on the env's device (``torch/<task>``)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from gymnasium import spaces

from zoo.envs.vec import VecEnv
from zoo.errors import ActionError


class TorchVecEnv(VecEnv):
    """Base for torch-native envs: state lives in tensors on ``device``; no host copies.

    They step synchronously: ``step_async`` / ``step_wait`` are the protocol's
    defaults (keep the actions, then step).
    """

    host_simulated = False

    def __init__(self, num_envs: int, device: torch.device, single_observation_space, single_action_space,
                 seed: int | None = None):
        super().__init__(num_envs, device, single_observation_space, single_action_space)
        self.generator = torch.Generator(device=self.device)
        self._seed = seed
        self._first_reset = True

    def _seed_generator(self, seed: int | Sequence[int] | None) -> None:
        if seed is None and self._first_reset:
            seed = self._seed
        self._first_reset = False
        if seed is None:
            self.generator.seed()
        elif isinstance(seed, (int, np.integer)):
            self.generator.manual_seed(int(seed))
        else:
            raise ValueError(f"{self.env_id}: torch envs take one integer seed for the whole batch, got {seed!r}")


class CartPoleTorch(TorchVecEnv):
    """Gymnasium ``CartPole-v1`` as batched torch ops: same dynamics, reward, termination, 500-step truncation.

    The state is integrated in float64 (as gymnasium does) unless
    ``dtype=torch.float32`` is asked for (faster on GPUs, not bit-faithful);
    observations are float32. Episodes reset automatically to states drawn
    uniformly from [-0.05, 0.05]^4 with the env's own ``torch.Generator``.
    """

    env_id = "torch/cartpole"
    gravity = 9.8
    masscart = 1.0
    masspole = 0.1
    total_mass = masspole + masscart
    length = 0.5  # half the pole's length
    polemass_length = masspole * length
    force_mag = 10.0
    tau = 0.02
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x_threshold = 2.4
    max_episode_steps = 500

    def __init__(self, num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None,
                 dtype: torch.dtype = torch.float64, max_episode_steps: int = 500):
        high = np.array([self.x_threshold * 2, np.finfo(np.float32).max, self.theta_threshold_radians * 2,
                         np.finfo(np.float32).max], dtype=np.float32)
        super().__init__(num_envs, torch.device(device), spaces.Box(-high, high, dtype=np.float32),
                         spaces.Discrete(2), seed=seed)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}")
        self.max_episode_steps = int(max_episode_steps)
        self.state = torch.zeros(self.num_envs, 4, dtype=dtype, device=self.device)
        self.elapsed = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self._ones = torch.ones(self.num_envs, dtype=torch.float32, device=self.device)

    def _initial_states(self, n: int) -> torch.Tensor:
        u = torch.rand(n, 4, generator=self.generator, device=self.device, dtype=self.state.dtype)
        return u * 0.1 - 0.05

    def reset(self, seed: int | None = None, options: dict | None = None) -> torch.Tensor:
        self._check_no_step_in_flight("reset()")
        self._seed_generator(seed)
        self.state = self._initial_states(self.num_envs)
        self.elapsed.zero_()
        return self.state.float()

    def set_state(self, state: torch.Tensor) -> None:
        """Set the physical state (``num_envs x 4``) directly, e.g. to replay another simulator's states."""
        self.state = torch.as_tensor(state, dtype=self.state.dtype, device=self.device).reshape(self.num_envs, 4).clone()
        self.elapsed.zero_()

    def physics(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One Euler step of the cart-pole equations (gymnasium's ``kinematics_integrator='euler'``)."""
        x, x_dot, theta, theta_dot = state.unbind(1)
        force = (action.to(state.dtype) * 2.0 - 1.0) * self.force_mag  # action 1 pushes right, 0 left
        costheta, sintheta = torch.cos(theta), torch.sin(theta)
        temp = (force + self.polemass_length * theta_dot.square() * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * costheta.square() / self.total_mass))
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        return torch.stack((x + self.tau * x_dot, x_dot + self.tau * xacc,
                            theta + self.tau * theta_dot, theta_dot + self.tau * thetaacc), dim=1)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        if self._step_in_flight:
            self._check_no_step_in_flight("step()")
        actions = self.check_actions(actions)
        if self.device.type == "cpu" and (actions.min() < 0 or actions.max() > 1):  # free on the host only
            raise ActionError(f"{self.env_id}: actions must be 0 or 1, got values in "
                              f"[{int(actions.min())}, {int(actions.max())}]")
        state = self.physics(self.state, actions)
        x, theta = state[:, 0], state[:, 2]
        terminated = (x < -self.x_threshold) | (x > self.x_threshold) | \
                     (theta < -self.theta_threshold_radians) | (theta > self.theta_threshold_radians)
        self.elapsed += 1
        truncated = self.elapsed >= self.max_episode_steps  # as TimeLimit: may coincide with terminated
        done = terminated | truncated
        final_obs = state.to(torch.float32, copy=True)  # state is updated in place below
        if self.device.type == "cpu":  # draw new initial states only for the finished episodes
            rows = done.nonzero().squeeze(1)
            if rows.numel():
                state[rows] = self._initial_states(rows.numel())
                self.elapsed[rows] = 0
            self.state = state
        else:  # no host sync on an accelerator: draw for every env, keep where done
            self.state = torch.where(done.unsqueeze(1), self._initial_states(self.num_envs), state)
            self.elapsed = torch.where(done, 0, self.elapsed)
        # Reward 1 on every step, the terminating one included (CartPole-v1, sutton_barto_reward=False).
        return self.state.float(), self._ones.clone(), terminated, truncated, {"final_obs": final_obs}
