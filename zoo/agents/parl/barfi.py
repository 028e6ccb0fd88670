"""BARFI: behaviour alignment via reward function optimisation (Gupta et al., NeurIPS 2023, "Behavior Alignment
via Reward Function Optimization"; reference code Dhawgupta/gupta2023behavior, ``barfi-gw/src/algorithms/
BarfiNeumann.py``), on a tabular softmax policy and the GridWorld of :mod:`zoo.agents.parl.barfi_gridworld`.

A designer's auxiliary reward ``r_aux`` may help or mislead. BARFI learns how to use it, by a bilevel problem:

- lower level: ``theta*(phi) = argmax_theta J_phi(theta)``, REINFORCE on the learned reward and discount
  ``r_phi(s, a) = phi_1(s) + r_env(s, a) + phi_2(s) r_aux(s, a)`` and ``gamma_phi = sigmoid(phi_gamma)``
  (the reference's GridWorld ``Alignment_Reward`` / ``Alignment_Gamma``: its reward is a linear function of the
  state features, three outputs of which the first and the third are used; here the features are one-hot, so
  ``phi_1`` and ``phi_2`` are tables over states), plus an entropy bonus;
- upper level: the true objective ``J(theta*(phi))``, the environment's return with the true discount, minus
  ``reward_l2 sum ||phi_reward||`` and ``gamma_l2 gamma_phi`` (the reference's regularisers).

The implicit function theorem gives ``dJ/dphi = H_phi_theta J_phi [-H_theta_theta J_phi]^-1 grad_theta J``,
exactly the distribution-shift term of :func:`zoo.agents.parl.hypergradient.hypergradient` with ``upper`` the
true objective and ``lower`` the inner one; the inverse is applied by its :func:`neumann_series`
(the reference: 5 Hessian-vector products, i.e. 6 terms, step ``5e-4``).

``lower`` and ``upper`` come in two forms: sampled (REINFORCE surrogates of batches of episodes, as the
reference) for the loop :func:`run_barfi`, and exact (:func:`exact_inner_objective`, :func:`exact_outer_objective`)
for checking the implicit gradient against finite differences of ``J(theta*(phi))``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from zoo.agents.parl.barfi_gridworld import Episodes, GridWorld, exact_return, sample_episodes
from zoo.agents.parl.hypergradient import Hypergradient, hypergradient, l2_regularised
from zoo.errors import ConfigError, NumericalError

__all__ = ["BARFI_METHODS", "BarfiConfig", "aligned_reward", "barfi_gradient", "discounted_returns",
           "exact_inner_objective", "exact_outer_objective", "init_phi", "inner_objective", "learned_discount",
           "outer_objective", "phi_penalty", "policy_entropy", "reinforce_objective", "run_barfi", "solve_inner"]

DTYPE = torch.float64
BARFI_METHODS = ("barfi", "naive", "true")
Phi = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- the learned reward and discount
def init_phi(num_states: int, *, aux_weight: float = 1.0, gamma: float = 0.99) -> Phi:
    """``phi``: ``bias`` (``phi_1``) zeros, ``aux`` (``phi_2``) ``aux_weight`` in every state, and ``gamma`` the
    logit of the discount (the reference starts it at 4.6, ``sigmoid(4.6) = 0.990``)."""
    if not 0 < gamma < 1:
        raise ConfigError(f"the initial learned discount must be in (0, 1), got {gamma!r}")
    return {"bias": torch.zeros(num_states, dtype=DTYPE), "aux": torch.full((num_states,), float(aux_weight), dtype=DTYPE),
            "gamma": torch.logit(torch.tensor(gamma, dtype=DTYPE))}


def aligned_reward(phi: Phi, states: torch.Tensor, rewards: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """``r_phi = phi_1(s) + r_env + phi_2(s) r_aux`` (BARFI's learned reward; reference ``Reward.py``
    ``Alignment_Reward.forward``), elementwise over any matching shapes (``states`` indexes the tables)."""
    return phi["bias"][states] + rewards + phi["aux"][states] * aux


def learned_discount(phi: Phi) -> torch.Tensor:
    """``gamma_phi = sigmoid(phi_gamma)`` (reference ``Alignment_Gamma``)."""
    return torch.sigmoid(phi["gamma"])


def phi_penalty(phi: Phi, reward_l2: float, gamma_l2: float) -> torch.Tensor:
    """The outer regularisers of the reference: ``reward_l2 (||phi_1|| + ||phi_2||)`` (norms, not squared: its
    ``utils.L2_reg``) plus ``gamma_l2 gamma_phi`` (it penalises the discount itself, pushing it down)."""
    norms = phi["bias"].norm() + phi["aux"].norm()
    return reward_l2 * norms + gamma_l2 * learned_discount(phi)


# ----------------------------------------------------------------------------- REINFORCE surrogates
def discounted_returns(rewards: torch.Tensor, gamma: float | torch.Tensor) -> torch.Tensor:
    """``G_t = sum_{k >= t} gamma^(k - t) r_k`` along the last axis (differentiable in ``rewards`` and ``gamma``)."""
    H = rewards.shape[-1]
    steps = torch.arange(H)
    lag = (steps[:, None] - steps[None, :]).to(rewards.dtype)  # lag[k, t] = k - t
    gamma = torch.as_tensor(gamma, dtype=rewards.dtype)
    weights = torch.where(lag >= 0, gamma ** lag.clamp(min=0), torch.zeros((), dtype=rewards.dtype))
    return rewards @ weights


def reinforce_objective(log_probs: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mean_b (1/H) sum_t mask log pi(a_t|s_t) G_t``: the reference's REINFORCE surrogate (``get_policy_loss``:
    no ``gamma^t`` weight on the terms, no baseline, the mean over the fixed horizon ``H``), all ``(B, H)``."""
    return (mask * log_probs * returns).mean(-1).mean()


