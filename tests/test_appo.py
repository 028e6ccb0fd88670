"""APPO: its losses and V-trace targets by hand, the recurrent replay, asynchronous collection and policy lag,
learning CartPole with worker processes, learn() continuing, checkpoints, the hooks ONI builds on, the CLI."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from zoo.agents import APPO, load_agent
from zoo.agents.appo import appo_vtrace_targets
from zoo.rollout import Rollout
from zoo.agents.appo.envs import EnvHalves
from zoo.errors import ConfigError
from zoo.losses import appo_policy_loss, appo_value_loss, clamped_ratio, normalize_advantages_floored
from zoo.recurrent import make_chunks

# in-process envs and a tiny network: the cheap setting for everything but the worker-process tests
TINY = {"num_envs": 4, "rollout": 8, "recurrence": 4, "batch_size": 16, "hidden": (16,), "core_size": 8,
        "vectorization": "sync", "double_buffer": False, "synchronous": True}


def tiny(env="gym/CartPole-v1", seed=0, **overrides):
    return APPO(env, seed=seed, device="cpu", **{**TINY, **overrides})


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- losses, by hand
def test_clamped_ratio():
    ratio = clamped_ratio(torch.log(torch.tensor([0.01, 0.5, 1.0, 30.0])))
    assert torch.allclose(ratio, torch.tensor([0.05, 0.5, 1.0, 20.0]))


def test_appo_policy_loss_clips_asymmetrically():
    # eps = 0.1: the ratio is clipped to [1/1.1, 1.1] = [0.90909, 1.1]
    ratio = torch.tensor([1.2, 0.8, 0.8, 1.2])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    # min(r A, clip(r) A): 1.2 -> min(1.2, 1.1) = 1.1; 0.8 -> min(0.8, 0.909) = 0.8;
    # 0.8, A=-1 -> min(-0.8, -0.90909) = -0.90909; 1.2, A=-1 -> min(-1.2, -1.1) = -1.2
    expected = -(1.1 + 0.8 - 1 / 1.1 - 1.2) / 4
    assert appo_policy_loss(ratio, adv, 0.1).item() == pytest.approx(expected, rel=1e-6)
    # the lower bound stays positive for a large eps (1 - eps would be negative)
    big = appo_policy_loss(torch.tensor([0.2]), torch.tensor([-1.0]), 2.0)
    assert big.item() == pytest.approx(1 / 3, rel=1e-6)


def test_appo_value_loss_clips_around_the_old_value_without_a_half():
    values, targets, old = torch.tensor([3.0, 0.5]), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])
    # row 0: (3-1)^2 = 4; clipped: 1 + clip(2, -1, 1) = 2 -> (2-1)^2 = 1; max = 4
    # row 1: (0.5-1)^2 = 0.25; clipped: 0 + 0.5 -> 0.25; max = 0.25
    assert appo_value_loss(values, targets, old, 1.0).item() == pytest.approx((4 + 0.25) / 2)
    # a clip that binds where it makes the loss larger: V moved away from R past the clip
    v, r, o = torch.tensor([0.0]), torch.tensor([0.2]), torch.tensor([2.0])
    # unclipped (0 - 0.2)^2 = 0.04; clipped 2 + clip(-2, -1, 1) = 1 -> (1 - 0.2)^2 = 0.64
    assert appo_value_loss(v, r, o, 1.0).item() == pytest.approx(0.64)
    assert appo_value_loss(v, r, o, None).item() == pytest.approx(0.04)


def test_advantage_normalisation_floors_the_std():
    adv = torch.tensor([1.0, 2.0, 3.0])  # mean 2, unbiased std 1
    assert torch.allclose(normalize_advantages_floored(adv), torch.tensor([-1.0, 0.0, 1.0]))
    flat = torch.tensor([1.0, 1.0001, 0.9999])  # std 1e-4 < the floor: divided by 1e-3, not blown up to +-1
    assert torch.allclose(normalize_advantages_floored(flat, 1e-3), torch.tensor([0.0, 0.1, -0.1]), atol=1e-4)


def test_vtrace_targets_by_hand():
    gamma = 0.9
    values = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]])
    rewards = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    # column 0: ratios 0.5, 0.01 (clamped to 0.05), 2 (rho = c = 1); column 1 terminates after step 1;
    # column 2 is truncated after step 0, bootstrapping from 10
    ratios = torch.tensor([[0.5, 1.0, 1.0], [0.01, 1.0, 1.0], [2.0, 1.0, 1.0]])
    terminated = torch.zeros(3, 3, dtype=torch.bool)
    terminated[1, 1] = True
    truncated = torch.zeros(3, 3, dtype=torch.bool)
    truncated[0, 2] = True
    bootstrap = torch.zeros(3, 3)
    bootstrap[0, 2] = 10.0
    last = torch.tensor([4.0, 4.0, 4.0])
    vs, adv = appo_vtrace_targets(ratios.log(), rewards, values, terminated, truncated, bootstrap, last, gamma)
    # column 0: delta_2 = 2 + 0.9*4 - 3 = 2.6; delta_1 = 0.05 (0 + 2.7 - 2) = 0.035; delta_0 = 0.5 (1 + 1.8 - 1)
    # vs_2 = 5.6; vs_1 = 2 + 0.035 + 0.9*0.05*2.6 = 2.152; vs_0 = 1 + 0.9 + 0.9*0.5*0.152 = 1.9684
    # adv_2 = 2.6; adv_1 = 0.05 (0.9*5.6 - 2) = 0.152; adv_0 = 0.5 (1 + 0.9*2.152 - 1) = 0.9684
    # column 1: vs = [1.9, 1.0, 4.6], adv = [0.9, -1.0, 1.6]
    # column 2: vs_2 = 3.6, vs_1 = 2 + 0.7 + 0.9*0.6 = 3.24, vs_0 = 1 + (0.9*10 - 1) = 9; adv = [8, 1.24, 0.6]
    expected_vs = torch.tensor([[1.9684, 1.9, 9.0], [2.152, 1.0, 3.24], [5.6, 4.6, 3.6]])
    expected_adv = torch.tensor([[0.9684, 0.9, 8.0], [0.152, -1.0, 1.24], [2.6, 1.6, 0.6]])
    assert torch.allclose(vs, expected_vs, atol=1e-5)
    assert torch.allclose(adv, expected_adv, atol=1e-5)


# ----------------------------------------------------------------------------- config
def test_bad_settings_name_the_fix():
    with pytest.raises(ConfigError, match="multiple of recurrence"):
        tiny(rollout=8, recurrence=3)
    with pytest.raises(ConfigError, match="batch_size"):
        tiny(batch_size=12)
    with pytest.raises(ConfigError, match="ratio_min < 1 < ratio_max"):
        tiny(ratio_min=1.5)
    with pytest.raises(ConfigError, match="cell"):
        tiny(cell="rnn")


def test_presets_carry_the_papers_settings():
    from zoo.agents.appo import APPOConfig

    nethack = APPOConfig.create("nethack/score-extended")
    assert (nethack.rollout, nethack.recurrence, nethack.batch_size, nethack.num_epochs) == (32, 32, 1024, 1)
    assert (nethack.learning_rate, nethack.adam_eps, nethack.clip_ratio, nethack.value_clip) == (1e-4, 1e-6, 0.1, 1.0)
    assert (nethack.entropy_coef, nethack.max_grad_norm, nethack.reward_clip, nethack.core_size) == (0.003, 4.0, 10.0,
                                                                                                     512)
    assert nethack.hidden == () and nethack.cell == "gru"


# ----------------------------------------------------------------------------- the recurrent replay
def test_replaying_the_sequences_reproduces_acting():
    agent = tiny(num_envs=2, rollout=24, recurrence=6, batch_size=48)
    batch, _ = agent._collect_here()
    assert batch.episode_starts[1:].any()  # episodes start inside the sequences: the replay must reset there
    chunks = make_chunks(batch.states, batch.episode_starts, 6)
    dist, values, _ = agent.policy.sequence(chunks.split(batch.obs), chunks.initial_state, chunks.episode_starts)
    log_prob = chunks.merge(dist.log_prob(chunks.split(batch.actions)))
    assert torch.allclose(log_prob, batch.log_probs, atol=1e-5)
    assert torch.allclose(chunks.merge(values), batch.values, atol=1e-5)
    agent.close()


# ----------------------------------------------------------------------------- learning, with workers
def test_learns_cartpole_asynchronously_with_worker_processes():
    agent = APPO("gym/CartPole-v1", seed=0, device="cpu")  # the preset: 16 envs in two halves of workers
    assert isinstance(agent.env, EnvHalves) and not agent.config.synchronous
    reports = []
    agent.learn(40_000, progress=False, callback=lambda a, m: reports.append(m))
    agent.close()
    assert agent.num_timesteps == 40_000 // 512 * 512
    final = reports[-1]["return_mean"]
    assert final > 100, f"return_mean {final} after 40k steps (random: ~22)"
    lags = [m["policy_lag_max"] for m in reports]
    assert max(lags) > 0  # collection overlapped learning
    assert all(m["policy_lag_mean"] >= 0 for m in reports)
    assert all(math.isfinite(m["sps"]) and m["sps"] > 0 for m in reports)


def test_synchronous_mode_has_no_lag_and_is_reproducible_with_workers():
    kw = dict(TINY, vectorization="process", double_buffer=True, num_workers=1)
    runs = []
    for seed in (3, 3, 4):
        agent = APPO("gym/CartPole-v1", seed=seed, device="cpu", **kw)
        lags = []
        agent.learn(4 * 32, progress=False, callback=lambda a, m, lags=lags: lags.append(m["policy_lag_max"]))
        agent.close()
        assert lags == [0.0] * 4
        runs.append(params(agent.policy))
    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])


def test_each_step_records_the_version_whose_weights_chose_it():
    agent = tiny(synchronous=False, batch_size=8, rollout=8, recurrence=8)  # 4 SGD steps per rollout

    def checksum(module):
        return float(sum(p.detach().double().sum() for p in module.parameters()))

    learner = {0: checksum(agent.policy)}  # version -> the learner's weights at that version
    acted = []  # (the version the collector records for this step, the weights that act)
    actor_act, update = agent._actor.act, agent.update

    def spy_act(*args, **kwargs):
        acted.append((agent.collector.policy_version, checksum(agent._actor)))
        return actor_act(*args, **kwargs)

    def spy_update(batch):
        assert (batch.policy_versions <= agent.policy_version).all()  # never a version from the future
        assert (batch.policy_versions.diff(dim=0) >= 0).all()  # versions only grow within a rollout
        out = update(batch)
        learner[agent.policy_version] = checksum(agent.policy)
        return out

    agent._actor.act, agent.update = spy_act, spy_update
    agent.learn(12 * 32, progress=False)
    agent.close()
    assert len(learner) == 13 and not agent._pipeline.running
    assert len({version for version, _ in acted}) > 3  # the actor picked up new weights as it went
    for version, weights in acted:
        assert version % 4 == 0  # weights are published after whole updates
        assert weights == learner[version]


# ----------------------------------------------------------------------------- learn() continues
def test_learn_twice_equals_learn_once():
    once = tiny(seed=5)
    once.learn(4 * 32, progress=False)
    twice = tiny(seed=5)
    twice.learn(2 * 32, progress=False)
    assert twice.policy_version == 2 * 2
    twice.learn(2 * 32, progress=False)
    assert once.num_timesteps == twice.num_timesteps == 128
    assert once.policy_version == twice.policy_version == 8
    assert same(params(once.policy), params(twice.policy))  # env state, recurrent state, sampler all carried on
    once.close()
    twice.close()


def test_asynchronous_learn_twice_continues_counts():
    agent = tiny(synchronous=False)
    agent.learn(3 * 32, progress=False)
    steps, version = agent.num_timesteps, agent.policy_version
    assert (steps, version) == (96, 6)
    agent.learn(2 * 32, progress=False)
    assert (agent.num_timesteps, agent.policy_version) == (160, 10)
    assert agent.collector.total_steps >= 160  # the same envs went on (rollouts may wait in the queue)
    agent.close()


def test_an_lstm_core_trains_and_round_trips(tmp_path):
    agent = tiny(cell="lstm", synchronous=False)
    agent.learn(2 * 32, progress=False)
    assert isinstance(agent.collector.states, tuple)  # (h, c) stored per step, sliced per minibatch
    loaded = load_agent(agent.save(tmp_path / "lstm.safetensors", training_state=True), device="cpu")
    assert same(params(agent.policy), params(loaded.policy))
    loaded.learn(32, progress=False)
    agent.close()
    loaded.close()


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("training_state", [False, True])
def test_save_load_round_trip(tmp_path, training_state):
    agent = tiny(seed=2)
    agent.learn(2 * 32, progress=False)
    path = agent.save(tmp_path / "appo.safetensors", training_state=training_state)
    loaded = load_agent(path, device="cpu")
    assert isinstance(loaded, APPO)
    assert same(params(agent.policy), params(loaded.policy))
    assert (loaded.num_timesteps, loaded.policy_version) == (64, 4)
    obs = torch.randn(3, 4)
    assert torch.equal(agent.act(obs, deterministic=True), loaded.act(obs, deterministic=True))
    if training_state:
        assert loaded.collector.stats.episodes == agent.collector.stats.episodes
        assert torch.equal(loaded._sampler.get_state(), agent._sampler.get_state())
    loaded.learn(32, progress=False)  # goes on from there
    assert loaded.num_timesteps == 96 and loaded.policy_version == 6
    agent.close()
    loaded.close()


def test_a_training_checkpoint_resumes_an_asynchronous_run(tmp_path):
    agent = tiny(synchronous=False)
    path = tmp_path / "ckpt.safetensors"
    agent.learn(2 * 32, progress=False, checkpoint_path=path, checkpoint_every=32)
    agent.close()
    loaded = load_agent(path, device="cpu")
    assert loaded.num_timesteps == 64 and same(params(agent.policy), params(loaded.policy))
    loaded.learn(loaded.remaining_steps(128), progress=False)
    assert loaded.num_timesteps == 128
    loaded.close()


# ----------------------------------------------------------------------------- acting and evaluation
def test_act_and_act_recurrent():
    agent = tiny()
    obs = torch.randn(5, 4)
    assert agent.act(obs).shape == (5,)
    a1, state = agent.act_recurrent(obs, deterministic=True)
    _, state2 = agent.act_recurrent(obs, state, deterministic=True)
    assert a1.shape == (5,) and state.shape == (5, 8) and not torch.equal(state, state2)
    assert torch.equal(agent.act(obs, deterministic=True), a1)  # act() starts from a fresh state
    _, reset = agent.act_recurrent(obs, state, episode_start=torch.ones(5, dtype=torch.bool), deterministic=True)
    assert torch.allclose(reset, state)  # a started episode forgets the state it was given
    with pytest.raises(ConfigError, match="shape"):
        agent.act(torch.randn(5, 3))
    result = agent.evaluate(3)
    assert result["episodes"] == 3 and result["return_mean"] > 0
    agent.close()


# ----------------------------------------------------------------------------- the hooks ONI builds on
class Recording(APPO):
    """Records the hooks' calls and trains on a reward of its own."""

    def _build(self):
        super()._build()
        self.calls: list[str] = []
        self.batches: list[Rollout] = []

    def on_rollout(self, rollout):
        self.calls.append("on_rollout")
        rollout.extras["obs_copy"] = rollout.obs.clone()
        rollout.extras["column"] = torch.arange(rollout.num_envs).expand(rollout.num_steps, -1)

    def training_rewards(self, batch):
        self.calls.append("training_rewards")
        self.batches.append(batch)
        return torch.full_like(batch.rewards, 0.25)

    def log_metrics(self):
        return {"hook_metric": 7.0}


