"""DoubleBufferedCollector: the same rollout and episode statistics as RolloutCollector, halves side by side."""

from __future__ import annotations

import pytest
import torch

from zoo.recurrent import RecurrentCore
from zoo.rollout import DoubleBufferedCollector, PolicyStep, RolloutCollector, make_env_halves, obs_cat


class Concat:
    """Two VecEnvs stepped one after the other as one env of their envs side by side (the reference)."""

    def __init__(self, a, b):
        self.a, self.b = a, b
        self.num_envs = a.num_envs + b.num_envs

    def __getattr__(self, name):
        return getattr(self.a, name)

    def reset(self, seed=None):
        return obs_cat([self.a.reset(), self.b.reset()])

    def step(self, actions):
        n = self.a.num_envs
        oa, ra, ta, ua, ia = self.a.step(actions[:n])
        ob, rb, tb, ub, ib = self.b.step(actions[n:])
        info = {"final_obs": obs_cat([ia["final_obs"], ib["final_obs"]])}
        for key in self.a.info_keys:
            info[key] = torch.cat([ia[key], ib[key]])
        return obs_cat([oa, ob]), torch.cat([ra, rb]), torch.cat([ta, tb]), torch.cat([ua, ub]), info

    def close(self):
        self.a.close()
        self.b.close()


def deterministic_policy(obs):
    """Actions, log-probs and values that are functions of the observation only."""
    score = (obs * torch.tensor([0.3, -0.7, 1.9, 0.4])).sum(-1)
    # a good controller, flipped by observation-derived "noise": some episodes fall, others run to the limit
    action = (score > 0) ^ (torch.frac(obs[:, 1].abs() * 1000) > 0.3)
    return PolicyStep(action.long(), log_prob=-score.abs(), value=score * 2)


def value_fn(obs):
    return obs.sum(-1)


FIELDS = ("obs", "actions", "log_probs", "values", "rewards", "terminated", "truncated", "bootstrap_values",
          "next_obs", "episode_starts", "policy_versions")


def _assert_same(ro, ref, close=()):
    """Equal field by field; the fields in ``close`` to float rounding (a network's output on a batch of two
    envs and on one of four may differ in the last bits, depending on the CPU's kernels)."""
    for name in FIELDS:
        x, y = getattr(ro, name), getattr(ref, name)
        assert x.shape == y.shape, name
        if name in close:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)
        else:
            assert torch.equal(x, y), name


@pytest.mark.parametrize("num_workers", [1, 2])
def test_double_buffered_equals_rollout_collector(num_workers):
    kw = dict(max_episode_steps=12)
    halves = make_env_halves("gym/CartPole-v1", 8, seed=5, vectorization="process", num_workers=num_workers, **kw)
    reference = Concat(*make_env_halves("gym/CartPole-v1", 8, seed=5, vectorization="sync", **kw))
    double = DoubleBufferedCollector(halves, num_steps=20)
    single = RolloutCollector(reference, num_steps=20)
    try:
        for version in (0, 3):
            double.policy_version = single.policy_version = version
            ro = double.collect(deterministic_policy, value_fn=value_fn)
            ref = single.collect(deterministic_policy, value_fn=value_fn)
            _assert_same(ro, ref)
            assert ro.num_envs == 8 and ro.num_steps == 20
            assert torch.all(ro.policy_versions == version)
            assert ro.states is None
        assert ro.truncated.any() and ro.terminated.any()
        assert ro.bootstrap_values[ro.truncated].abs().sum() > 0
        assert double.stats.summary() == single.stats.summary()
        assert double.stats.episodes > 8
        assert double.total_steps == single.total_steps == 2 * 20 * 8
    finally:
        double.close()
        reference.close()


def test_halves_have_disjoint_seeds_and_validation():
    a, b = make_env_halves("gym/CartPole-v1", 4, seed=0, vectorization="sync")
    try:
        assert a.num_envs == b.num_envs == 2
        assert not torch.equal(a.reset(), b.reset())
        with pytest.raises(ValueError, match="two distinct envs"):
            DoubleBufferedCollector((a, a), 4)
        with pytest.raises(ValueError, match="two envs"):
            DoubleBufferedCollector((a,), 4)
    finally:
        a.close()
        b.close()
    with pytest.raises(ValueError, match="even num_envs"):
        make_env_halves("gym/CartPole-v1", 3)


def test_double_buffered_with_a_recurrent_policy_and_success_stats():
    torch.manual_seed(0)
    core = RecurrentCore(4, 8)
    head = torch.nn.Linear(8, 2)

    def policy(obs, state, episode_start):
        h, nxt = core.step(obs, state, episode_start)
        logits = head(h)
        action = logits.argmax(-1)
        return PolicyStep(action, torch.log_softmax(logits, -1).gather(1, action[:, None])[:, 0], state=nxt)

    halves = make_env_halves("gym/CartPole-v1", 4, seed=1, vectorization="process", num_workers=1,
                             max_episode_steps=9)
    reference = Concat(*make_env_halves("gym/CartPole-v1", 4, seed=1, vectorization="sync", max_episode_steps=9))
    double = DoubleBufferedCollector(halves, 15, initial_state=core.initial_state)
    single = RolloutCollector(reference, 15, initial_state=core.initial_state)
    try:
        for _ in range(2):
            ro, ref = double.collect(policy), single.collect(policy)
            _assert_same(ro, ref, close=("log_probs",))
            torch.testing.assert_close(ro.states, ref.states, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(ro.next_state, ref.next_state, rtol=1e-5, atol=1e-6)
            assert torch.equal(ro.next_episode_start, ref.next_episode_start)
        assert double.stats.summary() == single.stats.summary()
    finally:
        double.close()
        reference.close()

    halves = make_env_halves("metaworld/reach-v3", 2, seed=0, vectorization="process", num_workers=1)
    double = DoubleBufferedCollector(halves, 3)
    try:
        double.collect(lambda obs: torch.zeros(obs.shape[0], 4))
        assert double._with_success and double.stats.has_success
    finally:
        double.close()
