"""torch/cartpole against gymnasium's CartPole-v1, step for step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import zoo
from zoo.envs import CartPoleTorch


def _balance(obs: np.ndarray) -> int:
    """A linear controller that keeps the pole up for the whole 500 steps."""
    return int(obs[2] + 0.3 * obs[3] + 0.01 * obs[0] + 0.1 * obs[1] > 0)


@pytest.mark.parametrize("controller", ["random", "balance"])
def test_matches_gymnasium_cartpole_v1(controller):
    num_envs, steps = 4, 1200
    ours = CartPoleTorch(num_envs=num_envs, seed=0)
    theirs = [gym.make("CartPole-v1") for _ in range(num_envs)]
    rng = np.random.default_rng(0)
    obs = ours.reset()
    for i, env in enumerate(theirs):  # start gymnasium from our initial states
        env.reset(seed=i)
        env.unwrapped.state = ours.state[i].numpy().copy()
    ends = {"terminated": 0, "truncated": 0}
    for _ in range(steps):
        their_obs = [np.array(env.unwrapped.state, dtype=np.float32) for env in theirs]
        np.testing.assert_allclose(obs.numpy(), np.stack(their_obs), rtol=0, atol=1e-6)
        if controller == "random":
            actions = rng.integers(0, 2, size=num_envs)
        else:
            actions = np.array([_balance(o) for o in their_obs])
        obs, reward, terminated, truncated, info = ours.step(torch.as_tensor(actions))
        for i, env in enumerate(theirs):
            o, r, te, tr, _ = env.step(int(actions[i]))
            np.testing.assert_allclose(info["final_obs"][i].numpy(), o, rtol=0, atol=1e-6)
            assert float(reward[i]) == r == 1.0
            assert bool(terminated[i]) == te and bool(truncated[i]) == tr
            if te or tr:
                ends["terminated"] += te
                ends["truncated"] += tr
                env.reset()
                env.unwrapped.state = ours.state[i].numpy().copy()
    if controller == "random":
        assert ends["terminated"] > 50
    else:
        assert ends["truncated"] >= num_envs  # the 500-step time limit, as gymnasium's TimeLimit


def test_initial_states_in_gymnasium_range_and_seeded():
    env = zoo.make_env("torch/cartpole", num_envs=4096, seed=1)
    obs = env.reset()
    assert obs.abs().max() <= 0.05 and obs.abs().max() > 0.045
    assert torch.equal(obs, zoo.make_env("torch/cartpole", num_envs=4096, seed=1).reset())
    assert not torch.equal(obs, zoo.make_env("torch/cartpole", num_envs=4096, seed=2).reset())


def test_float32_state_option_close_to_float64():
    a = CartPoleTorch(num_envs=8, seed=0)
    b = CartPoleTorch(num_envs=8, seed=0, dtype=torch.float32)
    a.reset()
    b.set_state(a.state)
    actions = torch.zeros(8, dtype=torch.int64)
    for _ in range(5):
        oa, *_ = a.step(actions)
        ob, *_ = b.step(actions)
    torch.testing.assert_close(oa, ob, rtol=1e-5, atol=1e-5)


def test_float32_final_obs_is_the_true_last_observation():
    env = CartPoleTorch(num_envs=4, seed=0, dtype=torch.float32, max_episode_steps=3)
    env.reset()
    for _ in range(3):
        obs, _, _, truncated, info = env.step(torch.ones(4, dtype=torch.int64))
    assert truncated.all()
    assert not torch.equal(info["final_obs"], obs)
    assert obs.abs().max() <= 0.05  # fresh episodes
