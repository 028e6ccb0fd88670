"""CPL's losses as pure functions (Hejna et al., 2024, "Contrastive Preference Learning").

Under the regret model of preferences with a maximum-entropy optimal policy,
the optimal advantage is ``A*(s, a) = alpha * log pi*(a|s)`` (eq. 4), so a
segment's score is ``S(sigma) = sum_t alpha * log pi(a_t|s_t)`` (discount 1)
and the preference likelihood a logistic model on score differences (eq. 5).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def segment_scores(log_probs: torch.Tensor, alpha: float, ref_log_probs: torch.Tensor | None = None) -> torch.Tensor:
    """``S = sum_t alpha * log pi(a_t|s_t)`` over the last (time) axis; with ``ref_log_probs``, CPL-KL's
    ``sum_t alpha * (log pi - log pi_ref)``. ``log_probs`` is ``(..., T)``."""
    if ref_log_probs is not None:
        log_probs = log_probs - ref_log_probs
    return alpha * log_probs.sum(-1)


def biased_pairwise_loss(score_preferred: torch.Tensor, score_rejected: torch.Tensor,
                         lam: float = 0.5) -> torch.Tensor:
    """``mean(-log sigmoid(S+ - lambda * S-))`` (eq. 6 with the conservative bias 0 < lambda <= 1).

    With ``lambda = 1`` this is the logistic loss on the score difference.
    """
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"lambda must lie in (0, 1], got {lam}")
    return F.softplus(-(score_preferred - lam * score_rejected)).mean()


def labelled_pairwise_loss(score_a: torch.Tensor, score_b: torch.Tensor, labels: torch.Tensor,
                           lam: float = 0.5) -> torch.Tensor:
    """The biased loss for pairs with soft labels (1: ``a`` preferred, 0: ``b`` preferred, 0.5: tie):
    ``label * L(a > b) + (1 - label) * L(b > a)``, as the reference code weights both orders."""
    a_wins = F.softplus(-(score_a - lam * score_b))
    b_wins = F.softplus(-(score_b - lam * score_a))
    return (labels * a_wins + (1.0 - labels) * b_wins).mean()


def ranked_batch_loss(scores: torch.Tensor, oracle_scores: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """Score mode: order the batch by oracle score and apply the biased loss to every ordered pair
    (segment ``i`` ranked above ``j``), averaged over the pairs. On two items this is the pairwise loss."""
    if scores.shape != oracle_scores.shape or scores.ndim != 1 or scores.numel() < 2:
        raise ValueError(f"scores and oracle_scores must be 1-D of equal length >= 2, got {tuple(scores.shape)} "
                         f"and {tuple(oracle_scores.shape)}")
    better = oracle_scores.unsqueeze(1) > oracle_scores.unsqueeze(0)  # [i, j]: i ranked above j
    logits = scores.unsqueeze(1) - lam * scores.unsqueeze(0)
    losses = F.softplus(-logits)
    count = better.sum()
    if count == 0:
        return scores.sum() * 0.0  # all tied: no ordered pair to learn from
    return (losses * better).sum() / count


def deterministic_log_prob(mean_action: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """The reference code's stand-in for ``log pi(a|s)`` with a deterministic actor: ``-||mu(s) - a||^2``
    summed over action dimensions (no 1/2, no sigma)."""
    return -(mean_action - action).square().sum(-1)


def bc_loss(log_probs: torch.Tensor) -> torch.Tensor:
    """Behaviour cloning: ``-mean log pi(a|s)`` over every step given."""
    return -log_probs.mean()


def sft_loss(log_probs_a: torch.Tensor, log_probs_b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The SFT baseline's loss (CPL paper, Sec. 5; reference code): behaviour cloning on the preferred
    segment of each pair, ``-mean log pi`` over the kept segments. ``a`` is kept when ``label >= 0.5`` and
    ``b`` when ``label <= 0.5``, so a tie keeps both at full weight. ``log_probs_*`` are per segment ``(B,)``."""
    keep_a, keep_b = (labels >= 0.5).float(), (labels <= 0.5).float()
    return -(keep_a * log_probs_a + keep_b * log_probs_b).sum() / (keep_a.sum() + keep_b.sum()).clamp(min=1.0)
