"""ArCHer's losses on hand-computed cases, and utterance log-probs with left padding."""

from __future__ import annotations

import pytest
import torch

from zoo.agents.archer.losses import (actor_loss, awr_actor_loss, critic_loss, filtered_trajectories,
                                      iql_critic_loss, token_baseline_loss, utterance_advantage)

t = torch.tensor


def test_critic_loss_pairs_each_head_with_its_own_target():
    q, v = (t([1.0]), t([2.0])), (t([0.5]), t([1.0]))
    # head 0: (1 - (1 + 0.5 * 2))^2 + (0.5 - 1)^2 = 1.25; head 1: (2 - (1 + 0.5 * 4))^2 + (1 - 3)^2 = 5
    assert critic_loss(q, v, t([1.0]), t([False]), (t([2.0]), t([4.0])), (t([1.0]), t([3.0])), 0.5).item() == 6.25
    # a terminal transition does not bootstrap: (1 - 1)^2 + 0.25 + (2 - 1)^2 + 4
    assert critic_loss(q, v, t([1.0]), t([True]), (t([2.0]), t([4.0])), (t([1.0]), t([3.0])), 0.5).item() == 5.25


def test_critic_loss_gradients_reach_only_the_online_heads():
    q = (t([1.0], requires_grad=True), t([2.0], requires_grad=True))
    target = (t([2.0], requires_grad=True), t([4.0], requires_grad=True))
    critic_loss(q, (t([0.5]), t([1.0])), t([1.0]), t([False]), target, (t([1.0]), t([3.0])), 0.5).backward()
    assert q[0].grad.item() == pytest.approx(2 * (1.0 - 2.0)) and target[0].grad is None


def test_iql_critic_loss_fits_v_by_expectile_to_the_data_action_q():
    q, v = (t([1.0]), t([2.0])), (t([0.5]), t([4.0]))
    # head 0: TD (1 - (1 + 0.5 * 2))^2 = 1; Qbar - V = 1 - 0.5 = 0.5 > 0, weight 0.9: 0.9 * 0.25 = 0.225
    # head 1: TD (2 - (1 + 0.5 * 4))^2 = 1; Qbar - V = 3 - 4 = -1 < 0, weight 0.1: 0.1 * 1 = 0.1
    loss = iql_critic_loss(q, v, t([1.0]), t([False]), (t([2.0]), t([4.0])), (t([1.0]), t([3.0])), 0.5, 0.9)
    assert loss.item() == pytest.approx(1 + 0.225 + 1 + 0.1)


def test_advantage_is_min_q_minus_min_v():
    assert utterance_advantage((t([3.0]), t([2.0])), (t([1.0]), t([1.5]))).item() == 1.0


def test_actor_loss_reinforce_and_token_baseline():
    lp = t([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])
    mask = t([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    adv = t([2.0, -1.0])
    assert actor_loss(adv, lp, mask).item() == pytest.approx(-((2 * -3.0) + (-1 * -0.5)) / 2)  # 2.75
    baseline = t([[1.0, 1.0, 9.0], [0.0, 0.0, 0.0]])
    assert actor_loss(adv, lp, mask, baseline).item() == pytest.approx(-((1 * -1 + 1 * -2) + (-1 * -0.5)) / 2)
    # three masked squared errors of 1, averaged over all 2 x 3 positions, padding included (the reference)
    assert token_baseline_loss(baseline, adv, mask).item() == pytest.approx((1 + 1 + 1) / 6)


def test_awr_actor_loss_and_filtered_bc_selection():
    lp = t([[-1.0, -2.0], [-0.5, 0.0]])
    mask = t([[1.0, 1.0], [1.0, 0.0]])
    adv = t([0.0, float(torch.log(t(2.0)))])
    assert awr_actor_loss(adv, lp, mask).item() == pytest.approx(-(1 * -3.0 + 2 * -0.5) / 2)
    returns = t([float(r) for r in range(-20, 0)])  # -20 .. -1
    assert filtered_trajectories(returns).nonzero().squeeze(-1).tolist() == [18, 19]


def test_utterance_log_probs_ignore_left_padding():
    pytest.importorskip("transformers")
    from zoo.envs.text.twenty_questions import SUBSET
    from zoo.llm.logprobs import utterance_token_log_probs
    from zoo.llm.tiny import COMMON_WORDS, tiny_gpt2, word_tokenizer, words_of

    tok = word_tokenizer(words_of([*COMMON_WORDS, *SUBSET, "? . : \n"]))
    model = tiny_gpt2(tok).eval()
    prompts = tok(["questions :\n", "questions :\nis it a dog ? no .\n"], padding=True, return_tensors="pt")
    tok.padding_side = "right"
    actions = tok(["is it a pen ?", "is it a chair ?\n"], padding=True, return_tensors="pt")
    tok.padding_side = "left"
    batch = utterance_token_log_probs(model, prompts.input_ids, prompts.attention_mask, actions.input_ids,
                                      actions.attention_mask)
    # the first prompt alone, unpadded, by a plain forward pass
    p0, a0 = tok("questions :\n")["input_ids"], tok("is it a pen ?")["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([p0 + a0])).logits[0]
    manual = torch.log_softmax(logits, -1)[len(p0) - 1:-1].gather(-1, torch.tensor(a0)[:, None]).squeeze(-1)
    assert torch.allclose(batch[0, :len(a0)], manual, atol=1e-5)
    assert batch[0, len(a0):].abs().sum() == 0 and (batch[1] < 0).all()


def test_critic_heads_target_update_and_a_few_td_steps():
    pytest.importorskip("transformers")
    from zoo.agents.archer.critic import CriticWithTarget, UtteranceCritic
    from zoo.envs.text.twenty_questions import SUBSET
    from zoo.llm.tiny import COMMON_WORDS, tiny_roberta, word_tokenizer, words_of

    torch.manual_seed(0)
    tok = word_tokenizer(words_of([*COMMON_WORDS, *SUBSET, "? . : \n"]))
    pair = CriticWithTarget(UtteranceCritic(tiny_roberta(tok).eval(), tok, width=32, layers=3))
    obs, acts = ["questions :\n", "questions :\nis it a dog ? no .\n"], ["is it a pen ?", "is it a chair ?"]
    (q1, q2), (v1, v2) = pair.critic(obs, acts)
    assert q1.shape == q2.shape == v1.shape == v2.shape == (2,) and not torch.equal(q1, q2)
    # Polyak: target <- 0.1 * online + 0.9 * target
    online_w = pair.critic.q_heads[0][0].weight
    with torch.no_grad():
        online_w.add_(1.0)
    before = pair.target.q_heads[0][0].weight.clone()
    pair.update_target(0.1)
    assert torch.allclose(pair.target.q_heads[0][0].weight, 0.9 * before + 0.1 * online_w.detach())
    assert not any(p.requires_grad for p in pair.target.parameters())
    # the TD loss falls on a fixed batch (rewards -1, the second transition terminal)
    optimizer = torch.optim.Adam(pair.critic.parameters(), lr=1e-3)
    reward, done = t([-1.0, -1.0]), t([False, True])
    losses = []
    for _ in range(30):
        q, v = pair.critic(obs, acts)
        with torch.no_grad():
            target_v = pair.target.values(obs)
            target_q, _ = pair.target(obs, acts)
        loss = critic_loss(q, v, reward, done, target_v, target_q, gamma=0.95)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        pair.update_target(0.1)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
