"""Token-level PPO, the ArCHer paper's on-policy baseline: every token of an utterance is one action (the
stop token that ends it is not sampled as an action, as in ArCHer's actor), the game's reward of a turn
arrives at the turn's last token, and a value head on the actor's hidden states
estimates each token's value; GAE over the tokens of a dialogue and PPO's clipped objective train the actor
and the head together (the RLHF recipe of a causal LM with a scalar value head, applied to multi-turn games).

The ArCHer reference repository has no PPO code and the paper states no settings for it, so the defaults
here are ours: PPO's clip 0.2, 4 epochs, GAE lambda 0.95 per token, the game's discount ``gamma`` (ArCHer's
0.95) between turns and 1 inside a turn, value coefficient 0.5, no KL penalty, no entropy bonus. Old
log-probabilities and values are recomputed after the rollout with the sampling policy's weights (the actor
samples at ``temperature`` 1 and stays in eval mode, so they are the behaviour policy's).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.agents import register_agent
from zoo.agents.config import in_unit_interval, positive
from zoo.agents.language import (ActorTrainingSettings, LanguageAgent,
                                 LanguageAgentConfig)
from zoo.envs.text.dialogues import Turn
from zoo.errors import ConfigError
from zoo.llm.logprobs import score_token_ids
from zoo.losses import ppo_clip_loss, value_loss
from zoo.nets import adam


# ----------------------------------------------------------------------------- losses
def token_gae(rewards: torch.Tensor, values: torch.Tensor, discounts: torch.Tensor,
              lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(lambda) over one dialogue's tokens in order (Schulman et al., 2016, eq. 16 with a per-step
    discount): ``delta_k = r_k + d_k V_{k+1} - V_k``, ``A_k = delta_k + d_k lambda A_{k+1}``, ``V_K = 0``.

    ``discounts[k]`` is 1 inside an utterance, ``gamma`` after its last token, 0 after the dialogue's last
    one; ``rewards`` is nonzero only at last tokens. Returns ``(advantages, returns = A + V)``, each ``(K,)``.
    """
    advantages = torch.zeros_like(values)
    next_value, next_advantage = values.new_zeros(()), values.new_zeros(())
    for k in range(values.shape[0] - 1, -1, -1):
        delta = rewards[k] + discounts[k] * next_value - values[k]
        next_advantage = delta + discounts[k] * lam * next_advantage
        advantages[k] = next_advantage
        next_value = values[k]
    return advantages, advantages + values


