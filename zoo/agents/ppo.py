"""PPO (Schulman et al., 2017): clipped surrogate objective, GAE, on the zoo interface.

The update is split into overridable pieces so that an agent changing one of
them overrides that method alone: ``build_policy`` (the network),
``process_rewards`` (e.g. intrinsic rewards), ``compute_advantages``,
``policy_loss`` (e.g. a learned objective), ``value_loss``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from zoo.agents import register_agent
from zoo.agents.base import Agent
from zoo.agents.config import AgentConfig, in_unit_interval, positive, valid_hidden
from zoo.agents.normalize import ObservationNormalizer, RewardScaler
from zoo.agents.quick import QuickTask, register_quick_task
from zoo.errors import ConfigError
from zoo.losses import normalize_advantages, ppo_clip_loss, value_loss
from zoo.nets import adam, flatten_time, make_encoder, mlp
from zoo.returns import gae
from zoo.rollout import Obs, PolicyStep, Rollout, RolloutCollector, obs_index


# ----------------------------------------------------------------------------- config
# rl-baselines3-zoo ppo.yml, CartPole-v1 (lin_0.001 learning rate, lin_0.2 clip range)
_CARTPOLE = dict(num_envs=8, num_steps=32, num_minibatches=1, update_epochs=20, gamma=0.98, gae_lambda=0.8,
                 ent_coef=0.0, learning_rate=1e-3, anneal_clip=True, clip_vloss=False)


@dataclasses.dataclass
class PPOConfig(AgentConfig):
    """Defaults: CleanRL ``ppo.py`` / ``ppo_continuous_action.py``; presets: rl-baselines3-zoo."""

    num_envs: int = 4
    num_steps: int = 128
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.2
    anneal_clip: bool = False
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0
    normalize_obs: bool = False
    normalize_reward: bool = False
    adam_eps: float = 1e-5
    #: env steps the learning-rate and clip annealing run over (None: the first ``learn()`` call's total)
    schedule_steps: int | None = None

    PRESETS = {
        "*/CartPole-v1": _CARTPOLE,
        "torch/cartpole": _CARTPOLE,
        # CleanRL ppo_continuous_action.py (MuJoCo / dm-control)
        "dmc/*": dict(num_envs=1, num_steps=2048, learning_rate=3e-4, num_minibatches=32, update_epochs=10,
                      ent_coef=0.0, normalize_obs=True, normalize_reward=True),
        # the TA-LPO paper's MinAtar PPO base
        "minatar/*": dict(num_envs=64, num_steps=128, num_minibatches=8, update_epochs=4, activation="relu",
                          learning_rate=5e-3),
    }

    def validate(self) -> None:
        positive(self, "num_envs", "num_steps", "learning_rate", "num_minibatches", "update_epochs", "clip_coef",
                 "max_grad_norm", "adam_eps")
        in_unit_interval(self, "gamma", "gae_lambda")
        valid_hidden(self)
        check_minibatches(self, self.num_envs)
        if self.schedule_steps is not None and self.schedule_steps < 1:
            raise ConfigError(f"hyperparameter 'schedule_steps' must be positive (or None), got {self.schedule_steps}")


def check_minibatches(config: PPOConfig, num_envs: int) -> None:
    """The rollout (``num_envs * num_steps``) must split into equal minibatches of at least 2 samples."""
    batch = num_envs * config.num_steps
    if batch % config.num_minibatches or batch // config.num_minibatches < 2:
        raise ConfigError(f"num_envs * num_steps = {num_envs} * {config.num_steps} = {batch} must split into "
                          f"num_minibatches = {config.num_minibatches} equal minibatches of at least 2 samples")


# ----------------------------------------------------------------------------- network
class ActionHead(nn.Module):
    """The action-space side of a PPO policy, shared by every function class (MLPs, tree ensembles).

    Discrete actions: a categorical over the outputs. Box actions: a diagonal
    Gaussian around them with a state-independent log-std; samples are clipped
    to the bounds before they reach the env (the stored action is the unclipped sample).
    """

    def init_action_space(self, action_space, log_std_init: float, agent: str) -> int:
        """Check the action space, register the log-std and bounds for Box actions; returns the output width."""
        self.discrete = isinstance(action_space, spaces.Discrete)
        if self.discrete:
            if action_space.start != 0:
                raise ConfigError(f"{agent} needs Discrete actions starting at 0, got {action_space}")
            return int(action_space.n)
        if not isinstance(action_space, spaces.Box):
            raise ConfigError(f"{agent} supports Discrete and Box action spaces, got {action_space}")
        out = int(np.prod(action_space.shape))
        self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))
        self.register_buffer("low", torch.as_tensor(action_space.low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(action_space.high, dtype=torch.float32))
        return out

    def action_distribution(self, logits: torch.Tensor) -> torch.distributions.Distribution:
        if self.discrete:
            return torch.distributions.Categorical(logits=logits, validate_args=False)
        return torch.distributions.Independent(
            torch.distributions.Normal(logits, self.log_std.exp(), validate_args=False), 1, validate_args=False)

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        return action if self.discrete else torch.max(torch.min(action, self.high), self.low)

    def mode(self, dist: torch.distributions.Distribution) -> torch.Tensor:
        return dist.probs.argmax(-1) if self.discrete else dist.mean


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
class PPO(Agent):
    """Proximal Policy Optimization with GAE, on a ``VecEnv`` (rollouts stay on the agent's device)."""

    config_class = PPOConfig
    config: PPOConfig

    def _build(self) -> None:
        c = self.config
        check_minibatches(c, self.env.num_envs)  # the env passed in may have another num_envs than the config
        self.policy = self.build_policy().to(self.device)
        self.optimizer = self.build_optimizer()
        self.collector = RolloutCollector(self.env, c.num_steps)
        self.reward_scaler = RewardScaler(self.env.num_envs, c.gamma).to(self.device) if c.normalize_reward else None

    def build_policy(self) -> nn.Module:
        c = self.config
        return ActorCritic(self.env.single_observation_space, self.env.single_action_space, c.hidden, c.activation,
                           c.log_std_init, c.normalize_obs)

    def build_optimizer(self) -> torch.optim.Optimizer | None:
        return adam(self.policy.parameters(), lr=self.config.learning_rate, eps=self.config.adam_eps)

    def state_modules(self) -> dict[str, nn.Module]:
        modules = {"policy": self.policy}
        if self.reward_scaler is not None:
            modules["reward_scaler"] = self.reward_scaler
        return modules

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    # -- acting -----------------------------------------------------------------
    def _policy_step(self, obs: Obs) -> PolicyStep:
        dist, value = self.policy(obs)
        action = dist.sample()
        return PolicyStep(action, dist.log_prob(action), value, self.policy.env_action(action))

    def _act(self, obs: Obs, deterministic: bool) -> torch.Tensor:
        dist, _ = self.policy(obs)
        action = self.policy.mode(dist) if deterministic else dist.sample()
        return self.policy.env_action(action)

    # -- the overridable pieces -----------------------------------------------------
    def process_rewards(self, rollout: Rollout) -> torch.Tensor:
        """The rewards the update learns from (reward scaling here; intrinsic rewards in subclasses)."""
        if self.reward_scaler is None:
            return rollout.rewards
        return self.reward_scaler.scale_rollout(rollout.rewards, rollout.terminated | rollout.truncated)

    def compute_advantages(self, rollout: Rollout, rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE(lambda) advantages and returns, with bootstrapping on truncation."""
        with torch.no_grad():
            last_values = self.policy.value(rollout.next_obs)
        return gae(rewards, rollout.values, rollout.terminated, rollout.truncated, rollout.bootstrap_values,
                   last_values, self.config.gamma, self.config.gae_lambda)

    def policy_loss(self, log_ratio: torch.Tensor, advantages: torch.Tensor, progress: float) -> torch.Tensor:
        """The actor's loss for one minibatch (``progress`` = fraction of the schedule horizon done)."""
        clip = self.config.clip_coef * (1.0 - progress if self.config.anneal_clip else 1.0)
        return ppo_clip_loss(log_ratio, advantages, max(clip, 1e-8))

    def value_loss(self, values: torch.Tensor, returns: torch.Tensor, old_values: torch.Tensor) -> torch.Tensor:
        return value_loss(values, returns, old_values, self.config.clip_coef if self.config.clip_vloss else None)

    def apply_gradients(self, loss: torch.Tensor) -> None:
        """One parameter update from a minibatch's loss (gradient-boosted agents grow a tree instead)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.max_grad_norm)
        self.optimizer.step()

    def minibatch_schedule(self) -> tuple[int, int]:
        """``(epochs, minibatches)`` of one update (A2C-style objectives take the rollout as one batch)."""
        return self.config.update_epochs, self.config.num_minibatches

    def set_learning_rate(self, fraction: float) -> None:
        """Anneal the learning rate to ``fraction`` of its initial value."""
        self.optimizer.param_groups[0]["lr"] = self.config.learning_rate * fraction

    # -- training -----------------------------------------------------------------
    def default_schedule_steps(self, total_steps: int) -> int:
        """The first ``learn()`` call's budget in whole rollouts (what the call runs), from the steps done."""
        batch = self.config.num_steps * self.env.num_envs
        return self.num_timesteps + max(1, total_steps // batch) * batch

    def _learn(self, total_steps: int, report: Callable[[dict], bool]) -> None:
        c = self.config
        batch = c.num_steps * self.env.num_envs
        for _ in range(max(1, total_steps // batch)):
            progress = self.schedule_progress()
            if c.anneal_lr:
                self.set_learning_rate(1.0 - progress)
            rollout = self.collector.collect(self._policy_step, value_fn=self.policy.value)
            self.num_timesteps += batch
            metrics = self.update(rollout, progress)
            self.after_update(rollout)
            metrics.update(self.collector.stats.summary())
            if not report(metrics):
                break

    def after_update(self, rollout: Rollout) -> None:
        """After each update: observation statistics learn from the rollout (after the update, which must
        see the statistics the rollout was collected with)."""
        if self.policy.obs_norm is not None:
            self.policy.obs_norm.stats.update(rollout.obs)

    def update(self, rollout: Rollout, progress: float) -> dict[str, float]:
        """One PPO update (``update_epochs`` passes of minibatch SGD) on a rollout."""
        c = self.config
        rewards = self.process_rewards(rollout)
        advantages, returns = self.compute_advantages(rollout, rewards)
        B = rollout.num_steps * rollout.num_envs
        obs = flatten_time(rollout.obs)
        actions, old_logp, old_values = (flatten_time(x) for x in (rollout.actions, rollout.log_probs, rollout.values))
        advantages, returns = flatten_time(advantages), flatten_time(returns)
        epochs, minibatches = self.minibatch_schedule()
        mb_size = B // minibatches
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clip_frac": 0.0}
        count = 0
        for _ in range(epochs):
            perm = torch.randperm(B, device=self.device)
            for start in range(0, B, mb_size):
                idx = perm[start:start + mb_size]
                dist, values = self.policy(obs_index(obs, idx))
                log_ratio = dist.log_prob(actions[idx]) - old_logp[idx]
                adv = normalize_advantages(advantages[idx]) if c.norm_adv else advantages[idx]
                pg_loss = self.policy_loss(log_ratio, adv, progress)
                v_loss = self.value_loss(values, returns[idx], old_values[idx])
                entropy = dist.entropy().mean()
                loss = pg_loss - c.ent_coef * entropy + c.vf_coef * v_loss
                self.apply_gradients(loss)
                with torch.no_grad():
                    approx_kl = ((log_ratio.exp() - 1) - log_ratio).mean()
                    clip_frac = ((log_ratio.exp() - 1.0).abs() > c.clip_coef).float().mean()
                for key, value in (("policy_loss", pg_loss), ("value_loss", v_loss), ("entropy", entropy),
                                   ("approx_kl", approx_kl), ("clip_frac", clip_frac)):
                    stats[key] += value.detach()
                count += 1
            if c.target_kl is not None and float(approx_kl) > c.target_kl:
                break
        return {k: float(v) / count for k, v in stats.items()}


register_quick_task(QuickTask("PPO", "gym/CartPole-v1", 100_000,
                              "500 (rl-baselines3-zoo benchmark, PPO CartPole-v1, 100k steps)"))