def test_hooks_are_called_in_order_with_the_minibatch():
    agent = Recording("gym/CartPole-v1", seed=0, device="cpu", **TINY)  # minibatches of 2 env columns
    reports = []
    agent.learn(2 * 32, progress=False, callback=lambda a, m: reports.append(m))
    per_rollout = ["on_rollout"] + ["training_rewards"] * 2
    assert agent.calls == per_rollout * 2
    assert len(reports) == 2 and all(m["hook_metric"] == 7.0 for m in reports)
    assert all(m["reward_mean"] == pytest.approx(0.25) for m in reports)  # V-trace saw the hook's rewards
    columns = set()
    for batch in agent.batches:
        assert batch.rewards.shape == (8, 2) and batch.obs.shape == (8, 2, 4)
        assert torch.equal(batch.extras["obs_copy"], batch.obs)  # the extras follow the minibatch's columns
        columns.update(batch.extras["column"][0].tolist())
    assert columns == {0, 1, 2, 3}
    agent.close()


def test_hooks_run_with_the_collector_thread_too():
    agent = Recording("gym/CartPole-v1", seed=0, device="cpu", **{**TINY, "synchronous": False})
    agent.learn(3 * 32, progress=False)
    assert agent.calls.count("on_rollout") == 3 and agent.calls.count("training_rewards") == 6
    agent.close()