def policy_entropy(log_pi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean entropy of the policy over the unmasked steps (``log_pi (B, H, A)``, ``mask (B, H)``)."""
    per_step = -(log_pi.exp() * log_pi).sum(-1)
    return (per_step * mask).sum() / mask.sum().clamp(min=1.0)


def inner_objective(episodes: Episodes, *, entropy_coef: float = 0.0, naive: bool = False) -> Callable:
    """``(theta, phi) -> J_phi(theta)``, the REINFORCE surrogate of ``episodes`` on ``r_phi`` and ``gamma_phi``
    plus ``entropy_coef`` times the policy's entropy (``naive``: on ``r_env + r_aux`` with ``gamma_phi``, the
    reference's warm-up). Differentiable in both: its ``H_theta_theta`` and ``H_phi_theta`` are BARFI's."""
    s, a, m = episodes.states, episodes.actions, episodes.mask

    def objective(theta: torch.Tensor, phi: Phi) -> torch.Tensor:
        reward = (episodes.rewards + episodes.aux if naive
                  else aligned_reward(phi, s, episodes.rewards, episodes.aux))
        returns = discounted_returns(reward * m, learned_discount(phi))
        log_pi = torch.log_softmax(theta, -1)[s]  # (B, H, A)
        value = reinforce_objective(log_pi.gather(-1, a[..., None]).squeeze(-1), returns, m)
        return value + entropy_coef * policy_entropy(log_pi, m) if entropy_coef else value

    return objective


def outer_objective(episodes: Episodes, *, gamma: float = 0.99, reward_l2: float = 0.0,
                    gamma_l2: float = 0.0) -> Callable:
    """``(theta, phi) -> J(theta) - penalty(phi)``: the REINFORCE surrogate of ``episodes`` on the environment's
    reward with the true discount ``gamma`` (no entropy bonus), minus :func:`phi_penalty`."""
    s, a, m = episodes.states, episodes.actions, episodes.mask
    returns = discounted_returns(episodes.rewards * m, gamma)

    def objective(theta: torch.Tensor, phi: Phi) -> torch.Tensor:
        log_pi = torch.log_softmax(theta, -1)[s].gather(-1, a[..., None]).squeeze(-1)
        return reinforce_objective(log_pi, returns, m) - phi_penalty(phi, reward_l2, gamma_l2)

    return objective


# ----------------------------------------------------------------------------- exact objectives (the check)
def exact_inner_objective(world: GridWorld, lam: float) -> Callable:
    """``(theta, phi) -> E_{pi_theta}[sum_t gamma_phi^t r_phi] - lam/2 ||theta||^2`` exactly (``r_phi`` zero in the
    absorbing goal); the L2 term makes ``theta*(phi)`` a strict maximum (the softmax's flat directions)."""
    states = torch.arange(world.num_states)[:, None]
    r_env, r_aux = world.expected(world.env_reward), world.expected(world.aux_reward)
    alive = (~world.terminal).to(DTYPE)[:, None]

    def value(theta: torch.Tensor, phi: Phi) -> torch.Tensor:
        reward = alive * aligned_reward(phi, states, r_env, r_aux)
        return exact_return(world, theta, reward, learned_discount(phi))

    return l2_regularised(value, lam)


def exact_outer_objective(world: GridWorld, *, gamma: float = 0.99, reward_l2: float = 0.0,
                          gamma_l2: float = 0.0) -> Callable:
    """``(theta, phi) -> E_{pi_theta}[sum_t gamma^t r_env] - penalty(phi)`` exactly."""
    r_env = world.expected(world.env_reward)
    return lambda theta, phi: exact_return(world, theta, r_env, gamma) - phi_penalty(phi, reward_l2, gamma_l2)


def solve_inner(objective: Callable, phi: Phi, theta0: torch.Tensor, *, tol: float = 1e-11,
                max_iter: int = 200) -> torch.Tensor:
    """``argmax_theta objective(theta, phi)`` from ``theta0`` by Levenberg-Marquardt-damped Newton steps with
    backtracking (float64; for the small exact problem), to ``||grad|| <= tol``."""
    phi = {k: v.detach() for k, v in phi.items()}
    shape = theta0.shape
    f = lambda flat: objective(flat.reshape(shape), phi)
    x = theta0.detach().reshape(-1).clone().to(DTYPE)
    for _ in range(max_iter):
        live = x.clone().requires_grad_(True)
        value = f(live)
        (grad,) = torch.autograd.grad(value, live)
        if float(grad.norm()) <= tol:
            return x.reshape(shape)
        neg = -torch.autograd.functional.hessian(f, x)
        neg = (neg + neg.T) / 2
        low = float(torch.linalg.eigvalsh(neg)[0])
        if low <= 1e-8:
            neg = neg + (1e-3 - low) * torch.eye(x.numel(), dtype=DTYPE)
        step, size, base = torch.linalg.solve(neg, grad), 1.0, float(value.detach())
        if float(grad.norm()) > 1e-6 or low <= 1e-8:  # near a strict maximum rounding would make Armijo noise
            while float(f(x + size * step)) < base + 1e-4 * size * float(grad.dot(step)) and size > 1e-10:
                size *= 0.5
        x = x + size * step
    raise NumericalError(f"solve_inner did not reach ||grad|| <= {tol:g} in {max_iter} steps; raise lam")


# ----------------------------------------------------------------------------- the outer gradient
def barfi_gradient(upper: Callable, lower: Callable, theta: torch.Tensor, phi: Phi, *, solver: str = "neumann",
                   terms: int = 6, alpha: float | None = 5e-4, damping: float = 0.0) -> Hypergradient:
    """BARFI's outer ascent direction ``d upper / d phi`` through ``theta*(phi)`` (implicit function theorem, the
    reference's ``outer_Neumann``): :func:`~zoo.agents.parl.hypergradient.hypergradient` with the Neumann series
    of ``terms`` terms and step ``alpha`` (the reference: 6 and 5e-4; its regularisers are the direct term), or
    ``solver="cg"`` for an exact solve (``terms`` CG iterations)."""
    return hypergradient(upper, lower, theta, phi, shift=True, solver=solver, iters=terms, alpha=alpha,
                         damping=damping)


# ----------------------------------------------------------------------------- the loop
@dataclasses.dataclass
class BarfiConfig:
    """The loop's settings. The reference's GridWorld values in brackets (RMSprop everywhere)."""

    iterations: int = 300           # outer rounds [2000 episodes / delta 3]
    episodes_per_iter: int = 8      # new on-policy episodes per round, the outer batch [delta + 1 = 4]
    inner_steps: int = 5            # REINFORCE steps on r_phi per round [delta * 5 = 15]
    inner_batch: int = 8            # replayed episodes per inner step [1]
    hessian_batch: int = 16         # replayed episodes for the Hessian products [15]
    buffer_size: int = 200          # episodes kept for replay [1000]
    warmup: int = 0                 # rounds of naive r_env + r_aux updates before BARFI starts [~52]
    actor_lr: float = 0.02          # [0.005, 0.001]
    reward_lr: float = 0.05         # [0.005]
    gamma_lr: float = 0.05          # [0.005]
    entropy_coef: float = 0.05      # [0.25]
    gamma: float = 0.99             # the true discount of the outer objective [0.99]
    reward_l2: float = 0.0          # [0, 0.06125]
    gamma_l2: float = 0.0           # [0.06 ... 16]
    neumann_terms: int = 6          # [5 products: 6 terms]
    neumann_alpha: float = 5e-4     # [5e-4]
    aux_init: float = 1.0           # phi_2's initial value [random linear init, near 0]
    gamma_init: float = 0.99        # [sigmoid(4.6)]

    def __post_init__(self) -> None:
        for name in ("iterations", "episodes_per_iter", "inner_steps", "inner_batch", "hessian_batch",
                     "buffer_size", "neumann_terms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "inner_steps" else 1):
                raise ConfigError(f"BarfiConfig.{name} must be a positive integer, got {value!r}")
        if self.warmup < 0:
            raise ConfigError(f"BarfiConfig.warmup must be >= 0, got {self.warmup!r}")
        for name in ("actor_lr", "reward_lr", "gamma_lr", "neumann_alpha"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"BarfiConfig.{name} must be > 0, got {getattr(self, name)!r}")


def run_barfi(world: GridWorld, method: str = "barfi", config: BarfiConfig | None = None, *,
              seed: int = 0) -> dict[str, np.ndarray]:
    """The BARFI loop (reference ``BarfiNeumann.optimize``) or a baseline with ``phi`` frozen on the same inner
    loop: ``"naive"`` (``r_env + r_aux``: ``phi_2 = 1``) or ``"true"`` (``r_env`` only: ``phi_2 = 0``), both with
    ``gamma_phi`` fixed at ``config.gamma``. Each round: draw ``episodes_per_iter`` episodes of the current policy
    into the replay buffer; BARFI (after ``warmup`` rounds) takes one outer step on ``phi`` (the outer surrogate on
    the new episodes, the Hessian on a replayed batch, then RMSprop ascent); then ``inner_steps`` REINFORCE steps
    on ``theta`` over replayed batches (no importance weights, as the reference). Returns per-round arrays:
    ``true_return`` (the exact expected undiscounted environment return of the policy after the round),
    ``sampled_return`` (the mean of the round's episodes), ``aux_weight`` (the mean of ``phi_2`` over the cells
    next to the centre and the centre itself), ``gamma``, and ``phi_aux`` (the final ``phi_2``, ``(S,)``)."""
    if method not in BARFI_METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {BARFI_METHODS}")
    cfg = config or BarfiConfig()
    gen = torch.Generator().manual_seed(int(seed))
    theta = torch.zeros(world.num_states, world.num_actions, dtype=DTYPE, requires_grad=True)
    aux_init = {"barfi": cfg.aux_init, "naive": 1.0, "true": 0.0}[method]
    phi = {k: v.requires_grad_(True) for k, v in
           init_phi(world.num_states, aux_weight=aux_init, gamma=cfg.gamma if method != "barfi" else cfg.gamma_init).items()}
    actor_opt = torch.optim.RMSprop([theta], lr=cfg.actor_lr)
    phi_opt = torch.optim.RMSprop([{"params": [phi["bias"], phi["aux"]], "lr": cfg.reward_lr},
                                   {"params": [phi["gamma"]], "lr": cfg.gamma_lr}])
    near = _aux_cells(world)
    r_env = world.expected(world.env_reward)
    buffer: list[Episodes] = []
    out: dict[str, list] = {"true_return": [], "sampled_return": [], "aux_weight": [], "gamma": []}
    for it in range(cfg.iterations):
        new = sample_episodes(world, theta, cfg.episodes_per_iter, gen)
        buffer.append(new)
        stored = Episodes.cat(buffer)
        if len(stored) > cfg.buffer_size:
            stored = stored.index(torch.arange(len(stored) - cfg.buffer_size, len(stored)))
            buffer = [stored]
        warm = it < cfg.warmup
        if method == "barfi" and not warm and len(stored) > len(new):
            old = stored.index(torch.arange(len(stored) - len(new)))  # the replay without the newest episodes
            hess = old.index(torch.randint(len(old), (cfg.hessian_batch,), generator=gen))
            upper = outer_objective(new, gamma=cfg.gamma, reward_l2=cfg.reward_l2, gamma_l2=cfg.gamma_l2)
            lower = inner_objective(hess, entropy_coef=cfg.entropy_coef)
            result = barfi_gradient(upper, lower, theta.detach(), {k: v.detach() for k, v in phi.items()},
                                    terms=cfg.neumann_terms, alpha=cfg.neumann_alpha)
            phi_opt.zero_grad()
            for key, value in phi.items():
                value.grad = -result.grad[key]  # RMSprop descends: ascend the outer objective
            phi_opt.step()
        naive = method == "barfi" and warm
        for _ in range(cfg.inner_steps if not warm else 1):
            batch = (new if warm else
                     stored.index(torch.randint(len(stored), (cfg.inner_batch,), generator=gen)))
            value = inner_objective(batch, entropy_coef=cfg.entropy_coef, naive=naive)(theta, _frozen(phi))
            actor_opt.zero_grad()
            (-value).backward()
            actor_opt.step()
        with torch.no_grad():
            out["true_return"].append(float(exact_return(world, theta, r_env)))
            out["sampled_return"].append(float(new.rewards.sum(-1).mean()))
            out["aux_weight"].append(float(phi["aux"][near].mean()))
            out["gamma"].append(float(learned_discount(phi)))
        if not np.isfinite(out["true_return"][-1]):
            raise NumericalError(f"the policy diverged at round {it}; lower actor_lr or reward_lr")
    result = {k: np.asarray(v) for k, v in out.items()}
    result["phi_aux"] = phi["aux"].detach().numpy().copy()
    return result


def _frozen(phi: Phi) -> Phi:
    return {k: v.detach() for k, v in phi.items()}


def _aux_cells(world: GridWorld) -> torch.Tensor:
    """The states from which some action can earn auxiliary reward (where ``phi_2`` matters)."""
    reach = (world.transitions * world.aux_reward.abs()).sum(-1).amax(-1) > 0
    return torch.nonzero(reach).squeeze(1)
