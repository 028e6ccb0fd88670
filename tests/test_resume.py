"""Training checkpoints and resuming: ``learn(checkpoint_path=...)``, ``save(training_state=True)``, the replay
buffers' state, ``RunLogger(resume_step=...)`` and ``zoo train --resume`` after a SIGKILL."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from zoo.agents import DQN, PPO, SAC, load_agent
from zoo.buffers.replay import PrioritizedReplayBuffer, ReplayBuffer
from zoo.checkpoint import pack_state, read_checkpoint_config, unpack_state
from zoo.cli import main
from zoo.errors import CheckpointError, ConfigError
from zoo.logger import RunLogger, read_progress

ROOT = Path(__file__).resolve().parents[1]


def assert_same(a, b, where="state"):
    """Exact equality of two state trees (dicts, lists, arrays, tensors, scalars)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(a), sorted(b))
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b), where
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a.cpu(), b.cpu()), where
    else:
        assert a == b, (where, a, b)


def record_checkpoints(agent) -> list[int]:
    """The step counts at which ``agent`` writes training checkpoints from now on."""
    steps, save = [], agent.save

    def recording_save(path, training_state=False):
        if training_state:
            steps.append(agent.num_timesteps)
        return save(path, training_state=training_state)

    agent.save = recording_save
    return steps


# --------------------------------------------------------------------------- learn(checkpoint_...)

def test_learn_writes_training_checkpoints_every_n_units_and_at_the_end(tmp_path):
    ppo = PPO("gym/CartPole-v1", seed=0, device="cpu")  # the CartPole preset: rollouts of 8 x 32 = 256 steps
    steps = record_checkpoints(ppo)
    ppo.learn(2048, progress=False, checkpoint_path=tmp_path / "ppo.safetensors", checkpoint_every=512)
    assert steps == [512, 1024, 1536, 2048]  # the last one is also the end's: not written twice
    assert read_checkpoint_config(tmp_path / "ppo.safetensors")["num_timesteps"] == 2048

    dqn = DQN("torch/cartpole", seed=0, device="cpu", hidden=(16,), learning_starts=100, gradient_steps=1)
    steps = record_checkpoints(dqn)  # off-policy agents report at the first step, then every 1000 here
    dqn.learn(3500, progress=False, checkpoint_path=tmp_path / "dqn.safetensors", checkpoint_every=1500)
    assert steps == [2001, 3500]  # at the first report >= 1500 since the last (not 3001), and at the end

    stopped = PPO("gym/CartPole-v1", seed=0, device="cpu")
    steps = record_checkpoints(stopped)
    stopped.learn(2048, progress=False, callback=lambda agent, metrics: agent.num_timesteps < 768,
                  checkpoint_path=tmp_path / "stopped.safetensors", checkpoint_every=10_000)
    assert steps == [768]  # a callback's stop still writes the end's checkpoint

    timed = PPO("gym/CartPole-v1", seed=0, device="cpu")
    steps = record_checkpoints(timed)
    timed.learn(1024, progress=False, checkpoint_path=tmp_path / "timed.safetensors", checkpoint_interval_s=1e-9)
    assert steps == [256, 512, 768, 1024]  # a due interval writes at every report


@pytest.mark.parametrize("kwargs, match", [
    (dict(checkpoint_every=0), "checkpoint_every must be a positive integer"),
    (dict(checkpoint_every=1.5), "checkpoint_every must be a positive integer"),
    (dict(checkpoint_every=True), "checkpoint_every must be a positive integer"),
    (dict(checkpoint_interval_s=0), "checkpoint_interval_s must be a positive, finite"),
    (dict(checkpoint_interval_s=math.inf), "checkpoint_interval_s must be a positive, finite"),
    (dict(checkpoint_interval_s=math.nan), "checkpoint_interval_s must be a positive, finite"),
    (dict(checkpoint_interval_s="60"), "checkpoint_interval_s must be a positive, finite"),
])
def test_checkpoint_arguments_are_validated(tmp_path, kwargs, match):
    agent = PPO("gym/CartPole-v1", seed=0, device="cpu")
    with pytest.raises(ConfigError, match=match):
        agent.learn(256, progress=False, checkpoint_path=tmp_path / "c.safetensors", **kwargs)
    with pytest.raises(ConfigError, match="need checkpoint_path"):
        agent.learn(256, progress=False, checkpoint_every=100)
    with pytest.raises(ConfigError, match="is a directory"):
        agent.learn(256, progress=False, checkpoint_path=tmp_path)
    assert agent.num_timesteps == 0  # refused before any training