def test_a_wrong_reward_shape_is_named():
    class Bad(APPO):
        def training_rewards(self, batch):
            return batch.rewards[:, :1]

    agent = Bad("gym/CartPole-v1", seed=0, device="cpu", **TINY)
    with pytest.raises(ValueError, match=r"training_rewards returned shape \(8, 1\), expected \(8, 2\)"):
        agent.learn(32, progress=False)
    agent.close()


# ----------------------------------------------------------------------------- failures stop the thread
def test_a_collector_error_reaches_the_learner_and_the_thread_stops():
    agent = tiny(synchronous=False)

    def broken(*args, **kwargs):
        raise RuntimeError("policy exploded")

    agent._actor.act = broken
    with pytest.raises(RuntimeError, match="policy exploded"):
        agent.learn(2 * 32, progress=False)
    assert not agent._pipeline.running
    agent.close()


def test_an_exception_in_the_learner_stops_the_thread():
    agent = tiny(synchronous=False)

    def stop(a, m):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        agent.learn(10 * 32, progress=False, callback=stop)
    assert not agent._pipeline.running and agent.num_timesteps == 32
    agent.learn(32, progress=False)  # and training goes on afterwards
    assert agent.num_timesteps == 64
    agent.close()
    agent.close()  # idempotent


def test_the_pipeline_gets_its_slots_back_when_the_learner_leaves_mid_way():
    from zoo.agents.appo.pipeline import CollectorThread

    def collect():
        z = torch.zeros(2, 3)
        flag = z.bool()
        return Rollout(obs=z, actions=z, log_probs=z, values=z, rewards=z, terminated=flag, truncated=flag,
                       bootstrap_values=z, episode_starts=flag, policy_versions=z.long(), states=z,
                       next_obs=z[0], next_state=z[0], next_episode_start=flag[0]), {}

    pipe = CollectorThread(collect, num_slots=2)
    pipe.run(10)
    pipe.get()  # taken and never released: the learner was interrupted between get and release
    pipe.stop()
    assert not pipe.running and pipe._free.qsize() + pipe.queued == 2  # no slot lost
    pipe.run(3)
    for _ in range(3):
        slot, batch, _ = pipe.get()
        assert batch.rewards.shape == (2, 3)
        pipe.release(slot)
    pipe.stop()


