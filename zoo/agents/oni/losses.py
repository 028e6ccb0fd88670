"""ONI's losses and reward arithmetic as pure functions on tensors.

ONI (Zheng et al., 2024, "Online Intrinsic Rewards for Decision Making Agents from Large Language Model
Feedback") distils LLM feedback on NetHack messages into an intrinsic reward model: a classifier trained with
cross-entropy on the LLM's helpful / not-helpful labels, or a scalar ranker trained with Motif's soft-label
Bradley-Terry objective on the LLM's pair preferences (Klissarov et al., 2023, "Motif: Intrinsic Motivation
from Artificial Intelligence Feedback", eq. 1). The learner's reward is the clipped environment reward plus the
intrinsic one divided by a power of the message's count in the episode (Motif eq. 2, kept by ONI). The
ranker's output is z-scored with running moments and thresholded before use, as Motif and ONI describe (the reference
code computes this but, by a misspelt variable, trains on the raw output).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "bradley_terry_loss",
    "classification_loss",
    "intrinsic_reward",
    "normalize_ranking_reward",
    "update_running_moments",
]


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ONI-classification's objective: the mean cross-entropy ``-mean_i log softmax(z_i)[y_i]`` of the 2 logits
    ``z_i`` (``(N, 2)``) against the LLM's labels ``y_i`` in ``{0, 1}`` (1: helpful) (ONI-classification)."""
    if logits.dim() != 2 or logits.shape[-1] != 2:
        raise ValueError(f"logits must have shape (N, 2), got {tuple(logits.shape)}")
    return F.cross_entropy(logits, labels.long())


def bradley_terry_loss(reward_a: torch.Tensor, reward_b: torch.Tensor, prefer_a: torch.Tensor) -> torch.Tensor:
    """Soft-label Bradley-Terry loss (Motif eq. 1, used by ONI-ranking):
    ``-mean[p log sigma(r_a - r_b) + (1 - p) log sigma(r_b - r_a)]``, with ``P(a > b) = sigma(r_a - r_b)`` and
    ``p = prefer_a`` the LLM's preference for ``a``: 1 (a better), 0 (b better), 0.5 (a tie, Motif's
    ``log sqrt(P(a > b) P(b > a))`` term)."""
    if reward_a.shape != reward_b.shape or reward_a.shape != prefer_a.shape:
        raise ValueError(f"reward_a, reward_b and prefer_a must share a shape, got {tuple(reward_a.shape)}, "
                         f"{tuple(reward_b.shape)} and {tuple(prefer_a.shape)}")
    diff = reward_a - reward_b
    p = prefer_a.to(diff.dtype)
    return -(p * F.logsigmoid(diff) + (1 - p) * F.logsigmoid(-diff)).mean()


def intrinsic_reward(env_reward: torch.Tensor, int_reward: torch.Tensor, counts: torch.Tensor, *,
                     c_ext: float, c_int: float, beta: float = 3.0, clip: float = 10.0) -> torch.Tensor:
    """The learner's reward ``r = c_ext clip(r_env, -clip, clip) + c_int r_int(m_t) / N(m_t)^beta`` (ONI's
    reward, after Motif eq. 2), ``N(m_t) >= 1`` the count of the message of ``s_t`` in its episode so far, this step
    included (:class:`zoo.agents.oni.counts.MessageCounter`). All three tensors share a shape."""
    if env_reward.shape != int_reward.shape or env_reward.shape != counts.shape:
        raise ValueError(f"env_reward, int_reward and counts must share a shape, got {tuple(env_reward.shape)}, "
                         f"{tuple(int_reward.shape)} and {tuple(counts.shape)}")
    if clip <= 0:
        raise ValueError(f"clip must be positive, got {clip}")
    decay = counts.to(int_reward.dtype).clamp(min=1.0).pow(-beta)
    return c_ext * env_reward.to(int_reward.dtype).clamp(-clip, clip) + c_int * int_reward * decay


def update_running_moments(mean: torch.Tensor, var: torch.Tensor, count: float,
                           batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Running mean and variance merged with ``batch`` (Chan et al., 1979, the pairwise update):
    ``delta = m_B - m``, ``n' = n + n_B``, ``m' = m + delta n_B / n'``,
    ``v' = (v n + v_B n_B + delta^2 n n_B / n') / n'``, with the batch's population variance ``v_B``.
    Returns ``(mean', var', count')``; an empty batch changes nothing."""
    x = batch.detach().reshape(-1).to(mean.dtype)
    n_b = x.numel()
    if n_b == 0:
        return mean, var, count
    batch_mean = x.mean()
    batch_var = x.var(unbiased=False)
    delta = batch_mean - mean
    total = count + n_b
    new_mean = mean + delta * (n_b / total)
    m2 = var * count + batch_var * n_b + delta.square() * (count * n_b / total)
    return new_mean, m2 / total, total


def normalize_ranking_reward(reward: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, *,
                             threshold: float | None = -0.5, eps: float = 1e-8) -> torch.Tensor:
    """ONI-ranking's intrinsic reward from the ranker's raw output (Motif eq. 2's ``1[r >= eps] r`` on the
    normalised reward): ``z = (r - mean) / sqrt(var + eps)``, then ``z 1[z > threshold]`` (``threshold=None``:
    no threshold). The reference's running-moment normaliser, its default threshold -0.5 and its strict ``>``."""
    z = (reward - mean) / torch.sqrt(var + eps)
    if threshold is None:
        return z
    return torch.where(z > threshold, z, torch.zeros_like(z))
