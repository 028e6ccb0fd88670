"""Replay buffers against a naive reference: n-step returns, memory-saving mode, wrap-around, priorities."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.buffers.replay import PrioritizedReplayBuffer, ReplayBuffer
from zoo.buffers.sumtree import SumTree

OBS = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
ACT = gym.spaces.Discrete(5)


class NaiveReplay:
    """Each env's live transitions in time order; the buffer keeps the last `slots` of each."""

    def __init__(self, num_envs, slots):
        self.streams = [[] for _ in range(num_envs)]
        self.slots = slots
        self.slot_of = {}

    def add(self, slot, transitions):
        for e, tr in enumerate(transitions):
            self.streams[e].append(dict(tr, slot=slot))
            if len(self.streams[e]) > self.slots:
                self.streams[e].pop(0)

    def target(self, slot, env, n, gamma):
        stream = self.streams[env]
        k0 = next(i for i, tr in enumerate(stream) if tr["slot"] == slot)
        total, scale = 0.0, 1.0
        for tr in stream[k0:k0 + n]:
            total += scale * tr["reward"]
            scale *= gamma
            if tr["terminated"]:
                return total, 0.0, tr
            if tr["truncated"]:
                return total, scale, tr
        return total, scale, tr


def _fill(buffer, naive, steps, rng, num_envs, obs_fn):
    t = np.zeros(num_envs)
    for step in range(steps):
        ends = rng.random((2, num_envs)) < 0.25
        terminated, truncated = ends[0], ends[1] & ~ends[0]
        obs = np.stack([obs_fn(e, t[e]) for e in range(num_envs)])
        next_obs = np.stack([obs_fn(e, t[e] + (0.5 if terminated[e] or truncated[e] else 1.0))
                             for e in range(num_envs)])
        actions = rng.integers(0, 5, num_envs)
        rewards = rng.normal(size=num_envs).astype(np.float32)
        naive.add(buffer.pos, [dict(obs=obs[e], next_obs=next_obs[e], action=actions[e], reward=rewards[e],
                                    terminated=terminated[e], truncated=truncated[e]) for e in range(num_envs)])
        buffer.add(obs, actions, rewards, next_obs, terminated, truncated)
        t = np.where(terminated | truncated, (t // 1000 + 1) * 1000, t + 1)  # a new episode starts far away


def _check_sample(buffer, naive, batch, n, gamma):
    for j, flat in enumerate(batch.indices.numpy()):
        slot, env = divmod(int(flat), buffer.num_envs)
        first = next(tr for tr in naive.streams[env] if tr["slot"] == slot)
        ret, disc, last = naive.target(slot, env, n, gamma)
        np.testing.assert_array_equal(batch.observations[j].numpy(), first["obs"])
        assert int(batch.actions[j]) == first["action"]
        assert float(batch.rewards[j]) == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert float(batch.discounts[j]) == pytest.approx(disc, rel=1e-6)
        assert bool(batch.terminated[j]) == (disc == 0.0)
        np.testing.assert_array_equal(batch.next_observations[j].numpy(), last["next_obs"])


@settings(max_examples=60, deadline=None)
@given(num_envs=st.integers(1, 3), slots=st.integers(2, 9), steps=st.integers(1, 30), n_step=st.integers(1, 4),
       optimize_memory=st.booleans(), seed=st.integers(0, 10_000))
def test_replay_matches_naive_reference(num_envs, slots, steps, n_step, optimize_memory, seed):
    rng = np.random.default_rng(seed)
    gamma = 0.9
    buffer = ReplayBuffer(slots * num_envs, OBS, ACT, num_envs=num_envs, n_step=n_step, gamma=gamma,
                          optimize_memory=optimize_memory, seed=seed)
    naive = NaiveReplay(num_envs, slots)
    _fill(buffer, naive, steps, rng, num_envs, lambda e, t: np.array([e, t], np.float32))
    assert len(buffer) == min(steps, slots) * num_envs
    batch = buffer.sample(len(buffer))
    _check_sample(buffer, naive, batch, n_step, gamma)


@pytest.mark.parametrize("optimize_memory", [False, True])
def test_dict_and_image_observations(optimize_memory):
    space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (3, 4, 4), np.uint8),
                             "vector": gym.spaces.Box(-1, 1, (2,), np.float32)})
    buffer = ReplayBuffer(40, space, ACT, num_envs=2, n_step=3, gamma=0.5, optimize_memory=optimize_memory, seed=1)
    naive = NaiveReplay(2, 20)

    def obs_fn(e, t):
        return np.array([e, t % 251], np.float32)

    rng = np.random.default_rng(0)
    t = np.zeros(2)
    for _ in range(55):  # wraps
        ends = rng.random(2) < 0.2
        obs = {"image": np.stack([np.full((3, 4, 4), int(t[e]) % 251, np.uint8) for e in range(2)]),
               "vector": np.stack([obs_fn(e, t[e]) for e in range(2)])}
        nxt = {"image": np.stack([np.full((3, 4, 4), int(t[e] + 1) % 251, np.uint8) for e in range(2)]),
               "vector": np.stack([obs_fn(e, t[e] + 1) for e in range(2)])}
        rewards = rng.normal(size=2).astype(np.float32)
        naive.add(buffer.pos, [dict(obs=obs["vector"][e], next_obs=nxt["vector"][e], image=nxt["image"][e],
                                    action=1, reward=rewards[e], terminated=ends[e], truncated=False)
                               for e in range(2)])
        buffer.add(obs, np.ones(2, np.int64), rewards, nxt, ends, np.zeros(2, bool))
        t = np.where(ends, t + 100, t + 1)
    batch = buffer.sample(40)
    assert batch.observations["image"].dtype == torch.uint8
    assert batch.observations["image"].shape == (40, 3, 4, 4)
    for j, flat in enumerate(batch.indices.numpy()):
        slot, env = divmod(int(flat), 2)
        _, _, last = naive.target(slot, env, 3, 0.5)
        np.testing.assert_array_equal(batch.next_observations["vector"][j].numpy(), last["next_obs"])
        np.testing.assert_array_equal(batch.next_observations["image"][j].numpy(), last["image"])


