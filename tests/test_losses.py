"""The shared math (zoo.losses, the helpers of zoo.nets, the n-step kernel of zoo.returns) on hand-computed
cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from zoo.losses import awr_weights, expectile_loss, tanh_gaussian_log_prob
from zoo.nets import QNetwork, SquashedGaussianActor, flatten_time, polyak_update, time_slice
from zoo.returns import nstep_return

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def test_awr_weights_are_exp_advantage_over_temperature_clipped():
    adv = torch.tensor([0.0, 1.0, -1.0, 10.0])
    expected = [1.0, math.exp(2.0), math.exp(-2.0), 20.0]  # temperature 0.5 doubles A; exp(20) capped at 20
    assert awr_weights(adv, 0.5, 20.0).tolist() == pytest.approx(expected)
    assert awr_weights(adv, 0.5).tolist() == pytest.approx([1.0, math.exp(2.0), math.exp(-2.0), math.exp(20.0)])
    # temperature 2 halves A: exp(5) = 148.4 is capped at 100
    assert awr_weights(adv, 2.0, 100.0).tolist() == pytest.approx([1.0, math.exp(0.5), math.exp(-0.5), 100.0])


def test_expectile_loss_hand_computed():
    # u = [1, -2], tau = 0.9: (0.9 * 1 + 0.1 * 4) / 2; tau = 0.5 is half the mean squared error
    diff = torch.tensor([1.0, -2.0])
    assert expectile_loss(diff, 0.9).item() == pytest.approx((0.9 + 0.4) / 2)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (1 + 4) / 2)


def test_tanh_gaussian_log_prob_hand_computed():
    # u = 0.5, mean 0.2, std 0.5, scale 2: log N = -0.5 (0.3 / 0.5)^2 - log 0.5 - log sqrt(2 pi);
    # the squash's log-det is log(2 (1 - tanh(0.5)^2) + 1e-6)
    u, mean, log_std = torch.tensor([[0.5]]), torch.tensor([[0.2]]), torch.tensor([[math.log(0.5)]])
    normal = -0.5 * 0.6 ** 2 - math.log(0.5) - HALF_LOG_2PI
    expected = normal - math.log(2 * (1 - math.tanh(0.5) ** 2) + 1e-6)
    assert tanh_gaussian_log_prob(u, mean, log_std, scale=2.0).item() == pytest.approx(expected, rel=1e-6)
    # summed over the last axis; at u = mean = 0 with unit std each dimension gives -log sqrt(2 pi) - log(1 + 1e-6)
    zeros = torch.zeros(3, 2)
    assert torch.allclose(tanh_gaussian_log_prob(zeros, zeros, zeros),
                          torch.full((3,), 2 * (-HALF_LOG_2PI - math.log(1 + 1e-6))))
    # given tanh(u) and exp(log_std) explicitly, the same numbers
    u, mean, log_std = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3).clamp(-2, 1)
    assert torch.equal(tanh_gaussian_log_prob(u, mean, log_std),
                       tanh_gaussian_log_prob(u, mean, log_std, std=log_std.exp(), squashed=torch.tanh(u)))


def test_tanh_gaussian_log_prob_is_the_density_of_the_squashed_action():
    # without the 1e-6, the change of variables a = tanh(u): log p(a) = log N(u) - log(1 - tanh(u)^2)
    torch.manual_seed(0)
    mean, std = torch.tensor([0.3, -0.2]), torch.tensor([0.4, 0.7])
    base = torch.distributions.Normal(mean, std)
    squashed = torch.distributions.TransformedDistribution(base, [torch.distributions.TanhTransform()])
    u = base.sample((5,))
    expected = squashed.log_prob(torch.tanh(u)).sum(-1)
    assert torch.allclose(tanh_gaussian_log_prob(u, mean.expand(5, 2), std.log().expand(5, 2)), expected, atol=1e-4)


def test_the_sac_actor_reports_the_shared_log_likelihood_of_its_sample():
    obs_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    act_space = spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    actor = SquashedGaussianActor(obs_space, act_space, (16,), "relu")
    obs = torch.randn(6, 3)
    torch.manual_seed(1)
    action, log_prob = actor(obs)
    torch.manual_seed(1)
    h = actor.trunk(actor.encoder(obs))
    mean = actor.mean(h)
    log_std = -5.0 + 0.5 * 7.0 * (torch.tanh(actor.log_std(h)) + 1)
    u = mean + log_std.exp() * torch.randn_like(mean)
    assert torch.allclose(action, torch.tanh(u) * actor.scale + actor.bias)
    assert torch.allclose(log_prob, tanh_gaussian_log_prob(u, mean, log_std, scale=actor.scale))
    assert QNetwork(obs_space, act_space, (16,), "relu")(obs, action).shape == (6,)


def test_polyak_update_moves_parameters_by_tau_and_copies_buffers():
    source, target = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        source.weight.fill_(1.0)
        target.weight.fill_(0.0)
        source.running_mean.fill_(3.0)
    polyak_update(source, target, 0.25)
    assert target.weight.tolist() == [0.25, 0.25]  # 0.25 * 1 + 0.75 * 0
    assert target.running_mean.tolist() == [3.0, 3.0]
    polyak_update(source, target, 1.0)
    assert target.weight.tolist() == [1.0, 1.0]


def test_flatten_time_and_time_slice_on_tensors_and_dicts():
    x = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert flatten_time(x).shape == (6, 4) and flatten_time(x)[4].tolist() == x[1, 1].tolist()
    d = {"a": x, "b": x[..., 0]}
    flat = flatten_time(d)
    assert flat["a"].shape == (6, 4) and flat["b"].tolist() == [0, 4, 8, 12, 16, 20]
    assert time_slice(x, 1, 3).tolist() == x[:, 1:3].tolist()
    assert time_slice(d, 0, 1)["b"].tolist() == [[0], [12]]


def test_nstep_return_hand_computed_with_wrap_and_episode_ends():
    g = 0.5
    rewards = np.array([[1.0], [2.0], [3.0], [4.0]])
    no = np.zeros((4, 1), dtype=bool)
    # circular rows from 3: rows 3, 0, 1 (n = 3), the newest row 2 not reached
    total, discount, term, row = nstep_return(rewards, no, no, 3, 0, 3, g, 2, 4)
    assert (total, discount, term, row) == (4 + g * 1 + g * g * 2, g ** 3, False, 1)
    # the newest row stops the sum (row 0 is the last written)
    assert nstep_return(rewards, no, no, 3, 0, 3, g, 0, 4) == (4 + g * 1, g ** 2, False, 0)
    # a termination at row 0: no bootstrap; a truncation at row 3: bootstrap after one step
    ends = no.copy()
    ends[0] = True
    assert nstep_return(rewards, ends, no, 3, 0, 3, g, 2, 4) == (4 + g * 1, 0.0, True, 0)
    ends = no.copy()
    ends[3] = True
    assert nstep_return(rewards, no, ends, 3, 0, 3, g, 2, 4) == (4.0, g, False, 3)
