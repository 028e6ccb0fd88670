"""The exact small-scale check of A-PARL: a small random finite-horizon MDP with a linear reward
``r_nu(s, a) = nu . phi(s, a)`` and a tabular softmax policy, where every quantity of the bilevel problem is
computed exactly in float64.

- The lower level ``V(theta, nu) = E_{pi_theta}[sum_t gamma^t r_nu(s_t, a_t)] - lam/2 ||theta||^2`` is a
  differentiable forward recursion over the state distribution; :func:`solve_policy` finds ``theta*(nu)`` by
  damped Newton steps to a gradient norm of ``1e-12`` and checks that it is a strict maximum. The softmax
  objective is not concave everywhere: ``theta*(nu)`` is the local maximum reached from the warm start, and
  the implicit gradient is that branch's (the regulariser removes the softmax's flat directions, along which
  the Hessian would be singular: there its eigenvalues are exactly ``-lam``).
- The upper level ``G(theta, nu) = sum_{tau, tau'} rho(tau) rho(tau') U_nu(tau, tau')`` enumerates every
  trajectory (``(S A)^H`` of them), ``U`` being the Bradley-Terry log-likelihood of a scripted teacher's
  expected label (:class:`~zoo.datasets.teachers.ScriptedTeacher`, on the true per-step rewards).
- :func:`run_bilevel` is the outer loop, A-PARL (:func:`~zoo.agents.parl.hypergradient.hypergradient` with the
  distribution-shift term) or the same loop without it (PEBBLE-style), with exact upper gradients or with a
  fixed number of sampled teacher queries per round.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import torch

from zoo.agents.parl.hypergradient import (
    hypergradient,
    l2_regularised,
    score_function_surrogate,
)
from zoo.datasets.teachers import ScriptedTeacher
from zoo.errors import ConfigError, NumericalError

__all__ = ["TabularMDP", "Trajectories", "bt_log_likelihood", "enumerate_trajectories", "expected_return",
           "lower_objective", "optimal_return", "random_mdp", "run_bilevel", "solve_policy", "teacher_preferences",
           "upper_objective"]

DTYPE = torch.float64


@dataclasses.dataclass(frozen=True)
class TabularMDP:
    """``transitions (S, A, S)``, ``initial (S,)``, ``true_reward (S, A)``, ``features (S, A, d)``; episodes of
    ``horizon`` steps discounted by ``gamma`` (float64 tensors)."""

    transitions: torch.Tensor
    initial: torch.Tensor
    true_reward: torch.Tensor
    features: torch.Tensor
    horizon: int
    gamma: float = 1.0

    @property
    def num_states(self) -> int:
        return int(self.transitions.shape[0])

    @property
    def num_actions(self) -> int:
        return int(self.transitions.shape[1])

    @property
    def num_features(self) -> int:
        return int(self.features.shape[-1])


def random_mdp(seed: int, num_states: int = 5, num_actions: int = 2, num_features: int = 3, horizon: int = 3,
               gamma: float = 1.0, concentration: float = 0.5) -> TabularMDP:
    """A random MDP: Dirichlet(``concentration``) transitions and start distribution, true rewards uniform in
    [0, 1] and standard-normal features (with fewer features than state-actions the true reward is not linear
    in them: the reward model is misspecified, so what it fits depends on where the policy goes)."""
    if min(num_states, num_actions, num_features, horizon) < 1:
        raise ConfigError("random_mdp needs at least one state, action, feature and step")
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(num_states, concentration), size=(num_states, num_actions))
    mu = rng.dirichlet(np.full(num_states, 1.0))
    r = rng.uniform(0.0, 1.0, size=(num_states, num_actions))
    phi = rng.normal(size=(num_states, num_actions, num_features))
    t = lambda a: torch.as_tensor(a, dtype=DTYPE)
    return TabularMDP(t(p), t(mu), t(r), t(phi), int(horizon), float(gamma))


# ----------------------------------------------------------------------------- the lower level
def expected_return(mdp: TabularMDP, theta: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """``E_{pi_theta}[sum_{t<H} gamma^t r(s_t, a_t)]`` exactly, ``pi_theta(a|s) = softmax(theta[s])``
    (differentiable in ``theta`` and ``reward``)."""
    pi = torch.softmax(theta, dim=-1)
    d, total = mdp.initial, torch.zeros((), dtype=theta.dtype)
    for t in range(mdp.horizon):
        joint = d[:, None] * pi  # (S, A) occupancy at step t
        total = total + mdp.gamma ** t * (joint * reward).sum()
        d = torch.einsum("sa,sap->p", joint, mdp.transitions)
    return total


def lower_objective(mdp: TabularMDP, lam: float):
    """``(theta, nu) -> V(theta, nu)``: the expected return under ``r_nu = features . nu`` minus
    ``lam/2 ||theta||^2`` (strongly concave near its maximum for ``lam > 0``)."""
    return l2_regularised(lambda theta, nu: expected_return(mdp, theta, mdp.features @ nu), lam)


def solve_policy(mdp: TabularMDP, nu: torch.Tensor, lam: float, theta0: torch.Tensor | None = None, *,
                 tol: float = 1e-12, max_iter: int = 200) -> torch.Tensor:
    """``theta*(nu) = argmax_theta V(theta, nu)`` by damped Newton steps with backtracking (float64), from
    ``theta0`` (None: zeros), to ``||grad|| <= tol``; raises if it fails or the maximum is not strict."""
    lower = lower_objective(mdp, lam)
    nu = nu.detach().to(DTYPE)
    theta = (torch.zeros(mdp.num_states, mdp.num_actions, dtype=DTYPE) if theta0 is None
             else theta0.detach().clone().to(DTYPE))
    n = theta.numel()

    def f(flat: torch.Tensor) -> torch.Tensor:
        return lower(flat.reshape(theta.shape), nu)

    x = theta.reshape(-1)
    for _ in range(max_iter):
        x_live = x.clone().requires_grad_(True)
        value = f(x_live)
        (grad,) = torch.autograd.grad(value, x_live)
        if float(grad.norm()) <= tol:
            break
        hess = torch.autograd.functional.hessian(f, x)
        neg = -(hess + hess.T) / 2
        low = float(torch.linalg.eigvalsh(neg)[0])
        if low <= 1e-10:  # not concave here: shift the spectrum well past zero (Levenberg-Marquardt)
            neg = neg + (max(0.0, -low) + max(1e-3, abs(low))) * torch.eye(n, dtype=DTYPE)
        step = torch.linalg.solve(neg, grad)
        if float(grad.norm()) > 1e-6 or low <= 1e-10:  # near a strict maximum rounding makes the test noise
            step = _backtrack(f, x, float(value.detach()), grad, step)
            if step is None:  # no ascent along the Newton direction: a gradient step instead
                step = _backtrack(f, x, float(value.detach()), grad, grad)
            if step is None:
                raise NumericalError("solve_policy found no ascent direction; raise lam")
        x = x + step
    else:
        raise NumericalError(f"solve_policy did not reach ||grad V|| <= {tol:g} in {max_iter} Newton steps; "
                             f"raise lam (now {lam}) or max_iter")
    eigmax = float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(f, x))[-1])
    if not eigmax < 0:
        raise NumericalError(f"theta*(nu) is not a strict maximum (largest Hessian eigenvalue {eigmax:.3g}); "
                             "raise lam")
    return x.reshape(theta.shape)


def _backtrack(f, x: torch.Tensor, base: float, grad: torch.Tensor, step: torch.Tensor) -> torch.Tensor | None:
    """The step halved until it satisfies Armijo's sufficient-increase condition (None if it never does)."""
    size = 1.0
    while size > 1e-12:
        if float(f(x + size * step)) >= base + 1e-4 * size * float(grad.dot(step)):
            return size * step
        size *= 0.5
    return None


