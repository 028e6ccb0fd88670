"""Implicit Q-learning pieces shared by offline agents (P-IQL in the CPL paper, offline ArCHer):
the expectile value loss and the advantage-weighted-regression weights (Kostrikov et al., 2022)."""

from __future__ import annotations

import torch


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """IQL's asymmetric squared loss ``|tau - 1(u < 0)| u^2`` on ``u = Q(s, a) - V(s)``
    (Kostrikov et al., 2022, eq. 5)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


def awr_weights(advantages: torch.Tensor, beta: float, clip: float) -> torch.Tensor:
    """Policy-extraction weights ``min(exp(A / beta), clip)`` (IQL eq. 7, temperature form of the CPL
    reference code: beta = 1/3 multiplies the advantage by 3)."""
    return torch.exp(advantages / beta).clamp(max=clip)
