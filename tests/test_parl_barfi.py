"""BARFI: the GridWorld and the pure parts by hand, the outer gradient against the reference's Neumann formula
and against finite differences of J(theta*(phi)) on an exact small problem, and a seeded learning test on the
misleading auxiliary reward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.agents.parl.barfi import (
    BarfiConfig,
    aligned_reward,
    barfi_gradient,
    discounted_returns,
    exact_inner_objective,
    exact_outer_objective,
    init_phi,
    inner_objective,
    learned_discount,
    outer_objective,
    phi_penalty,
    policy_entropy,
    reinforce_objective,
    run_barfi,
    solve_inner,
)
from zoo.agents.parl.barfi_gridworld import exact_return, gridworld, sample_episodes
from zoo.errors import ConfigError

F64 = torch.float64
torch.set_num_threads(1)


def path_policy(world, moves: dict[int, int]) -> torch.Tensor:
    """A near-deterministic tabular policy: action ``moves[s]`` in state ``s`` (logit 60), uniform elsewhere."""
    theta = torch.zeros(world.num_states, world.num_actions, dtype=F64)
    for s, a in moves.items():
        theta[s, a] = 60.0
    return theta


# ----------------------------------------------------------------------------- the GridWorld
def test_gridworld_dynamics_and_rewards_by_hand():
    world = gridworld(5, 20, "bad")
    torch.testing.assert_close(world.transitions.sum(-1), torch.ones(25, 4, dtype=F64))
    # from the start, "up" moves up with 0.9 + 0.1/4; "down" and "left" hit walls, so the agent stays w.p. 0.05
    assert float(world.transitions[0, 0, 5]) == pytest.approx(0.925)
    assert float(world.transitions[0, 0, 0]) == pytest.approx(0.05)
    assert world.centre == 12 and world.goal == 24 and bool(world.terminal[24]) and int(world.terminal.sum()) == 1
    # -0.1 a step, +100 on arriving at the goal, nothing in the absorbing goal; +50 for ending a step in the centre
    assert float(world.env_reward[23, 1, 24]) == pytest.approx(99.9)
    assert float(world.env_reward[0, 0, 5]) == pytest.approx(-0.1) and float(world.env_reward[24, 0, 24]) == 0
    assert float(world.aux_reward[7, 0, 12]) == 50 and float(world.aux_reward[7, 0, 8]) == 0
    good = gridworld(5, 20, "good")
    assert float(good.aux_reward[0, 0, 5]) == pytest.approx(-(9 + 16) / 16)
    assert float(gridworld(5, 20, "none").aux_reward.abs().sum()) == 0
    with pytest.raises(ConfigError, match="odd"):
        gridworld(4)
    with pytest.raises(ConfigError, match="auxiliary"):
        gridworld(5, aux="helpful")


def test_exact_return_and_sampled_episodes_agree_with_a_hand_computed_path():
    world = gridworld(3, 6, "bad", slip=0.0)
    # up, right (into the centre: +50), right, up (the goal at step 4: +100), then absorbed
    theta = path_policy(world, {0: 0, 3: 1, 4: 1, 5: 0})
    env = world.expected(world.env_reward)
    aux = world.expected(world.aux_reward)
    assert float(exact_return(world, theta, env)) == pytest.approx(-0.4 + 100, abs=1e-9)
    assert float(exact_return(world, theta, aux)) == pytest.approx(50.0, abs=1e-9)
    assert float(exact_return(world, theta, env, 0.5)) == pytest.approx(-0.1 * (1 + 0.5 + 0.25) + 0.125 * 99.9)
    eps = sample_episodes(world, theta, 3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(eps.states[0], torch.tensor([0, 3, 4, 5, 8, 8]))
    torch.testing.assert_close(eps.mask[0], torch.tensor([1, 1, 1, 1, 0, 0], dtype=F64))
    torch.testing.assert_close(eps.rewards.sum(-1), torch.full((3,), 99.6, dtype=F64))
    torch.testing.assert_close(eps.aux.sum(-1), torch.full((3,), 50.0, dtype=F64))


def test_sampled_returns_match_the_exact_expectation():
    world = gridworld(3, 5, "bad")
    theta = torch.randn(9, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    eps = sample_episodes(world, theta, 20_000, torch.Generator().manual_seed(2))
    exact = float(exact_return(world, theta, world.expected(world.env_reward)))
    sampled = eps.rewards.sum(-1)
    assert abs(float(sampled.mean()) - exact) < 4 * float(sampled.std()) / math.sqrt(20_000)


# ----------------------------------------------------------------------------- pure parts by hand
def test_learned_reward_discount_and_penalty_by_hand():
    phi = init_phi(3, aux_weight=0.5, gamma=0.9)
    assert float(learned_discount(phi)) == pytest.approx(0.9)
    phi["bias"] = torch.tensor([1.0, -2.0, 0.0], dtype=F64)
    states = torch.tensor([[0, 1], [2, 0]])
    rewards = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64)
    aux = torch.tensor([[10.0, 20.0], [30.0, 40.0]], dtype=F64)
    # phi_1(s) + r + phi_2(s) r_aux
    torch.testing.assert_close(aligned_reward(phi, states, rewards, aux),
                               torch.tensor([[1 + 1 + 5, -2 + 2 + 10], [0 + 3 + 15, 1 + 4 + 20]], dtype=F64))
    # ||bias|| = sqrt(5), ||aux|| = sqrt(3 * 0.25)
    expected = 0.1 * (math.sqrt(5) + math.sqrt(0.75)) + 2.0 * 0.9
    assert float(phi_penalty(phi, 0.1, 2.0)) == pytest.approx(expected)
    with pytest.raises(ConfigError, match="discount"):
        init_phi(3, gamma=1.0)


def test_discounted_returns_reinforce_and_entropy_by_hand():
    gamma = torch.tensor(0.5, dtype=F64, requires_grad=True)
    returns = discounted_returns(torch.tensor([[1.0, 2.0, 3.0]], dtype=F64), gamma)
    torch.testing.assert_close(returns, torch.tensor([[2.75, 3.5, 3.0]], dtype=F64))
    (dg,) = torch.autograd.grad(returns[0, 0], gamma)
    assert float(dg) == pytest.approx(2 + 2 * 0.5 * 3)  # d/dgamma (1 + 2 gamma + 3 gamma^2)
    log_probs = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, 0.0, 0.0]], dtype=F64)
    g = torch.tensor([[2.0, 1.0, 4.0], [6.0, 0.0, 0.0]], dtype=F64)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=F64)
    # ((-2 - 2) / 3 + (-3) / 3) / 2: padding counts in the mean over the horizon, as the reference
    assert float(reinforce_objective(log_probs, g, mask)) == pytest.approx(((-4) / 3 + (-3) / 3) / 2)
    uniform = torch.log(torch.full((2, 3, 4), 0.25, dtype=F64))
    assert float(policy_entropy(uniform, mask)) == pytest.approx(math.log(4))


def test_inner_objective_gradient_is_reinforce_on_the_learned_reward():
    world = gridworld(3, 4, "bad")
    gen = torch.Generator().manual_seed(3)
    theta = torch.randn(9, 4, generator=gen, dtype=F64)
    eps = sample_episodes(world, theta, 2, gen)
    phi = init_phi(9, aux_weight=0.3, gamma=0.8)
    phi["bias"] = torch.randn(9, generator=gen, dtype=F64)
    live = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(inner_objective(eps)(live, phi), live)
    # by hand: (1 / (B H)) sum_b sum_t mask grad log pi(a_t | s_t) G_t with G_t on r_phi and gamma_phi
    expected = torch.zeros_like(theta)
    pi = torch.softmax(theta, -1)
    for b in range(2):
        r = [float(phi["bias"][s] + rew + phi["aux"][s] * x) * float(m) for s, rew, x, m in
             zip(eps.states[b], eps.rewards[b], eps.aux[b], eps.mask[b])]
        for t in range(4):
            g_t = sum(0.8 ** (k - t) * r[k] for k in range(t, 4))
            s, a = int(eps.states[b, t]), int(eps.actions[b, t])
            score = -pi[s].clone()
            score[a] += 1.0
            expected[s] += float(eps.mask[b, t]) * score * g_t / 8
    torch.testing.assert_close(grad, expected)
    # the naive warm-up objective ignores phi's reward weights
    naive = inner_objective(eps, naive=True)
    other = dict(phi, bias=torch.zeros(9, dtype=F64))
    assert float(naive(theta, phi)) == pytest.approx(float(naive(theta, other)))
    assert float(inner_objective(eps)(theta, phi)) != pytest.approx(float(inner_objective(eps)(theta, other)))


# ----------------------------------------------------------------------------- the outer gradient
def _flat_phi(phi):
    return torch.cat([phi["bias"], phi["aux"], phi["gamma"].reshape(1)])


def _unflat_phi(x, n):
    return {"bias": x[:n], "aux": x[n:2 * n], "gamma": x[2 * n]}


def test_neumann_outer_gradient_is_the_references_formula():
    """The reference's ``outer_Neumann``: v = grad_theta J, p = alpha sum_{k=0}^{5} (I + alpha H)^k v,
    grad = -(-H_phi_theta p) = H_phi_theta p, computed here with explicit matrices."""
    world = gridworld(3, 4, "bad")
    gen = torch.Generator().manual_seed(4)
    theta = torch.randn(9, 4, generator=gen, dtype=F64)
    eps = sample_episodes(world, theta, 6, gen)
    phi = init_phi(9, aux_weight=0.7)
    upper = outer_objective(eps, gamma=0.99, reward_l2=0.1, gamma_l2=0.5)
    lower = inner_objective(eps, entropy_coef=0.05)
    alpha = 0.01
    result = barfi_gradient(upper, lower, theta, phi, terms=6, alpha=alpha)
    t0, p0 = theta.reshape(-1), _flat_phi(phi)
    f_lower = lambda t, p: lower(t.reshape(9, 4), _unflat_phi(p, 9))
    f_upper = lambda t, p: upper(t.reshape(9, 4), _unflat_phi(p, 9))
    (h_tt, h_tp), _ = torch.autograd.functional.hessian(f_lower, (t0, p0))
    v, direct = torch.autograd.functional.jacobian(f_upper, (t0, p0))
    term, total = v.clone(), v.clone()
    for _ in range(5):
        term = term + alpha * h_tt @ term
        total = total + term
    expected = direct + h_tp.T @ (alpha * total)
    torch.testing.assert_close(_flat_phi(result.grad), expected, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(_flat_phi(result.direct), direct)


@pytest.fixture(scope="module")
def exact_problem():
    world = gridworld(3, 5, "bad", aux_reward=5.0, goal_reward=10.0)
    lam = 0.5
    gen = torch.Generator().manual_seed(5)
    phi = {"bias": 0.3 * torch.randn(9, generator=gen, dtype=F64), "aux": 0.5 + 0.3 * torch.randn(9, generator=gen, dtype=F64),
           "gamma": torch.tensor(1.5, dtype=F64)}
    lower = exact_inner_objective(world, lam)
    upper = exact_outer_objective(world, gamma=0.99, reward_l2=0.01, gamma_l2=0.1)
    theta = solve_inner(lower, phi, torch.zeros(9, 4, dtype=F64))
    return world, lower, upper, phi, theta


def test_theta_star_is_a_strict_maximum(exact_problem):
    _, lower, _, phi, theta = exact_problem
    live = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(lower(live, phi), live)
    assert float(grad.norm()) < 1e-10
    hess = torch.autograd.functional.hessian(lambda x: lower(x.reshape(9, 4), phi), theta.reshape(-1))
    assert float(torch.linalg.eigvalsh(hess)[-1]) < 0


@pytest.mark.parametrize("solver", ["cg", "neumann"])
def test_implicit_outer_gradient_matches_finite_differences(exact_problem, solver):
    _, lower, upper, phi, theta = exact_problem
    if solver == "cg":
        result = barfi_gradient(upper, lower, theta, phi, solver="cg", terms=100)
    else:  # enough terms, with the step 1 / lambda_max found by power iteration
        result = barfi_gradient(upper, lower, theta, phi, terms=3000, alpha=None)
    x0 = _flat_phi(phi)

    def j_star(x: torch.Tensor) -> float:
        p = _unflat_phi(x, 9)
        return float(upper(solve_inner(lower, p, theta), p))

    h, fd = 1e-5, torch.zeros_like(x0)
    for i in range(x0.numel()):
        e = torch.zeros_like(x0)
        e[i] = h
        fd[i] = (j_star(x0 + e) - j_star(x0 - e)) / (2 * h)
    grad = _flat_phi(result.grad)
    err = float((grad - fd).abs().max())
    assert err < 1e-4 and err < 1e-4 * float(fd.abs().max())
    # the implicit (through theta*) term is what makes it right: the regularisers' direct term alone is far off
    assert float((_flat_phi(result.direct) - fd).abs().max()) > 100 * max(err, 1e-6)


# ----------------------------------------------------------------------------- the loop
def test_barfi_recovers_the_true_return_where_the_naive_combination_fails():
    world = gridworld(5, 20, "bad")
    cfg = BarfiConfig(iterations=250)
    barfi = run_barfi(world, "barfi", cfg, seed=0)
    naive = run_barfi(world, "naive", cfg, seed=0)
    assert barfi["true_return"].shape == (250,) and barfi["phi_aux"].shape == (25,)
    # the naive r_env + r_aux policy loiters in the centre; BARFI learns to weight r_aux down and reaches the goal
    final_barfi, final_naive = barfi["true_return"][-20:].mean(), naive["true_return"][-20:].mean()
    assert final_barfi > 80 and final_barfi > final_naive + 50
    assert barfi["aux_weight"][-1] < 0.5 and (naive["aux_weight"] == 1.0).all()
    assert np.isfinite(barfi["gamma"]).all() and (naive["gamma"] == pytest.approx(0.99))


def test_config_and_method_errors():
    with pytest.raises(ConfigError, match="inner_batch"):
        BarfiConfig(inner_batch=0)
    with pytest.raises(ConfigError, match="actor_lr"):
        BarfiConfig(actor_lr=0.0)
    with pytest.raises(ConfigError, match="method"):
        run_barfi(gridworld(3, 4), "reinforce")
