"""SAC (Haarnoja et al., 2018): twin soft Q-functions, target networks, automatic entropy tuning."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from zoo.agents import register_agent
from zoo.agents.config import positive, valid_hidden
from zoo.agents.off_policy import OffPolicyAgent, OffPolicyConfig
from zoo.buffers.replay import ReplaySample
from zoo.errors import ConfigError
from zoo.nets import QNetwork, SquashedGaussianActor, adam, polyak_update
from zoo.rollout import Obs


# ----------------------------------------------------------------------------- losses
def sac_critic_loss(q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor,
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """Soft Bellman residual of both critics, Haarnoja et al. (2018b) eq. 5, as the sum of the two
    critics' mean squared errors (CleanRL's form; ``weights`` are importance weights)."""
    err = (q1 - target).square() + (q2 - target).square()
    return (err if weights is None else weights * err).mean()


def sac_target(rewards: torch.Tensor, discounts: torch.Tensor, next_q_min: torch.Tensor, next_log_prob: torch.Tensor,
               alpha: torch.Tensor | float) -> torch.Tensor:
    """``r + discount * (min_i Q'_i(s', a') - alpha * log pi(a'|s'))`` with ``a' ~ pi(.|s')`` (eq. 3 and 5)."""
    return rewards + discounts * (next_q_min - alpha * next_log_prob)


def sac_actor_loss(log_prob: torch.Tensor, q_min: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """``mean(alpha * log pi(a|s) - min_i Q_i(s, a))`` with reparameterised ``a``, eq. 7."""
    return (alpha * log_prob - q_min).mean()


def sac_alpha_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """Temperature loss ``mean(-alpha * log pi - alpha * target_entropy)``, Haarnoja et al. (2018b) eq. 18,
    with ``alpha = exp(log_alpha)`` optimised in log space (as CleanRL)."""
    return -(log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()


# ----------------------------------------------------------------------------- config
@dataclasses.dataclass
class SACConfig(OffPolicyConfig):
    """Defaults: CleanRL ``sac_continuous_action.py``; presets: rl-baselines3-zoo."""

    policy_lr: float = 3e-4
    q_lr: float = 1e-3
    tau: float = 0.005
    policy_frequency: int = 2
    target_network_frequency: int = 1
    #: the temperature when ``autotune`` is off (CleanRL's 0.2)
    alpha: float = 0.2
    autotune: bool = True
    #: where the tuned temperature starts (CleanRL and SB3: 1.0)
    alpha_init: float = 1.0

    LEGACY_DEFAULTS = {"alpha_init": 0.2}
    target_entropy_scale: float = 1.0
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"

    PRESETS = {
        # rl-baselines3-zoo sac.yml, Pendulum-v1: learning_rate 1e-3, 20k steps
        "*/Pendulum-v1": dict(policy_lr=1e-3, q_lr=1e-3, learning_starts=100, policy_frequency=1),
    }

    def validate(self) -> None:
        super().validate()
        positive(self, "policy_lr", "q_lr", "tau", "policy_frequency", "target_network_frequency", "alpha",
                 "alpha_init")
        valid_hidden(self)
        if self.tau > 1:
            raise ConfigError(f"tau must lie in (0, 1], got {self.tau}")


# ----------------------------------------------------------------------------- agent
@register_agent
class SAC(OffPolicyAgent):
    """Soft Actor-Critic for Box action spaces."""

    config_class = SACConfig
    config: SACConfig

    def _build(self) -> None:
        c = self.config
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        if not isinstance(act_space, spaces.Box):
            raise ConfigError(f"SAC needs a Box action space, got {act_space}")
        self.actor = SquashedGaussianActor(obs_space, act_space, c.hidden, c.activation).to(self.device)
        self.q1 = QNetwork(obs_space, act_space, c.hidden, c.activation).to(self.device)
        self.q2 = QNetwork(obs_space, act_space, c.hidden, c.activation).to(self.device)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.q_optimizer = adam(list(self.q1.parameters()) + list(self.q2.parameters()), lr=c.q_lr)
        self.actor_optimizer = adam(self.actor.parameters(), lr=c.policy_lr)
        self.target_entropy = -c.target_entropy_scale * float(np.prod(act_space.shape))
        self.log_alpha = nn.Parameter(torch.tensor(math.log(c.alpha_init if c.autotune else c.alpha),
                                                   device=self.device))
        self.alpha_optimizer = adam([self.log_alpha], lr=c.q_lr)
        self.replay = self._build_replay()
        self._updates = 0

    def state_modules(self) -> dict[str, nn.Module]:
        holder = nn.Module()
        holder.log_alpha = self.log_alpha
        return {"actor": self.actor, "q1": self.q1, "q2": self.q2, "q1_target": self.q1_target,
                "q2_target": self.q2_target, "temperature": holder}

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"q": self.q_optimizer, "actor": self.actor_optimizer, "alpha": self.alpha_optimizer}

    def extra_state(self) -> dict:
        return {"_updates": self._updates}

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach() if self.config.autotune else torch.tensor(self.config.alpha)

    def _act(self, obs: Obs, deterministic: bool) -> torch.Tensor:
        return self.actor(obs, deterministic=deterministic)[0]

    def explore(self, obs: Obs, progress: float) -> torch.Tensor:
        return self.actor(obs)[0]

    def train_step(self, batch: ReplaySample, progress: float) -> dict[str, torch.Tensor]:
        c = self.config
        alpha = self.alpha
        with torch.no_grad():
            next_action, next_log_prob = self.actor(batch.next_observations)
            next_q = torch.min(self.q1_target(batch.next_observations, next_action),
                               self.q2_target(batch.next_observations, next_action))
            target = sac_target(batch.rewards, batch.discounts, next_q, next_log_prob, alpha)
        q1, q2 = self.q1(batch.observations, batch.actions), self.q2(batch.observations, batch.actions)
        q_loss = sac_critic_loss(q1, q2, target, batch.weights)
        self.q_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_optimizer.step()
        self.on_priorities(batch, 0.5 * ((q1 - target).abs() + (q2 - target).abs()))
        out = {"q_loss": q_loss.detach(), "q_mean": q1.detach().mean(), "alpha": alpha}
        self._updates += 1
        if self._updates % c.policy_frequency == 0:
            for _ in range(c.policy_frequency):  # delayed, compensated actor updates (as in CleanRL)
                action, log_prob = self.actor(batch.observations)
                q_min = torch.min(self.q1(batch.observations, action), self.q2(batch.observations, action))
                actor_loss = sac_actor_loss(log_prob, q_min, self.alpha)
                self.actor_optimizer.zero_grad(set_to_none=True)
                actor_loss.backward()
                self.actor_optimizer.step()
                if c.autotune:
                    alpha_loss = sac_alpha_loss(self.log_alpha, log_prob, self.target_entropy)
                    self.alpha_optimizer.zero_grad(set_to_none=True)
                    alpha_loss.backward()
                    self.alpha_optimizer.step()
            out["actor_loss"] = actor_loss.detach()
        if self._updates % c.target_network_frequency == 0:
            polyak_update(self.q1, self.q1_target, c.tau)
            polyak_update(self.q2, self.q2_target, c.tau)
        return out
