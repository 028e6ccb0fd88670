"""PPO (Schulman et al., 2017): clipped surrogate objective, GAE, on the zoo interface.

PPO is the on-policy family (:mod:`zoo.agents.on_policy`) with an MLP
actor-critic, learning-rate annealing and observation normalisation; the
losses are in :mod:`zoo.losses`.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
from gymnasium import spaces
from torch import nn

from zoo.agents import register_agent
from zoo.agents.config import valid_hidden
from zoo.agents.normalize import ObservationNormalizer
from zoo.agents.on_policy import ActionHead, OnPolicyAgent, OnPolicyConfig
from zoo.errors import ConfigError
from zoo.nets import make_encoder, mlp
from zoo.rollout import Obs, Rollout


# ----------------------------------------------------------------------------- config
# rl-baselines3-zoo ppo.yml, CartPole-v1 (lin_0.001 learning rate, lin_0.2 clip range)
_CARTPOLE = dict(num_envs=8, num_steps=32, num_minibatches=1, update_epochs=20, gamma=0.98, gae_lambda=0.8,
                 ent_coef=0.0, learning_rate=1e-3, anneal_clip=True, clip_vloss=False)


@dataclasses.dataclass
class PPOConfig(OnPolicyConfig):
    """Defaults: CleanRL ``ppo.py`` / ``ppo_continuous_action.py``; presets: rl-baselines3-zoo."""

    anneal_lr: bool = True
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    normalize_obs: bool = False

    PRESETS = {
        "*/CartPole-v1": _CARTPOLE,
        "torch/cartpole": _CARTPOLE,
        # CleanRL ppo_continuous_action.py (MuJoCo / dm-control)
        "dmc/*": dict(num_envs=1, num_steps=2048, learning_rate=3e-4, num_minibatches=32, update_epochs=10,
                      ent_coef=0.0, normalize_obs=True, normalize_reward=True),
        # the TA-LPO paper's MinAtar PPO base with its per-game learning rates (it gives none for Seaquest: the
        # minatar/* rate below) on the batched torch MinAtar games
        **{f"torch/minatar-{game}": dict(num_envs=64, num_steps=128, num_minibatches=8, update_epochs=4,
                                         activation="relu", learning_rate=lr)
           for game, lr in (("breakout", 1e-2), ("asterix", 3e-3), ("freeway", 1e-3), ("space_invaders", 7e-3),
                            ("seaquest", 5e-3))},
        "minatar/*": dict(num_envs=64, num_steps=128, num_minibatches=8, update_epochs=4, activation="relu",
                          learning_rate=5e-3),
    }

    def validate(self) -> None:
        super().validate()
        valid_hidden(self)


# ----------------------------------------------------------------------------- network
class ActorCritic(ActionHead):
    """Separate actor and critic MLPs over a shared observation encoder (no shared weights in the MLPs),
    with :class:`ActionHead`'s categorical or Gaussian policy."""

    def __init__(self, observation_space, action_space, hidden=(64, 64), activation="tanh", log_std_init=0.0,
                 normalize_obs=False):
        super().__init__()
        self.obs_norm = None
        if normalize_obs:
            if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
                raise ConfigError("normalize_obs needs flat Box observations")
            self.obs_norm = ObservationNormalizer(observation_space.shape)
        self.encoder = make_encoder(observation_space)
        out = self.init_action_space(action_space, log_std_init, "PPO")
        self.actor = mlp(self.encoder.out_dim, hidden, out, activation, orthogonal=True, output_gain=0.01)
        self.critic = mlp(self.encoder.out_dim, hidden, 1, activation, orthogonal=True, output_gain=1.0)

    def features(self, obs: Obs) -> torch.Tensor:
        if self.obs_norm is not None:
            obs = self.obs_norm(obs)
        return self.encoder(obs)

    def distribution(self, features: torch.Tensor) -> torch.distributions.Distribution:
        return self.action_distribution(self.actor(features))

    def value(self, obs: Obs) -> torch.Tensor:
        return self.critic(self.features(obs)).squeeze(-1)

    def forward(self, obs: Obs) -> tuple[torch.distributions.Distribution, torch.Tensor]:
        features = self.features(obs)
        return self.distribution(features), self.critic(features).squeeze(-1)


# ----------------------------------------------------------------------------- agent
@register_agent
class PPO(OnPolicyAgent):
    """Proximal Policy Optimization with GAE, on a ``VecEnv`` (rollouts stay on the agent's device)."""

    config_class = PPOConfig
    config: PPOConfig

    _warned_past_horizon = False

    def build_policy(self) -> nn.Module:
        c = self.config
        return ActorCritic(self.env.single_observation_space, self.env.single_action_space, c.hidden, c.activation,
                           c.log_std_init, c.normalize_obs)

    def before_update(self, progress: float) -> None:
        if self.config.anneal_lr:
            if progress >= 1.0 and not self._warned_past_horizon:
                warnings.warn(f"PPO.learn runs past its schedule horizon (schedule_steps={self.schedule_steps}): "
                              f"the annealed learning rate is 0 and nothing is learned; set schedule_steps to the "
                              f"whole budget of your learn() calls, or anneal_lr=False", stacklevel=4)
                self._warned_past_horizon = True
            self.set_learning_rate(1.0 - progress)

    def set_learning_rate(self, fraction: float) -> None:
        """Anneal the learning rate to ``fraction`` of its initial value."""
        self.optimizer.param_groups[0]["lr"] = self.config.learning_rate * fraction

    def after_update(self, rollout: Rollout) -> None:
        """Observation statistics learn from the rollout after the update (which must see the statistics the
        rollout was collected with)."""
        if self.policy.obs_norm is not None:
            self.policy.obs_norm.stats.update(rollout.obs)