# --------------------------------------------------------------------------- what a training checkpoint holds

OFF_POLICY_CASES = {
    "sac-uniform": (SAC, "gym/Pendulum-v1", dict(buffer_size=400)),  # wraps: a full buffer
    "sac-prioritized-3-step": (SAC, "gym/Pendulum-v1", dict(buffer_size=5000, prioritized_replay=True, n_step=3)),
    "dqn-uniform": (DQN, "gym/CartPole-v1", dict(buffer_size=5000)),
    "dqn-prioritized": (DQN, "gym/CartPole-v1", dict(buffer_size=400, prioritized_replay=True)),
}


@pytest.mark.parametrize("case", sorted(OFF_POLICY_CASES))
def test_replay_buffer_and_statistics_round_trip_exactly_through_a_training_checkpoint(tmp_path, case):
    cls, env_id, kwargs = OFF_POLICY_CASES[case]
    agent = cls(env_id, seed=0, device="cpu", hidden=(16,), batch_size=16, learning_starts=100, train_freq=4,
                gradient_steps=1, **kwargs)
    agent.learn(1000, progress=False, checkpoint_path=tmp_path / "c.safetensors", checkpoint_every=1000)
    loaded = cls.load(tmp_path / "c.safetensors", device="cpu")
    assert type(loaded.replay) is type(agent.replay) and len(loaded.replay) == len(agent.replay) > 0
    assert_same(agent.replay.state_dict(), loaded.replay.state_dict())  # every field, counters, rng, pool, tree
    assert_same(agent._stats.state_dict(), loaded._stats.state_dict())
    assert loaded._stats.summary() == agent._stats.summary()
    assert_same(agent.replay.sample(32), loaded.replay.sample(32))  # the same draws go on
    assert agent.extra_state() == loaded.extra_state()  # SAC's update count, DQN's epsilon


def test_rng_and_optimizer_states_round_trip(tmp_path):
    agent = SAC("gym/Pendulum-v1", seed=3, device="cpu", hidden=(16,), batch_size=16, learning_starts=50, train_freq=4)
    agent.learn(1000, progress=False, checkpoint_path=tmp_path / "c.safetensors")
    loaded = SAC.load(tmp_path / "c.safetensors", device="cpu")
    for name, optimizer in agent.state_optimizers().items():
        assert_same(optimizer.state_dict(), loaded.state_optimizers()[name].state_dict(), name)
    assert_same(agent.randomness.state_tensors(), loaded.randomness.state_tensors())
    assert agent.randomness.numpy_state() == loaded.randomness.numpy_state()
    with agent.randomness.active():
        drawn = torch.rand(4), agent.np_random.random(4)
    with loaded.randomness.active():
        assert_same(drawn, (torch.rand(4), loaded.np_random.random(4)))
    assert (loaded.num_timesteps, loaded.schedule_steps) == (agent.num_timesteps, agent.schedule_steps) == (1000, 1000)


def test_on_policy_episode_statistics_round_trip(tmp_path):
    agent = PPO("gym/CartPole-v1", seed=0, device="cpu", normalize_obs=True)
    agent.learn(1024, progress=False, checkpoint_path=tmp_path / "c.safetensors")
    loaded = PPO.load(tmp_path / "c.safetensors", device="cpu")
    assert_same(agent.collector.stats.state_dict(), loaded.collector.stats.state_dict())
    assert loaded.collector.stats.summary() == agent.collector.stats.summary()
    assert_same(agent.policy.obs_norm.state_dict(), loaded.policy.obs_norm.state_dict())
    assert loaded.remaining_steps(2048) == 1024 and loaded.remaining_steps(1100) == 0