def test_memory_saving_mode_uses_less_memory():
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    full = ReplayBuffer(1000, space, ACT, num_envs=4)
    lean = ReplayBuffer(1000, space, ACT, num_envs=4, optimize_memory=True)
    assert lean.nbytes() < 0.55 * full.nbytes()


def test_torch_inputs_and_sample_types():
    buffer = ReplayBuffer(100, OBS, gym.spaces.Box(-1, 1, (3,), np.float32), num_envs=2, seed=0)
    for _ in range(10):
        buffer.add(torch.randn(2, 2), torch.rand(2, 3), torch.ones(2), torch.randn(2, 2), torch.zeros(2, dtype=torch.bool),
                   torch.zeros(2, dtype=torch.bool))
    batch = buffer.sample(8)
    assert batch.observations.shape == (8, 2) and batch.actions.shape == (8, 3)
    assert batch.rewards.dtype == torch.float32 and batch.terminated.dtype == torch.bool
    assert torch.allclose(batch.discounts, torch.full((8,), 0.99))
    assert torch.equal(batch.weights, torch.ones(8))


def test_bad_input_errors():
    buffer = ReplayBuffer(10, gym.spaces.Box(0, 255, (4,), np.uint8), ACT, num_envs=2)
    with pytest.raises(ValueError, match="empty replay buffer"):
        buffer.sample(1)
    ok = dict(obs=np.zeros((2, 4), np.uint8), actions=np.zeros(2, np.int64), rewards=np.zeros(2, np.float32),
              next_obs=np.zeros((2, 4), np.uint8), terminated=np.zeros(2, bool), truncated=np.zeros(2, bool))
    with pytest.raises(ValueError, match=r"'obs' has shape \(2, 3\), expected \(2, 4\)"):
        buffer.add(**dict(ok, obs=np.zeros((2, 3), np.uint8)))
    with pytest.raises(ValueError, match=r"'next_obs' has dtype float32, expected uint8"):
        buffer.add(**dict(ok, next_obs=np.zeros((2, 4), np.float32)))
    with pytest.raises(ValueError, match=r"'rewards' has shape \(3,\), expected \(2,\)"):
        buffer.add(**dict(ok, rewards=np.zeros(3, np.float32)))
    buffer.add(**ok)
    with pytest.raises(ValueError, match="holds only 2"):
        buffer.sample(3)
    with pytest.raises(ValueError, match="n_step"):
        ReplayBuffer(10, OBS, ACT, n_step=0)
    dict_buffer = ReplayBuffer(10, gym.spaces.Dict({"a": OBS}), ACT)
    with pytest.raises(ValueError, match=r"dict with keys \['a'\]"):
        dict_buffer.add({"b": np.zeros((1, 2), np.float32)}, np.zeros(1, np.int64), np.zeros(1, np.float32),
                        {"a": np.zeros((1, 2), np.float32)}, np.zeros(1, bool), np.zeros(1, bool))


