"""Issue 14's probe cases for numerical faults and validated inputs: each bad input gets a clear error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import zoo
from zoo.agents import PPO
from zoo.cli import main
from zoo.errors import ActionError, ConfigError, NumericalError

SMALL = dict(num_envs=2, num_steps=16, num_minibatches=2, update_epochs=1)


# -- numerical faults --------------------------------------------------------------------
def _diverge_once():
    """A callback that sets the learning rate to inf at its first call: the next update blows the weights up."""
    calls = []

    def callback(agent, metrics):
        if not calls:
            agent.optimizer.param_groups[0]["lr"] = math.inf
        calls.append(metrics)

    return callback, calls


FIXED_LR = dict(SMALL, anneal_lr=False)


def test_a_non_finite_update_stops_training_naming_agent_step_and_term():
    agent = PPO("gym/CartPole-v1", seed=0, device="cpu", **FIXED_LR)
    callback, _ = _diverge_once()
    with pytest.raises(NumericalError) as info:
        agent.learn(32 * 5, callback=callback, progress=False)
    message = str(info.value)
    assert "PPO at 64 env steps" in message and "parameters of 'policy'" in message
    assert "no checkpoint was saved" in message and "on_nonfinite='rollback'" in message


def test_the_error_names_the_last_checkpoint(tmp_path):
    agent = PPO("gym/CartPole-v1", seed=0, device="cpu", **FIXED_LR)
    agent.save(tmp_path / "good.safetensors")  # recorded as the last good checkpoint
    callback, _ = _diverge_once()
    with pytest.raises(NumericalError, match="good.safetensors"):
        agent.learn(32 * 5, callback=callback, progress=False)


def test_rollback_restores_the_last_finite_state_and_goes_on():
    agent = PPO("gym/CartPole-v1", seed=0, device="cpu", **FIXED_LR)
    callback, calls = _diverge_once()
    with pytest.warns(RuntimeWarning, match="rolled back"):
        agent.learn(32 * 5, callback=callback, progress=False, on_nonfinite="rollback")
    assert agent.num_timesteps == 160 and len(calls) == 5
    assert all(torch.isfinite(p).all() for p in agent.policy.parameters())
    assert agent.optimizer.param_groups[0]["lr"] == agent.config.learning_rate  # the optimizer came back too


def test_skip_warns_and_unknown_policies_are_refused():
    agent = PPO("gym/CartPole-v1", seed=0, device="cpu", **FIXED_LR)
    callback, _ = _diverge_once()
    with pytest.warns(RuntimeWarning, match="on_nonfinite='skip'"):
        with pytest.raises(Exception):  # the diverged policy goes on to sample from NaN logits
            agent.learn(32 * 3, callback=callback, progress=False, on_nonfinite="skip")
    with pytest.raises(ConfigError, match="on_nonfinite"):
        PPO("gym/CartPole-v1", device="cpu", **SMALL).learn(32, on_nonfinite="ignore")


def test_envs_refuse_non_finite_continuous_actions():
    env = zoo.make_env("gym/Pendulum-v1", num_envs=2, seed=0)
    env.reset()
    with pytest.raises(ActionError, match=r"envs \[1\] are not finite"):
        env.step(torch.tensor([[0.5], [math.nan]]))
    with pytest.raises(ActionError, match="not finite"):
        env.step(torch.tensor([[math.inf], [0.0]]))
    env.close()


# -- validated inputs ------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(learning_rate=math.nan), "learning_rate"),
    (dict(gamma=math.inf), "gamma"),
    (dict(clip_coef=-0.1), "clip_coef"),
    (dict(ent_coef=math.nan), "ent_coef"),
])
def test_non_finite_and_wrong_sign_hyperparameters_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PPO("gym/CartPole-v1", device="cpu", **kwargs)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None])
def test_seeds_must_be_non_negative_integers(seed):
    with pytest.raises(ConfigError, match="seed must be a non-negative integer"):
        PPO("gym/CartPole-v1", device="cpu", seed=seed)


def test_learn_and_evaluate_budgets_are_checked():
    agent = PPO("gym/CartPole-v1", device="cpu", **SMALL)
    with pytest.raises(ConfigError, match="positive integer"):
        agent.learn(True)
    with pytest.raises(ConfigError, match="n_episodes=0"):
        agent.evaluate(0)
    with pytest.warns(UserWarning, match=r"learn\(10\) runs one rollout, 32 steps"):
        agent.learn(10, progress=False)
    assert agent.num_timesteps == 32


def test_act_checks_the_batch_shape():
    agent = PPO("gym/CartPole-v1", device="cpu", **SMALL)
    with pytest.raises(ConfigError, match=r"obs\[None\]"):
        agent.act(torch.zeros(4))
    with pytest.raises(ConfigError, match=r"shape \(2, 5\), expected \(batch, 4\)"):
        agent.act(torch.zeros(2, 5))
    assert agent.act(np.zeros((3, 4), dtype=np.float32)).shape == (3,)


def test_cli_refuses_zero_eval_episodes_before_training_and_prints_no_traceback(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "ppo", "--env", "gym/CartPole-v1", "--steps", "64", "--eval-episodes", "0",
                 "--out", str(out)]) == 2
    assert not (out / "progress.csv").exists()
    assert "--eval-episodes must be positive" in capsys.readouterr().err
    assert main(["train", "ppo", "--env", "gym/CartPole-v1", "--steps", "64", "--out", str(out),
                 "--set", "learning_rate=nan"]) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "Traceback" not in err


@pytest.mark.parametrize("kwargs,match", [
    (dict(secrets="dog"), "secrets must be a list of words"),
    (dict(oracle="yes"), "oracle must be an Oracle"),
    (dict(max_turns=2.7), "max_turns must be a positive integer"),
    (dict(max_turns=0), "max_turns must be a positive integer"),
])
def test_text_game_arguments_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        zoo.make_env("text/twenty-questions-subset", **kwargs)


def test_a_checkpoint_naming_a_model_outside_its_folder_is_refused_unless_passed(tmp_path):
    from zoo.agents import FilteredBC, load_agent
    from zoo.checkpoint import load_checkpoint, save_checkpoint
    from zoo.errors import CheckpointError

    agent = FilteredBC("text/twenty-questions-subset", seed=0, device="cpu", sft_steps=0)
    path = agent.save(tmp_path / "ckpt" / "agent.safetensors")
    tensors, config = load_checkpoint(path)
    for spec in ("gpt2", str(tmp_path / "elsewhere")):
        config["hyperparameters"]["actor"] = spec
        save_checkpoint(path, tensors, config, kind="agent/FilteredBC")
        with pytest.raises(CheckpointError, match=r"models=\{'actor'"):
            load_agent(path, device="cpu")
    # a model directory inside the checkpoint's folder is what the checkpoint holds: it loads
    agent.save_pretrained(tmp_path / "ckpt" / "actor")
    config["hyperparameters"]["actor"] = "actor"
    save_checkpoint(path, tensors, config, kind="agent/FilteredBC")
    assert isinstance(load_agent(path, device="cpu"), FilteredBC)
    with pytest.raises(ConfigError, match="models= names"):
        load_agent(path, device="cpu", models={"critic": "x"})


def test_save_pretrained_swaps_a_whole_folder_in_and_cleans_dead_leftovers(tmp_path):
    from zoo.agents import FilteredBC

    agent = FilteredBC("text/twenty-questions-subset", seed=0, device="cpu", sft_steps=0)
    leftover = tmp_path / ".actor.999999999.writing"  # a save killed half-way (its pid is gone)
    leftover.mkdir()
    (leftover / "config.json").write_text("{")
    first = agent.save_pretrained(tmp_path / "actor")
    second = agent.save_pretrained(tmp_path / "actor")
    assert first == second and (second / "config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["actor"]