def test_a_plain_save_holds_no_training_state_and_a_resumed_buffer_ends_its_open_episodes(tmp_path):
    agent = DQN("gym/CartPole-v1", seed=0, device="cpu", hidden=(16,), learning_starts=100, n_step=3)
    agent.learn(1000, progress=False)
    agent.save(tmp_path / "plain.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["plain.safetensors"]
    assert len(DQN.load(tmp_path / "plain.safetensors", device="cpu").replay) == 0  # refills, as before
    agent.save(tmp_path / "full.safetensors", training_state=True)
    resumed = DQN.load(tmp_path / "full.safetensors", device="cpu")
    newest = resumed.replay.newest_slot
    open_before = ~(resumed.replay.terminated[newest] | resumed.replay.truncated[newest])
    resumed.learn(10, progress=False)  # the env starts new episodes; the buffer's open one ends where it stopped
    assert resumed.replay.truncated[newest][open_before].all() and len(resumed.replay) == 1010


def test_n_step_returns_do_not_run_across_a_resume():
    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    buffer = ReplayBuffer(16, space, gym.spaces.Discrete(2), n_step=3, gamma=0.5)
    obs, no = np.zeros((1, 2), np.float32), np.zeros(1, bool)
    for reward in (1.0, 1.0):
        buffer.add(obs, np.zeros(1, np.int64), np.array([reward], np.float32), obs + reward, no, no)
    buffer.truncate_open_episodes()
    for reward in (10.0, 10.0):
        buffer.add(obs, np.zeros(1, np.int64), np.array([reward], np.float32), obs, no, no)
    sample = buffer._make_sample(np.array([0]), np.ones(1, np.float32))
    assert float(sample.rewards[0]) == 1.0 + 0.5 * 1.0  # stops at the cut, not 1 + 0.5 + 0.25 * 10
    assert float(sample.discounts[0]) == 0.25 and torch.equal(sample.next_observations[0], torch.ones(2))


@pytest.mark.parametrize("prioritized", [False, True])
def test_memory_saving_dict_buffer_state_round_trips_through_pack_state(prioritized):
    space = gym.spaces.Dict({"pos": gym.spaces.Box(-5, 5, (3,), np.float32),
                             "cell": gym.spaces.Box(0, 9, (2,), np.int64)})
    cls = PrioritizedReplayBuffer if prioritized else ReplayBuffer
    make = lambda: cls(20, space, gym.spaces.Box(-1, 1, (2,), np.float32), num_envs=2,  # noqa: E731
                       optimize_memory=True, n_step=2, seed=0)
    buffer, rng = make(), np.random.default_rng(1)
    for t in range(27):  # wraps; episodes end now and then (final observations in the side store)
        o = {"pos": rng.normal(size=(2, 3)).astype(np.float32), "cell": rng.integers(0, 9, (2, 2))}
        n = {"pos": rng.normal(size=(2, 3)).astype(np.float32), "cell": rng.integers(0, 9, (2, 2))}
        buffer.add(o, rng.normal(size=(2, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32), n,
                   rng.random(2) < 0.2, rng.random(2) < 0.1)
        if prioritized and t > 4:
            buffer.update_priorities(np.arange(4), rng.random(4))
    buffer.sample(5)
    tensors, skeleton = pack_state(buffer.state_dict(), "replay")  # what a training checkpoint stores
    restored = make()
    restored.load_state_dict(unpack_state(tensors, skeleton))
    assert_same(buffer.state_dict(), restored.state_dict())
    assert_same(buffer.sample(8), restored.sample(8))
    with pytest.raises(ValueError, match="layout"):
        cls(40, space, gym.spaces.Box(-1, 1, (2,), np.float32), num_envs=2, optimize_memory=True).load_state_dict(
            unpack_state(tensors, skeleton))


def test_a_corrupt_training_part_is_a_checkpoint_error(tmp_path):
    agent = DQN("gym/CartPole-v1", seed=0, device="cpu", hidden=(16,), learning_starts=100)
    agent.learn(200, progress=False)
    agent.save(tmp_path / "c.safetensors", training_state=True)
    part, = [f for f in tmp_path.iterdir() if ".training-" in f.name]
    data = part.read_bytes()
    part.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))  # the same size, other contents
    with pytest.raises(CheckpointError, match="training state.*does not match the checkpoint's manifest"):
        DQN.load(tmp_path / "c.safetensors", device="cpu")


