"""A-PARL's upper-level gradient (Chakraborty et al., ICLR 2024, "PARL: A Unified Framework for Policy Alignment
in Reinforcement Learning", section 4; equation numbers not checked against the paper): the gradient of ``G(nu) = E_{tau ~ rho(.; theta*(nu))}[U_nu(tau)]``
through the lower level's solution ``theta*(nu) = argmax_theta V(theta, nu)``,

    grad_nu G = E[grad_nu U_nu]  +  (grad_nu theta*)^T E[U_nu(tau) grad_theta log rho(tau; theta*)],
    grad_nu theta* = -[H_theta_theta V]^-1 H_theta_nu V            (implicit function theorem),

so the second ("distribution shift") term is ``H_nu_theta V w`` with ``w = [-H_theta_theta V]^-1 g_theta``: one
linear solve by :func:`conjugate_gradient` or :func:`neumann_series` over Hessian-vector products, then one
mixed second derivative. Both are double backward passes (``torch.autograd.grad`` with ``create_graph``): the
first-order graph of ``grad_theta V`` is built once and reused by every product. PEBBLE-style reward learning
is the first term alone (``shift=False``).

The API takes two differentiable scalar functions of ``(theta, nu)`` (each a tensor, a list or a dict of tensors):

- ``upper(theta, nu)``: a function whose partial gradients are the two expectations, e.g. the exact
  ``G(theta, nu)`` of a small MDP, or :func:`score_function_surrogate` over sampled pairs;
- ``lower(theta, nu)``: the lower-level objective that ``theta`` maximises, with its regulariser
  (:func:`l2_regularised`: ``V - lambda/2 ||theta - theta_0||^2``, which makes it strongly concave as the paper
  assumes); ``theta`` must be (close to) its maximiser for the implicit gradient to hold.

A SAC lower level (the choice for ``zoo.agents.PARL``): ``theta`` = the actor's parameters, ``nu`` = the reward
model's, and ``lower`` the actor's soft objective on one fixed replay batch ``B`` with fixed noise ``eps``,

    V(theta, nu) = E_{s ~ B}[ Q(s, a) - alpha log pi_theta(a | s) + r_nu(s, a) - r_[nu](s, a) ],
    a = a_theta(s, eps) (reparameterised),  [nu] = nu without gradient,

minus ``lambda/2 ||theta - theta_now||^2``. Its value and ``H_theta_theta`` are SAC's actor objective exactly (the
two reward terms cancel in value and in their theta-derivatives); its ``H_theta_nu`` is
``E_s[(d a / d theta)^T d^2 r_nu / (d a d nu)]``: the critic's dependence on ``nu`` is taken to first order
through the immediate reward at the actor's action (the frozen critic has no graph to ``nu``). ``upper`` is
:func:`score_function_surrogate` of the Bradley-Terry log-likelihoods of the queried pairs with the actor's
log-likelihood of the segments' actions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch

from zoo.errors import ConfigError, NumericalError

__all__ = ["Hypergradient", "Solve", "conjugate_gradient", "hessian_vector_product", "hypergradient",
           "l2_regularised", "largest_eigenvalue", "mixed_vector_product", "neumann_series", "power_iteration",
           "score_function_surrogate"]

Params = torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor]
Objective = Callable[[Any, Any], torch.Tensor]
MatVec = Callable[[torch.Tensor], torch.Tensor]


class Solve(NamedTuple):
    """A linear solve's answer ``x``, the iterations (matrix-vector products) used and ``||A x - b||``."""

    x: torch.Tensor
    iterations: int
    residual: float


class Hypergradient(NamedTuple):
    """``grad = direct + shift`` (each shaped like ``nu``): ``direct = E[grad_nu U]``, ``shift`` the
    distribution-shift term (zeros with ``shift=False``); ``theta_grad = E[U grad_theta log rho]`` and ``w`` the
    solve ``[-H_theta_theta V]^-1 theta_grad`` (flat); ``solve`` its diagnostics (None without the shift)."""

    grad: Params
    direct: Params
    shift: Params
    theta_grad: torch.Tensor
    w: torch.Tensor | None
    solve: Solve | None
    #: the damping the solve used (``adaptive_damping`` may raise it above the one asked for)
    damping: float = 0.0


