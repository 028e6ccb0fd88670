"""ArCHer's losses (Zhou et al., 2024, "ArCHer: Training Language Model Agents via Hierarchical Multi-Turn RL"),
as pure functions on per-utterance tensors of shape ``(B,)`` (per-token ``(B, T)`` where noted)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from zoo.losses import awr_weights, expectile_loss


def critic_loss(q: tuple[torch.Tensor, torch.Tensor], v: tuple[torch.Tensor, torch.Tensor], reward: torch.Tensor,
                done: torch.Tensor, target_v_next: tuple[torch.Tensor, torch.Tensor],
                target_q_policy: tuple[torch.Tensor, torch.Tensor], gamma: float) -> torch.Tensor:
    """The utterance-level critic's TD loss (paper eq. 3-4, reference code): for each head ``i``,
    ``(Q_i(s, a) - [r + gamma (1 - d) Vbar_i(s')])^2 + (V_i(s) - Qbar_i(s, a_pi))^2`` with ``a_pi`` freshly
    sampled from the current actor; each head is paired with its own target head (no min in the targets).
    Mean over the batch, summed over heads and terms."""
    loss = reward.new_zeros(())
    for i in range(2):
        q_target = reward + gamma * (1.0 - done.float()) * target_v_next[i].detach()
        loss = loss + F.mse_loss(q[i], q_target) + F.mse_loss(v[i], target_q_policy[i].detach())
    return loss


def iql_critic_loss(q: tuple[torch.Tensor, torch.Tensor], v: tuple[torch.Tensor, torch.Tensor],
                    reward: torch.Tensor, done: torch.Tensor, target_v_next: tuple[torch.Tensor, torch.Tensor],
                    target_q_data: tuple[torch.Tensor, torch.Tensor], gamma: float,
                    expectile: float = 0.9) -> torch.Tensor:
    """Offline ArCHer's critic (IQL, reference code): for each head ``i``,
    ``(Q_i(s, a) - [r + gamma (1 - d) Vbar_i(s')])^2`` plus the expectile loss (``expectile``, 0.9) of
    ``Qbar_i(s, a) - V_i(s)`` on the dataset's own action ``a`` (no policy sample, so no out-of-data action)."""
    loss = reward.new_zeros(())
    for i in range(2):
        q_target = reward + gamma * (1.0 - done.float()) * target_v_next[i].detach()
        loss = loss + F.mse_loss(q[i], q_target) + expectile_loss(target_q_data[i].detach() - v[i], expectile)
    return loss


def utterance_advantage(q_policy: tuple[torch.Tensor, torch.Tensor],
                        v: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``A(s, a_pi) = min(Q1, Q2)(s, a_pi) - min(V1, V2)(s)``, without gradient (the actor's signal)."""
    with torch.no_grad():
        return torch.minimum(*q_policy) - torch.minimum(*v)


def actor_loss(advantage: torch.Tensor, token_log_probs: torch.Tensor, token_mask: torch.Tensor,
               token_baseline: torch.Tensor | None = None) -> torch.Tensor:
    """REINFORCE with the utterance advantage, no ratio or clipping (paper eq. 5):
    ``-mean_b[A_b * sum_t log pi(a_t | s, a_<t)]`` over the utterance's tokens (``token_mask`` 1 on them).
    With a token-level baseline ``v_t`` (the paper's "ArCHer w/ baseline"), each token's weight is
    ``A - v_t`` instead of ``A``."""
    weight = advantage.detach()[:, None].expand_as(token_log_probs)
    if token_baseline is not None:
        weight = weight - token_baseline.detach()
    return -((weight * token_log_probs * token_mask).sum(1)).mean()


def token_baseline_loss(token_baseline: torch.Tensor, advantage: torch.Tensor,
                        token_mask: torch.Tensor) -> torch.Tensor:
    """The token-level baseline regressed to the utterance advantage, ``mean_{b,t} (mask (A - v_t))^2`` over
    all ``B x T`` positions, padding included (the reference code's normalisation)."""
    return ((advantage.detach()[:, None] - token_baseline) * token_mask).square().mean()


def awr_actor_loss(advantage: torch.Tensor, token_log_probs: torch.Tensor, token_mask: torch.Tensor,
                   temperature: float = 1.0, clip: float | None = None) -> torch.Tensor:
    """Offline ArCHer's actor: advantage-weighted regression on the dataset's utterances,
    ``-mean_b[w_b * sum_t log pi(a_t | s, a_<t)]`` with ``w_b = exp(A_b / temperature)``
    (:func:`zoo.losses.awr_weights`; the reference code's ``exp(beta A)`` with beta 1, so temperature 1,
    weights unclipped; ``clip`` caps them)."""
    weights = awr_weights(advantage.detach(), temperature, clip)
    return -(weights * (token_log_probs * token_mask).sum(1)).mean()


def filtered_trajectories(returns: torch.Tensor, quantile: float = 0.9) -> torch.Tensor:
    """Online filtered BC's selection: a mask of the trajectories whose return is at or above the
    ``quantile`` of the returns collected."""
    return returns >= torch.quantile(returns.float(), quantile)
