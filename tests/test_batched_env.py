"""The one batched-env protocol (numeric and text envs), step_async / step_wait, and one evaluation path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from zoo.envs import BatchedEnv, HostVecEnv, TorchVecEnv, VecEnv
from zoo.envs.text import TextVecEnv
from zoo.rollout import EpisodeStats, PolicyStep, evaluate_policy


def _numeric(env_id, **kw):
    return zoo.make_env(env_id, num_envs=4, seed=0, **kw)


PROTOCOL_ATTRS = ("num_envs", "device", "single_observation_space", "single_action_space", "observation_space",
                  "action_space", "env_id", "make_kwargs", "host_simulated", "info_keys", "closed")


@pytest.mark.parametrize("env_id,kw,cls,host", [
    ("gym/CartPole-v1", {"vectorization": "sync"}, HostVecEnv, True),
    ("gym/CartPole-v1", {"vectorization": "process", "num_workers": 2}, HostVecEnv, True),
    ("torch/cartpole", {}, TorchVecEnv, False),
    ("text/twenty-questions-subset", {"max_turns": 4}, TextVecEnv, True),
])
def test_every_env_implements_the_protocol(env_id, kw, cls, host):
    with zoo.make_env(env_id, num_envs=2, seed=0, **kw) as env:
        assert isinstance(env, BatchedEnv) and isinstance(env, cls)
        assert isinstance(env, VecEnv) == (cls is not TextVecEnv)
        for name in PROTOCOL_ATTRS:
            assert hasattr(env, name), name
        assert env.num_envs == 2 and env.env_id == env_id and env.host_simulated is host
        assert env.device == torch.device("cpu") and env.closed is False
        assert isinstance(env.make_kwargs, dict)
        if env_id.startswith("text/"):
            assert env.make_kwargs == {"max_turns": 4}
        assert len(env.sample_actions()) == 2
        obs = env.reset()
        env.step_async(env.sample_actions())
        obs, reward, terminated, truncated, info = env.step_wait()
        assert reward.shape == terminated.shape == truncated.shape == (2,)
        assert reward.dtype == torch.float32 and terminated.dtype == torch.bool and "final_obs" in info
        for key in env.info_keys:
            assert info[key].shape == (2,)
    assert env.closed


def test_numeric_action_spec_is_public():
    env = zoo.make_env("gym/CartPole-v1", num_envs=3)
    assert env.action_shape == () and env.action_dtype == torch.int64
    assert not hasattr(env, "_action_shape") and not hasattr(env, "_action_dtype")
    env.close()
    env = zoo.make_env("torch/cartpole", num_envs=3)
    assert env.action_shape == () and env.action_dtype == torch.int64
    env = zoo.make_env("dmc/cheetah-run", num_envs=2, vectorization="sync")
    assert env.action_shape == (6,) and env.action_dtype == torch.float32
    env.close()


def test_base_protocol_defaults():
    """A minimal BatchedEnv gets step_async/step_wait, make_kwargs={} and the context manager for free."""
    from gymnasium import spaces

    class Counter(BatchedEnv):
        def __init__(self):
            super().__init__(2, "cpu", spaces.Discrete(3), spaces.Discrete(2))
            self.t = 0

        def reset(self, seed=None, options=None):
            self._check_no_step_in_flight("reset()")
            self.t = 0
            return torch.zeros(2, dtype=torch.int64)

        def step(self, actions):
            self.t += 1
            obs = torch.full((2,), self.t) + actions
            flags = torch.zeros(2, dtype=torch.bool)
            return obs, torch.ones(2), flags, flags, {"final_obs": obs}

        def sample_actions(self):
            return torch.zeros(2, dtype=torch.int64)

    with Counter() as env:
        assert env.make_kwargs == {} and env.info_keys == () and env.host_simulated
        env.reset()
        env.step_async(torch.tensor([0, 1]))
        assert env.t == 0, "the default step_async only keeps the actions"
        obs = env.step_wait()[0]
        assert obs.tolist() == [1, 2] and env.t == 1
        assert env.step(torch.tensor([1, 1]))[0].tolist() == [3, 3]
    assert env.closed
    assert Counter().make_kwargs is not Counter().make_kwargs  # not one shared dict


# ---------------------------------------------------------------- step_async / step_wait

def _policy(obs: torch.Tensor) -> torch.Tensor:
    """Deterministic CartPole controller with some variety (depends on the whole observation)."""
    return ((obs * torch.tensor([0.3, -0.7, 1.9, 0.4])).sum(-1) > 0).long()


def _run(env, steps: int, overlap: bool, seed_policy: int | None = None):
    """Step ``env``; with ``overlap``, do a matmul and a seeded draw between step_async and step_wait."""
    gen = torch.Generator().manual_seed(seed_policy) if seed_policy is not None else None
    work = torch.randn(128, 128, generator=torch.Generator().manual_seed(1))
    obs = env.reset(seed=11)
    log = [obs.clone()]
    for _ in range(steps):
        if gen is None:
            actions = _policy(obs)
        else:
            actions = torch.randint(2, (env.num_envs,), generator=gen)
        if overlap:
            env.step_async(actions)
            for _ in range(3):
                work = torch.tanh(work @ work)  # a "gradient step" while the simulators work
            out = env.step_wait()
        else:
            out = env.step(actions)
        obs = out[0]
        log.append(tuple(x.clone() for x in out[:4]) + (out[4]["final_obs"].clone(),))
    return log


@pytest.mark.parametrize("vectorization", ["process", "sync"])
@pytest.mark.parametrize("seed_policy", [None, 5])
def test_overlapping_step_async_with_work_gives_the_same_transitions(vectorization, seed_policy):
    kw = dict(vectorization=vectorization, max_episode_steps=25)
    if vectorization == "process":
        kw["num_workers"] = 2
    envs = [zoo.make_env("gym/CartPole-v1", num_envs=4, seed=3, **kw) for _ in range(2)]
    try:
        plain = _run(envs[0], 80, overlap=False, seed_policy=seed_policy)
        overlapped = _run(envs[1], 80, overlap=True, seed_policy=seed_policy)
    finally:
        for env in envs:
            env.close()
    assert torch.equal(plain[0], overlapped[0])
    dones = 0
    for a, b in zip(plain[1:], overlapped[1:]):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
        dones += int((a[2] | a[3]).sum())
    assert dones > 4, "the run must cross episode boundaries (auto-reset and final_obs)"


def test_step_async_on_dict_observations_matches_step():
    envs = [zoo.make_env("nethack/score", num_envs=2, seed=0, vectorization="process", num_workers=2)
            for _ in range(2)]
    try:
        obs = [e.reset() for e in envs]
        for key in obs[0]:
            assert torch.equal(obs[0][key], obs[1][key])
        gen = np.random.default_rng(0)
        for _ in range(10):
            actions = torch.as_tensor(gen.integers(0, envs[0].single_action_space.n, size=2))
            out_a = envs[0].step(actions)
            envs[1].step_async(actions)
            out_b = envs[1].step_wait()
            for key in out_a[0]:
                assert torch.equal(out_a[0][key], out_b[0][key])
            assert torch.equal(out_a[1], out_b[1])
    finally:
        for e in envs:
            e.close()


@pytest.mark.parametrize("env_id,kw", [
    ("gym/CartPole-v1", {"vectorization": "process", "num_workers": 2}),
    ("gym/CartPole-v1", {"vectorization": "sync"}),
    ("torch/cartpole", {}),
    ("text/twenty-questions-subset", {}),
])
def test_async_misuse_is_a_clear_error(env_id, kw):
    env = zoo.make_env(env_id, num_envs=2, seed=0, **kw)
    try:
        env.reset()
        with pytest.raises(RuntimeError, match=r"step_wait\(\) called without a step in flight.*step_async"):
            env.step_wait()
        env.step_async(env.sample_actions())
        with pytest.raises(RuntimeError, match=r"call step_wait\(\)"):
            env.step_async(env.sample_actions())
        with pytest.raises(RuntimeError, match=r"reset\(\) called while a step is in flight.*step_wait\(\) first"):
            env.reset()
        with pytest.raises(RuntimeError, match=r"step_wait\(\)"):
            env.step(env.sample_actions())
        env.step_wait()  # the pending step is still there and completes
        env.step(env.sample_actions())
        env.reset()
        env.step_async(env.sample_actions())
    finally:
        env.close()  # closing with a step in flight neither hangs nor raises
    assert env.closed


def test_bad_actions_in_step_async_leave_no_step_in_flight():
    env = zoo.make_env("gym/CartPole-v1", num_envs=2, seed=0, vectorization="process", num_workers=2)
    try:
        env.reset()
        with pytest.raises(zoo.errors.ActionError):
            env.step_async(torch.tensor([0, 7]))
        env.step_async(torch.tensor([0, 1]))
        assert env.step_wait()[1].tolist() == [1.0, 1.0]
    finally:
        env.close()


# ---------------------------------------------------------------- one evaluation path

def _naive_eval(env, policy, n_episodes, seed):
    """Env ``i``'s first ``(n_episodes + i) // num_envs`` episodes' returns and lengths (stable-baselines3's
    rule), written out as a plain loop."""
    targets = [(n_episodes + i) // env.num_envs for i in range(env.num_envs)]
    obs = env.reset(seed=seed)
    ret = np.zeros(env.num_envs)
    length = np.zeros(env.num_envs, dtype=int)
    finished = [0] * env.num_envs
    done_returns, done_lengths = [], []
    while len(done_returns) < n_episodes:
        out = policy(obs)
        action = out.action if isinstance(out, PolicyStep) else out
        obs, reward, terminated, truncated, _ = env.step(action)
        ret += reward.numpy()
        length += 1
        for i in np.flatnonzero((terminated | truncated).numpy()):
            if finished[i] < targets[i]:
                done_returns.append(ret[i])
                done_lengths.append(length[i])
            finished[i] += 1
            ret[i], length[i] = 0.0, 0
    return np.array(done_returns), np.array(done_lengths)


def test_evaluate_policy_serves_text_and_numeric_envs():
    text_env = zoo.make_env("text/twenty-questions-subset", num_envs=2, seed=0, max_turns=4)
    game = text_env.game
    turn = {"i": 0}

    def text_policy(observations: list[str]) -> list[str]:
        # guess the secrets in order, one per turn: some games are won, others run out of turns
        turn["i"] += 1
        return [game.guess(game.secrets[(turn["i"] + j) % len(game.secrets)]) for j in range(len(observations))]

    numeric_env = zoo.make_env("gym/CartPole-v1", num_envs=2, seed=0, vectorization="sync")

    def numeric_policy(obs: torch.Tensor) -> PolicyStep:
        return PolicyStep(_policy(obs))

    for env, policy in ((text_env, text_policy), (numeric_env, numeric_policy)):
        turn["i"] = 0
        result = evaluate_policy(env, policy, n_episodes=5, seed=1)
        turn["i"] = 0
        returns, lengths = _naive_eval(env, policy, 5, seed=1)
        assert result["episodes"] == 5
        assert result["return_mean"] == pytest.approx(returns.mean())
        assert result["return_std"] == pytest.approx(returns.std())
        assert result["length_mean"] == pytest.approx(lengths.mean())
    assert "success_rate" in evaluate_policy(text_env, text_policy, n_episodes=3, seed=1)
    assert result["return_mean"] > 5  # CartPole's returns are its lengths
    numeric_env.close()


def test_a_list_of_strings_is_an_action():
    from zoo.rollout import _as_step

    step = _as_step(["Is it a dog?", "Is it a cat?"])
    assert step.to_env == ["Is it a dog?", "Is it a cat?"] and step.log_prob is None
    assert EpisodeStats(2, "cpu").episodes == 0