# ----------------------------------------------------------------------------- linear solvers
def conjugate_gradient(matvec: MatVec, b: torch.Tensor, *, iters: int = 100, tol: float = 1e-10,
                       x0: torch.Tensor | None = None) -> Solve:
    """Solve ``A x = b`` for a symmetric positive-definite ``A`` given as ``matvec(v) = A v`` (Hestenes and
    Stiefel, 1952; Nocedal and Wright, Algorithm 5.2), stopping at ``||r|| <= tol ||b||`` or after ``iters``."""
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ConfigError(f"conjugate_gradient iters must be a positive integer, got {iters!r}")
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - matvec(x) if x0 is not None else b.clone()
    p, rr = r.clone(), r.dot(r)
    b_norm = float(b.norm())
    done = 0
    for done in range(1, iters + 1):
        if float(rr.sqrt()) <= tol * max(b_norm, 1e-300):
            done -= 1
            break
        ap = matvec(p)
        curvature = p.dot(ap)
        if not float(curvature) > 0:
            raise NumericalError(f"conjugate gradient met non-positive curvature p^T A p = {float(curvature):.3g}: "
                                 "the matrix is not positive definite (the lower-level objective is not strongly "
                                 "concave here); raise its regulariser or the damping")
        step = rr / curvature
        x = x + step * p
        r = r - step * ap
        rr_new = r.dot(r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return Solve(x, done, float(rr.sqrt()))


def power_iteration(matvec: MatVec, dim: int, *, iters: int = 30, dtype=torch.float64, device=None,
                    seed: int = 0) -> float:
    """The largest eigenvalue of a symmetric positive semi-definite ``A`` (``matvec(v) = A v``) by power
    iteration from a seeded random start."""
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(dim, generator=generator, dtype=dtype).to(device)
    v = v / v.norm()
    value = 0.0
    for _ in range(iters):
        av = matvec(v)
        value = float(v.dot(av))
        norm = av.norm()
        if float(norm) == 0.0:
            return 0.0
        v = av / norm
    return value


def largest_eigenvalue(matvec: MatVec, dim: int, *, iters: int = 30, dtype=torch.float64, device=None,
                       seed: int = 0) -> float:
    """The most positive eigenvalue of a symmetric, possibly indefinite ``A`` (``matvec(v) = A v``): the largest
    Ritz value of ``iters`` Lanczos steps with full reorthogonalisation from a seeded random start (Golub and Van
    Loan, section 10.1). Lanczos finds both ends of the spectrum at once and fast, also where a large eigenvalue
    of the other sign would slow a shifted power iteration to a crawl; an estimate from below."""
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ConfigError(f"largest_eigenvalue iters must be a positive integer, got {iters!r}")
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=generator, dtype=dtype).to(device)
    q = q / q.norm()
    basis, alphas, betas = [q], [], []
    for _ in range(min(iters, dim)):
        w = matvec(basis[-1]).to(dtype)
        alpha = float(basis[-1].dot(w))
        alphas.append(alpha)
        for v in basis:  # full reorthogonalisation (also removes the alpha and beta components)
            w = w - v.dot(w) * v
        beta = float(w.norm())
        if not beta > 1e-10 * max(1.0, abs(alpha)):
            break
        betas.append(beta)
        basis.append(w / beta)
    n = len(alphas)
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if n > 1:
        off = torch.tensor(betas[:n - 1], dtype=torch.float64)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    return float(torch.linalg.eigvalsh(t)[-1])


def neumann_series(matvec: MatVec, b: torch.Tensor, *, iters: int = 100, alpha: float) -> Solve:
    """``A^-1 b ~ alpha sum_{k=0}^{K-1} (I - alpha A)^k b`` with ``K = iters`` terms (the truncated Neumann series
    of the inverse; Lorraine et al., 2020, eq. 9), converging when ``0 < alpha < 2 / lambda_max(A)`` for a
    positive-definite ``A``."""
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ConfigError(f"neumann_series iters must be a positive integer, got {iters!r}")
    if not alpha > 0:
        raise ConfigError(f"neumann_series alpha must be > 0 (below 2 / the largest eigenvalue), got {alpha!r}")
    term, total = b.clone(), b.clone()
    for _ in range(iters - 1):
        term = term - alpha * matvec(term)
        total = total + term
    x = alpha * total
    return Solve(x, iters, float((matvec(x) - b).norm()))


# ----------------------------------------------------------------------------- parameter structures
def _leaves(p: Params) -> list[torch.Tensor]:
    if isinstance(p, torch.Tensor):
        return [p]
    if isinstance(p, Mapping):
        return [p[k] for k in p]
    if isinstance(p, Sequence):
        return list(p)
    raise ConfigError(f"parameters must be a tensor, a list or a dict of tensors, got {type(p).__name__}")


