"""Losses and likelihoods that several agents share, as pure functions on tensors.

Each function cites the equation it implements; an agent's own losses stay in
its module. Conventions: advantage-weighted regression weights are
``exp(A / temperature)`` (a temperature, never an inverse temperature), capped
at a maximum weight.
"""

from __future__ import annotations

import math

import torch

__all__ = ["awr_weights", "expectile_loss", "tanh_gaussian_log_prob", "ppo_clip_loss", "value_loss",
           "normalize_advantages", "clamped_ratio", "appo_policy_loss", "appo_value_loss",
           "normalize_advantages_floored"]


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """IQL's asymmetric squared loss ``mean(|tau - 1(u < 0)| u^2)`` on ``u = Q(s, a) - V(s)`` (Kostrikov et al.,
    2022, "Offline RL with Implicit Q-Learning", eq. 5, with ``tau = expectile``)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


def awr_weights(advantages: torch.Tensor, temperature: float, max_weight: float | None = None) -> torch.Tensor:
    """Advantage-weighted regression weights ``min(exp(A / temperature), max_weight)``: AWR's
    ``exp((R - V(s)) / beta)`` with ``beta = temperature`` (Peng et al., 2019, Algorithm 1) and IQL's policy
    extraction ``exp(beta (Q - V))`` with the inverse temperature ``beta = 1 / temperature`` (Kostrikov et al.,
    2022, eq. 7). ``max_weight=None`` leaves them unclipped. No detach here: callers pass advantages that carry
    no gradient."""
    weights = torch.exp(advantages / temperature)
    return weights if max_weight is None else weights.clamp(max=max_weight)


def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, *,
                           std: torch.Tensor | None = None, squashed: torch.Tensor | None = None,
                           scale: torch.Tensor | float | None = None) -> torch.Tensor:
    """``log pi(a|s)`` of a tanh-squashed Gaussian action ``a = scale * tanh(u) + bias``, ``u ~ N(mean, std^2)``
    per dimension, summed over the last axis (Haarnoja et al., 2018, SAC, appendix C, eq. 21):
    ``sum_i [log N(u_i; mean_i, std_i) - log(scale_i (1 - tanh(u_i)^2) + 1e-6)]``.

    ``std`` is ``exp(log_std)`` when the caller has it already (so that sampling and the likelihood share it);
    ``squashed`` is ``tanh(u)`` when known (e.g. the clamped dataset action whose ``atanh`` gave ``u``); ``scale``
    (None: 1) is the action space's half-width. The ``1e-6`` keeps the log finite where ``|tanh u| = 1``.
    """
    std = log_std.exp() if std is None else std
    y = torch.tanh(u) if squashed is None else squashed
    jacobian = 1 - y.square()
    if scale is not None:
        jacobian = scale * jacobian
    normal = (-0.5 * ((u - mean) / std).square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    return normal - torch.log(jacobian + 1e-6).sum(-1)


def ppo_clip_loss(log_ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float) -> torch.Tensor:
    """Negated clipped surrogate objective, Schulman et al. (2017) eq. 7:
    ``-mean(min(r A, clip(r, 1 - eps, 1 + eps) A))`` with ``r = exp(log_ratio)``."""
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages
    return -torch.min(unclipped, clipped).mean()


def value_loss(values: torch.Tensor, returns: torch.Tensor, old_values: torch.Tensor | None = None,
               clip_coef: float | None = None) -> torch.Tensor:
    """``0.5 * mean((V - R)^2)``; with ``clip_coef``, the pessimistic clipped form of the PPO reference code
    (``max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)``)."""
    unclipped = (values - returns).square()
    if clip_coef is None or old_values is None:
        return 0.5 * unclipped.mean()
    clipped = (old_values + (values - old_values).clamp(-clip_coef, clip_coef) - returns).square()
    return 0.5 * torch.max(unclipped, clipped).mean()


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-minibatch advantage normalisation (zero mean, unit std)."""
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def clamped_ratio(log_ratio: torch.Tensor, ratio_min: float = 0.05, ratio_max: float = 20.0) -> torch.Tensor:
    """The importance ratio ``pi / mu = exp(log_ratio)`` clamped to ``[ratio_min, ratio_max]``, as APPO's
    learner does before anything else uses it (sample-factory's APPO, Petrenko et al., 2020: extreme ratios are
    treated as noise); the clamped ratio feeds both the surrogate and V-trace's ``rho`` / ``c`` (Espeholt et
    al., 2018, eq. 1)."""
    return log_ratio.exp().clamp(ratio_min, ratio_max)


def appo_policy_loss(ratio: torch.Tensor, advantages: torch.Tensor, clip_ratio: float = 0.1) -> torch.Tensor:
    """APPO's negated clipped surrogate, Schulman et al. (2017) eq. 7 with sample-factory's asymmetric range:
    ``-mean(min(r A, clip(r, 1 / (1 + eps), 1 + eps) A))``, ``eps = clip_ratio`` (the lower bound stays positive
    for any ``eps``, unlike ``1 - eps``). ``ratio`` is the already clamped ratio (:func:`clamped_ratio`)."""
    high = 1.0 + clip_ratio
    low = 1.0 / high
    return -torch.min(ratio * advantages, ratio.clamp(low, high) * advantages).mean()


def appo_value_loss(values: torch.Tensor, targets: torch.Tensor, old_values: torch.Tensor,
                    clip_value: float | None = 1.0) -> torch.Tensor:
    """sample-factory's clipped value loss: ``mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2))``
    with V-trace targets ``R = v_s`` (Espeholt et al., 2018, eq. 1) and ``c = clip_value`` (None: the plain
    ``mean((V - R)^2)``). Unlike :func:`value_loss` there is no factor 1/2: the value coefficient scales it."""
    unclipped = (values - targets).square()
    if clip_value is None:
        return unclipped.mean()
    clipped = (old_values + (values - old_values).clamp(-clip_value, clip_value) - targets).square()
    return torch.max(unclipped, clipped).mean()


def normalize_advantages_floored(advantages: torch.Tensor, min_std: float = 1e-3) -> torch.Tensor:
    """Advantages standardised over the minibatch with a floor on the std: ``(A - mean A) / max(std A, min_std)``
    (sample-factory's APPO, so that a batch of near-equal advantages is not blown up; unbiased std)."""
    return (advantages - advantages.mean()) / advantages.std().clamp_min(min_std)