def test_asynchronous_training_leaves_the_global_generators_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    agent = tiny(synchronous=False)
    agent.learn(3 * 32, progress=False)
    agent.evaluate(2)
    agent.close()
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- other suites
@pytest.mark.skipif(importlib.util.find_spec("minatar") is None, reason="minatar not installed (the minatar extra)")
def test_minatar_smoke():
    agent = tiny("minatar/breakout", hidden=(32,), synchronous=False)
    agent.learn(2 * 32, progress=False)
    assert agent.num_timesteps == 64 and math.isfinite(agent.evaluate(1)["return_mean"])
    agent.close()


@pytest.mark.skipif(importlib.util.find_spec("dm_control") is None, reason="dm_control not installed (the dmc extra)")
def test_dmc_continuous_smoke():
    agent = tiny("dmc/cartpole-balance", synchronous=False, vectorization="process", double_buffer=True,
                 num_workers=1)
    assert isinstance(agent.env, EnvHalves) and not agent.policy.discrete
    reports = []
    agent.learn(2 * 32, progress=False, callback=lambda a, m: reports.append(m))
    assert all(math.isfinite(m["policy_loss"]) and math.isfinite(m["entropy"]) for m in reports)
    action = agent.act(torch.zeros(2, *agent.env.single_observation_space.shape))
    assert action.shape == (2, 1) and action.abs().max() <= 1.0
    agent.close()


