"""P-IQL, the CPL paper's RL baseline: a Bradley-Terry reward model on summed predicted rewards, and IQL
(Kostrikov et al., 2022) on the dataset's transitions relabelled with the learned reward.

As in the reference code, IQL trains from the first step, alongside the reward model for its first
``reward_steps`` (on the current reward, detached), then on the frozen reward. Each step updates V (expectile
towards the target critics' min Q), then the actor (AWR with V from before its update; its learning rate
follows a cosine over ``actor_cosine_steps``), then the critics towards ``r + gamma V(s')`` read after V's
update, then the target critics (Polyak). Transitions are the consecutive steps inside each sampled segment
(``s_t, a_t, s_{t+1}``, ``t < L - 1``); each IQL step trains on ``iql_batch_size`` of them.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from zoo.agents import register_agent
from zoo.agents.config import positive, valid_hidden
from zoo.agents.cpl.family import PreferenceConfig, PreferenceLearner
from zoo.agents.renames import Rename, RenamedHyperparameters
from zoo.errors import ConfigError
from zoo.losses import awr_weights, expectile_loss
from zoo.nets import QNetwork, adam, flatten_time, make_encoder, mlp, polyak_update, time_slice
from zoo.rollout import obs_index


# ----------------------------------------------------------------------------- losses
def preference_reward_loss(reward_sum_a: torch.Tensor, reward_sum_b: torch.Tensor,
                           labels: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry cross-entropy on summed predicted rewards: ``P(a > b) = sigmoid(R_a - R_b)``
    (Christiano et al., 2017, eq. 1; the P-IQL reward model)."""
    return F.binary_cross_entropy_with_logits(reward_sum_a - reward_sum_b, labels)


# ----------------------------------------------------------------------------- config
@dataclasses.dataclass
class PIQLConfig(RenamedHyperparameters, PreferenceConfig):
    """The reference's P-IQL settings (networks 512x512, orthogonal gain 1); the actor is CPL's."""

    reward_steps: int = 50_000
    expectile: float = 0.7
    #: AWR weights exp(A / awr_temperature) (the reference's beta 1/3: the advantage times 3), capped at clip_score
    awr_temperature: float = 1.0 / 3.0
    clip_score: float = 100.0
    tau: float = 0.005
    gamma: float = 0.99
    critic_lr: float = 3e-4
    learning_rate: float = 3e-4
    critic_hidden: tuple[int, ...] = (512, 512)
    iql_batch_size: int = 256  # transitions per IQL step, drawn from the sampled segments (IQL's batch of 256)
    #: the actor's learning rate decays from learning_rate to 0 along a cosine over this many steps (the
    #: reference: its whole 500k-step run); 0 keeps it constant
    actor_cosine_steps: int = 500_000

    LEGACY_DEFAULTS = {"actor_cosine_steps": 0}
    #: CPL's settings, which P-IQL's config carried (unused) before it stopped inheriting CPL's
    REMOVED_FIELDS = ("variant", "alpha", "lam", "bc_coeff", "cpl_lr_multiplier", "bc_steps", "warmup_steps",
                      "score_mode")
    RENAMED = {"beta": Rename("awr_temperature", float, "the same value: the weights were already exp(A / beta)")}

    def validate(self) -> None:
        super().validate()
        positive(self, "awr_temperature", "clip_score", "tau", "critic_lr", "iql_batch_size")
        valid_hidden(self, "critic_hidden")
        if not 0.0 < self.expectile < 1.0 or not 0.0 <= self.gamma <= 1.0 or self.reward_steps < 0:
            raise ConfigError("expectile must lie in (0, 1), gamma in [0, 1] and reward_steps be >= 0")
        if self.actor_cosine_steps < 0:
            raise ConfigError(f"actor_cosine_steps must be >= 0, got {self.actor_cosine_steps}")


class StateMLP(nn.Module):
    """``V(s)``."""

    def __init__(self, observation_space, hidden):
        super().__init__()
        self.encoder = make_encoder(observation_space)
        self.net = mlp(self.encoder.out_dim, hidden, 1, "relu", orthogonal=True, hidden_gain=1.0, output_gain=1.0)

    def forward(self, obs) -> torch.Tensor:
        return self.net(self.encoder(obs)).squeeze(-1)