def optimal_return(mdp: TabularMDP) -> float:
    """The best true return of any (non-stationary) policy, by dynamic programming."""
    value = torch.zeros(mdp.num_states, dtype=DTYPE)
    for t in reversed(range(mdp.horizon)):
        value = (mdp.gamma ** t * mdp.true_reward + mdp.transitions @ value).max(-1).values
    return float(mdp.initial @ value)


# ----------------------------------------------------------------------------- the upper level
@dataclasses.dataclass(frozen=True)
class Trajectories:
    """Every ``H``-step trajectory: ``states``, ``actions`` ``(N, H)``, the environment's log-probability
    ``env_log_prob (N,)``, the discounted feature sums ``features (N, d)`` (so ``R_nu = features @ nu``) and
    the true per-step rewards ``true_rewards (N, H)`` (discounted)."""

    states: torch.Tensor
    actions: torch.Tensor
    env_log_prob: torch.Tensor
    features: torch.Tensor
    true_rewards: torch.Tensor

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """``log rho(tau; theta)`` of each trajectory."""
        return self.env_log_prob + torch.log_softmax(theta, -1)[self.states, self.actions].sum(-1)


def enumerate_trajectories(mdp: TabularMDP) -> Trajectories:
    """All ``(S A)^H`` trajectories of ``mdp`` (refuses more than 20,000)."""
    S, A, H = mdp.num_states, mdp.num_actions, mdp.horizon
    if (S * A) ** H > 20_000:
        raise ConfigError(f"{(S * A) ** H} trajectories are too many to enumerate; use fewer states, actions or steps")
    steps = np.array(list(itertools.product(range(S * A), repeat=H)), dtype=np.int64).reshape(-1, H)
    s, a = torch.as_tensor(steps // A), torch.as_tensor(steps % A)
    logp = torch.log(mdp.initial[s[:, 0]])
    for t in range(H - 1):
        logp = logp + torch.log(mdp.transitions[s[:, t], a[:, t], s[:, t + 1]])
    disc = torch.as_tensor([mdp.gamma ** t for t in range(H)], dtype=DTYPE)
    feats = (mdp.features[s, a] * disc[None, :, None]).sum(1)
    return Trajectories(s, a, logp, feats, mdp.true_reward[s, a] * disc)


def teacher_preferences(trajs: Trajectories, teacher: ScriptedTeacher) -> torch.Tensor:
    """``Y[i, j]`` = the teacher's probability of preferring trajectory ``i`` to ``j`` (its expected label);
    pairs it would skip get NaN."""
    n = trajs.true_rewards.shape[0]
    r = trajs.true_rewards.numpy()
    ia, ib = np.repeat(np.arange(n), n), np.tile(np.arange(n), n)
    return torch.as_tensor(teacher.probability(r[ia], r[ib]).labels.reshape(n, n), dtype=DTYPE)


def bt_log_likelihood(returns_a: torch.Tensor, returns_b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``U = y log sigmoid(R_a - R_b) + (1 - y) log sigmoid(R_b - R_a)``: the Bradley-Terry log-likelihood of a
    label ``y`` (PEBBLE eq. 2 negated; PARL's utility ``U_nu`` for preference feedback)."""
    diff = returns_a - returns_b
    return labels * torch.nn.functional.logsigmoid(diff) + (1 - labels) * torch.nn.functional.logsigmoid(-diff)


def upper_objective(trajs: Trajectories, preferences: torch.Tensor):
    """``(theta, nu) -> G = sum_{i,j} rho_i rho_j U_nu(i, j)`` exactly, over the pairs the teacher answers."""
    answered = ~torch.isnan(preferences)
    y = torch.nan_to_num(preferences, nan=0.5)

    def objective(theta: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
        rho = torch.exp(trajs.log_prob(theta))
        returns = trajs.features @ nu
        u = bt_log_likelihood(returns[:, None], returns[None, :], y) * answered
        return rho @ u @ rho

    return objective


# ----------------------------------------------------------------------------- the outer loop
def run_bilevel(mdp: TabularMDP, *, shift: bool, rounds: int, lr: float, lam: float = 0.05,
                teacher: ScriptedTeacher | None = None, queries: int | None = None, seed: int = 0,
                nu0: torch.Tensor | None = None, solver: str = "cg") -> dict[str, np.ndarray]:
    """The alignment loop: each round solves ``theta*(nu)`` (warm-started), records the policy's true return
    and the exact ``G``, then takes ``nu += lr * grad``, ``grad`` the hypergradient with (``shift``: A-PARL) or
    without (PEBBLE-style) the distribution-shift term. ``queries`` None: exact expectations; else that many
    pairs per round sampled from ``rho(.; theta*)`` and labelled by ``teacher`` (a numpy Generator seeded by
    ``seed``), the gradients then being :func:`score_function_surrogate` estimates. Returns per-round arrays
    (``rounds + 1`` entries; ``shift_norm`` and ``direct_norm``, the norms of the two terms, ``rounds``):
    ``true_return``, ``G``, ``shift_norm``, ``direct_norm``, ``nu``."""
    teacher = teacher or ScriptedTeacher("oracle")
    trajs = enumerate_trajectories(mdp)
    prefs = teacher_preferences(trajs, teacher)
    upper_exact = upper_objective(trajs, prefs)
    lower = lower_objective(mdp, lam)
    rng = np.random.default_rng(seed)
    nu = (torch.zeros(mdp.num_features, dtype=DTYPE) if nu0 is None else nu0.detach().clone().to(DTYPE))
    theta = None
    out: dict[str, list] = {"true_return": [], "G": [], "shift_norm": [], "direct_norm": [], "nu": []}
    for t in range(rounds + 1):
        theta = solve_policy(mdp, nu, lam, theta)
        with torch.no_grad():
            out["true_return"].append(float(expected_return(mdp, theta, mdp.true_reward)))
            out["G"].append(float(upper_exact(theta, nu)))
        out["nu"].append(nu.numpy().copy())
        if t == rounds:
            break
        upper = upper_exact if queries is None else _sampled_upper(trajs, theta, queries, teacher, rng)
        if upper is None:  # fewer than two answered queries: no update this round
            out["shift_norm"].append(0.0)
            out["direct_norm"].append(0.0)
            continue
        result = hypergradient(upper, lower, theta, nu, shift=shift, solver=solver)
        out["shift_norm"].append(float(result.shift.norm()))
        out["direct_norm"].append(float(result.direct.norm()))
        nu = nu + lr * result.grad
    return {k: np.asarray(v) for k, v in out.items()}


def _sampled_upper(trajs: Trajectories, theta: torch.Tensor, queries: int, teacher: ScriptedTeacher,
                   rng: np.random.Generator):
    """The score-function surrogate of ``G`` on ``queries`` pairs drawn from ``rho(.; theta)`` and labelled by the
    teacher (None when it answers fewer than two)."""
    rho = torch.exp(trajs.log_prob(theta)).numpy()
    rho = rho / rho.sum()
    ia, ib = rng.choice(rho.size, size=queries, p=rho), rng.choice(rho.size, size=queries, p=rho)
    true_rewards = trajs.true_rewards.numpy()
    answer = teacher.label(true_rewards[ia], true_rewards[ib], rng)
    if int(answer.answered.sum()) < 2:
        return None
    keep = answer.answered
    ia_t, ib_t = torch.as_tensor(ia[keep]), torch.as_tensor(ib[keep])
    labels = torch.as_tensor(answer.labels[keep], dtype=DTYPE)

    def upper(theta_: torch.Tensor, nu_: torch.Tensor) -> torch.Tensor:
        returns = trajs.features @ nu_
        logp = trajs.log_prob(theta_)
        return score_function_surrogate(bt_log_likelihood(returns[ia_t], returns[ib_t], labels),
                                        logp[ia_t] + logp[ib_t])

    return upper
