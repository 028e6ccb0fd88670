"""Running statistics on the device: observation normalisation and reward scaling."""

from __future__ import annotations

import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Mean and variance of a stream of batches (parallel algorithm of Chan et al.), kept as buffers."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        batch = batch.double().reshape(-1, *self.mean.shape)
        b_mean, b_var, b_count = batch.mean(0), batch.var(0, unbiased=False), batch.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean += delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta.square() * self.count * b_count / total
        self.var = m2 / total
        self.count = total


class ObservationNormalizer(nn.Module):
    """``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` with running statistics (as SB3's VecNormalize)."""

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, epsilon: float = 1e-8):
        super().__init__()
        self.stats = RunningMeanStd(shape)
        self.clip, self.epsilon = clip, epsilon

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(self.stats.var + self.epsilon)
        return ((obs.double() - self.stats.mean) / std).clamp(-self.clip, self.clip).to(torch.float32)


class RewardScaler(nn.Module):
    """Divide rewards by the running std of the discounted return (SB3's VecNormalize reward scaling)."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8):
        super().__init__()
        self.stats = RunningMeanStd(())
        self.register_buffer("returns", torch.zeros(num_envs, dtype=torch.float64))
        self.gamma, self.clip, self.epsilon = gamma, clip, epsilon

    @torch.no_grad()
    def scale_rollout(self, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """Scale a ``(T, N)`` block of rewards, updating the return statistics step by step."""
        out = torch.empty_like(rewards)
        for t in range(rewards.shape[0]):
            self.returns = self.returns * self.gamma + rewards[t].double()
            self.stats.update(self.returns)
            out[t] = (rewards[t] / torch.sqrt(self.stats.var + self.epsilon)).clamp(-self.clip, self.clip)
            self.returns = self.returns * (~dones[t])
        return out
