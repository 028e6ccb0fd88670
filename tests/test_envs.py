"""zoo.make_env over every suite: shapes, dtypes, devices, auto-reset, final observations, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import zoo
from zoo.envs import make_single_env
from zoo.utils.seeding import derive_seed

# One task per suite, with a short time limit so that episodes end within the test.
SUITE_CASES = {
    "gym": ("gym/CartPole-v1", {"max_episode_steps": 12}),
    "dmc": ("dmc/cartpole-swingup", {"time_limit": 0.2}),  # control timestep 0.01 s -> 20 steps
    "metaworld": ("metaworld/reach-v3", {"max_episode_steps": 12}),
    "nethack": ("nethack/score", {"max_episode_steps": 12}),
    "minatar": ("minatar/breakout", {"max_episode_steps": 12}),
    "torch": ("torch/cartpole", {"max_episode_steps": 12}),
}
HOST_CASES = [(s, v) for s in SUITE_CASES if s != "torch" for v in ("sync", "process")]
NUM_ENVS = 3
STEPS = 30


def _rows(obs, i):
    return {k: v[i].cpu().numpy() for k, v in obs.items()} if isinstance(obs, dict) else obs[i].cpu().numpy()


def _assert_obs_equal(a, b, atol=0.0):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], atol=atol, rtol=0, err_msg=k)
    else:
        np.testing.assert_allclose(a, b, atol=atol, rtol=0)


def _actions(env, steps, seed=0):
    env.action_space.seed(seed)
    return [env.sample_actions() for _ in range(steps)]


def _check_batch(env, obs):
    space = env.single_observation_space
    if isinstance(obs, dict):
        assert set(obs) == set(space.spaces)
        for k, v in obs.items():
            assert v.shape == (env.num_envs, *space[k].shape), k
            assert v.device == env.device
            assert v.dtype == zoo.envs.vec.torch_dtype(space[k].dtype), k
    else:
        assert obs.shape == (env.num_envs, *space.shape)
        assert obs.device == env.device
        assert obs.dtype == zoo.envs.vec.torch_dtype(space.dtype)
    for i in range(env.num_envs):
        assert space.contains(_rows(obs, i)) or np.isinf(space.high).all(), "observation outside its space"


@pytest.mark.parametrize("suite,vectorization", HOST_CASES + [("torch", None)])
def test_batched_shapes_dtypes_and_autoreset(suite, vectorization):
    env_id, kwargs = SUITE_CASES[suite]
    with zoo.make_env(env_id, num_envs=NUM_ENVS, seed=3, vectorization=vectorization, **kwargs) as env:
        obs = env.reset()
        _check_batch(env, obs)
        finished = 0
        for actions in _actions(env, STEPS):
            obs, reward, terminated, truncated, info = env.step(actions)
            _check_batch(env, obs)
            _check_batch(env, info["final_obs"])
            assert reward.shape == (NUM_ENVS,) and reward.dtype == torch.float32
            assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
            assert terminated.shape == truncated.shape == (NUM_ENVS,)
            for key in env.info_keys:
                assert info[key].shape == (NUM_ENVS,) and info[key].dtype == torch.float32
            done = (terminated | truncated).numpy()
            for i in range(NUM_ENVS):
                if not done[i]:  # final_obs is the observation the step led to
                    _assert_obs_equal(_rows(info["final_obs"], i), _rows(obs, i))
            finished += int(done.sum())
        assert finished >= NUM_ENVS, "the short time limit should have ended every env's episode at least once"


@pytest.mark.parametrize("suite,vectorization", HOST_CASES)
def test_vec_env_equals_independent_single_envs(suite, vectorization):
    """Env i of the VecEnv behaves exactly as a single env built with the same seed, reset on episode end."""
    env_id, kwargs = SUITE_CASES[suite]
    seed = 11
    with zoo.make_env(env_id, num_envs=NUM_ENVS, seed=seed, vectorization=vectorization, **kwargs) as env:
        singles = [make_single_env(env_id, seed=derive_seed(seed, i), **kwargs) for i in range(NUM_ENVS)]
        obs = env.reset()
        for i, single in enumerate(singles):
            ob, _ = single.reset(seed=seed + i)
            _assert_obs_equal(_rows(obs, i), ob)
        terminations = truncations = 0
        for actions in _actions(env, STEPS):
            obs, reward, terminated, truncated, info = env.step(actions)
            for i, single in enumerate(singles):
                ob, r, te, tr, _ = single.step(actions[i].numpy() if actions.ndim > 1 else int(actions[i]))
                assert float(reward[i]) == pytest.approx(r, rel=1e-6)
                assert bool(terminated[i]) == te and bool(truncated[i]) == tr
                _assert_obs_equal(_rows(info["final_obs"], i), ob)
                if te or tr:
                    ob, _ = single.reset()
                    terminations += te
                    truncations += tr
                _assert_obs_equal(_rows(obs, i), ob)
        assert truncations > 0
        for single in singles:
            single.close()


@pytest.mark.parametrize("suite", list(SUITE_CASES))
def test_seeding_reproducible(suite):
    env_id, kwargs = SUITE_CASES[suite]

    def rollout(seed):
        with zoo.make_env(env_id, num_envs=2, seed=seed, vectorization="sync" if suite != "torch" else None,
                          **kwargs) as env:
            out = [env.reset()]
            for actions in _actions(env, 15, seed=0):
                obs, reward, *_ = env.step(actions)
                out.append((obs, reward))
            return out

    def flat(traj):
        parts = []
        for item in traj:
            for x in (item if isinstance(item, tuple) else (item,)):
                parts += [v.flatten().double() for v in x.values()] if isinstance(x, dict) else [x.flatten().double()]
        return torch.cat(parts)

    a, b, c = flat(rollout(5)), flat(rollout(5)), flat(rollout(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("suite", list(SUITE_CASES))
def test_gymnasium_env_checker_passes_on_single_env(suite):
    env_id, kwargs = SUITE_CASES[suite]
    env = make_single_env(env_id, seed=0, **kwargs)
    check_env(env, skip_render_check=True)
    env.close()


def test_dict_observations_are_dicts_of_tensors():
    with zoo.make_env("nethack/score", num_envs=2, observation_keys=("glyphs", "blstats", "message")) as env:
        obs = env.reset()
        assert set(obs) == {"glyphs", "blstats", "message"}
        assert obs["glyphs"].shape == (2, 21, 79) and obs["glyphs"].dtype == torch.int16
        assert obs["blstats"].dtype == torch.int64 and obs["message"].dtype == torch.uint8


def test_float64_observations_served_as_float32():
    with zoo.make_env("dmc/cheetah-run", num_envs=2, vectorization="sync") as env:
        assert env.single_observation_space.dtype == np.float32
        assert env.reset().dtype == torch.float32


def test_metaworld_reports_success():
    with zoo.make_env("metaworld/reach-v3", num_envs=2, vectorization="sync") as env:
        env.reset()
        _, _, _, _, info = env.step(env.sample_actions())
        assert "success" in info and info["success"].shape == (2,)


def test_list_envs_covers_every_suite():
    ids = zoo.list_envs()
    for prefix, expected in [("dmc/", 51), ("metaworld/", 50), ("nethack/", 8), ("minatar/", 5)]:
        assert sum(i.startswith(prefix) for i in ids) >= expected
    assert "gym/CartPole-v1" in ids and "torch/cartpole" in ids
    assert "dmc/cheetah-run" in ids and "metaworld/drawer-open-v3" in ids
    assert {f"nethack/{t}" for t in ("score", "staircase", "oracle", "gold", "eat", "scout", "challenge")} <= set(ids)
    assert {f"minatar/{g}" for g in ("asterix", "breakout", "freeway", "seaquest", "space_invaders")} <= set(ids)
    assert not any(i.startswith("gym/Meta-World") or i.startswith("gym/NetHack") for i in ids)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("env_id", ["gym/CartPole-v1", "torch/cartpole"])
def test_cuda_device(env_id):
    with zoo.make_env(env_id, num_envs=4, device="cuda", seed=0) as env:
        obs = env.reset()
        assert obs.device.type == "cuda"
        obs, reward, terminated, truncated, info = env.step(env.sample_actions())
        assert reward.device.type == "cuda" and info["final_obs"].device.type == "cuda"


def test_dmc_quadruped_runs_on_this_numpy():
    """dm-control's quadruped calls np.in1d, gone in numpy 2.4: the adapter supplies it (it crashed the dmc suite)."""
    with zoo.make_env("dmc/quadruped-walk", num_envs=1, vectorization="sync", seed=0) as env:
        obs = env.reset()
        obs, reward, terminated, truncated, info = env.step(env.sample_actions())
        assert obs.shape[-1] == 78 and torch.isfinite(reward).all()