def _nethack_encoder_ready() -> bool:
    if importlib.util.find_spec("nle") is None:
        return False
    try:
        from zoo.envs import make_env
        from zoo.nets import make_encoder

        env = make_env("nethack/score-extended", num_envs=1)
        try:
            return "nethack" in type(make_encoder(env.single_observation_space)).__name__.lower()
        finally:
            env.close()
    except Exception:  # noqa: BLE001  (the env or its encoder is not there yet)
        return False


@pytest.mark.skipif(not _nethack_encoder_ready(), reason="nle or the NetHack encoder is not installed/built")
def test_nethack_smoke():
    agent = tiny("nethack/score-extended", num_envs=2, rollout=4, recurrence=4, batch_size=8, hidden=(),
                 core_size=32, synchronous=False)
    agent.learn(8, progress=False)
    assert agent.num_timesteps == 8
    agent.close()


# ----------------------------------------------------------------------------- the CLI
def test_zoo_train_appo(tmp_path):
    from zoo.cli import main

    out = tmp_path / "run"
    assert main(["train", "APPO", "--env", "gym/CartPole-v1", "--steps", "2000", "--out", str(out), "--device",
                 "cpu", "--no-progress", "--eval-episodes", "2"]) == 0
    assert (out / "model.safetensors").exists() and (out / "eval.json").exists()
    assert main(["train", "APPO", "--env", "gym/CartPole-v1", "--steps", "3000", "--out", str(out), "--device",
                 "cpu", "--no-progress", "--eval-episodes", "2", "--resume"]) == 0
    assert load_agent(out / "model.safetensors", device="cpu").num_timesteps == 3000 // 512 * 512
