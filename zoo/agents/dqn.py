"""DQN (Mnih et al., 2015) with double Q-learning (van Hasselt et al., 2016), n-step returns and optional
prioritized replay (Schaul et al., 2016)."""

from __future__ import annotations

import copy
import dataclasses

import torch
from gymnasium import spaces
from torch import nn

from zoo.agents import register_agent
from zoo.agents.config import in_unit_interval, positive, valid_hidden
from zoo.agents.off_policy import OffPolicyAgent, OffPolicyConfig
from zoo.buffers.replay import ReplaySample
from zoo.errors import ConfigError
from zoo.nets import adam, make_encoder, mlp, polyak_update
from zoo.rollout import Obs


# ----------------------------------------------------------------------------- losses
def double_q_target(rewards: torch.Tensor, discounts: torch.Tensor, next_q_online: torch.Tensor,
                    next_q_target: torch.Tensor, double: bool = True) -> torch.Tensor:
    """``r + discount * Q_target(s', argmax_a Q_online(s', a))`` (van Hasselt et al., 2016, eq. 4);
    with ``double=False`` the max of the target network (Mnih et al., 2015)."""
    if double:
        best = next_q_online.argmax(dim=1, keepdim=True)
        next_value = next_q_target.gather(1, best).squeeze(1)
    else:
        next_value = next_q_target.max(dim=1).values
    return rewards + discounts * next_value


def td_loss(q_taken: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
            huber: bool = True) -> torch.Tensor:
    """Huber (smooth L1, as SB3) or squared TD error (as CleanRL), weighted by importance weights when given."""
    if huber:
        err = nn.functional.smooth_l1_loss(q_taken, target, reduction="none")
    else:
        err = (q_taken - target).square()
    return (err if weights is None else weights * err).mean()


def linear_schedule(start: float, end: float, fraction: float, progress: float) -> float:
    """Linear from ``start`` to ``end`` over the first ``fraction`` of training, then ``end``."""
    if fraction <= 0:
        return end
    return start + (end - start) * min(1.0, progress / fraction)


# ----------------------------------------------------------------------------- config
# rl-baselines3-zoo dqn.yml, CartPole-v1 (5e4 steps)
_CARTPOLE = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
                 target_network_frequency=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                 end_e=0.04, hidden=(256, 256))


@dataclasses.dataclass
class DQNConfig(OffPolicyConfig):
    """Defaults: CleanRL ``dqn.py``'s schedule and sizes, with SB3's Huber loss and gradient clipping and
    double Q-learning on; presets: rl-baselines3-zoo."""

    learning_rate: float = 2.5e-4
    buffer_size: int = 10_000
    batch_size: int = 128
    learning_starts: int = 10_000
    train_freq: int = 10
    target_network_frequency: int = 500
    tau: float = 1.0
    exploration_fraction: float = 0.5
    start_e: float = 1.0
    end_e: float = 0.05
    double_q: bool = True
    huber: bool = True
    max_grad_norm: float = 10.0
    hidden: tuple[int, ...] = (120, 84)
    activation: str = "relu"

    PRESETS = {"*/CartPole-v1": _CARTPOLE, "torch/cartpole": _CARTPOLE}

    def validate(self) -> None:
        super().validate()
        positive(self, "learning_rate", "target_network_frequency", "tau", "max_grad_norm")
        in_unit_interval(self, "exploration_fraction", "start_e", "end_e", "tau")
        valid_hidden(self)


class QHead(nn.Module):
    """``Q(s, .)`` for discrete actions: encoder + MLP with one output per action."""

    def __init__(self, observation_space, n_actions: int, hidden, activation):
        super().__init__()
        self.encoder = make_encoder(observation_space)
        self.net = mlp(self.encoder.out_dim, hidden, n_actions, activation)

    def forward(self, obs: Obs) -> torch.Tensor:
        return self.net(self.encoder(obs))


# ----------------------------------------------------------------------------- agent
@register_agent
class DQN(OffPolicyAgent):
    """Deep Q-Network with double Q-learning, n-step returns and optional prioritized replay."""

    config_class = DQNConfig
    config: DQNConfig

    def _build(self) -> None:
        c = self.config
        space = self.env.single_action_space
        if not isinstance(space, spaces.Discrete) or space.start != 0:
            raise ConfigError(f"DQN needs a Discrete action space starting at 0, got {space}")
        self.n_actions = int(space.n)
        self.q = self.build_q_network().to(self.device)
        self.q_target = copy.deepcopy(self.q)
        self.optimizer = adam(self.q.parameters(), lr=c.learning_rate)
        self.replay = self._build_replay()
        self.epsilon = c.start_e

    def build_q_network(self) -> nn.Module:
        c = self.config
        return QHead(self.env.single_observation_space, self.n_actions, c.hidden, c.activation)

    def state_modules(self) -> dict[str, nn.Module]:
        return {"q": self.q, "q_target": self.q_target}

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def extra_state(self) -> dict:
        return {"epsilon": self.epsilon}

    def _act(self, obs: Obs, deterministic: bool) -> torch.Tensor:
        greedy = self.q(obs).argmax(dim=1)
        if deterministic:
            return greedy
        return self._epsilon_greedy(greedy, self.epsilon)

    def _epsilon_greedy(self, greedy: torch.Tensor, epsilon: float) -> torch.Tensor:
        explore = torch.rand(greedy.shape, device=greedy.device) < epsilon
        random = torch.randint(self.n_actions, greedy.shape, device=greedy.device)
        return torch.where(explore, random, greedy)

    def explore(self, obs: Obs, progress: float) -> torch.Tensor:
        c = self.config
        self.epsilon = linear_schedule(c.start_e, c.end_e, c.exploration_fraction, progress)
        return self._epsilon_greedy(self.q(obs).argmax(dim=1), self.epsilon)

    def on_env_step(self) -> None:
        """Sync the target network every ``target_network_frequency`` env steps (as CleanRL and SB3 count)."""
        c, n = self.config, self.env.num_envs
        if self.num_timesteps > c.learning_starts and \
                self.num_timesteps // c.target_network_frequency > (self.num_timesteps - n) // c.target_network_frequency:
            polyak_update(self.q, self.q_target, c.tau)

    def train_step(self, batch: ReplaySample, progress: float) -> dict[str, torch.Tensor]:
        c = self.config
        with torch.no_grad():
            next_q_target = self.q_target(batch.next_observations)
            next_q_online = self.q(batch.next_observations) if c.double_q else next_q_target
            target = double_q_target(batch.rewards, batch.discounts, next_q_online, next_q_target, c.double_q)
        q_taken = self.q(batch.observations).gather(1, batch.actions.long().unsqueeze(1)).squeeze(1)
        loss = td_loss(q_taken, target, batch.weights, c.huber)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), c.max_grad_norm)
        self.optimizer.step()
        self.on_priorities(batch, q_taken.detach() - target)
        return {"td_loss": loss.detach(), "q_mean": q_taken.detach().mean(), "epsilon": torch.tensor(self.epsilon)}
