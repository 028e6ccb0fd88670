"""Network building blocks shared by the agents: MLPs, observation encoders, initialisation, the continuous-action
actor and critic of the off-policy agents, target-network (Polyak) updates, and the batch-layout helpers for
``(B, L, ...)`` segments of steps."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from zoo.errors import ConfigError
from zoo.losses import tanh_gaussian_log_prob

if TYPE_CHECKING:
    from zoo.rollout import Obs

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}


def activation(name: str) -> type[nn.Module]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None


def orthogonal_init(layer: nn.Module, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights and constant bias (the PPO implementation detail of Engstrom et al., 2020)."""
    if isinstance(layer, (nn.Linear, nn.Conv2d)):
        nn.init.orthogonal_(layer.weight, gain)
        if layer.bias is not None:
            nn.init.constant_(layer.bias, bias)
    return layer


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int | None, act: str = "tanh", *,
        orthogonal: bool = False, output_gain: float = 1.0, dropout: float = 0.0,
        hidden_gain: float = math.sqrt(2)) -> nn.Sequential:
    """``in_dim -> hidden... -> out_dim`` (no output layer when ``out_dim`` is None); with ``orthogonal``,
    orthogonal weights of gain ``hidden_gain`` (hidden layers) and ``output_gain`` (output layer), zero biases."""
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for a, b in zip(dims[:-1], dims[1:]):
        linear = nn.Linear(a, b)
        layers += [orthogonal_init(linear, gain=hidden_gain) if orthogonal else linear, activation(act)()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    if out_dim is not None:
        head = nn.Linear(dims[-1], out_dim)
        layers.append(orthogonal_init(head, gain=output_gain) if orthogonal else head)
    return nn.Sequential(*layers)


class FlattenEncoder(nn.Module):
    """Vector (or any non-image Box) observations: cast to float and flatten."""

    def __init__(self, space: spaces.Box):
        super().__init__()
        self.out_dim = int(np.prod(space.shape)) if space.shape else 1

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float().reshape(obs.shape[0], -1)


class OneHotEncoder(nn.Module):
    """Discrete observations as one-hot vectors."""

    def __init__(self, space: spaces.Discrete):
        super().__init__()
        self.n, self.start, self.out_dim = int(space.n), int(space.start), int(space.n)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot((obs.long() - self.start).reshape(-1), self.n).float()


class ImageEncoder(nn.Module):
    """uint8 images (HWC or CHW): the Nature-DQN CNN for large frames, a small conv for MinAtar-sized ones."""

    def __init__(self, space: spaces.Box):
        super().__init__()
        shape = tuple(space.shape)
        self.channels_last = shape[-1] < shape[0]  # (H, W, C) when the last axis is the smallest
        c, h, w = (shape[2], shape[0], shape[1]) if self.channels_last else shape
        self.scale = 1.0 / 255.0 if space.dtype == np.uint8 and float(np.max(space.high)) > 1 else 1.0
        if min(h, w) >= 36:
            self.net = nn.Sequential(nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                                     nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten())
        else:
            self.net = nn.Sequential(nn.Conv2d(c, 16, 3, stride=1), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            self.out_dim = int(self.net(torch.zeros(1, c, h, w)).shape[1])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() * self.scale
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.net(x)


class DictEncoder(nn.Module):
    """Dict observations: one encoder per key, outputs concatenated (keys in sorted order)."""

    def __init__(self, space: spaces.Dict):
        super().__init__()
        self.encoders = nn.ModuleDict({k: make_encoder(space[k]) for k in sorted(space.spaces)})
        self.out_dim = sum(e.out_dim for e in self.encoders.values())

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([enc(obs[k]) for k, enc in self.encoders.items()], dim=1)


NETHACK_KEYS = frozenset({"crop", "blstats", "message"})


class NetHackEncoder(nn.Module):
    """ONI's NetHack encoder (facebookresearch/oni ``NLEMainEncoder`` over sample-factory's ``convnet_simple``) for
    the ``observation="oni"`` dict of :mod:`zoo.envs.nethack`: features ``[crop, MLP(blstats), blstats,
    MLP(message / 255)]``.

    crop (uint8 ``(3, H, W)``, fed unscaled as the reference's ``obs_scale=1``): conv 32 k8 s4, 64 k4 s2, 128 k3 s2,
    ELU after each, flatten, FC 512, ELU. blstats (already scaled): FC 128, ELU, FC 128, ELU, and the raw vector.
    message bytes / 255: FC 128, ELU, FC 128, ELU. ``out_dim`` is 512 + 128 + len(blstats) + 128 (795 for nle's
    27 blstats). Linear and conv weights are orthogonal with gain 1 and zero biases (sample-factory's
    ``policy_initialization=orthogonal``).
    """

    def __init__(self, space: spaces.Dict, hidden: int = 512, crop_scale: float = 1.0):
        super().__init__()
        if not isinstance(space, spaces.Dict) or set(space.spaces) != NETHACK_KEYS:
            raise ConfigError(f"NetHackEncoder needs a Dict space with keys {sorted(NETHACK_KEYS)} (make the env "
                              f"with observation='oni'), got {space}")
        crop, blstats, message = space["crop"].shape, space["blstats"].shape, space["message"].shape
        if len(crop) != 3 or crop[0] != 3 or len(blstats) != 1 or len(message) != 1:
            raise ConfigError(f"NetHackEncoder needs crop (3, H, W), blstats (n,) and message (m,); got crop {crop}, "
                              f"blstats {blstats}, message {message}")
        self.crop_scale = float(crop_scale)
        self.conv = nn.Sequential(nn.Conv2d(3, 32, 8, stride=4), nn.ELU(), nn.Conv2d(32, 64, 4, stride=2), nn.ELU(),
                                  nn.Conv2d(64, 128, 3, stride=2), nn.ELU(), nn.Flatten())
        with torch.no_grad():
            conv_out = int(self.conv(torch.zeros(1, *crop)).shape[1])
        self.crop_fc = nn.Sequential(nn.Linear(conv_out, hidden), nn.ELU())
        self.blstats_mlp = nn.Sequential(nn.Linear(blstats[0], 128), nn.ELU(), nn.Linear(128, 128), nn.ELU())
        self.message_mlp = nn.Sequential(nn.Linear(message[0], 128), nn.ELU(), nn.Linear(128, 128), nn.ELU())
        self.out_dim = hidden + 128 + blstats[0] + 128
        for layer in self.modules():
            orthogonal_init(layer, gain=1.0)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        crop = obs["crop"].float()
        if self.crop_scale != 1.0:
            crop = crop * self.crop_scale
        blstats = obs["blstats"].float()
        return torch.cat([self.crop_fc(self.conv(crop)), self.blstats_mlp(blstats), blstats,
                          self.message_mlp(obs["message"].float() / 255.0)], dim=1)


def is_image_space(space: gym.Space) -> bool:
    return isinstance(space, spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8


def make_encoder(space: gym.Space) -> nn.Module:
    """The default encoder for an observation space; its ``out_dim`` is the feature size."""
    if isinstance(space, spaces.Dict):
        return NetHackEncoder(space) if set(space.spaces) == NETHACK_KEYS else DictEncoder(space)
    if isinstance(space, spaces.Discrete):
        return OneHotEncoder(space)
    if is_image_space(space):
        return ImageEncoder(space)
    if isinstance(space, (spaces.Box, spaces.MultiBinary, spaces.MultiDiscrete)):
        return FlattenEncoder(space)
    raise TypeError(f"no default encoder for observation space {space}")


def adam(params, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters; CPU and CUDA), same maths as the default."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)


# ----------------------------------------------------------------------------- continuous-action actor and critic
#: bounds of the squashed Gaussian's log-std (CleanRL's SAC)
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class SquashedGaussianActor(nn.Module):
    """``a = scale * tanh(u) + bias``, ``u ~ N(mu(s), sigma(s))``, with the tanh log-likelihood correction
    (:func:`zoo.losses.tanh_gaussian_log_prob`); the log-std is squashed into ``[LOG_STD_MIN, LOG_STD_MAX]``."""

    def __init__(self, observation_space, action_space: spaces.Box, hidden, activation):
        super().__init__()
        self.encoder = make_encoder(observation_space)
        dim = int(np.prod(action_space.shape))
        self.trunk = mlp(self.encoder.out_dim, hidden, None, activation)
        self.mean = nn.Linear(hidden[-1], dim)
        self.log_std = nn.Linear(hidden[-1], dim)
        low, high = (torch.as_tensor(b, dtype=torch.float32) for b in (action_space.low, action_space.high))
        self.register_buffer("scale", (high - low) / 2.0)
        self.register_buffer("bias", (high + low) / 2.0)

    def forward(self, obs: Obs, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """A (reparameterised) action and its log-likelihood."""
        h = self.trunk(self.encoder(obs))
        mean = self.mean(h)
        log_std = torch.tanh(self.log_std(h))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        std = log_std.exp()
        u = mean if deterministic else mean + std * torch.randn_like(mean)
        y = torch.tanh(u)
        log_prob = tanh_gaussian_log_prob(u, mean, log_std, std=std, squashed=y, scale=self.scale)
        return y * self.scale + self.bias, log_prob


class QNetwork(nn.Module):
    """``Q(s, a)`` for continuous actions: an MLP over [features(s), a] (PyTorch's default init, or orthogonal
    weights of gain ``orthogonal_gain`` on every layer)."""

    def __init__(self, observation_space, action_space: spaces.Box, hidden, activation,
                 orthogonal_gain: float | None = None):
        super().__init__()
        self.encoder = make_encoder(observation_space)
        gain = {} if orthogonal_gain is None else dict(orthogonal=True, hidden_gain=orthogonal_gain,
                                                        output_gain=orthogonal_gain)
        self.net = mlp(self.encoder.out_dim + int(np.prod(action_space.shape)), hidden, 1, activation, **gain)

    def forward(self, obs: Obs, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([self.encoder(obs), action.float()], dim=1)).squeeze(-1)


def polyak_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """``target <- tau * source + (1 - tau) * target`` for parameters, and a copy of the buffers (tau = 1: hard
    copy): the soft target update of Lillicrap et al. (2016, DDPG, Algorithm 1)."""
    with torch.no_grad():
        for s, t in zip(source.parameters(), target.parameters()):
            t.lerp_(s, tau)
        for s, t in zip(source.buffers(), target.buffers()):
            t.copy_(s)


# ----------------------------------------------------------------------------- batch layout
def flatten_time(x: Any) -> Any:
    """``(B, L, ...)`` -> ``(B * L, ...)`` for a tensor or a dict of tensors (segments to steps)."""
    if isinstance(x, dict):
        return {k: v.reshape(-1, *v.shape[2:]) for k, v in x.items()}
    return x.reshape(-1, *x.shape[2:])


def time_slice(x: Any, start: int, stop: int) -> Any:
    """Steps ``start:stop`` of ``(B, L, ...)`` segments, for a tensor or a dict of tensors."""
    return {k: v[:, start:stop] for k, v in x.items()} if isinstance(x, dict) else x[:, start:stop]
