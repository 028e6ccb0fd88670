"""The shared agent contract: agent-owned randomness, schedules that continue across learn(), the budget unit,
data as an argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.agents import DQN, PPO, SAC, get_agent, list_agents, load_agent
from zoo.errors import ConfigError
from zoo.utils.seeding import AgentRandomness

PPO_SMALL = dict(num_envs=2, num_steps=16, num_minibatches=2, update_epochs=2)
DQN_SMALL = dict(learning_starts=64, batch_size=16, buffer_size=1000, train_freq=4, gradient_steps=2,
                 target_network_frequency=50, exploration_fraction=0.5)


def parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


# -- randomness owned by the agent -------------------------------------------------
def test_building_and_training_an_agent_leaves_the_global_generators_alone():
    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch, expected_numpy = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    agent = PPO("gym/CartPole-v1", seed=5, device="cpu", **PPO_SMALL)
    agent.learn(64, progress=False)
    agent.evaluate(2)
    agent.act(torch.zeros(2, 4))
    assert torch.equal(torch.rand(3), expected_torch)
    assert np.array_equal(np.random.rand(3), expected_numpy)


def test_two_same_seed_agents_match_whatever_runs_between_them():
    a = PPO("gym/CartPole-v1", seed=1, device="cpu", **PPO_SMALL)
    torch.rand(1000)  # other work on the global generator
    b = PPO("gym/CartPole-v1", seed=1, device="cpu", **PPO_SMALL)
    assert_same(parameters(a.policy), parameters(b.policy))
    a.learn(128, progress=False)
    torch.randn(77)
    c = PPO("gym/CartPole-v1", seed=2, device="cpu", **PPO_SMALL)  # another agent trains in between
    c.learn(64, progress=False)
    b.learn(128, progress=False)
    assert_same(parameters(a.policy), parameters(b.policy))
    assert not all(torch.equal(x, y) for x, y in zip(parameters(a.policy), parameters(c.policy)))


def test_randomness_scopes_are_reentrant_and_swap_state():
    r = AgentRandomness(0)
    with r.active():
        first = torch.rand(2)
        with r.active():  # nested: the same stream goes on
            second = torch.rand(2)
    torch.manual_seed(0)
    assert torch.equal(torch.cat([first, second]), torch.rand(4))
    with r.active():
        third = torch.rand(2)
    torch.manual_seed(0)
    torch.rand(4)
    assert torch.equal(third, torch.rand(2))


def test_a_checkpoint_restores_the_agents_generators(tmp_path):
    agent = SAC("gym/Pendulum-v1", seed=4, device="cpu", learning_starts=32, batch_size=16)
    agent.learn(64, progress=False)
    path = agent.save(tmp_path / "sac.safetensors")
    loaded = load_agent(path, device="cpu")
    obs = torch.zeros(3, 3)
    assert torch.equal(agent.act(obs), loaded.act(obs))  # the same stochastic action: the same torch stream
    assert agent.np_random.random() == loaded.np_random.random()


# -- learn() continues where it stopped ------------------------------------------------
def test_ppo_learn_twice_equals_learn_once_over_the_same_schedule():
    once = PPO("gym/CartPole-v1", seed=0, device="cpu", schedule_steps=192, **PPO_SMALL)
    once.learn(192, progress=False)
    twice = PPO("gym/CartPole-v1", seed=0, device="cpu", schedule_steps=192, **PPO_SMALL)
    twice.learn(64, progress=False)
    # the lr of the second update was set at 32 of 192 steps, not restarted by the second call
    assert twice.optimizer.param_groups[0]["lr"] == pytest.approx(twice.config.learning_rate * (1 - 32 / 192))
    twice.learn(128, progress=False)
    assert twice.num_timesteps == once.num_timesteps == 192
    assert_same(parameters(once.policy), parameters(twice.policy))
    assert twice.optimizer.param_groups[0]["lr"] == once.optimizer.param_groups[0]["lr"]


def test_the_default_schedule_is_the_first_learn_calls_total():
    agent = PPO("gym/CartPole-v1", seed=0, device="cpu", **PPO_SMALL)
    agent.learn(96, progress=False)
    assert agent.schedule_steps == 96
    with pytest.warns(UserWarning, match="past its schedule horizon"):
        agent.learn(64, progress=False)  # past the horizon: the schedules stay at their end values
    assert agent.schedule_steps == 96 and agent.schedule_progress() == 1.0
    assert agent.optimizer.param_groups[0]["lr"] == 0.0


def test_dqn_learn_twice_equals_learn_once_over_the_same_schedule():
    once = DQN("gym/CartPole-v1", seed=0, device="cpu", schedule_steps=400, **DQN_SMALL)
    once.learn(400, progress=False)
    twice = DQN("gym/CartPole-v1", seed=0, device="cpu", schedule_steps=400, **DQN_SMALL)
    twice.learn(150, progress=False)
    assert 0.05 < twice.epsilon < 1.0  # epsilon is part-way down its schedule, not restarted
    twice.learn(250, progress=False)
    assert_same(parameters(once.q), parameters(twice.q))
    assert_same(parameters(once.q_target), parameters(twice.q_target))
    assert once.epsilon == twice.epsilon


def test_schedule_steps_survives_a_checkpoint(tmp_path):
    agent = DQN("gym/CartPole-v1", seed=0, device="cpu", **DQN_SMALL)
    agent.learn(200, progress=False)
    loaded = load_agent(agent.save(tmp_path / "dqn.safetensors"), device="cpu")
    assert loaded.schedule_steps == 200 and loaded.schedule_progress() == 1.0


def test_schedule_steps_must_be_positive():
    with pytest.raises(ConfigError, match="schedule_steps"):
        PPO("gym/CartPole-v1", device="cpu", schedule_steps=0)


# -- the budget unit ---------------------------------------------------------------------
def test_every_agent_declares_its_budget_unit():
    units = {name: get_agent(name).budget_unit for name in list_agents()}
    assert set(units.values()) <= {"env steps", "gradient steps", "dialogue turns", "generations"}
    assert units["PPO"] == units["SAC"] == units["DQN"] == "env steps"
    assert units["CPL"] == "gradient steps" and units["OfflineArCHer"] == "gradient steps"
    assert units["ArCHer"] == "dialogue turns"


def test_the_budget_unit_is_recorded_and_named_in_errors():
    agent = PPO("gym/CartPole-v1", device="cpu", **PPO_SMALL)
    assert agent.describe()["budget_unit"] == "env steps"
    with pytest.raises(ConfigError, match="env steps"):
        agent.learn(0)


# -- data as an argument ---------------------------------------------------------------------
def test_online_agents_refuse_data():
    with pytest.raises(ConfigError, match="takes no data"):
        PPO("gym/CartPole-v1", device="cpu", data="some.npz")


def test_nested_scopes_of_two_agents_keep_their_streams_apart():
    a, b = AgentRandomness(0), AgentRandomness(1)
    with a.active():
        a1 = torch.rand(2)
        with b.active():
            b1 = torch.rand(2)
            with a.active():  # an inner agent calling back into the outer one
                a2 = torch.rand(2)
            b2 = torch.rand(2)
        a3 = torch.rand(2)
    torch.manual_seed(0)
    assert torch.equal(torch.cat([a1, a2, a3]), torch.rand(6))
    torch.manual_seed(1)
    assert torch.equal(torch.cat([b1, b2]), torch.rand(4))


def test_callbacks_and_stochastic_evaluation_do_not_draw_from_the_training_stream():
    plain = PPO("gym/CartPole-v1", seed=3, device="cpu", schedule_steps=128, **PPO_SMALL)
    plain.learn(128, progress=False)
    busy = PPO("gym/CartPole-v1", seed=3, device="cpu", schedule_steps=128, **PPO_SMALL)
    seen = []

    def callback(agent, metrics):
        seen.append(torch.rand(1))  # the caller's generator, not the agent's
        agent.evaluate(2, deterministic=False)

    busy.learn(64, callback=callback, progress=False)
    first = busy.evaluate(3, deterministic=False)
    assert busy.evaluate(3, deterministic=False) == first  # evaluation: its own stream, the same each call
    busy.learn(64, progress=False)
    assert seen and len(set(float(x) for x in seen)) == len(seen)
    assert_same(parameters(plain.policy), parameters(busy.policy))
