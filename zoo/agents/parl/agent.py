"""A-PARL (Chakraborty et al., ICLR 2024): PEBBLE's loop whose reward update also follows the hypergradient's
distribution-shift term, the dependence of the queried trajectories on the reward through the policy.

Each query round runs PEBBLE's Bradley-Terry epochs over all labelled pairs (the first-order part,
``E[grad_nu U]``), then ``hyper_steps`` steps of the ensemble's optimizer along the full hypergradient
``grad_nu G = E[grad_nu U] + (grad_nu theta*)^T E[U grad_theta log rho]``
(:func:`~zoo.agents.parl.hypergradient.hypergradient`, conjugate gradient with damping) on this round's
queries, which are segments of the current policy's recent trajectories. ``nu`` is every ensemble member's
parameters through the ensemble-mean reward (the reward SAC is trained on); ``theta`` the actor's parameters.

- lower level (:func:`sac_lower_objective`): SAC's actor objective under the learned reward on one replay batch
  with fixed reparameterisation noise, ``V = E_s[min Q(s, a) - alpha log pi(a|s) + r_nu(s, a) - r_[nu](s, a)]``
  minus ``lower_reg / 2 ||theta - theta_now||^2`` (the design of :mod:`~zoo.agents.parl.hypergradient`);
- upper level (:func:`preference_upper_objective`): the score-function surrogate of the mean Bradley-Terry
  log-likelihood ``U`` of the teacher's labels, with ``log rho`` the actor's log-likelihood of both segments'
  actions (the dynamics' terms do not depend on ``theta``).

When the conjugate gradient meets non-positive curvature (the lower level is not concave there even with the
regulariser and the damping), the round's step uses the direct term alone and ``hyper_fallbacks`` counts it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from zoo.agents import register_agent
from zoo.agents.config import non_negative, positive
from zoo.agents.parl.family import PreferenceSAC, PreferenceSACConfig
from zoo.agents.parl.hypergradient import (
    hypergradient,
    l2_regularised,
    score_function_surrogate,
)
from zoo.agents.parl.pebble import PREFERENCE_PRESETS
from zoo.errors import NumericalError
from zoo.losses import tanh_gaussian_log_prob
from zoo.nets import LOG_STD_MAX, LOG_STD_MIN, SquashedGaussianActor

__all__ = ["PARL", "PARLConfig", "actor_log_prob", "bradley_terry_log_likelihood", "preference_upper_objective",
           "sac_lower_objective"]

Params = dict[str, torch.Tensor]
RewardFn = Callable[[Params, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- pure functions
def bradley_terry_log_likelihood(returns_a: torch.Tensor, returns_b: torch.Tensor,
                                 labels: torch.Tensor) -> torch.Tensor:
    """PARL's preference utility ``U_nu`` per pair: ``y log sigma(R_a - R_b) + (1 - y) log sigma(R_b - R_a)``
    with ``y`` = 1 when ``a`` is preferred (Chakraborty et al., 2024, section 3: the Bradley-Terry
    log-likelihood; minus the per-pair terms of PEBBLE's eq. 2), ``(N,)``."""
    logit = returns_a - returns_b
    labels = labels.to(logit.dtype)
    return labels * nn.functional.logsigmoid(logit) + (1 - labels) * nn.functional.logsigmoid(-logit)


def _actor_head(actor: SquashedGaussianActor, theta: Params, obs: torch.Tensor):
    """The actor's Gaussian ``(mean, log_std, std)`` before the tanh, with parameters ``theta`` (the same maths
    as ``SquashedGaussianActor.forward``)."""
    def sub(prefix: str) -> Params:
        return {k[len(prefix):]: v for k, v in theta.items() if k.startswith(prefix)}

    h = functional_call(actor.trunk, sub("trunk."), (functional_call(actor.encoder, sub("encoder."), (obs,)),))
    mean = functional_call(actor.mean, sub("mean."), (h,))
    log_std = torch.tanh(functional_call(actor.log_std, sub("log_std."), (h,)))
    log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
    return mean, log_std, log_std.exp()


def actor_log_prob(actor: SquashedGaussianActor, theta: Params, obs: torch.Tensor,
                   actions: torch.Tensor) -> torch.Tensor:
    """``log pi_theta(a|s)`` of given ``(..., obs)`` observations and ``(..., act)`` actions, ``(...)`` (the tanh-squashed Gaussian's density, SAC appendix C eq. 21), with
    actions clipped just inside the bounds so that ``atanh`` stays finite."""
    lead = obs.shape[:-1]
    mean, log_std, std = _actor_head(actor, theta, obs.reshape(-1, obs.shape[-1]))
    y = ((actions.reshape(mean.shape) - actor.bias) / actor.scale).clamp(-1 + 1e-6, 1 - 1e-6)
    out = tanh_gaussian_log_prob(torch.atanh(y), mean, log_std, std=std, squashed=y, scale=actor.scale)
    return out.reshape(lead)


def sac_lower_objective(actor: SquashedGaussianActor, critics: tuple[nn.Module, nn.Module], alpha: float,
                        reward_fn: RewardFn, obs: torch.Tensor, noise: torch.Tensor, *, lam: float,
                        center: Params) -> Callable[[Params, Params], torch.Tensor]:
    """A-PARL's lower level for a SAC agent: ``(theta, nu) -> E_s[min_i Q_i(s, a) - alpha log pi(a|s) + r_nu(s, a)
    - r_[nu](s, a)] - lam/2 ||theta - center||^2`` with ``a = a_theta(s, noise)`` reparameterised (Haarnoja et
    al., 2018, eq. 7 negated; Chakraborty et al., 2024, the regularised lower level). Its value and its
    theta-derivatives are SAC's actor objective; the ``r_nu - r_[nu]`` term (zero in value) carries its mixed
    derivative in ``nu`` (the module docstring of :mod:`~zoo.agents.parl.hypergradient`)."""
    q1, q2 = critics

    def objective(theta: Params, nu: Params) -> torch.Tensor:
        mean, log_std, std = _actor_head(actor, theta, obs)
        u = mean + std * noise
        y = torch.tanh(u)
        log_prob = tanh_gaussian_log_prob(u, mean, log_std, std=std, squashed=y, scale=actor.scale)
        action = y * actor.scale + actor.bias
        q = torch.min(q1(obs, action), q2(obs, action))
        x = torch.cat([obs, action], -1)
        r = reward_fn(nu, x)
        frozen = reward_fn({k: v.detach() for k, v in nu.items()}, x)
        return (q - alpha * log_prob + r - frozen).mean()

    return l2_regularised(objective, lam, center)


def preference_upper_objective(actor: SquashedGaussianActor, reward_fn: RewardFn, seg_a: torch.Tensor,
                               seg_b: torch.Tensor, labels: torch.Tensor,
                               obs_dim: int) -> Callable[[Params, Params], torch.Tensor]:
    """A-PARL's upper level on labelled segment pairs ``(N, L, obs + act)``: ``(theta, nu) ->``
    :func:`score_function_surrogate` of ``U_nu`` (:func:`bradley_terry_log_likelihood` of the predicted segment
    returns) with ``log rho_theta`` = the actor's log-likelihood of both segments' actions, so that its gradients
    are ``E[grad_nu U]`` and ``E[U grad_theta log rho]`` (Chakraborty et al., 2024, the hypergradient's two
    expectations)."""
    labels = labels.float()

    def objective(theta: Params, nu: Params) -> torch.Tensor:
        utility = bradley_terry_log_likelihood(reward_fn(nu, seg_a).sum(-1), reward_fn(nu, seg_b).sum(-1), labels)
        log_rho = sum(actor_log_prob(actor, theta, s[..., :obs_dim], s[..., obs_dim:]).sum(-1) for s in (seg_a, seg_b))
        return score_function_surrogate(utility, log_rho)

    return objective


def ensemble_mean_reward(net: nn.Module, members: int) -> RewardFn:
    """``(nu, x (..., d)) -> (...)``: the ensemble-mean reward with the ensemble's parameters ``nu``."""
    def reward_fn(nu: Params, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(1, -1, x.shape[-1]).expand(members, -1, -1)
        return functional_call(net, nu, (flat,)).mean(0).reshape(x.shape[:-1])

    return reward_fn


# ----------------------------------------------------------------------------- agent
@dataclasses.dataclass
class PARLConfig(PreferenceSACConfig):
    """PEBBLE's settings plus the hypergradient's (not in the paper, which has no public code: ours)."""

    #: optimizer steps along the full hypergradient after each round's Bradley-Terry epochs
    hyper_steps: int = 1
    #: replay states in the lower-level objective's batch
    hyper_batch: int = 256
    #: conjugate-gradient iterations (Hessian-vector products) per solve
    cg_iters: int = 5
    #: added to ``-H_theta_theta V`` so that the solve is positive definite (the least; see ``adaptive_damping``)
    damping: float = 1.0
    #: raise the damping to 1.5 x the lower level's most positive curvature when that is larger (30 Lanczos
    #: steps: 30 Hessian-vector products): a SAC actor mid-training is no strict maximum, and a truncated CG on the
    #: indefinite system returns an inflated shift term without noticing
    adaptive_damping: bool = True
    #: the lower level's L2 regulariser ``lambda`` around the current actor
    lower_reg: float = 1.0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PREFERENCE_PRESETS

    def validate(self) -> None:
        super().validate()
        positive(self, "hyper_batch", "cg_iters")
        non_negative(self, "hyper_steps", "damping", "lower_reg")


@register_agent
class PARL(PreferenceSAC):
    """A-PARL: PEBBLE's loop with the hypergradient's distribution-shift term in the reward update."""

    config_class = PARLConfig
    config: PARLConfig

    def _build(self) -> None:
        super()._build()
        self._hyper_fallbacks = 0

    def extra_state(self) -> dict:
        return {**super().extra_state(), "_hyper_fallbacks": self._hyper_fallbacks}

    def reward_hypergradient(self, seg_a: torch.Tensor, seg_b: torch.Tensor, labels: torch.Tensor):
        """The :class:`~zoo.agents.parl.hypergradient.Hypergradient` of this round's queries at the current actor
        and reward (a fresh replay batch and noise for the lower level); raises NumericalError from the solve."""
        c, sac, model = self.config, self.sac, self.reward_model
        theta = {k: v.detach() for k, v in sac.actor.named_parameters()}
        nu = {k: v.detach() for k, v in model.net.named_parameters()}
        reward_fn = ensemble_mean_reward(model.net, model.config.ensemble_size)
        obs = self.replay.sample(min(c.hyper_batch, len(self.replay))).observations.reshape(-1, self.obs_dim)
        noise = torch.randn(obs.shape[0], self.act_dim, device=self.device)
        lower = sac_lower_objective(sac.actor, (sac.q1, sac.q2), float(sac.alpha), reward_fn, obs, noise,
                                    lam=c.lower_reg, center=theta)
        upper = preference_upper_objective(sac.actor, reward_fn, seg_a.to(self.device), seg_b.to(self.device),
                                           labels.to(self.device), self.obs_dim)
        return hypergradient(upper, lower, theta, nu, shift=True, solver="cg", iters=c.cg_iters,
                             damping=c.damping, adaptive_damping=c.adaptive_damping)

    def reward_update(self, seg_a: torch.Tensor, seg_b: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
        out = super().reward_update(seg_a, seg_b, labels)
        labels_t = torch.as_tensor(np.asarray(labels, np.float32))
        keep = ~torch.isnan(labels_t)
        if int(keep.sum()) < 2 or self.config.hyper_steps == 0:
            return out
        seg_a, seg_b, labels_t = seg_a[keep], seg_b[keep], labels_t[keep]
        params = dict(self.reward_model.net.named_parameters())
        for _ in range(self.config.hyper_steps):
            try:
                hg = self.reward_hypergradient(seg_a, seg_b, labels_t)
                grad = hg.grad
                out.update(hyper_shift_norm=float(_norm(hg.shift)), hyper_direct_norm=float(_norm(hg.direct)),
                           hyper_cg_residual=hg.solve.residual,
                           hyper_cg_relative_residual=hg.solve.residual / max(float(hg.theta_grad.norm()), 1e-12),
                           hyper_damping=hg.damping)
            except NumericalError:
                self._hyper_fallbacks += 1
                grad = self.reward_hypergradient_direct(seg_a, seg_b, labels_t)
            self.reward_model.optimizer.zero_grad(set_to_none=True)
            for name, p in params.items():
                p.grad = -grad[name].to(p.dtype)  # the optimizer descends; G is maximised
            self.reward_model.optimizer.step()
        out["hyper_fallbacks"] = float(self._hyper_fallbacks)
        return out

    def reward_hypergradient_direct(self, seg_a: torch.Tensor, seg_b: torch.Tensor, labels: torch.Tensor) -> Any:
        """``E[grad_nu U]`` alone (the fallback when the solve fails)."""
        model = self.reward_model
        nu = {k: v.detach() for k, v in model.net.named_parameters()}
        theta = {k: v.detach() for k, v in self.sac.actor.named_parameters()}
        upper = preference_upper_objective(self.sac.actor, ensemble_mean_reward(model.net, model.config.ensemble_size),
                                           seg_a.to(self.device), seg_b.to(self.device), labels.to(self.device),
                                           self.obs_dim)
        return hypergradient(upper, upper, theta, nu, shift=False).grad


def _norm(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum(v.square().sum() for v in params.values()))
