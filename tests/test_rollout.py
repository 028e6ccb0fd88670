"""RolloutCollector and EpisodeStats."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from zoo.rollout import EpisodeStats, PolicyStep, Rollout, RolloutCollector, evaluate_policy


def random_policy(num_actions=2):
    gen = torch.Generator().manual_seed(0)

    def policy(obs):
        n = obs.shape[0] if isinstance(obs, torch.Tensor) else next(iter(obs.values())).shape[0]
        action = torch.randint(num_actions, (n,), generator=gen)
        return PolicyStep(action, log_prob=torch.full((n,), -0.5), value=torch.ones(n))

    return policy


class Recorder:
    """Wraps a VecEnv and remembers what it returned, to check the collector against."""

    def __init__(self, env):
        self.env, self.log = env, []

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, seed=None):
        self.first = self.env.reset(seed=seed)
        return self.first

    def step(self, actions):
        out = self.env.step(actions)
        self.log.append((actions.clone(), *[x.clone() if isinstance(x, torch.Tensor) else x for x in out[:4]],
                         out[4]["final_obs"].clone()))
        return out


@pytest.mark.parametrize("env_id", ["gym/CartPole-v1", "torch/cartpole"])
def test_collector_writes_what_the_env_returned(env_id):
    env = Recorder(zoo.make_env(env_id, num_envs=4, seed=0, max_episode_steps=9))
    collector = RolloutCollector(env, num_steps=16)
    value_fn = lambda obs: obs.sum(-1)  # noqa: E731
    ro = collector.collect(random_policy(), value_fn=value_fn)
    assert ro.obs.shape == (16, 4, 4) and ro.actions.shape == (16, 4) and ro.actions.dtype == torch.int64
    assert torch.equal(ro.obs[0], env.first)
    for t, (actions, obs, reward, terminated, truncated, final_obs) in enumerate(env.log):
        assert torch.equal(ro.actions[t], actions)
        assert torch.equal(ro.rewards[t], reward)
        assert torch.equal(ro.terminated[t], terminated) and torch.equal(ro.truncated[t], truncated)
        expected_bootstrap = torch.where(truncated, value_fn(final_obs), 0.0)
        torch.testing.assert_close(ro.bootstrap_values[t], expected_bootstrap)
        if t + 1 < 16:
            assert torch.equal(ro.obs[t + 1], obs)
        else:
            assert torch.equal(ro.next_obs, obs)
    assert ro.truncated.any(), "max_episode_steps=9 within 16 steps must truncate"
    assert torch.all(ro.log_probs == -0.5) and torch.all(ro.values == 1.0)
    # episode statistics: CartPole's return equals its length
    stats = collector.stats.summary()
    assert stats["episodes"] == int((ro.terminated | ro.truncated).sum())
    assert stats["return_mean"] == pytest.approx(stats["length_mean"])
    # the next collect continues from where the last one stopped
    first_obs = ro.next_obs.clone()
    ro2 = collector.collect(random_policy())
    assert torch.equal(ro2.obs[0], first_obs)
    assert collector.total_steps == 2 * 16 * 4


def test_collector_dict_observations():
    env = zoo.make_env("nethack/score", num_envs=2, seed=0, vectorization="sync",
                       observation_keys=("glyphs", "blstats"))
    collector = RolloutCollector(env, num_steps=5)
    ro = collector.collect(random_policy(23))
    assert set(ro.obs) == {"glyphs", "blstats"}
    assert ro.obs["glyphs"].shape == (5, 2, 21, 79) and ro.obs["glyphs"].dtype == torch.int16
    env.close()


def test_collector_tracks_success():
    env = zoo.make_env("metaworld/reach-v3", num_envs=2, seed=0, vectorization="sync", max_episode_steps=5)
    collector = RolloutCollector(env, num_steps=10)
    collector.collect(lambda obs: torch.zeros(2, 4))
    summary = collector.stats.summary()
    assert summary["episodes"] == 4 and "success_rate" in summary
    env.close()


def naive_stats(rewards, dones, window):
    running = np.zeros(rewards.shape[1])
    lengths = np.zeros(rewards.shape[1])
    finished = []
    for t in range(rewards.shape[0]):
        running += rewards[t]
        lengths += 1
        for i in np.flatnonzero(dones[t]):
            finished.append((running[i], lengths[i]))
            running[i] = lengths[i] = 0
    return finished[-window:]


@pytest.mark.parametrize("window", [3, 100])
def test_episode_stats_against_naive_loop(window):
    rng = np.random.default_rng(0)
    T, N = 200, 7
    rewards = rng.normal(size=(T, N))
    terminated = rng.random((T, N)) < 0.05
    truncated = rng.random((T, N)) < 0.03
    stats = EpisodeStats(N, torch.device("cpu"), window=window)
    for t in range(T):
        stats.update(torch.as_tensor(rewards[t]), torch.as_tensor(terminated[t]), torch.as_tensor(truncated[t]))
    expected = naive_stats(rewards, terminated | truncated, window)
    summary = stats.summary()
    assert summary["episodes"] == int((terminated | truncated).sum())
    assert summary["return_mean"] == pytest.approx(np.mean([r for r, _ in expected]))
    assert summary["length_mean"] == pytest.approx(np.mean([n for _, n in expected]))


def test_evaluate_policy_counts_episodes():
    env = zoo.make_env("torch/cartpole", num_envs=3, seed=0, max_episode_steps=20)
    result = evaluate_policy(env, lambda obs: (obs[:, 2] > 0).long(), n_episodes=5)
    assert result["episodes"] == 5
    assert 0 < result["return_mean"] <= 20


def _numbered_rollout(T=3, N=4):
    ramp = torch.arange(T * N, dtype=torch.float32).reshape(T, N)
    flag = torch.zeros(T, N, dtype=torch.bool)
    return Rollout(obs={"x": ramp.clone()}, actions=ramp.long(), log_probs=-ramp, values=ramp * 2, rewards=ramp + 1,
                   terminated=flag, truncated=flag.clone(), bootstrap_values=ramp * 0, next_obs={"x": ramp[0] + 100},
                   episode_starts=flag.clone(), policy_versions=ramp.long(), states=(ramp[..., None],),
                   next_state=(ramp[0, :, None],), next_episode_start=flag[0].clone())


def test_rollout_clone_copy_and_env_columns():
    rollout = _numbered_rollout()
    slot = rollout.clone()
    assert slot.rewards.data_ptr() != rollout.rewards.data_ptr() and torch.equal(slot.rewards, rollout.rewards)
    rollout.rewards += 10  # the collector writes its storage again: the slot keeps its copy ...
    assert slot.rewards[0, 0] == 1
    slot.extras["seen"] = torch.ones(3, 4)
    slot.copy_(rollout)  # ... until the next rollout is copied in, which also drops the extras
    assert torch.equal(slot.rewards, rollout.rewards) and slot.extras == {}
    slot.extras["column"] = torch.arange(4).expand(3, -1)
    mb = slot.env_columns(torch.tensor([3, 1]))
    assert mb.num_steps == 3 and mb.num_envs == 2
    assert mb.rewards[:, 0].tolist() == [14.0, 18.0, 22.0]  # env 3's steps, with the +10
    assert mb.obs["x"][2].tolist() == [11.0, 9.0] and mb.next_obs["x"].tolist() == [103.0, 101.0]
    assert mb.states[0][:, :, 0].tolist() == [[3.0, 1.0], [7.0, 5.0], [11.0, 9.0]]
    assert mb.extras["column"][0].tolist() == [3, 1]
    mb.check_extras()
    mb.extras["bad"] = torch.ones(3)
    with pytest.raises(ValueError, match=r"extras\['bad'\].*\(3, 2\)"):
        mb.check_extras()


def test_rollout_without_recurrent_fields_clones_and_slices():
    rollout = _numbered_rollout()
    plain = Rollout(rollout.obs["x"], rollout.actions, rollout.log_probs, rollout.values, rollout.rewards,
                    rollout.terminated, rollout.truncated, rollout.bootstrap_values, rollout.next_obs["x"])
    mb = plain.clone().env_columns(torch.tensor([0]))
    assert mb.states is None and mb.episode_starts is None and mb.obs.shape == (3, 1)
