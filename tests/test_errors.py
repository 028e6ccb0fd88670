"""Clear errors: unknown ids, missing extras, bad actions, worker failures."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import zoo
from zoo.envs import Suite, register_suite, suites
from zoo.envs.host import HostVecEnv
from zoo.errors import ActionError, MissingExtraError, UnknownEnvError


def test_unknown_task_names_closest_ids():
    with pytest.raises(UnknownEnvError, match=r"gym/CartPole-v1"):
        zoo.make_env("gym/CartPol-v1")
    with pytest.raises(UnknownEnvError, match=r"dmc/cheetah-run"):
        zoo.make_env("dmc/cheetah-rn")
    with pytest.raises(UnknownEnvError, match=r"metaworld/drawer-open-v3"):
        zoo.make_env("metaworld/drawer-open-v2")


def test_unknown_suite_and_missing_prefix():
    with pytest.raises(UnknownEnvError, match=r"unknown suite 'dcm'.*dmc/cheetah-run"):
        zoo.make_env("dcm/cheetah-run")
    with pytest.raises(UnknownEnvError, match=r"suite/task.*gym/CartPole-v1"):
        zoo.make_env("CartPole-v1")


def test_missing_extra_names_pip_command():
    register_suite(Suite(name="fakesuite", description="test", requires=("zoo_no_such_module_xyz",),
                         extra="fakeextra", tasks=lambda: ["t"], make_single=lambda task, seed=None: None))
    try:
        with pytest.raises(MissingExtraError, match=r'pip install "zoo-rl\[fakeextra\]"'):
            zoo.make_env("fakesuite/t")
        assert "fakesuite/*" in zoo.list_envs(installed_only=False)
        assert not any(i.startswith("fakesuite/") for i in zoo.list_envs())
    finally:
        from zoo.envs import registry

        registry._SUITES.pop("fakesuite")
    assert "fakesuite" not in suites()


@pytest.mark.parametrize("env_id", ["gym/CartPole-v1", "torch/cartpole"])
def test_discrete_action_errors(env_id):
    env = zoo.make_env(env_id, num_envs=3, seed=0)
    env.reset()
    with pytest.raises(ActionError, match=r"shape \(2,\), expected \(3,\)"):
        env.step(torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ActionError, match=r"dtype torch.float32, expected an integer dtype"):
        env.step(torch.zeros(3))
    with pytest.raises(ActionError, match=r"must be a torch tensor"):
        env.step([0, 1, 0])
    env.step(torch.zeros(3, dtype=torch.int32))  # any integer dtype is fine
    env.step(np.zeros(3, dtype=np.int64))  # numpy works for CPU envs
    env.close()


def test_out_of_range_discrete_action():
    with zoo.make_env("gym/CartPole-v1", num_envs=2) as env:
        env.reset()
        with pytest.raises(ActionError, match=r"outside the action space"):
            env.step(torch.tensor([0, 2]))


def test_continuous_action_errors():
    with zoo.make_env("gym/Pendulum-v1", num_envs=2) as env:
        env.reset()
        with pytest.raises(ActionError, match=r"shape \(2,\), expected \(2, 1\)"):
            env.step(torch.zeros(2))
        with pytest.raises(ActionError, match=r"expected a floating-point dtype"):
            env.step(torch.zeros(2, 1, dtype=torch.int64))
        env.step(torch.zeros(2, 1, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_wrong_device_action():
    with zoo.make_env("gym/CartPole-v1", num_envs=2, device="cuda") as env:
        env.reset()
        with pytest.raises(ActionError, match=r"on cpu, expected them on the env's device cuda"):
            env.step(torch.zeros(2, dtype=torch.int64))


def test_wrong_device_action_meta_device():
    # A tensor on another device (the meta device stands in for a GPU on CPU-only machines).
    with zoo.make_env("gym/CartPole-v1", num_envs=2) as env:
        env.reset()
        with pytest.raises(ActionError, match=r"actions are on meta, expected them on the env's device cpu"):
            env.step(torch.zeros(2, dtype=torch.int64, device="meta"))


def test_cuda_unavailable_is_clear():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match=r"CUDA is not available"):
        zoo.make_env("gym/CartPole-v1", device="cuda")


class _Exploding(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        raise RuntimeError("boom from inside the env")


def test_worker_error_is_reported_with_traceback():
    env = HostVecEnv([_Exploding] * 2, vectorization="process", num_workers=2, env_id="test/exploding")
    env.reset()
    with pytest.raises(RuntimeError, match=r"(?s)step failed in env worker.*boom from inside the env"):
        env.step(torch.zeros(2, dtype=torch.int64))
    env.close()


def test_closed_env_and_bad_arguments():
    env = zoo.make_env("gym/CartPole-v1", num_envs=2)
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()
    with pytest.raises(ValueError, match="num_envs"):
        zoo.make_env("gym/CartPole-v1", num_envs=0)
    with pytest.raises(ValueError, match="vectorization"):
        zoo.make_env("gym/CartPole-v1", num_envs=2, vectorization="threads")


class _Hanging(_Exploding):
    def step(self, action):
        import time

        time.sleep(30)


def test_hung_worker_is_reported_not_waited_for():
    env = HostVecEnv([_Hanging] * 2, vectorization="process", num_workers=2, env_id="test/hanging",
                     worker_timeout_s=1.0)
    env.reset()
    with pytest.raises(RuntimeError, match="did not answer within 1.0 s"):
        env.step(torch.zeros(2, dtype=torch.int64))
    env.close()


def test_config_checks_name_the_field_and_the_rule():
    from zoo.agents.appo import APPOConfig
    from zoo.agents.sac import SACConfig
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'entropy_coef' must be >= 0, got -0.1"):
        APPOConfig(entropy_coef=-0.1).validate()
    with pytest.raises(ConfigError, match=r"'reward_clip' must be positive \(or None: off\), got 0"):
        APPOConfig(reward_clip=0).validate()
    APPOConfig(reward_clip=None, value_clip=None).validate()  # None switches them off
    with pytest.raises(ConfigError, match=r"'cell' must be one of 'gru', 'lstm', got 'rnn'"):
        APPOConfig(cell="rnn").validate()
    with pytest.raises(ConfigError, match=r"'schedule_steps' must be positive \(or None: off\)"):
        SACConfig(schedule_steps=0).validate()
