"""CPL's losses on hand-computed cases (the agent itself is in progress: see issue 5)."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.agents.cpl.losses import (bc_loss, biased_pairwise_loss, deterministic_log_prob, labelled_pairwise_loss,
                                   ranked_batch_loss, segment_scores)


def test_segment_scores_sum_alpha_log_probs():
    log_probs = torch.tensor([[-1.0, -2.0, -3.0], [0.0, -0.5, -0.5]])
    assert torch.allclose(segment_scores(log_probs, 0.1), torch.tensor([-0.6, -0.1]))
    ref = torch.tensor([[-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(segment_scores(log_probs, 0.2, ref), torch.tensor([0.2 * -3.0, 0.2 * -1.0]))


def test_biased_pairwise_loss_hand_computed():
    s_pos, s_neg = torch.tensor([1.0, -2.0]), torch.tensor([3.0, -1.0])
    # lambda 0.5: logits 1 - 1.5 = -0.5 and -2 + 0.5 = -1.5 -> mean(log(1 + e^0.5), log(1 + e^1.5))
    expected = (math.log1p(math.exp(0.5)) + math.log1p(math.exp(1.5))) / 2
    assert biased_pairwise_loss(s_pos, s_neg, 0.5).item() == pytest.approx(expected, rel=1e-6)
    # lambda 1 is the logistic loss on the score difference
    diff = s_pos - s_neg
    logistic = torch.nn.functional.binary_cross_entropy_with_logits(diff, torch.ones(2))
    assert biased_pairwise_loss(s_pos, s_neg, 1.0).item() == pytest.approx(logistic.item(), rel=1e-6)
    with pytest.raises(ValueError, match="lambda"):
        biased_pairwise_loss(s_pos, s_neg, 0.0)


def test_labelled_loss_matches_pairwise_for_hard_labels():
    a, b = torch.tensor([0.3, -1.0]), torch.tensor([0.1, 2.0])
    labels = torch.tensor([1.0, 0.0])  # a wins the first pair, b the second
    expected = (biased_pairwise_loss(a[:1], b[:1], 0.5) + biased_pairwise_loss(b[1:], a[1:], 0.5)) / 2
    assert labelled_pairwise_loss(a, b, labels, 0.5).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ranked_batch_loss_equals_pairwise_on_two_items():
    scores = torch.tensor([0.4, -0.7])
    oracle = torch.tensor([1.0, 5.0])  # the second segment is better
    assert ranked_batch_loss(scores, oracle, 0.5).item() == pytest.approx(
        biased_pairwise_loss(scores[1:], scores[:1], 0.5).item(), rel=1e-6)


def test_ranked_batch_loss_averages_ordered_pairs():
    scores, oracle = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([3.0, 2.0, 1.0])
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = sum(math.log1p(math.exp(-(scores[i] - 0.5 * scores[j]).item())) for i, j in pairs) / 3
    assert ranked_batch_loss(scores, oracle, 0.5).item() == pytest.approx(expected, rel=1e-6)
    assert ranked_batch_loss(scores, torch.ones(3)).item() == 0.0  # all tied


def test_deterministic_log_prob_and_bc():
    mu, a = torch.tensor([[0.5, -0.5]]), torch.tensor([[0.0, 0.5]])
    assert deterministic_log_prob(mu, a).item() == pytest.approx(-(0.25 + 1.0))
    assert bc_loss(torch.tensor([-1.0, -3.0])).item() == 2.0


def _soft_optimal_advantages(P, R, gamma, alpha, iters=2000):
    """Soft Q-iteration: A*(s, a) = Q*(s, a) - V*(s), V* = alpha * logsumexp(Q* / alpha)."""
    Q = torch.zeros_like(R)
    for _ in range(iters):
        V = alpha * torch.logsumexp(Q / alpha, dim=1)
        Q = R + gamma * P @ V
    return Q - (alpha * torch.logsumexp(Q / alpha, dim=1)).unsqueeze(1)


@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_cpl_recovers_the_optimal_action_in_a_small_mdp(lam):
    """Preferences from the regret model (sum of optimal advantages) on random behaviour data: the
    policy learned with CPL's loss alone (no rewards, no RL) is greedy-optimal in every state."""
    gen = torch.Generator().manual_seed(0)
    S, A, T, alpha, gamma = 6, 3, 8, 0.1, 0.9
    P = torch.rand(S, A, S, generator=gen)
    P = P / P.sum(-1, keepdim=True)
    R = torch.rand(S, A, generator=gen)
    adv = _soft_optimal_advantages(P, R, gamma, alpha)
    # behaviour data: uniformly random actions, so every action is in distribution
    n = 4000
    states = torch.empty(n, T, dtype=torch.long)
    actions = torch.randint(A, (n, T), generator=gen)
    s = torch.randint(S, (n,), generator=gen)
    for t in range(T):
        states[:, t] = s
        s = torch.multinomial(P[s, actions[:, t]], 1, generator=gen).squeeze(1)
    regret_score = adv[states, actions].sum(1)
    first, second = torch.arange(0, n, 2), torch.arange(1, n, 2)
    labels = (regret_score[first] > regret_score[second]).float()
    logits = torch.zeros(S, A, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.05)
    for _ in range(400):
        log_pi = torch.log_softmax(logits, dim=1)[states, actions]  # (n, T)
        scores = segment_scores(log_pi, alpha)
        loss = labelled_pairwise_loss(scores[first], scores[second], labels, lam)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.equal(logits.argmax(1), adv.argmax(1))
