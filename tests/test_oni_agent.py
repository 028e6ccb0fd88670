"""ONI, the agent: the wiring of counts, annotator, reward model and APPO's reward hook, on real NetHack."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("nle")

from zoo.agents import ONI
from zoo.agents.oni.messages import decode_message, encode_message
from zoo.errors import ConfigError
from zoo.llm.nethack_keywords import keyword_label

SMALL = dict(num_envs=4, rollout=32, recurrence=32, batch_size=128, core_size=64, synchronous=True,
             vectorization="sync", double_buffer=False, annotator_background="sync")


def test_goal_and_presets():
    # the judge is told the Score goal on every task, as the reference (goal_key=defaultgoal); task= opts in
    assert ONI.config_class.create("nethack/oracle-extended").task is None
    # the paper's c_ext: 0.1 on Score, 10 on the sparse tasks
    assert ONI.config_class.create("nethack/score-extended").extrinsic_coef == 0.1
    assert ONI.config_class.create("nethack/oracle-extended").extrinsic_coef == 10.0
    assert ONI.config_class.create("nethack/oracle-extended").core_size == 512
    # evaluations sample their actions on NetHack (a young agent's argmax stands still until the step limit)
    assert ONI.config_class.create("nethack/score-extended").deterministic_eval is False
    assert ONI.config_class.create("gym/CartPole-v1").deterministic_eval is True
    from zoo.llm.nethack_prompts import resolve_task

    for task, goal in ((None, "score"), ("oracle", "oracle")):
        agent = ONI("nethack/oracle-extended", seed=0, reward_model="ellm", task=task, **SMALL)
        try:
            assert agent.task.key == goal and agent.reward_model.goal == resolve_task(goal).goal
        finally:
            agent.close()


@pytest.mark.parametrize("bad, match", [
    (dict(reward_model="motif"), "reward_model must be one of"),
    (dict(annotator="openai"), "needs llm_url"),
    (dict(annotator="transformers"), "needs llm_path"),
    (dict(intrinsic_coef=-1.0), "intrinsic_coef must be a non-negative"),
    (dict(task="sokoban"), "sokoban"),
])
def test_bad_config_is_named(bad, match):
    with pytest.raises(ConfigError, match=match):
        ONI.config_class.create("nethack/score-extended", **bad)


def test_reward_is_the_papers_formula_with_counts_from_the_rollout():
    agent = ONI("nethack/staircase-lvl3-extended", seed=0, reward_model="retrieval", **SMALL)
    try:
        seen = {}

        def absorb():  # after the judge's labels (which call a wall unhelpful), a label the rollout will hit
            new = ONI.absorb_annotations(agent)
            agent.reward_model.add_labels([("It's a wall.", 1)])
            return new

        agent.absorb_annotations = absorb

        def record(batch):
            rewards = ONI.training_rewards(agent, batch)
            seen.update(batch=batch, rewards=rewards)
            return rewards

        agent.training_rewards = record
        agent.learn(128, progress=False)
        batch, rewards = seen["batch"], seen["rewards"]
        counts = batch.extras["message_count"]
        assert counts.shape == batch.rewards.shape and int(counts.min()) >= 1
        texts = np.array([[decode_message(m.numpy()) for m in row] for row in batch.obs["message"].cpu()])
        wall = torch.as_tensor(texts == "It's a wall.")
        assert wall.any(), "a random NetHack agent bumps into walls within 32 steps"
        r_int = agent.reward_model.reward(batch.obs["message"])
        assert (r_int[wall] == 1).all()  # the table's label reaches the reward
        expected = 10.0 * batch.rewards.clamp(-10, 10) + 0.4 * r_int / counts.float() ** 3
        torch.testing.assert_close(rewards, expected.to(rewards.dtype))
        # counts restart with each episode and grow within one
        first = counts[0][~batch.episode_starts[0]]
        assert (counts[1:][wall[1:] & wall[:-1] & ~batch.episode_starts[1:]] >= 2).all()
        assert first.numel() == 0 or int(first.min()) >= 1
    finally:
        agent.close()


def test_keyword_labels_reach_the_table_and_survive_a_training_checkpoint(tmp_path):
    agent = ONI("nethack/score-extended", seed=1, reward_model="retrieval", **SMALL)
    try:
        metrics = []
        agent.learn(256, progress=False, callback=lambda a, m: metrics.append(m) or True)
        labels = agent.reward_model.num_labels
        assert labels >= 5 and metrics[-1]["reward_model_labels"] == labels
        assert metrics[-1]["annotator_labels"] >= labels  # every label the judge gave was delivered
        path = agent.save(tmp_path / "oni.safetensors", training_state=True)
        counter_before = copy.deepcopy(agent.message_counter)
        probe = ["It's a wall.", "You kill the newt!", ""]
        before = agent.intrinsic_rewards(probe)
    finally:
        agent.close()
    loaded = ONI.load(path, env=None)
    try:
        assert loaded.reward_model.num_labels == labels
        torch.testing.assert_close(loaded.intrinsic_rewards(probe), before)
        # the episodes' counts go on: a wall now counts what it counted before, plus one
        walls = torch.from_numpy(np.stack([encode_message("It's a wall.")] * 4))[None]
        no_start = torch.zeros((1, 4), dtype=torch.bool)
        torch.testing.assert_close(loaded.message_counter.update(walls, no_start),
                                   counter_before.update(walls, no_start))
        loaded.learn(128, progress=False)  # goes on
        assert loaded.num_timesteps == 384
    finally:
        loaded.close()


def test_reward_free_classifier_ranks_the_judges_helpful_messages_first():
    """No env reward at all (the paper's reward-free setting): what the classifier learns from the keyword
    judge's labels of the agent's own messages ranks the judge's helpful messages above its unhelpful ones."""
    agent = ONI("nethack/score-extended", seed=0, reward_model="classification", extrinsic_coef=0.0,
                reward_batch_size=64, reward_lr=5e-4, **SMALL)
    try:
        agent.learn(12 * 128, progress=False)
        model = agent.reward_model
        texts = sorted({decode_message(r) for r in model.store.rows})
        assert len(texts) >= 20
        judge = np.array([keyword_label(t, "score") for t in texts])
        assert 0 < judge.sum() < len(texts), "the run met helpful and unhelpful messages"
        scores = model.probabilities(torch.stack([torch.from_numpy(encode_message(t)) for t in texts])).numpy()
        pos, neg = scores[judge == 1], scores[judge == 0]
        auc = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
        assert auc > 0.9, f"AUC {auc:.2f} of the learned reward against the judge's labels"
    finally:
        agent.close()
