"""A-PARL's hypergradient: the linear solvers against an explicit inverse, the second-order products against
explicit Hessians, a quadratic bilevel problem in closed form, and the exact small MDP against central finite
differences of G(nu, theta*(nu))."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.agents.parl.hypergradient import (
    conjugate_gradient,
    hessian_vector_product,
    hypergradient,
    l2_regularised,
    largest_eigenvalue,
    mixed_vector_product,
    neumann_series,
    power_iteration,
    score_function_surrogate,
)
from zoo.agents.parl.tabular import (
    enumerate_trajectories,
    expected_return,
    lower_objective,
    optimal_return,
    random_mdp,
    run_bilevel,
    solve_policy,
    teacher_preferences,
    upper_objective,
)
from zoo.datasets.teachers import ScriptedTeacher
from zoo.errors import ConfigError, NumericalError

F64 = torch.float64


def spd(n: int, seed: int, cond: float = 20.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    return q @ torch.diag(torch.linspace(1.0, cond, n, dtype=F64)) @ q.T


# ----------------------------------------------------------------------------- solvers
def indefinite(n: int, seed: int, eigenvalues) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=F64)) @ q.T


def test_largest_eigenvalue_of_an_indefinite_matrix():
    # the dominant eigenvalue (-9) is negative; the most positive one (2.5) is what is asked for
    a = indefinite(6, 3, [-9.0, -4.0, -1.0, 0.5, 1.0, 2.5])
    assert largest_eigenvalue(lambda v: a @ v, 6) == pytest.approx(2.5, rel=1e-8)
    assert largest_eigenvalue(lambda v: -(a @ v), 6) == pytest.approx(9.0, rel=1e-8)
    assert largest_eigenvalue(lambda v: 0 * v, 6) == 0.0
    # a SAC actor's Hessian: a large negative eigenvalue, a bulk just below 0 and a small positive top; 30 steps
    # (the agent's setting) find the top, where a shifted power iteration of 30 steps still reads -0.17
    bulk = torch.linspace(-1.5, -0.5, 400, dtype=F64).tolist()
    sac_like = indefinite(402, 7, [-50.0, *bulk, 2.0])
    assert largest_eigenvalue(lambda v: sac_like @ v, 402, iters=30) == pytest.approx(2.0, rel=1e-3)
    negative = indefinite(6, 8, [-5.0, -4.0, -3.0, -2.0, -1.5, -1.0])
    assert largest_eigenvalue(lambda v: negative @ v, 6) == pytest.approx(-1.0, rel=1e-6)


def test_adaptive_damping_makes_an_indefinite_lower_level_solvable():
    """Away from a maximum (H_theta_theta V with a positive eigenvalue) CG on -H + damping I meets negative
    curvature; adaptive damping raises the damping past 1.5 x that eigenvalue and solves the damped system."""
    h = indefinite(5, 4, [-3.0, -2.0, -1.0, 0.5, 2.0])  # V = 1/2 theta^T H theta + theta . (M nu)
    m = torch.randn(5, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    g = torch.randn(5, generator=torch.Generator().manual_seed(6), dtype=F64)

    def lower(theta, nu):
        return 0.5 * theta @ h @ theta + theta @ (m @ nu)

    def upper(theta, nu):
        return theta @ g + nu.sum()

    theta, nu = torch.zeros(5, dtype=F64), torch.zeros(3, dtype=F64)
    with pytest.raises(NumericalError, match="not positive definite"):
        hypergradient(upper, lower, theta, nu, iters=50, damping=0.1)
    out = hypergradient(upper, lower, theta, nu, iters=50, damping=0.1, adaptive_damping=True)
    assert out.damping == pytest.approx(3.0, rel=1e-3)  # 1.5 x the top eigenvalue 2
    expected = m.T @ torch.linalg.solve(-h + out.damping * torch.eye(5, dtype=F64), g)
    torch.testing.assert_close(out.shift, expected, rtol=1e-8, atol=1e-10)
    # at a strict maximum the floor is kept: nothing changes for a strongly concave lower level
    concave = hypergradient(upper, lambda t, n: 0.5 * t @ (h - 3 * torch.eye(5, dtype=F64)) @ t + t @ (m @ n),
                            theta, nu, iters=50, damping=0.1, adaptive_damping=True)
    assert concave.damping == 0.1


def test_conjugate_gradient_matches_the_explicit_inverse():
    a, b = spd(8, 0), torch.arange(1.0, 9.0, dtype=F64)
    solve = conjugate_gradient(lambda v: a @ v, b, iters=50, tol=1e-12)
    torch.testing.assert_close(solve.x, torch.linalg.inv(a) @ b, rtol=1e-9, atol=1e-10)
    assert solve.iterations <= 8 + 1 and solve.residual < 1e-10  # n steps in exact arithmetic
    # a warm start at the answer needs no step
    assert conjugate_gradient(lambda v: a @ v, b, x0=solve.x, tol=1e-8).iterations == 0
    with pytest.raises(NumericalError, match="not positive definite"):
        conjugate_gradient(lambda v: -(a @ v), b)


def test_neumann_series_matches_the_explicit_inverse_and_power_iteration_the_top_eigenvalue():
    a, b = spd(6, 1, cond=5.0), torch.ones(6, dtype=F64)
    top = power_iteration(lambda v: a @ v, 6, iters=200)
    assert top == pytest.approx(5.0, rel=1e-6)
    solve = neumann_series(lambda v: a @ v, b, iters=400, alpha=1.0 / top)
    torch.testing.assert_close(solve.x, torch.linalg.solve(a, b), rtol=1e-9, atol=1e-10)
    # a handful of terms is a truncation: alpha * (b + (I - alpha A) b) exactly
    two = neumann_series(lambda v: a @ v, b, iters=2, alpha=0.1)
    torch.testing.assert_close(two.x, 0.1 * (b + (b - 0.1 * a @ b)))
    with pytest.raises(ConfigError, match="alpha"):
        neumann_series(lambda v: a @ v, b, alpha=0.0)


# ----------------------------------------------------------------------------- second-order products
def cubic(theta: dict, nu: torch.Tensor) -> torch.Tensor:
    x, y = theta["x"], theta["y"]
    return (x ** 3).sum() * nu[0] + (x * y).sum() * nu[1] ** 2 - (y ** 2).sum() + x[0] * y[1] * nu[0]


def test_products_match_explicit_hessians():
    theta = {"x": torch.tensor([0.3, -0.7], dtype=F64), "y": torch.tensor([1.1, 0.4], dtype=F64)}
    nu = torch.tensor([0.5, -1.2], dtype=F64)

    def joint(z: torch.Tensor) -> torch.Tensor:
        return cubic({"x": z[:2], "y": z[2:4]}, z[4:])

    h = torch.autograd.functional.hessian(joint, torch.cat([theta["x"], theta["y"], nu]))
    v = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)
    torch.testing.assert_close(hessian_vector_product(cubic, theta, nu)(v), h[:4, :4] @ v)
    torch.testing.assert_close(mixed_vector_product(cubic, theta, nu, v), h[4:, :4] @ v)


def test_hypergradient_of_a_quadratic_bilevel_problem_in_closed_form():
    # lower V = -1/2 theta^T A theta + theta^T B nu  ->  theta* = A^-1 B nu, d theta*/d nu = A^-1 B
    # upper G = c . theta + d . nu + 1/2 |nu|^2       ->  dG/dnu = d + nu + B^T A^-1 c
    a, g = spd(5, 2), torch.Generator().manual_seed(3)
    bmat = torch.randn(5, 3, generator=g, dtype=F64)
    c, d = torch.randn(5, generator=g, dtype=F64), torch.randn(3, generator=g, dtype=F64)
    nu = torch.randn(3, generator=g, dtype=F64)
    theta = torch.linalg.solve(a, bmat @ nu)

    def lower(th, n):
        return -0.5 * th @ a @ th + th @ bmat @ n

    def upper(th, n):
        return c @ th + d @ n + 0.5 * n @ n

    expected = d + nu + bmat.T @ torch.linalg.solve(a, c)
    for solver in ("cg", "neumann"):
        result = hypergradient(upper, lower, theta, nu, solver=solver, iters=600)
        torch.testing.assert_close(result.grad, expected, rtol=1e-8, atol=1e-9)
        torch.testing.assert_close(result.direct, d + nu)
        torch.testing.assert_close(result.shift, bmat.T @ torch.linalg.solve(a, c), rtol=1e-8, atol=1e-9)
    plain = hypergradient(upper, lower, theta, nu, shift=False)
    torch.testing.assert_close(plain.grad, d + nu)
    assert plain.solve is None and float(plain.shift.abs().max()) == 0.0
    with pytest.raises(ConfigError, match="unknown solver"):
        hypergradient(upper, lower, theta, nu, solver="lu")
    with pytest.raises(ConfigError, match="scalar"):
        hypergradient(lambda th, n: th, lower, theta, nu)


def test_l2_regulariser_and_score_function_surrogate_by_hand():
    reg = l2_regularised(lambda th, n: th.sum() * n, 0.5, center=torch.tensor([1.0, 0.0]))
    assert reg(torch.tensor([2.0, 3.0]), torch.tensor(1.0)).item() == pytest.approx(5.0 - 0.25 * (1 + 9))
    nu = torch.tensor(2.0, requires_grad=True)
    logp = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    u = nu * torch.tensor([1.0, 2.0, 3.0])  # U_i = nu * c_i -> grad_nu mean(U) = 2
    surrogate = score_function_surrogate(u, logp)
    assert surrogate.item() == pytest.approx(4.0)  # its value is mean(U)
    surrogate.backward()
    assert nu.grad.item() == pytest.approx(2.0)
    # leave-one-out baselines b = (5, 4, 3) * 2 / 2: U - b = 2 - 5, 4 - 4, 6 - 3 -> gradient (U - b) / 3
    torch.testing.assert_close(logp.grad, torch.tensor([-3.0, 0.0, 3.0]) / 3)
    logp.grad = None
    score_function_surrogate(u.detach(), logp, baseline="none").backward()
    torch.testing.assert_close(logp.grad, torch.tensor([2.0, 4.0, 6.0]) / 3)


# ----------------------------------------------------------------------------- the exact small MDP
LAM = 0.05


@pytest.fixture(scope="module")
def small_mdp():
    mdp = random_mdp(0)  # 5 states, 2 actions, 3 features, horizon 3: 1,000 trajectories
    trajs = enumerate_trajectories(mdp)
    prefs = teacher_preferences(trajs, ScriptedTeacher("noisy"))
    return mdp, trajs, upper_objective(trajs, prefs)


def test_the_enumeration_agrees_with_the_recursion(small_mdp):
    mdp, trajs, _ = small_mdp
    theta = torch.tensor([[0.3, -0.2], [1.0, 0.0], [-0.5, 0.5], [0.0, 2.0], [0.1, 0.1]], dtype=F64)
    rho = torch.exp(trajs.log_prob(theta))
    assert float(rho.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(rho @ trajs.true_rewards.sum(1)) == pytest.approx(
        float(expected_return(mdp, theta, mdp.true_reward)), abs=1e-12)
    assert optimal_return(mdp) >= float(expected_return(mdp, theta, mdp.true_reward))
    # theta*(nu) is a stationary point of the regularised objective
    nu = torch.tensor([0.5, -0.3, 0.8], dtype=F64)
    star = solve_policy(mdp, nu, LAM).requires_grad_(True)
    (grad,) = torch.autograd.grad(lower_objective(mdp, LAM)(star, nu), star)
    assert float(grad.norm()) < 1e-11


@pytest.mark.parametrize("solver", ["cg", "neumann"])
def test_hypergradient_matches_finite_differences_of_g_at_theta_star(small_mdp, solver):
    mdp, _, upper = small_mdp
    lower = lower_objective(mdp, LAM)
    nu = torch.tensor([0.5, -0.3, 0.8], dtype=F64)
    theta = solve_policy(mdp, nu, LAM)
    result = hypergradient(upper, lower, theta, nu, solver=solver, iters=50 if solver == "cg" else 300)

    def g_star(n: torch.Tensor) -> float:
        return float(upper(solve_policy(mdp, n, LAM, theta), n))

    h, fd = 1e-5, torch.zeros(3, dtype=F64)
    for i in range(3):
        e = torch.zeros(3, dtype=F64)
        e[i] = h
        fd[i] = (g_star(nu + e) - g_star(nu - e)) / (2 * h)
    # the tolerance: absolute 1e-4, and relative 1e-4 of the largest component (float64; measured ~1e-10)
    err = float((result.grad - fd).abs().max())
    assert err < 1e-4 and err < 1e-4 * float(fd.abs().max())
    # the distribution-shift term is what makes it exact: the direct term alone is off by far more
    assert float((result.direct - fd).abs().max()) > 100 * max(err, 1e-6)


def test_the_bilevel_loop_records_both_methods(small_mdp):
    mdp = small_mdp[0]
    for queries in (None, 16):
        aparl = run_bilevel(mdp, shift=True, rounds=2, lr=0.3, queries=queries, seed=1)
        pebble = run_bilevel(mdp, shift=False, rounds=2, lr=0.3, queries=queries, seed=1)
        assert aparl["true_return"].shape == (3,) and aparl["G"].shape == (3,) and aparl["nu"].shape == (3, 3)
        # at nu = 0 every pair has U = log(1/2) whatever its label, so G does not depend on theta there and the
        # shift term is zero; afterwards A-PARL has one and the PEBBLE-style loop never does
        assert aparl["shift_norm"][0] == pytest.approx(0.0, abs=1e-12) and aparl["shift_norm"][1] > 1e-3
        assert (pebble["shift_norm"] == 0).all()
        assert aparl["G"][0] == pytest.approx(-math.log(2)) == pebble["G"][0]
        assert aparl["true_return"][0] == pebble["true_return"][0]
        assert not np.allclose(aparl["nu"][2], pebble["nu"][2])
        assert np.isfinite(aparl["G"]).all() and (aparl["G"] <= 0).all()
