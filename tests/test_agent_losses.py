"""The base learners' losses as pure functions, on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.agents.dqn import double_q_target, linear_schedule, td_loss
from zoo.losses import normalize_advantages, ppo_clip_loss, value_loss
from zoo.agents.sac import sac_actor_loss, sac_alpha_loss, sac_critic_loss, sac_target


def test_ppo_clip_loss_hand_computed():
    # ratios 1.5, 0.5, 1.1 with advantages +1, +1, -2 and eps = 0.2:
    # min(1.5*1, 1.2*1) = 1.2; min(0.5*1, 0.8*1) = 0.5; min(1.1*-2, 1.1*-2) = -2.2 -> mean -0.5/3 -> loss 0.1667
    log_ratio = torch.log(torch.tensor([1.5, 0.5, 1.1]))
    adv = torch.tensor([1.0, 1.0, -2.0])
    assert ppo_clip_loss(log_ratio, adv, 0.2).item() == pytest.approx(-(1.2 + 0.5 - 2.2) / 3, rel=1e-6)
    # at ratio 1 the loss is -mean(A) and its gradient that of the plain policy gradient
    zero = torch.zeros(3, requires_grad=True)
    ppo_clip_loss(zero, adv, 0.2).backward()
    assert torch.allclose(zero.grad, -adv / 3)


def test_value_loss_plain_and_clipped():
    values, returns, old = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 0.0]), torch.tensor([1.5, 1.0])
    assert value_loss(values, returns).item() == pytest.approx(0.5 * (1 + 9) / 2)
    # clipped (c = 0.2): V_clip = [1.3, 1.2]; errors^2 [0.49, 1.44] vs unclipped [1, 9] -> max [1, 9]
    assert value_loss(values, returns, old, 0.2).item() == pytest.approx(0.5 * (1 + 9) / 2)
    values = torch.tensor([1.9, 1.1])  # unclipped errors [0.01, 1.21]; clipped V [1.7, 1.1] -> [0.09, 1.21]
    assert value_loss(values, returns, old, 0.2).item() == pytest.approx(0.5 * (0.09 + 1.21) / 2, rel=1e-5)


def test_normalize_advantages():
    adv = normalize_advantages(torch.tensor([1.0, 2.0, 3.0]))
    assert adv.mean().abs() < 1e-6 and adv.std().item() == pytest.approx(1.0, rel=1e-4)


def test_sac_losses_hand_computed():
    rewards, discounts = torch.tensor([1.0, 0.5]), torch.tensor([0.99, 0.0])
    target = sac_target(rewards, discounts, torch.tensor([2.0, 7.0]), torch.tensor([-1.0, 3.0]), 0.2)
    # 1 + 0.99 * (2 + 0.2) = 3.178; 0.5 + 0 = 0.5
    assert torch.allclose(target, torch.tensor([3.178, 0.5]))
    q1, q2 = torch.tensor([3.0, 1.0]), torch.tensor([4.0, 0.0])
    # mean of (q1 - t)^2 + (q2 - t)^2 over the batch
    expected = ((3 - 3.178) ** 2 + (4 - 3.178) ** 2 + (1 - 0.5) ** 2 + (0 - 0.5) ** 2) / 2
    assert sac_critic_loss(q1, q2, target).item() == pytest.approx(expected, rel=1e-5)
    assert sac_actor_loss(torch.tensor([-1.0, 1.0]), torch.tensor([2.0, 4.0]), 0.5).item() == pytest.approx(
        ((-0.5 - 2) + (0.5 - 4)) / 2)
    log_alpha = torch.tensor(math.log(0.2), requires_grad=True)
    loss = sac_alpha_loss(log_alpha, torch.tensor([-1.0, -3.0]), target_entropy=-1.0)
    assert loss.item() == pytest.approx(-0.2 * ((-1 - 1) + (-3 - 1)) / 2)
    loss.backward()  # d/d log_alpha = -alpha * mean(log pi + target): positive here, so alpha falls
    assert log_alpha.grad.item() == pytest.approx(0.6)


def test_double_q_target_and_td_loss():
    online = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
    target_q = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    r, d = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.9])
    # double: argmax online = [1, 0] -> target values [20, 30]
    assert torch.allclose(double_q_target(r, d, online, target_q), torch.tensor([1 + 0.5 * 20, 0.9 * 30]))
    # vanilla: max of target -> [20, 40]
    assert torch.allclose(double_q_target(r, d, online, target_q, double=False), torch.tensor([11.0, 36.0]))
    q, t = torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0])
    assert td_loss(q, t).item() == pytest.approx((0.5 * 0.25 + (3 - 0.5)) / 2)  # Huber, delta 1
    assert td_loss(q, t, huber=False).item() == pytest.approx((0.25 + 9.0) / 2)
    assert td_loss(q, t, weights=torch.tensor([1.0, 0.0]), huber=False).item() == pytest.approx(0.125)


def test_linear_schedule():
    assert linear_schedule(1.0, 0.05, 0.5, 0.0) == 1.0
    assert linear_schedule(1.0, 0.05, 0.5, 0.25) == pytest.approx(0.525)
    assert linear_schedule(1.0, 0.05, 0.5, 0.9) == pytest.approx(0.05)
