"""PPO, SAC and DQN: learning on seeded budgets, save/load, hyperparameter validation, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from zoo.agents import DQN, PPO, SAC, list_agents, load_agent
from zoo.agents.callbacks import EvalCallback
from zoo.agents.ppo import PPOConfig
from zoo.errors import CheckpointError, ConfigError


def test_registered():
    assert {"PPO", "SAC", "DQN"} <= set(list_agents())


@pytest.mark.parametrize("env_id", ["gym/CartPole-v1", "torch/cartpole"])
def test_ppo_reaches_475_on_cartpole(env_id):
    agent = PPO(env_id, seed=0, device="cpu")
    evals = EvalCallback(every_steps=10_000, n_episodes=10, stop_at=475)
    agent.learn(100_000, callback=evals, progress=False)
    assert evals.best >= 475, evals.history


def test_sac_reaches_minus_300_on_pendulum():
    agent = SAC("gym/Pendulum-v1", seed=0, device="cpu")
    evals = EvalCallback(every_steps=1_000, n_episodes=8, stop_at=-300)
    agent.learn(10_000, callback=evals, progress=False)
    assert evals.best >= -300, evals.history


def test_dqn_reaches_400_on_cartpole():
    agent = DQN("gym/CartPole-v1", seed=0, device="cpu")
    evals = EvalCallback(every_steps=5_000, n_episodes=10, stop_at=400)
    agent.learn(50_000, callback=evals, progress=False)
    assert evals.best >= 400, evals.history


@pytest.mark.parametrize("cls,env_id,kwargs", [
    (PPO, "gym/Pendulum-v1", dict(num_steps=32, num_envs=2)),
    (PPO, "gym/Pendulum-v1", dict(num_steps=32, num_envs=2, normalize_obs=True, normalize_reward=True)),
    (PPO, "minatar/breakout", dict(num_steps=8, num_envs=2, num_minibatches=2)),
    (SAC, "gym/Pendulum-v1", dict(learning_starts=50, batch_size=32)),
    (DQN, "gym/CartPole-v1", dict(learning_starts=50, batch_size=32, train_freq=4, n_step=3,
                                  prioritized_replay=True)),
])
def test_save_load_round_trip_gives_identical_actions(tmp_path, cls, env_id, kwargs):
    agent = cls(env_id, seed=3, device="cpu", **kwargs)
    agent.learn(200, progress=False)
    if kwargs.get("normalize_obs"):
        assert agent.policy.obs_norm.stats.count > 1  # the statistics moved, and must survive the round trip
    path = agent.save(tmp_path / "agent.safetensors")
    loaded = load_agent(path, device="cpu")
    assert type(loaded) is cls and loaded.num_timesteps == agent.num_timesteps
    assert loaded.config == agent.config
    obs = zoo.make_env(env_id, num_envs=4, seed=1).reset()
    assert torch.equal(agent.act(obs, deterministic=True), loaded.act(obs, deterministic=True))
    torch.manual_seed(0)
    a = agent.act(obs)
    torch.manual_seed(0)
    assert torch.equal(a, loaded.act(obs))
    for name, opt in agent.state_optimizers().items():
        mine, theirs = opt.state_dict(), loaded.state_optimizers()[name].state_dict()
        assert mine["param_groups"] == theirs["param_groups"]
        for key, state in mine["state"].items():
            for k, v in state.items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(theirs["state"][key][k])), (name, key, k)
    with pytest.raises(CheckpointError, match="kind"):
        (SAC if cls is not SAC else DQN).load(path)


def test_hyperparameter_validation():
    with pytest.raises(ConfigError, match=r"unknown hyperparameter 'learning_rat'.*learning_rate"):
        PPO("gym/CartPole-v1", learning_rat=1e-3)
    with pytest.raises(ConfigError, match=r"'num_steps' must be an integer, got 'many'"):
        PPO("gym/CartPole-v1", num_steps="many")
    with pytest.raises(ConfigError, match=r"'gamma' must lie in \[0, 1\]"):
        PPO("gym/CartPole-v1", gamma=1.5)
    with pytest.raises(ConfigError, match="equal minibatches"):
        PPO("gym/CartPole-v1", num_envs=3, num_steps=5, num_minibatches=4)
    assert PPOConfig.parse_overrides(["learning_rate=1e-3", "hidden=32,32", "anneal_lr=false", "num_envs=4"]) == \
        {"learning_rate": 1e-3, "hidden": (32, 32), "anneal_lr": False, "num_envs": 4}
    with pytest.raises(ConfigError, match=r"'num_envs' expects int, got '2.5'"):
        PPOConfig.parse_overrides(["num_envs=2.5"])
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        PPOConfig.parse_overrides(["nope=1"])


def test_overrides_of_optional_fields_written_with_a_pipe():
    """``X | None`` annotations (PEP 604) parse and check like ``Optional[X]``."""
    from zoo.agents.appo import APPO

    config = APPO.config_class
    assert config.parse_overrides(["value_clip=none", "num_workers=2"]) == {"value_clip": None, "num_workers": 2}
    assert config.parse_overrides(["value_clip=0.5"]) == {"value_clip": 0.5}
    with pytest.raises(ConfigError, match="'value_clip' expects float"):
        config.parse_overrides(["value_clip=wide"])
    with pytest.raises(ConfigError, match="'num_workers' must be"):
        config.create("gym/CartPole-v1", num_workers="two")


def test_presets_apply_under_overrides():
    agent = PPO("gym/CartPole-v1", seed=0, device="cpu", learning_rate=5e-4)
    assert agent.config.num_steps == 32 and agent.config.learning_rate == 5e-4  # rl-zoo preset, then override
    assert PPO("gym/Acrobot-v1", device="cpu").config.num_steps == 128  # CleanRL default


def test_wrong_action_space_is_a_clear_error():
    with pytest.raises(ConfigError, match="SAC needs a Box action space"):
        SAC("gym/CartPole-v1", device="cpu")
    with pytest.raises(ConfigError, match="DQN needs a Discrete action space"):
        DQN("gym/Pendulum-v1", device="cpu")


def test_learn_logs_to_run_folder(tmp_path):
    agent = PPO("torch/cartpole", seed=0, device="cpu", num_steps=16)
    agent.learn(2_000, progress=False, log_dir=tmp_path / "run", log_interval_s=0)
    from zoo.logger import read_progress

    rows = read_progress(tmp_path / "run")
    assert rows and rows[-1]["step"] == agent.num_timesteps and "sps" in rows[-1]
    assert (tmp_path / "run" / "config.json").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ppo_on_cuda_keeps_rollouts_on_device(monkeypatch):
    agent = PPO("torch/cartpole", seed=0, device="cuda", num_envs=256)
    big = agent.config.num_steps * 256
    copies = []
    original_cpu, original_numpy = torch.Tensor.cpu, torch.Tensor.numpy

    def spy_cpu(self, *a, **k):
        if self.numel() >= big:
            copies.append(tuple(self.shape))
        return original_cpu(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "cpu", spy_cpu)
    agent.learn(big * 3, progress=False)
    assert copies == []
    assert agent.collector.rewards.device.type == "cuda"
    np.testing.assert_equal(original_numpy is torch.Tensor.numpy, True)


def test_invalid_hyperparameters_fail_early():
    with pytest.raises(ConfigError, match="alpha"):
        SAC("gym/Pendulum-v1", device="cpu", alpha=0.0, autotune=False)
    with pytest.raises(ConfigError, match="hidden"):
        SAC("gym/Pendulum-v1", device="cpu", hidden=())
    with pytest.raises(ConfigError, match="never start"):
        DQN("gym/CartPole-v1", device="cpu", buffer_size=100, batch_size=128, learning_starts=10)
    with pytest.raises(ConfigError, match="tau"):
        DQN("gym/CartPole-v1", device="cpu", tau=2.0)
    # a VecEnv whose num_envs makes minibatches of 1 sample (NaN advantage normalisation) is refused
    env = zoo.make_env("torch/cartpole", num_envs=1)
    with pytest.raises(ConfigError, match="minibatches of at least 2"):
        PPO(env, device="cpu", num_steps=4, num_minibatches=4)


def test_checkpoint_rebuilds_the_env_with_its_kwargs(tmp_path):
    agent = PPO(zoo.make_env("torch/cartpole", num_envs=8, seed=0, max_episode_steps=50), seed=0, device="cpu")
    agent.learn(256, progress=False)
    loaded = load_agent(agent.save(tmp_path / "a.safetensors"), device="cpu")
    assert loaded.env.make_kwargs == {"max_episode_steps": 50}
    assert loaded.evaluate(4)["length_mean"] <= 50


def test_extra_state_restores_only_declared_keys():
    agent = DQN("gym/CartPole-v1", device="cpu")
    agent.load_extra_state({"epsilon": 0.3, "config": "overwritten?"})
    assert agent.epsilon == 0.3 and not isinstance(agent.config, str)