def test_a_language_agents_utterance_replay_is_in_its_training_checkpoint(tmp_path):
    pytest.importorskip("transformers")
    from test_archer_agent import QUICK, four_word_env

    from zoo.agents import ArCHer

    agent = ArCHer(four_word_env(), seed=0, **QUICK)
    agent.learn(10, progress=False, checkpoint_path=tmp_path / "archer.safetensors")
    loaded = ArCHer.load(tmp_path / "archer.safetensors", device="cpu")
    assert len(loaded.replay) > 0 and loaded.replay.turns == agent.replay.turns
    assert (loaded.replay.next, loaded.iteration) == (agent.replay.next, agent.iteration)


# --------------------------------------------------------------------------- progress.csv on resume

def test_run_logger_resume_step_drops_the_rows_past_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    with RunLogger(run, config={"a": 1}, tensorboard=False) as log:
        for step in (100, 200, 300, 400):
            log.log(step, {"x": float(step)})
    with open(run / "progress.csv", "a") as f:
        f.write("50")  # a row cut short by a kill
    with RunLogger(run, config={"a": 1}, mode="resume", resume_step=200) as log:  # TensorBoard purges past 200
        log.log(300, {"x": 3.5})
    assert [(r["step"], r["x"]) for r in read_progress(run)] == [(100, 100.0), (200, 200.0), (300, 3.5)]
    with pytest.raises(ValueError, match="resume_step"):
        RunLogger(run, tensorboard=False, mode="resume", resume_step=-1)


# --------------------------------------------------------------------------- zoo train --resume after SIGKILL

#: agent, env, budget, checkpoint interval, the agent's report interval (steps), settings, first checkpoint to
#: kill after
KILL_CASES = {
    "PPO": ("gym/CartPole-v1", 8192, 1024, 256, [], 2048),
    "DQN": ("gym/CartPole-v1", 4000, 2000, 1000, ["hidden=16", "learning_starts=1000"], 2000),
    "SAC": ("gym/Pendulum-v1", 4000, 2000, 1000,
            ["hidden=16", "batch_size=16", "learning_starts=1000", "train_freq=8"], 2000),
}


def _train_arguments(agent: str, out: Path, resume: bool = False) -> list[str]:
    if resume and agent == "SAC":  # the short form: everything else comes from the run folder's train.json
        return ["train", "--resume", str(out), "--device", "cpu", "--no-progress"]
    env_id, steps, every, _, settings, _ = KILL_CASES[agent]
    arguments = ["train", agent, "--env", env_id, "--steps", str(steps), "--out", str(out), "--device", "cpu",
                 "--no-progress", "--eval-episodes", "1", "--checkpoint-every", str(every), "--log-interval-s", "0"]
    return arguments + ["--resume"] if resume else arguments + [f for s in settings for f in ("--set", s)]


def _environment() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def _checkpoint_step(out: Path) -> int | None:
    try:
        return int(read_checkpoint_config(out / "checkpoint.safetensors")["num_timesteps"])
    except CheckpointError:
        return None  # none yet


def _last_logged_step(out: Path) -> int:
    try:
        lines = (out / "progress.csv").read_text().split("\n")[1:-1]  # complete rows only
    except FileNotFoundError:
        return -1
    return int(float(lines[-1].split(",")[0])) if lines else -1