def masked_ppo_losses(log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                      values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                      clip_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (eq. 7) and ``0.5 (V - R)^2`` averaged over the tokens where ``mask`` is 1, for
    ``(B, T)`` tensors of utterance tokens (padding masked out)."""
    keep = mask.bool()
    pg = ppo_clip_loss(log_probs[keep] - old_log_probs[keep], advantages[keep], clip_coef)
    return pg, value_loss(values[keep], returns[keep])


# ----------------------------------------------------------------------------- config
#: CPU-sized settings for the tiny actor (the same rollout shape as ArCHer's tiny preset)
TINY_TOKEN_PPO = {"actor_lr": 1e-4, "num_envs": 32, "rollout_size": 32, "batch_size": 64, "grad_accum_steps": 1,
                  "max_new_tokens": 16}


@dataclasses.dataclass
class TokenPPOConfig(ActorTrainingSettings, LanguageAgentConfig):
    """Token-level PPO's settings (ours: the reference code has none); ``actor_epochs`` are PPO's epochs over
    each rollout; each optimizer step accumulates ``grad_accum_steps`` minibatches of ``batch_size`` turns."""

    actor_epochs: int = 4
    value_lr: float = 1e-3
    gamma: float = 0.95
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    vf_coef: float = 0.5
    norm_adv: bool = True
    #: the value head reads the actor's hidden states without sending gradients into the actor (True), or
    #: trains the shared trunk as well (False, the usual RLHF value head)
    detach_value: bool = True

    TINY_DEFAULTS: typing.ClassVar[dict[str, Any]] = TINY_TOKEN_PPO

    def validate(self) -> None:
        super().validate()
        positive(self, "value_lr", "clip_coef")
        in_unit_interval(self, "gamma", "gae_lambda")
        if self.vf_coef < 0:
            raise ConfigError(f"vf_coef must be >= 0, got {self.vf_coef}")
        if self.temperature != 1.0:
            raise ConfigError("TokenPPO samples at temperature 1, so that the scored log-probabilities are the "
                              f"behaviour policy's; got temperature={self.temperature}")


# ----------------------------------------------------------------------------- agent
@register_agent
class TokenPPO(LanguageAgent):
    """Token-level PPO on a text game (the ArCHer paper's on-policy baseline): the actor's tokens are the
    actions, a linear value head reads the actor's hidden state before each token."""

    config_class = TokenPPOConfig
    config: TokenPPOConfig

    def _build(self) -> None:
        super()._build()
        c = self.config
        self.actor_optimizer = self.actor_adam(c.actor_lr)
        torch.manual_seed(self.seed + 3)
        self.value_head = nn.Linear(int(self.actor.config.hidden_size), 1).to(self.device)
        self.value_optimizer = adam(self.value_head.parameters(), c.value_lr)

    def state_modules(self) -> dict[str, nn.Module]:
        return {**super().state_modules(), "value_head": self.value_head}

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().state_optimizers(), "value": self.value_optimizer}

    def score(self, turns: list[Turn]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_probs, values, mask)``, each ``(B, T)``, of the turns' sampled tokens under the current actor."""
        log_probs, mask, hidden = score_token_ids(self.actor, self.tokenizer, [t.observation for t in turns],
                                                  [list(t.token_ids) for t in turns], return_hidden=True)
        if self.config.detach_value:
            hidden = hidden.detach()
        return log_probs, self.value_head(hidden.float()).squeeze(-1), mask

    def _iteration(self, dialogues: list[list[Turn]]) -> dict[str, float]:
        c = self.config
        turns = [t for d in dialogues for t in d]
        if any(not t.token_ids for t in turns):
            raise ConfigError("TokenPPO learns from its own sampled tokens; a turn without token_ids reached it")
        # the behaviour policy's log-probs and values, then GAE over each dialogue's tokens
        with torch.no_grad():
            scored = [self.score(turns[i:i + c.batch_size]) for i in range(0, len(turns), c.batch_size)]
        width = max(s[0].shape[1] for s in scored)
        pad = lambda x: nn.functional.pad(x, (0, width - x.shape[1]))  # noqa: E731
        old_log_probs, old_values, mask = (torch.cat([pad(s[j]) for s in scored]) for j in range(3))
        advantages, returns = torch.zeros_like(old_values), torch.zeros_like(old_values)
        row = 0
        for dialogue in dialogues:
            lengths = [len(t.token_ids) for t in dialogue]
            rows = range(row, row + len(dialogue))
            values = torch.cat([old_values[r, :n] for r, n in zip(rows, lengths)])
            rewards, discounts = torch.zeros_like(values), torch.ones_like(values)
            ends = np.cumsum(lengths) - 1
            for turn, end in zip(dialogue, ends):
                rewards[end] = turn.reward
                discounts[end] = 0.0 if turn.done else c.gamma
            adv, ret = token_gae(rewards, values, discounts, c.gae_lambda)
            for r, start, n in zip(rows, ends - np.array(lengths) + 1, lengths):
                advantages[r, :n], returns[r, :n] = adv[start:start + n], ret[start:start + n]
            row += len(dialogue)
        if c.norm_adv:
            keep = mask.bool()
            advantages = torch.where(keep, (advantages - advantages[keep].mean()) / (advantages[keep].std() + 1e-8),
                                     advantages)
        # PPO epochs over the turns: each step accumulates grad_accum_steps minibatches (LanguageAgent.accumulate)
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "approx_kl": 0.0}
        count = 0

        def minibatch_loss(idx: np.ndarray) -> torch.Tensor:
            nonlocal count
            if len(idx) == 0:  # a short last step splits into fewer minibatches than grad_accum_steps
                return torch.zeros((), device=self.device, requires_grad=True)
            log_probs, values, m = self.score([turns[i] for i in idx])
            t, sel = log_probs.shape[1], torch.as_tensor(idx, device=self.device)
            pg, v = masked_ppo_losses(log_probs, old_log_probs[sel, :t], advantages[sel, :t], values,
                                      returns[sel, :t], m, c.clip_coef)
            with torch.no_grad():
                log_ratio = (log_probs - old_log_probs[sel, :t])[m.bool()]
                stats["approx_kl"] += float(((log_ratio.exp() - 1) - log_ratio).mean())
            stats["policy_loss"] += float(pg.detach())
            stats["value_loss"] += float(v.detach())
            count += 1
            return pg + c.vf_coef * v

        step_size = c.batch_size * c.grad_accum_steps
        for _ in range(c.actor_epochs):
            order = self.rng.permutation(len(turns))
            for start in range(0, len(turns), step_size):
                chunks = iter(np.array_split(order[start:start + step_size], c.grad_accum_steps))
                self.accumulate(lambda: minibatch_loss(next(chunks)))
                # the actor and the value head are clipped apart, so that the head's gradient cannot shrink
                # the policy's step
                self.clip_and_step(self.actor_optimizer, self.actor)
                self.clip_and_step(self.value_optimizer, self.value_head)
        return {k: v / max(count, 1) for k, v in stats.items()}