def _rebuild(p: Params, leaves: Sequence[torch.Tensor]) -> Params:
    if isinstance(p, torch.Tensor):
        return leaves[0]
    if isinstance(p, Mapping):
        return dict(zip(p.keys(), leaves))
    return type(p)(leaves) if isinstance(p, tuple) else list(leaves)


def _live(p: Params) -> tuple[Params, list[torch.Tensor]]:
    """A copy of ``p`` whose leaves are fresh graph leaves that require grad."""
    leaves = [t.detach().requires_grad_(True) for t in _leaves(p)]
    return _rebuild(p, leaves), leaves


def _flat(tensors: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(torch.zeros_like(r) if t is None else t).reshape(-1) for t, r in zip(tensors, like)])


def _unflat(vector: torch.Tensor, like: Params) -> Params:
    leaves, out, i = _leaves(like), [], 0
    for t in leaves:
        out.append(vector[i:i + t.numel()].reshape(t.shape))
        i += t.numel()
    return _rebuild(like, out)


def _scalar(value: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ConfigError(f"{name}(theta, nu) must return a scalar tensor, got "
                          f"{getattr(value, 'shape', type(value).__name__)}")
    return value.reshape(())


# ----------------------------------------------------------------------------- second-order products
def hessian_vector_product(lower: Objective, theta: Params, nu: Params) -> MatVec:
    """``v -> H_theta_theta V(theta, nu) v`` on flat vectors (double backward; the graph of ``grad_theta V`` is
    built once and kept for every product)."""
    theta_live, leaves = _live(theta)
    nu_fixed = _rebuild(nu, [t.detach() for t in _leaves(nu)])
    grads = torch.autograd.grad(_scalar(lower(theta_live, nu_fixed), "lower"), leaves, create_graph=True,
                                allow_unused=True)
    if all(g is None for g in grads):
        raise ConfigError("lower(theta, nu) does not depend on theta")
    flat_grad = _flat(grads, leaves)

    def matvec(v: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad(flat_grad, leaves, grad_outputs=v.detach().to(flat_grad.dtype), retain_graph=True,
                                 allow_unused=True)
        return _flat(hv, leaves).detach()

    return matvec


def mixed_vector_product(lower: Objective, theta: Params, nu: Params, w: torch.Tensor) -> torch.Tensor:
    """``H_nu_theta V(theta, nu) w = grad_nu (grad_theta V . w)`` on flat vectors (double backward)."""
    theta_live, t_leaves = _live(theta)
    nu_live, n_leaves = _live(nu)
    grads = torch.autograd.grad(_scalar(lower(theta_live, nu_live), "lower"), t_leaves, create_graph=True,
                                allow_unused=True)
    flat = _flat(grads, t_leaves)
    inner = flat.dot(w.detach().to(flat.dtype))
    if not inner.requires_grad:
        return torch.zeros(sum(t.numel() for t in n_leaves), dtype=w.dtype, device=w.device)
    out = torch.autograd.grad(inner, n_leaves, allow_unused=True)
    return _flat(out, n_leaves).detach()


# ----------------------------------------------------------------------------- the hypergradient
def hypergradient(upper: Objective, lower: Objective, theta: Params, nu: Params, *, shift: bool = True,
                  solver: str = "cg", iters: int = 100, tol: float = 1e-10, alpha: float | None = None,
                  damping: float = 0.0, adaptive_damping: bool = False, curvature_iters: int = 30) -> Hypergradient:
    """A-PARL's ``grad_nu G`` at ``(theta, nu)`` with ``theta`` (close to) ``argmax_theta lower(., nu)`` (see the
    module docstring): ``E[grad_nu U]`` plus, with ``shift``, ``H_nu_theta V [-H_theta_theta V + damping I]^-1
    E[U grad_theta log rho]``, the solve by ``solver`` ``"cg"`` (up to ``iters`` products, relative tolerance
    ``tol``) or ``"neumann"`` (``iters`` terms, step ``alpha``; None: ``1 / lambda_max`` by power iteration).
    Both levels are maximised: ``grad`` is an ascent direction for ``nu``.

    ``adaptive_damping``: away from a strict maximum (a SAC actor mid-training) ``H_theta_theta V`` can have
    positive eigenvalues, and a truncated CG on the indefinite system returns an inflated direction without
    noticing; the damping is then raised to 1.5 x the most positive eigenvalue (:func:`largest_eigenvalue`,
    ``curvature_iters`` Lanczos products) when that is larger, so that the solved system is positive definite.
    """
    if solver not in ("cg", "neumann"):
        raise ConfigError(f"unknown solver {solver!r}; choose 'cg' (conjugate gradient) or 'neumann'")
    if damping < 0:
        raise ConfigError(f"damping must be >= 0, got {damping!r}")
    theta_live, t_leaves = _live(theta)
    nu_live, n_leaves = _live(nu)
    value = _scalar(upper(theta_live, nu_live), "upper")
    if not value.requires_grad:
        raise ConfigError("upper(theta, nu) depends on neither theta nor nu")
    grads = torch.autograd.grad(value, t_leaves + n_leaves, allow_unused=True)
    theta_grad = _flat(grads[:len(t_leaves)], t_leaves).detach()
    direct = _flat(grads[len(t_leaves):], n_leaves).detach()
    if not shift:
        zero = torch.zeros_like(direct)
        return Hypergradient(_unflat(direct, nu), _unflat(direct, nu), _unflat(zero, nu), theta_grad, None, None,
                             damping)
    hvp = hessian_vector_product(lower, theta, nu)
    if adaptive_damping:
        top = largest_eigenvalue(hvp, theta_grad.numel(), iters=curvature_iters, dtype=theta_grad.dtype,
                                 device=theta_grad.device)
        damping = max(damping, 1.5 * top)

    def matvec(v: torch.Tensor) -> torch.Tensor:  # -H + damping I: positive definite at a strict maximum
        return -hvp(v) + damping * v

    if solver == "cg":
        solve = conjugate_gradient(matvec, theta_grad, iters=iters, tol=tol)
    else:
        if alpha is None:
            alpha = 1.0 / max(power_iteration(matvec, theta_grad.numel(), dtype=theta_grad.dtype,
                                              device=theta_grad.device), 1e-12)
        solve = neumann_series(matvec, theta_grad, iters=iters, alpha=alpha)
    shift_term = mixed_vector_product(lower, theta, nu, solve.x)
    if not (torch.isfinite(direct).all() and torch.isfinite(shift_term).all()):
        raise NumericalError("the hypergradient is not finite (direct or distribution-shift term)")
    return Hypergradient(_unflat(direct + shift_term, nu), _unflat(direct, nu), _unflat(shift_term, nu), theta_grad,
                         solve.x, solve, damping)


# ----------------------------------------------------------------------------- objectives
def l2_regularised(objective: Objective, lam: float, center: Params | None = None) -> Objective:
    """``(theta, nu) -> objective(theta, nu) - lam / 2 ||theta - center||^2`` (``center`` None: 0): the
    regulariser that makes the lower level strongly concave (as PARL assumes of its lower level)."""
    if not lam >= 0:
        raise ConfigError(f"the regulariser lam must be >= 0, got {lam!r}")
    centers = None if center is None else [c.detach() for c in _leaves(center)]

    def regularised(theta: Params, nu: Params) -> torch.Tensor:
        leaves = _leaves(theta)
        cs = centers or [None] * len(leaves)
        penalty = sum(((t if c is None else t - c).square().sum() for t, c in zip(leaves, cs)),
                      torch.zeros((), dtype=leaves[0].dtype, device=leaves[0].device))
        return objective(theta, nu) - 0.5 * lam * penalty

    return regularised


def score_function_surrogate(utilities: torch.Tensor, log_probs: torch.Tensor, *,
                             baseline: str = "leave_one_out") -> torch.Tensor:
    """A scalar whose value is ``mean(U)``, whose gradient through ``utilities`` is ``mean(grad_nu U)`` and through
    ``log_probs`` (``log rho(tau; theta)`` of each sample, ``(N,)``) the score-function estimate
    ``mean((U - b) grad_theta log rho)`` of ``grad_theta E_rho[U]`` (the second expectation of PARL's
    hypergradient; Williams, 1992). ``baseline``: ``"leave_one_out"`` (``b_i`` = the mean of the other samples' ``U``: unbiased),
    ``"none"``."""
    if utilities.shape != log_probs.shape or utilities.ndim != 1:
        raise ConfigError(f"utilities and log_probs must both be (N,), got {tuple(utilities.shape)} and "
                          f"{tuple(log_probs.shape)}")
    u = utilities.detach()
    if baseline == "leave_one_out":
        n = u.shape[0]
        if n < 2:
            raise ConfigError("a leave-one-out baseline needs at least 2 samples")
        u = u - (u.sum() - u) / (n - 1)
    elif baseline != "none":
        raise ConfigError(f"unknown baseline {baseline!r}; choose 'leave_one_out' or 'none'")
    return (utilities + u * (log_probs - log_probs.detach())).mean()