@settings(max_examples=40, deadline=None)
@given(priorities=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=50), seed=st.integers(0, 1000))
def test_sum_tree_prefix_search_matches_cumsum(priorities, seed):
    p = np.array(priorities)
    if p.sum() == 0:
        p[0] = 1.0
    tree = SumTree(len(p))
    tree.update(np.arange(len(p)), p)
    assert tree.total == pytest.approx(p.sum())
    assert tree.min == pytest.approx(p[p > 0].min())
    leaves = tree.sample(200, np.random.default_rng(seed), stratified=False)
    assert np.all(p[leaves] > 0), "a zero-priority leaf was drawn"


def test_sum_tree_sampling_frequencies_follow_priorities():
    p = np.array([1.0, 2.0, 0.0, 4.0, 8.0, 0.5, 0.5, 16.0])
    tree = SumTree(len(p))
    tree.update(np.arange(len(p)), p)
    draws = np.concatenate([tree.sample(256, np.random.default_rng(i)) for i in range(200)])
    counts = np.bincount(draws, minlength=len(p))
    expected = p / p.sum() * len(draws)
    assert counts[2] == 0
    nz = expected > 0
    chi2 = ((counts[nz] - expected[nz]) ** 2 / expected[nz]).sum()
    assert chi2 < 24.3  # 99.95% quantile of chi-square with 6 degrees of freedom


def test_prioritized_replay_weights_and_updates():
    buffer = PrioritizedReplayBuffer(16, OBS, ACT, num_envs=2, alpha=0.6, beta=0.4, seed=0)
    for t in range(8):
        buffer.add(np.full((2, 2), t, np.float32), np.zeros(2, np.int64), np.ones(2, np.float32),
                   np.full((2, 2), t + 1, np.float32), np.zeros(2, bool), np.zeros(2, bool))
    assert np.allclose(buffer.tree[np.arange(16)], 1.0)  # new transitions get the max priority
    td = np.arange(16, dtype=np.float64)
    buffer.update_priorities(np.arange(16), td)
    batch = buffer.sample(16)
    idx = batch.indices.numpy()
    pri = (np.abs(td) + buffer.eps) ** 0.6
    probs = pri / pri.sum()
    expected = (16 * probs[idx]) ** -0.4 / (16 * probs.min()) ** -0.4
    np.testing.assert_allclose(batch.weights.numpy(), expected, rtol=1e-5)
    assert batch.weights.max() <= 1.0
    assert (idx == 0).sum() <= 1  # TD error 0 -> priority eps ** alpha: (almost) never drawn
    # the next new transition gets the largest priority seen so far
    buffer.add(np.zeros((2, 2), np.float32), np.zeros(2, np.int64), np.ones(2, np.float32),
               np.zeros((2, 2), np.float32), np.zeros(2, bool), np.zeros(2, bool))
    assert buffer.tree[np.array([0])][0] == pytest.approx((15 + buffer.eps) ** 0.6)
    with pytest.raises(ValueError, match="indices but"):
        buffer.update_priorities(np.arange(3), np.ones(2))
