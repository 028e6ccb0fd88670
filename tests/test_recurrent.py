"""Recurrent policies in rollouts: stored states replay the rollout's log-probs over truncated-BPTT chunks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo.recurrent import RecurrentCore, chunk_rollout, make_chunks, state_index
from zoo.rollout import PolicyStep, RolloutCollector, evaluate_policy


class TinyRecurrentPolicy(nn.Module):
    """Encoder -> GRU/LSTM core -> policy and value heads; actions sampled with its own generator."""

    def __init__(self, obs_dim: int, n_actions: int, cell: str, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.enc = nn.Linear(obs_dim, 16)
        self.core = RecurrentCore(16, 12, cell=cell)
        self.pi = nn.Linear(12, n_actions)
        self.v = nn.Linear(12, 1)
        self.gen = torch.Generator().manual_seed(seed)

    def features(self, obs):
        return torch.tanh(self.enc(obs))

    def __call__(self, obs, state, episode_start):
        h, nxt = self.core.step(self.features(obs), state, episode_start)
        logp = torch.log_softmax(self.pi(h), -1)
        action = torch.multinomial(logp.exp(), 1, generator=self.gen)[:, 0]
        return PolicyStep(action, logp.gather(1, action[:, None])[:, 0], self.v(h)[:, 0], state=nxt)

    def value(self, obs, state, episode_start):
        h, _ = self.core.step(self.features(obs), state, episode_start)
        return self.v(h)[:, 0]

    def replay_log_probs(self, rollout, length):
        chunks = chunk_rollout(rollout, length)
        h, _ = self.core.sequence(self.features(chunks.split(rollout.obs)), chunks.initial_state,
                                  chunks.episode_starts)
        logp = torch.log_softmax(self.pi(h), -1).gather(2, chunks.split(rollout.actions)[..., None])[..., 0]
        return chunks.merge(logp), chunks


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("env_id,kw", [("torch/cartpole", {}), ("gym/CartPole-v1", {"vectorization": "sync"})])
def test_stored_states_replay_the_rollouts_log_probs(cell, env_id, kw):
    env = zoo.make_env(env_id, num_envs=4, seed=0, max_episode_steps=30, **kw)
    policy = TinyRecurrentPolicy(4, 2, cell)
    collector = RolloutCollector(env, num_steps=40, initial_state=policy.core.initial_state)
    previous_next_state = None
    with torch.no_grad():
        for update in range(3):
            collector.policy_version = update
            ro = collector.collect(policy, value_fn=policy.value)
            assert torch.all(ro.policy_versions == update) and ro.policy_versions.dtype == torch.int64
            ends = ro.terminated | ro.truncated
            assert ends[:-1].any(), "episodes must end inside the rollout"
            # the stored state is the initial (zero) one wherever an episode starts ...
            starts = ro.episode_starts
            assert torch.equal(starts[1:], ends[:-1])
            h = ro.states if cell == "gru" else ro.states[0]
            assert torch.all(h[starts] == 0)
            assert h[~starts].abs().sum() > 0
            # ... and carries over from the last rollout
            if previous_next_state is not None:
                torch.testing.assert_close(state_index(ro.states, 0), previous_next_state, rtol=0, atol=0)
            previous_next_state = ro.next_state
            for length in (8, 40, 7):  # chunks within, equal to, and not dividing the rollout
                replayed, chunks = policy.replay_log_probs(ro, length)
                torch.testing.assert_close(replayed, ro.log_probs, rtol=1e-5, atol=1e-6)
                assert chunks.mask.sum() == 40 * 4
            assert (starts[1:] & (torch.arange(1, 40) % 8 != 0)[:, None]).any(), \
                "some episodes start inside a chunk (the replay must reset there)"
        if ro.truncated.any():
            assert torch.all(ro.bootstrap_values[~ro.truncated] == 0)
    env.close()


def test_replay_is_differentiable_through_the_chunks():
    env = zoo.make_env("torch/cartpole", num_envs=3, seed=1)
    policy = TinyRecurrentPolicy(4, 2, "gru")
    collector = RolloutCollector(env, num_steps=24, initial_state=policy.core.initial_state)
    ro = collector.collect(policy)
    replayed, _ = policy.replay_log_probs(ro, 6)
    replayed.sum().backward()
    assert policy.core.cell.weight_hh.grad is not None and policy.core.cell.weight_hh.grad.abs().sum() > 0


def test_truncated_bootstrap_uses_the_state_after_the_step():
    env = zoo.make_env("torch/cartpole", num_envs=2, seed=0, max_episode_steps=5)
    policy = TinyRecurrentPolicy(4, 2, "gru")
    seen = []

    def value_fn(obs, state, episode_start):
        seen.append((state.clone(), episode_start.clone()))
        return policy.value(obs, state, episode_start)

    collector = RolloutCollector(env, num_steps=12, initial_state=policy.core.initial_state)
    with torch.no_grad():
        ro = collector.collect(policy, value_fn=value_fn)
    assert ro.truncated.any() and torch.all(ro.bootstrap_values[~ro.truncated] == 0)
    assert torch.all(ro.bootstrap_values[ro.truncated] != 0)
    assert all(not start.any() for _, start in seen)
    assert any(state.abs().sum() > 0 for state, _ in seen)


def test_non_recurrent_collectors_store_no_state_and_misuse_is_clear():
    env = zoo.make_env("torch/cartpole", num_envs=2, seed=0)
    collector = RolloutCollector(env, num_steps=4)
    ro = collector.collect(lambda obs: torch.zeros(2, dtype=torch.int64))
    assert ro.states is None and ro.next_state is None
    assert ro.episode_starts[0].all() and ro.policy_versions.shape == (4, 2)
    with pytest.raises(ValueError, match="initial_state"):
        chunk_rollout(ro, 2)
    core = RecurrentCore(4, 3)
    recurrent = RolloutCollector(env, num_steps=4, initial_state=core.initial_state)
    with pytest.raises(TypeError, match="state=<next state>"):
        recurrent.collect(lambda obs, state, start: PolicyStep(torch.zeros(2, dtype=torch.int64)))
    with pytest.raises(ValueError, match="cell must be one of"):
        RecurrentCore(4, 3, cell="rnn")


def test_core_sequence_equals_steps_and_resets_at_episode_starts():
    torch.manual_seed(0)
    for cell in ("gru", "lstm"):
        core = RecurrentCore(5, 7, cell=cell)
        x = torch.randn(9, 3, 5)
        starts = torch.zeros(9, 3, dtype=torch.bool)
        starts[4, 1] = starts[0, 2] = True
        init = core.initial_state(3)
        init = tuple(s + 1 for s in init) if cell == "lstm" else init + 1
        out, last = core.sequence(x, init, starts)
        state = init
        for t in range(9):
            o, state = core.step(x[t], state, starts[t])
            torch.testing.assert_close(out[t], o)
        # after a reset, env 1 continues as if started fresh at step 4
        fresh, _ = core.sequence(x[4:, 1:2], core.initial_state(1))
        torch.testing.assert_close(out[4:, 1:2], fresh)


def test_make_chunks_layout():
    T, N, L = 7, 2, 3
    states = torch.arange(T * N, dtype=torch.float32).reshape(T, N, 1)
    starts = torch.zeros(T, N, dtype=torch.bool)
    chunks = make_chunks(states, starts, L)
    assert chunks.num_chunks == 3 and chunks.batch_size == 6
    # chunk c of env n is column c * N + n; its initial state is the one stored at step c * L
    assert chunks.initial_state[:, 0].tolist() == [states[c * L, n, 0].item() for c in range(3) for n in range(N)]
    x = torch.arange(T * N).reshape(T, N)
    split = chunks.split(x)
    assert split.shape == (L, 6)
    assert split[:, 2 * N + 1].tolist() == [x[6, 1].item(), 0, 0]  # the last chunk is padded
    assert chunks.mask[:, 2 * N + 1].tolist() == [True, False, False]
    assert torch.equal(chunks.merge(split), x)
    d = chunks.split({"a": x, "b": x.float()})
    assert set(d) == {"a", "b"} and d["a"].shape == (L, 6)


def test_evaluate_policy_runs_a_recurrent_policy():
    env = zoo.make_env("torch/cartpole", num_envs=3, seed=0)
    policy = TinyRecurrentPolicy(4, 2, "lstm")
    calls = []

    def tracked(obs, state, start):
        calls.append((state[0].clone(), start.clone()))
        return policy(obs, state, start)

    with torch.no_grad():
        result = evaluate_policy(env, tracked, n_episodes=4, seed=1, initial_state=policy.core.initial_state)
    assert result["episodes"] == 4 and result["length_mean"] > 1
    assert calls[0][1].all() and torch.all(calls[0][0] == 0)
    for state, start in calls[1:]:
        assert torch.all(state[start] == 0)
