"""The on-policy family: actor-critics trained on fresh rollouts with GAE and minibatch epochs (PPO, GBRL).

The update is split into overridable pieces so that an agent changing one of
them overrides that method alone: ``build_policy`` (the function class: an
MLP, a tree ensemble), ``process_rewards`` (e.g. intrinsic rewards),
``compute_advantages``, ``policy_loss`` (e.g. a learned objective),
``value_loss``, ``apply_gradients`` (a gradient step, or growing a tree),
``before_update`` / ``after_update`` (schedules, statistics).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from zoo.agents.base import Agent
from zoo.agents.config import AgentConfig, in_unit_interval, positive
from zoo.agents.normalize import RewardScaler
from zoo.errors import ConfigError
from zoo.losses import normalize_advantages, ppo_clip_loss, value_loss
from zoo.nets import adam, flatten_time
from zoo.returns import gae
from zoo.rollout import Obs, PolicyStep, Rollout, RolloutCollector, obs_index


@dataclasses.dataclass
class OnPolicyConfig(AgentConfig):
    """What every on-policy learner shares (CleanRL ``ppo.py``'s defaults): rollouts, GAE, the clipped
    objective's settings, the update schedule; ``learning_rate`` / ``adam_eps`` are the optimizer's (for GBRL, the
    Gaussian log-std's)."""

    num_envs: int = 4
    num_steps: int = 128
    learning_rate: float = 2.5e-4
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
    log_std_init: float = 0.0
    normalize_reward: bool = False
    adam_eps: float = 1e-5
    #: env steps the annealing schedules run over (None: the first ``learn()`` call's total)
    schedule_steps: int | None = None

    def validate(self) -> None:
        positive(self, "num_envs", "num_steps", "learning_rate", "num_minibatches", "update_epochs", "clip_coef",
                 "max_grad_norm", "adam_eps")
        in_unit_interval(self, "gamma", "gae_lambda")
        check_minibatches(self, self.num_envs)
        if self.schedule_steps is not None and self.schedule_steps < 1:
            raise ConfigError(f"hyperparameter 'schedule_steps' must be positive (or None), got {self.schedule_steps}")


def check_minibatches(config: OnPolicyConfig, num_envs: int) -> None:
    """The rollout (``num_envs * num_steps``) must split into equal minibatches of at least 2 samples."""
    batch = num_envs * config.num_steps
    if batch % config.num_minibatches or batch // config.num_minibatches < 2:
        raise ConfigError(f"num_envs * num_steps = {num_envs} * {config.num_steps} = {batch} must split into "
                          f"num_minibatches = {config.num_minibatches} equal minibatches of at least 2 samples")


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


class OnPolicyAgent(Agent):
    """Base of on-policy actor-critics (PPO, GBRL): rollouts on the agent's device, GAE, minibatch epochs of a
    clipped objective; subclasses give the policy (``build_policy``) and may override any piece below."""

    config_class = OnPolicyConfig
    config: OnPolicyConfig

    def _build(self) -> None:
        c = self.config
        check_minibatches(c, self.env.num_envs)  # the env passed in may have another num_envs than the config
        self.policy = self.build_policy().to(self.device)
        self.optimizer = self.build_optimizer()
        self.collector = RolloutCollector(self.env, c.num_steps)
        self.reward_scaler = RewardScaler(self.env.num_envs, c.gamma).to(self.device) if c.normalize_reward else None

    def build_policy(self) -> nn.Module:
        """The actor-critic: ``policy(obs) -> (distribution, value)``, with ``value(obs)``, ``env_action`` and
        ``mode`` (see :class:`ActionHead`)."""
        raise NotImplementedError

    def build_optimizer(self) -> torch.optim.Optimizer | None:
        return adam(self.policy.parameters(), lr=self.config.learning_rate, eps=self.config.adam_eps)

    def state_modules(self) -> dict[str, nn.Module]:
        modules = {"policy": self.policy}
        if self.reward_scaler is not None:
            modules["reward_scaler"] = self.reward_scaler
        return modules

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def training_state(self) -> dict:
        """The window of finished episodes behind ``return_mean`` (observation and reward statistics are
        modules, in every checkpoint)."""
        return {"episode_stats": self.collector.stats.state_dict()}

    def load_training_state(self, state: dict) -> None:
        self.collector.stats.load_state_dict(state["episode_stats"])
        if self.reward_scaler is not None:  # the envs start new episodes: their discounted returns restart
            self.reward_scaler.returns.zero_()

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

    def before_update(self, progress: float) -> None:
        """Before each rollout and update, at ``progress`` = fraction of the schedule horizon done (PPO anneals
        its learning rate here)."""

    # -- training -----------------------------------------------------------------
    def remaining_steps(self, total_steps: int) -> int:
        """The budget left to reach what ``learn(total_steps)`` from scratch runs: whole rollouts, at least one
        (0 when the agent is there)."""
        batch = self.config.num_steps * self.env.num_envs
        return max(0, max(1, total_steps // batch) * batch - self.num_timesteps)

    def default_schedule_steps(self, total_steps: int) -> int:
        """The first ``learn()`` call's budget in whole rollouts (what the call runs), from the steps done."""
        batch = self.config.num_steps * self.env.num_envs
        return self.num_timesteps + max(1, total_steps // batch) * batch

    def _learn(self, total_steps: int, report: Callable[[dict], bool]) -> None:
        c = self.config
        batch = c.num_steps * self.env.num_envs
        if total_steps < batch:  # (larger budgets are rounded down to whole rollouts, as the docs say)
            warnings.warn(f"{type(self).__name__} learns in whole rollouts of num_envs x num_steps = {batch} env "
                          f"steps: learn({total_steps}) runs one rollout, {batch} steps", stacklevel=3)
        for _ in range(max(1, total_steps // batch)):
            progress = self.schedule_progress()
            self.before_update(progress)
            rollout = self.collector.collect(self._policy_step, value_fn=self.policy.value)
            self.num_timesteps += batch
            metrics = self.update(rollout, progress)
            self.after_update(rollout)
            metrics.update(self.collector.stats.summary())
            if not report(metrics):
                break

    def after_update(self, rollout: Rollout) -> None:
        """After each update (PPO's observation statistics learn from the rollout here)."""

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