def _kill_after_a_checkpoint(agent: str, out: Path) -> tuple[int, int]:
    """Start ``zoo train``, SIGKILL it once a checkpoint at or past the case's step exists and a row past that
    checkpoint is logged; returns (the checkpoint's step, the last step logged)."""
    least = KILL_CASES[agent][-1]
    process = subprocess.Popen([sys.executable, "-m", "zoo.cli", *_train_arguments(agent, out)], env=_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"the run ended before it could be killed:\n{process.stdout.read()}"
            assert time.monotonic() < deadline, "no checkpoint appeared in time"
            step = _checkpoint_step(out)
            if step is not None and step >= least and _last_logged_step(out) > step:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
    return _checkpoint_step(out), _last_logged_step(out)


@pytest.mark.parametrize("agent", sorted(KILL_CASES))
def test_zoo_train_resumes_after_sigkill_and_ends_at_the_budget(tmp_path, capsys, agent):
    _, steps, every, report_every, _, _ = KILL_CASES[agent]
    out = tmp_path / "run"
    checkpoint_step, last_logged = _kill_after_a_checkpoint(agent, out)  # a real process, killed with SIGKILL
    assert not (out / "model.safetensors").exists()
    assert checkpoint_step >= last_logged - every  # at most one checkpoint interval of work is lost

    with pytest.warns(UserWarning, match="stale lock"):  # the killed process's lock is taken over
        assert main(_train_arguments(agent, out, resume=True)) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"{steps - checkpoint_step} env steps of {steps} ({checkpoint_step} done, from checkpoint.safetensors)" \
        in printed, printed

    model = load_agent(out / "model.safetensors", device="cpu")
    assert type(model).__name__ == agent and model.num_timesteps == steps
    assert (out / "eval.json").exists()
    logged = [int(row["step"]) for row in read_progress(out)]
    assert all(b > a for a, b in zip(logged, logged[1:])), logged  # the killed run's rows past the checkpoint went
    assert checkpoint_step in logged and logged[-1] == steps
    after = logged[logged.index(checkpoint_step) + 1]
    assert after - checkpoint_step <= report_every + every, logged  # the curve joins at the checkpoint

    if agent == "PPO":  # a finished run is left as it is
        before = (out / "model.safetensors").stat().st_mtime_ns, (out / "progress.csv").read_text()
        assert main(_train_arguments(agent, out, resume=True)) == 0
        assert "is finished: 8192 env steps of --steps 8192" in " ".join(capsys.readouterr().out.split())
        assert ((out / "model.safetensors").stat().st_mtime_ns, (out / "progress.csv").read_text()) == before


# --------------------------------------------------------------------------- the other agents' training state
@pytest.fixture(scope="module")
def small_prefs():
    from pendulum_prefs import random_pendulum_preferences  # beside this file

    return random_pendulum_preferences(episodes=4, steps=100, num_pairs=100)


@pytest.mark.parametrize("name", ["CPL", "SFT", "PIQL"])
def test_an_offline_run_resumed_from_its_checkpoint_is_the_uninterrupted_run(tmp_path, small_prefs, name):
    """Offline agents draw only from their own generators, so a checkpoint at step n continued to 2n gives the
    same weights, bit for bit, as 2n steps in one go (the optimizers, schedules and RNG states all restored)."""
    import zoo.agents as agents

    cls = getattr(agents, name)
    settings = dict(data=small_prefs, seed=0, device="cpu", hidden=(32, 32), dropout=0.0, batch_size=16)
    if name == "CPL":
        settings["bc_steps"] = 20  # the switch from BC to CPL falls before the checkpoint

    def weights(agent):
        return {f"{m}.{k}": v.clone() for m, module in agent.state_modules().items()
                for k, v in module.state_dict().items()}

    whole = cls("gym/Pendulum-v1", **settings)
    whole.learn(60, progress=False)
    first = cls("gym/Pendulum-v1", **settings)
    first.learn(30, progress=False)
    first.save(tmp_path / "checkpoint.safetensors", training_state=True)
    resumed = load_agent(tmp_path / "checkpoint.safetensors", device="cpu", data=small_prefs)
    assert resumed.num_timesteps == 30
    resumed.learn(30, progress=False)
    assert resumed.num_timesteps == 60
    expected, got = weights(whole), weights(resumed)
    assert expected.keys() == got.keys() and expected
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_a_gbrl_run_resumed_from_its_checkpoint_goes_on_from_the_same_trees(tmp_path):
    """GBRL's trees and optimizers come back exactly (same actions at the checkpoint); the resumed run then goes on
    to the whole budget. (The env starts new episodes on resume, so the continuation is not the uninterrupted
    run's: that is the documented resume semantics for online agents.)"""
    from zoo.agents import GBRL

    obs = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    first = GBRL("gym/CartPole-v1", seed=0, device="cpu", num_steps=16, num_minibatches=2)
    first.learn(128, progress=False)
    first.save(tmp_path / "checkpoint.safetensors", training_state=True)
    resumed = load_agent(tmp_path / "checkpoint.safetensors", device="cpu")
    with torch.no_grad():
        assert torch.equal(first.act(obs, deterministic=True), resumed.act(obs, deterministic=True))
    assert resumed.remaining_steps(256) == 128
    resumed.learn(resumed.remaining_steps(256), progress=False)
    assert resumed.num_timesteps == 256
