"""The preference learners' family: agents that learn a policy offline from a preference dataset.

CPL (and its CPL(BC) / CPL-KL variants), the SFT baseline and P-IQL share the
parts here: the dataset given as ``data=`` (a
:class:`~zoo.datasets.PreferenceDataset` or the path of one), how batches pair
segments (``pairing``), the MLP actor and its optimizer, and the loop of
gradient steps (``learn(n)`` counts gradient steps; the env is used for
evaluation only). Each agent adds its own ``train_step`` and settings.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from zoo.agents.base import Agent
from zoo.agents.config import AgentConfig, positive, valid_hidden
from zoo.agents.cpl.losses import deterministic_log_prob
from zoo.datasets import PreferenceDataset
from zoo.errors import ConfigError
from zoo.losses import tanh_gaussian_log_prob
from zoo.nets import adam, flatten_time, make_encoder, mlp, orthogonal_init
from zoo.rollout import Obs

ACTION_CLIP = 1.0 - 1e-5


@dataclasses.dataclass
class PreferenceConfig(AgentConfig):
    """What every preference learner shares: the actor (the paper's state-based MetaWorld settings), the batch
    and the learning rate, and how batches pair segments."""

    batch_size: int = 96
    learning_rate: float = 1e-4
    hidden: tuple[int, ...] = (512, 512)
    dropout: float = 0.25
    actor: Literal["deterministic", "gaussian"] = "deterministic"
    #: how batches pair segments: ``"fixed"`` draws the dataset's labelled pairs; ``"random"`` gives each
    #: drawn segment a fresh uniform partner from all of the dataset's segments, labelled by the teacher's
    #: scores (the reference's dense sampling); ``"auto"``: random for dense datasets that keep their scores
    pairing: Literal["auto", "fixed", "random"] = "auto"
    num_envs: int = 1

    LEGACY_DEFAULTS = {"pairing": "fixed"}

    def validate(self) -> None:
        positive(self, "batch_size", "learning_rate", "num_envs")
        valid_hidden(self)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"hyperparameter 'dropout' must lie in [0, 1), got {self.dropout}")


class CPLActor(nn.Module):
    """MLP actor (ReLU, dropout, orthogonal init). ``deterministic``: tanh mean, ``log pi := -||mu - a||^2``
    as in the reference code; ``gaussian``: a tanh-squashed Gaussian with its exact log-likelihood."""

    def __init__(self, observation_space, action_space: spaces.Box, hidden, dropout: float, kind: str):
        super().__init__()
        self.kind = kind
        self.encoder = make_encoder(observation_space)
        dim = int(np.prod(action_space.shape))
        # orthogonal weights of gain 1 on every layer, output included, zero biases (the reference's init)
        self.trunk = mlp(self.encoder.out_dim, hidden, None, "relu", orthogonal=True, hidden_gain=1.0,
                         dropout=dropout)
        self.mean = orthogonal_init(nn.Linear(hidden[-1], dim), gain=1.0)
        if kind == "gaussian":
            self.log_std = orthogonal_init(nn.Linear(hidden[-1], dim), gain=1.0)

    def forward(self, obs: Obs) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.trunk(self.encoder(obs))
        mean = self.mean(h)
        if self.kind == "deterministic":
            return torch.tanh(mean), None
        return mean, self.log_std(h).clamp(-5.0, 2.0)

    def log_prob(self, obs: Obs, action: torch.Tensor) -> torch.Tensor:
        mean, log_std = self(obs)
        action = action.clamp(-ACTION_CLIP, ACTION_CLIP)
        if self.kind == "deterministic":
            return deterministic_log_prob(mean, action)
        return tanh_gaussian_log_prob(torch.atanh(action), mean, log_std, squashed=action)

    def act(self, obs: Obs, deterministic: bool) -> torch.Tensor:
        mean, log_std = self(obs)
        if self.kind == "deterministic":
            return mean
        if deterministic:
            return torch.tanh(mean)
        return torch.tanh(mean + log_std.exp() * torch.randn_like(mean))


class PreferenceLearner(Agent):
    """Base of the agents that learn from a preference dataset (``data=``); subclasses implement ``train_step``."""

    config_class = PreferenceConfig
    config: PreferenceConfig
    budget_unit = "gradient steps"
    learns_from_data = True
    data_description = "a preference dataset"

    def _build(self) -> None:
        c = self.config
        space = self.env.single_action_space
        if not isinstance(space, spaces.Box):
            raise ConfigError(f"{type(self).__name__} needs a Box action space, got {space}")
        self.actor = CPLActor(self.env.single_observation_space, space, c.hidden, c.dropout, c.actor).to(self.device)
        self.optimizer = adam(self.actor.parameters(), lr=c.learning_rate)

    def use_data(self, data: PreferenceDataset | str | os.PathLike) -> None:
        """Learn from ``data``: a :class:`~zoo.datasets.PreferenceDataset` or the path of one saved with ``save``."""
        if isinstance(data, (str, os.PathLike)):
            data = PreferenceDataset.load(data)
        elif not isinstance(data, PreferenceDataset):
            raise ConfigError(f"{type(self).__name__} learns from a PreferenceDataset or the path of a saved one "
                              f"(data=...), got {type(data).__name__}")
        self._check_fits(data)
        self.data = data
        self.pairing  # noqa: B018  (a clear error now for a dataset that cannot be re-paired)

    def _check_fits(self, data: PreferenceDataset) -> None:
        """A ConfigError unless the dataset's per-step observations and actions have the env's shapes."""
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        if isinstance(data.observations, dict) != isinstance(obs_space, spaces.Dict):
            raise ConfigError(f"the dataset's observations are {'a dict' if isinstance(data.observations, dict) else 'an array'} "
                              f"but {self.env_id}'s observation space is {obs_space}")
        fields = data.observations.items() if isinstance(data.observations, dict) else [(None, data.observations)]
        for key, array in fields:
            space = obs_space[key] if key is not None else obs_space
            if tuple(array.shape[1:]) != tuple(space.shape):
                where = f"observations[{key!r}]" if key is not None else "observations"
                raise ConfigError(f"the dataset's {where} have shape {tuple(array.shape[1:])} per step, but "
                                  f"{self.env_id} observes {tuple(space.shape)}: the data was made on another task")
        if tuple(data.actions.shape[1:]) != tuple(act_space.shape):
            raise ConfigError(f"the dataset's actions have shape {tuple(data.actions.shape[1:])} per step, but "
                              f"{self.env_id} acts with {tuple(act_space.shape)}: the data was made on another task")

    @property
    def pairing(self) -> str:
        """``config.pairing`` with ``"auto"`` resolved against the current dataset: ``"random"`` for a dense
        single-task dataset that keeps its scores, else ``"fixed"``."""
        pairing, data = self.config.pairing, self.data
        if data is None:
            return "fixed" if pairing == "auto" else pairing
        has_scores = data.scores_a is not None
        if pairing == "auto":
            dense = data.metadata.get("regime") == "dense" and len(data.metadata.get("tasks") or [None]) <= 1
            return "random" if dense and has_scores else "fixed"
        if pairing == "random" and not has_scores:
            raise ConfigError("pairing='random' labels fresh pairs by the teacher's scores, and this dataset keeps "
                              "none; use pairing='fixed' or a dataset built with scores")
        return pairing

    def state_modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor}

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def _act(self, obs: Obs, deterministic: bool) -> torch.Tensor:
        self.actor.eval()
        action = self.actor.act(obs, deterministic)
        self.actor.train()
        return action

    # -- training -----------------------------------------------------------------
    def _segment_log_probs(self, actor: CPLActor, obs, actions: torch.Tensor) -> torch.Tensor:
        """``log pi(a_t|s_t)`` for a ``(B, L, ...)`` batch of segments, as ``(B, L)``."""
        B, L = actions.shape[:2]
        return actor.log_prob(flatten_time(obs), actions.reshape(B * L, -1)).reshape(B, L)

    def _batch(self) -> dict[str, torch.Tensor]:
        if self.pairing == "random":
            batch = self.data.sample_random_partners(self.config.batch_size, self.np_random)
        else:
            batch = self.data.sample(self.config.batch_size, self.np_random)
        return PreferenceDataset.to_torch(batch, self.device)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step on a batch of segment pairs; returns scalar tensors to log."""
        raise NotImplementedError

    def _learn(self, total_steps: int, report: Callable[[dict], bool]) -> None:
        self.actor.train()
        metrics: dict = {}
        every = max(1, min(1000, total_steps // 20))
        for _ in range(total_steps):
            metrics = self.train_step(self._batch())
            self.num_timesteps += 1
            if self.num_timesteps % every == 0 and not report({k: float(v) for k, v in metrics.items()}):
                break