# ----------------------------------------------------------------------------- agent
@register_agent
class PIQL(PreferenceLearner):
    """Preference-based IQL: a reward model trained for ``reward_steps``, and IQL on its rewards throughout."""

    config_class = PIQLConfig
    config: PIQLConfig

    def _build(self) -> None:
        super()._build()
        c = self.config
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        net = lambda: QNetwork(obs_space, act_space, c.critic_hidden, "relu", orthogonal_gain=1.0)  # noqa: E731
        self.reward_model = net().to(self.device)  # r(s, a)
        self.q1, self.q2 = net().to(self.device), net().to(self.device)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.value = StateMLP(obs_space, c.critic_hidden).to(self.device)
        self.reward_optimizer = adam(self.reward_model.parameters(), lr=c.critic_lr)
        self.q_optimizer = adam(list(self.q1.parameters()) + list(self.q2.parameters()), lr=c.critic_lr)
        self.value_optimizer = adam(self.value.parameters(), lr=c.critic_lr)

    def state_modules(self) -> dict[str, nn.Module]:
        return dict(super().state_modules(), reward_model=self.reward_model, q1=self.q1, q2=self.q2,
                    q1_target=self.q1_target, q2_target=self.q2_target, value=self.value)

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return dict(super().state_optimizers(), reward=self.reward_optimizer, q=self.q_optimizer,
                    value=self.value_optimizer)

    def segment_rewards(self, obs, actions: torch.Tensor) -> torch.Tensor:
        """Predicted rewards ``(B, L)`` of a batch of segments."""
        B, L = actions.shape[:2]
        return self.reward_model(flatten_time(obs), actions.reshape(B * L, -1)).reshape(B, L)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        metrics = self._reward_step(batch) if self.num_timesteps < self.config.reward_steps else {}
        return {**metrics, **self._iql_step(batch)}

    def actor_lr(self) -> float:
        """The actor's learning rate at this step: a cosine from ``learning_rate`` to 0 over ``actor_cosine_steps``."""
        c = self.config
        if not c.actor_cosine_steps:
            return c.learning_rate
        return c.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(self.num_timesteps, c.actor_cosine_steps)
                                                       / c.actor_cosine_steps))

    def _reward_step(self, batch) -> dict[str, torch.Tensor]:
        sum_a = self.segment_rewards(batch["obs_a"], batch["act_a"]).sum(1)
        sum_b = self.segment_rewards(batch["obs_b"], batch["act_b"]).sum(1)
        loss = preference_reward_loss(sum_a, sum_b, batch["label"])
        self.reward_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.reward_optimizer.step()
        with torch.no_grad():
            accuracy = ((sum_a > sum_b).float() == (batch["label"] > 0.5).float()).float().mean()
        return {"reward_loss": loss.detach(), "reward_accuracy": accuracy}

    def _iql_step(self, batch) -> dict[str, torch.Tensor]:
        c = self.config
        obs = {k: torch.cat([batch["obs_a"][k], batch["obs_b"][k]]) for k in batch["obs_a"]} \
            if isinstance(batch["obs_a"], dict) else torch.cat([batch["obs_a"], batch["obs_b"]])
        actions = torch.cat([batch["act_a"], batch["act_b"]]).clamp(-1.0, 1.0)
        L = actions.shape[1]
        s, a = flatten_time(time_slice(obs, 0, L - 1)), flatten_time(actions[:, :L - 1])
        s_next = flatten_time(time_slice(obs, 1, L))
        if a.shape[0] > c.iql_batch_size:
            pick = torch.as_tensor(self.np_random.choice(a.shape[0], c.iql_batch_size, replace=False), device=a.device)
            s, a, s_next = obs_index(s, pick), a[pick], obs_index(s_next, pick)
        with torch.no_grad():
            reward = self.reward_model(s, a)
            q_target = torch.min(self.q1_target(s, a), self.q2_target(s, a))
        # value: expectile regression towards the target Q
        v = self.value(s)
        v_loss = expectile_loss(q_target - v, c.expectile)
        self.value_optimizer.zero_grad(set_to_none=True)
        v_loss.backward()
        self.value_optimizer.step()
        # policy: advantage-weighted regression, with V from before its update
        weights = awr_weights(q_target - v.detach(), c.awr_temperature, c.clip_score)
        policy_loss = -(weights * self.actor.log_prob(s, a)).mean()
        for group in self.optimizer.param_groups:
            group["lr"] = self.actor_lr()
        self.optimizer.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.optimizer.step()
        # Q: one-step TD towards r + gamma V(s') with the updated V (no terminations inside MetaWorld segments);
        # the two critics' losses averaged
        with torch.no_grad():
            target = reward + c.gamma * self.value(s_next)
        q_loss = 0.5 * (F.mse_loss(self.q1(s, a), target) + F.mse_loss(self.q2(s, a), target))
        self.q_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_optimizer.step()
        polyak_update(self.q1, self.q1_target, c.tau)
        polyak_update(self.q2, self.q2_target, c.tau)
        return {"value_loss": v_loss.detach(), "q_loss": q_loss.detach(), "policy_loss": policy_loss.detach()}
