"""The CPL agent on a small preference dataset (the MetaWorld learning test comes with the datasets, issue 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from zoo.agents import CPL, load_agent
from zoo.buffers import PreferenceDataset
from zoo.errors import ConfigError

from pendulum_prefs import random_pendulum_preferences  # noqa: E402  (beside this file)


@pytest.fixture(scope="module")
def pendulum_prefs():
    """Random-action Pendulum episodes, 16-step segments labelled by their reward sums."""
    return random_pendulum_preferences(episodes=12, steps=200, num_pairs=600)


def pair_accuracy(agent: CPL, dataset: PreferenceDataset) -> float:
    batch = PreferenceDataset.to_torch(dataset.get(np.arange(len(dataset.labels))), "cpu")
    agent.actor.eval()
    with torch.no_grad():
        a = agent._segment_log_probs(agent.actor, batch["obs_a"], batch["act_a"]).sum(1)
        b = agent._segment_log_probs(agent.actor, batch["obs_b"], batch["act_b"]).sum(1)
    agent.actor.train()
    decided = batch["label"] != 0.5
    return float(((a > b) == (batch["label"] > 0.5))[decided].float().mean())


def test_variant_defaults_follow_the_paper():
    env = zoo.make_env("gym/Pendulum-v1")
    cfg = CPL(env, device="cpu").config
    assert (cfg.alpha, cfg.lam, cfg.bc_coeff, cfg.bc_steps, cfg.batch_size, cfg.hidden, cfg.dropout) == \
        (0.1, 0.5, 0.0, 200_000, 96, (512, 512), 0.25)
    assert (CPL(env, device="cpu", variant="cpl_kl").config.alpha, CPL(env, device="cpu", variant="cpl_kl").config.lam) \
        == (0.2, 0.75)
    assert CPL(env, device="cpu", variant="cpl_bc").config.bc_coeff == 1.0
    with pytest.raises(ConfigError, match="variant"):
        CPL(env, device="cpu", variant="dpo")
    with pytest.raises(ConfigError, match="lam"):
        CPL(env, device="cpu", lam=0.0)


@pytest.mark.parametrize("variant,actor", [("cpl", "deterministic"), ("cpl_kl", "gaussian")])
def test_cpl_learns_the_teachers_ordering(pendulum_prefs, variant, actor, tmp_path):
    agent = CPL("gym/Pendulum-v1", data=pendulum_prefs, seed=0, device="cpu", variant=variant, actor=actor,
                hidden=(64, 64), dropout=0.0, batch_size=64, learning_rate=1e-3, bc_steps=50, warmup_steps=20)
    agent.learn(50, progress=False)  # behaviour cloning only
    after_bc = pair_accuracy(agent, pendulum_prefs)
    bc_policy = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    agent.learn(1000, progress=False)
    after_cpl = pair_accuracy(agent, pendulum_prefs)
    # from chance after BC to ordering most pairs as the teacher did (0.76 and 0.87 with this seed)
    assert after_cpl > max(0.7, after_bc + 0.15), (after_bc, after_cpl)
    loaded = load_agent(agent.save(tmp_path / "cpl.safetensors"), device="cpu")
    obs = torch.as_tensor(pendulum_prefs.observations[:5])
    assert torch.equal(agent.act(obs, deterministic=True), loaded.act(obs, deterministic=True))
    if variant == "cpl_kl":  # the reference is the BC policy taken at the switch, and the checkpoint keeps it
        for model in (agent, loaded):
            assert all(torch.equal(bc_policy[k], v) for k, v in model.reference.state_dict().items())


def test_learn_without_dataset_is_a_clear_error():
    agent = CPL("gym/Pendulum-v1", device="cpu")
    with pytest.raises(ConfigError, match="preference dataset"):
        agent.learn(10, progress=False)


def test_sft_fine_tunes_on_preferred_segments(pendulum_prefs):
    """After BC on everything, SFT's policy moves towards the preferred segments' actions."""
    from zoo.agents import SFT

    agent = SFT("gym/Pendulum-v1", data=pendulum_prefs, seed=0, device="cpu", hidden=(64, 64), dropout=0.0,
                batch_size=64, learning_rate=1e-3, bc_steps=300)
    batch = PreferenceDataset.to_torch(pendulum_prefs.get(np.arange(len(pendulum_prefs.labels))), "cpu")
    preferred = batch["label"] > 0.5

    def fit_gap() -> float:
        """Mean log-likelihood of preferred minus rejected segments."""
        with torch.no_grad():
            a = agent._segment_log_probs(agent.actor, batch["obs_a"], batch["act_a"]).mean(1)
            b = agent._segment_log_probs(agent.actor, batch["obs_b"], batch["act_b"]).mean(1)
        return float(torch.where(preferred, a - b, b - a).mean())

    agent.learn(300, progress=False)
    after_bc = fit_gap()
    agent.learn(600, progress=False)
    assert fit_gap() > after_bc + 0.006, (after_bc, fit_gap())  # observed: -0.002 -> 0.012


def test_iql_losses_hand_computed():
    from zoo.agents.cpl.piql import preference_reward_loss
    from zoo.losses import awr_weights, expectile_loss

    diff = torch.tensor([1.0, -2.0])
    assert expectile_loss(diff, 0.7).item() == pytest.approx((0.7 * 1 + 0.3 * 4) / 2)
    assert torch.allclose(awr_weights(torch.tensor([0.0, 1.0, 10.0]), 1 / 3, 100.0),
                          torch.tensor([1.0, float(np.exp(3.0)), 100.0]))
    loss = preference_reward_loss(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0]))
    assert loss.item() == pytest.approx(np.log1p(np.exp(-2.0)))


def test_piql_reward_model_then_iql(pendulum_prefs, tmp_path):
    from zoo.agents import PIQL

    agent = PIQL("gym/Pendulum-v1", data=pendulum_prefs, seed=0, device="cpu", hidden=(64, 64), dropout=0.0,
                 critic_hidden=(64, 64), batch_size=64, reward_steps=400, critic_lr=1e-3)
    agent.learn(400, progress=False)
    batch = PreferenceDataset.to_torch(pendulum_prefs.get(np.arange(len(pendulum_prefs.labels))), "cpu")
    with torch.no_grad():
        r_a = agent.segment_rewards(batch["obs_a"], batch["act_a"]).sum(1)
        r_b = agent.segment_rewards(batch["obs_b"], batch["act_b"]).sum(1)
    decided = batch["label"] != 0.5
    accuracy = float(((r_a > r_b) == (batch["label"] > 0.5))[decided].float().mean())
    assert accuracy > 0.85  # the reward sums order the pairs as the reward-sum teacher did
    agent.learn(200, progress=False)  # IQL phase runs on the relabelled transitions
    loaded = load_agent(agent.save(tmp_path / "piql.safetensors"), device="cpu")
    obs = torch.as_tensor(pendulum_prefs.observations[:4])
    assert torch.equal(agent.act(obs, deterministic=True), loaded.act(obs, deterministic=True))


# ----------------------------------------------------------------------------- reference defaults and wiring (issue 12)
def _lr(agent) -> float:
    return agent.optimizer.param_groups[0]["lr"]


def test_cpl_kl_runs_at_a_tenth_of_the_bc_learning_rate_after_the_switch(pendulum_prefs):
    kw = dict(hidden=(16,), dropout=0.0, batch_size=8, learning_rate=1e-4, bc_steps=3, warmup_steps=4)
    kl = CPL("gym/Pendulum-v1", data=pendulum_prefs, device="cpu", variant="cpl_kl", **kw)
    assert kl.config.cpl_lr_multiplier == 0.1
    kl.learn(3, progress=False)
    assert _lr(kl) == pytest.approx(1e-4)  # BC at the full rate
    kl.learn(1, progress=False)
    assert _lr(kl) == pytest.approx(1e-5 * 1 / 4)  # first step of the warm-up towards the peak 1e-5
    kl.learn(10, progress=False)
    assert _lr(kl) == pytest.approx(1e-5)
    plain = CPL("gym/Pendulum-v1", data=pendulum_prefs, device="cpu", **kw)
    plain.learn(20, progress=False)
    assert _lr(plain) == pytest.approx(1e-4)
    # without a BC phase the reference never starts the warm-up: a constant rate
    no_bc = CPL("gym/Pendulum-v1", data=pendulum_prefs, device="cpu", **{**kw, "bc_steps": 0})
    no_bc.learn(1, progress=False)
    assert _lr(no_bc) == pytest.approx(1e-4)


def test_cpl_kl_without_a_bc_phase_is_rejected():
    with pytest.raises(ConfigError, match="cpl_kl.*bc_steps > 0"):
        CPL("gym/Pendulum-v1", device="cpu", variant="cpl_kl", bc_steps=0)


def test_actor_init_has_gain_one_on_every_layer():
    agent = CPL("gym/Pendulum-v1", device="cpu", hidden=(32, 32))
    linears = [m for m in agent.actor.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3
    for layer in linears:
        w = layer.weight
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w  # orthogonal rows (or columns) of norm 1
        assert torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-5)
        assert torch.count_nonzero(layer.bias) == 0


@pytest.fixture(scope="module")
def dense_prefs(pendulum_prefs):
    return PreferenceDataset(pendulum_prefs.observations, pendulum_prefs.actions, pendulum_prefs.starts_a,
                             pendulum_prefs.starts_b, pendulum_prefs.segment_length, pendulum_prefs.labels,
                             {"regime": "dense"}, pendulum_prefs.scores_a, pendulum_prefs.scores_b)


def test_dense_data_pairs_each_segment_with_a_fresh_random_partner(dense_prefs, pendulum_prefs):
    agent = CPL("gym/Pendulum-v1", data=dense_prefs, device="cpu", batch_size=256)
    assert agent.pairing == "random"
    assert CPL("gym/Pendulum-v1", data=pendulum_prefs, device="cpu").pairing == "fixed"  # sparse: its pairs
    starts, scores = dense_prefs.segments()
    assert starts.size == 1200  # sparse pairs are disjoint: every segment of the 600 pairs
    fixed_pairs = set(zip(dense_prefs.starts_a.tolist(), dense_prefs.starts_b.tolist()))
    batch = dense_prefs.sample_random_partners(256, np.random.default_rng(0))
    by_start = dict(zip(starts.tolist(), scores.tolist()))
    obs = dense_prefs.observations
    rows_a = [int(np.flatnonzero((obs == o).all(1))[0]) for o in batch["obs_a"][:, 0]]
    rows_b = [int(np.flatnonzero((obs == o).all(1))[0]) for o in batch["obs_b"][:, 0]]
    # labels follow the teacher's scores of the drawn segments (1: a preferred)
    expect = [1.0 if by_start[a] > by_start[b] else 0.0 if by_start[a] < by_start[b] else 0.5
              for a, b in zip(rows_a, rows_b)]
    assert batch["label"].tolist() == expect
    new = sum((a, b) not in fixed_pairs and (b, a) not in fixed_pairs for a, b in zip(rows_a, rows_b))
    assert new > 240  # almost all pairs are new ones, not the dataset's fixed pairs
    with pytest.raises(ConfigError, match="pairing='random'"):
        no_scores = PreferenceDataset(obs, dense_prefs.actions, dense_prefs.starts_a, dense_prefs.starts_b,
                                      dense_prefs.segment_length, dense_prefs.labels)
        CPL("gym/Pendulum-v1", data=no_scores, device="cpu", pairing="random")


def test_sft_keeps_both_segments_of_a_tie():
    from zoo.agents.cpl.losses import sft_loss

    lp_a, lp_b = torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([-4.0, -5.0, -6.0])
    labels = torch.tensor([1.0, 0.0, 0.5])  # a preferred, b preferred, a tie (both kept)
    assert sft_loss(lp_a, lp_b, labels).item() == pytest.approx((1.0 + 5.0 + 3.0 + 6.0) / 4)


def test_piql_trains_iql_alongside_the_reward_model_with_a_cosine_actor_schedule(pendulum_prefs):
    from zoo.agents import PIQL

    agent = PIQL("gym/Pendulum-v1", data=pendulum_prefs, seed=0, device="cpu", hidden=(16,), dropout=0.0,
                 critic_hidden=(16,), batch_size=8, reward_steps=10, actor_cosine_steps=20)
    assert agent.config.critic_hidden == (16,) and PIQL("gym/Pendulum-v1", device="cpu").config.critic_hidden \
        == (512, 512)
    q_before = [p.detach().clone() for p in agent.q1.parameters()]
    reward_before = [p.detach().clone() for p in agent.reward_model.parameters()]
    agent.learn(5, progress=False)  # inside the reward phase: the critics train too
    assert any(not torch.equal(a, b) for a, b in zip(q_before, agent.q1.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(reward_before, agent.reward_model.parameters()))
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(3e-4 * 0.5 * (1 + np.cos(np.pi * 4 / 20)))
    agent.learn(10, progress=False)
    frozen = [p.detach().clone() for p in agent.reward_model.parameters()]
    agent.learn(10, progress=False)  # after reward_steps the reward is frozen; the actor's rate reaches 0
    assert all(torch.equal(a, b) for a, b in zip(frozen, agent.reward_model.parameters()))
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_piql_reads_v_next_after_the_value_update(pendulum_prefs, monkeypatch):
    """The critics' target uses V(s') from the value net as it is after this step's value update."""
    from zoo.agents import PIQL

    agent = PIQL("gym/Pendulum-v1", data=pendulum_prefs, seed=0, device="cpu", hidden=(16,), dropout=0.0,
                 critic_hidden=(16,), batch_size=8, reward_steps=0)
    calls = []
    real_step = agent.value_optimizer.step
    monkeypatch.setattr(agent.value_optimizer, "step", lambda *a, **k: (calls.append("v_step"), real_step())[1])
    real_forward = type(agent.value).forward
    monkeypatch.setattr(type(agent.value), "forward", lambda m, o: (calls.append("v"), real_forward(m, o))[1])
    agent.learn(1, progress=False)
    assert calls == ["v", "v_step", "v"]


def test_old_checkpoints_keep_the_behaviour_they_were_trained_with(pendulum_prefs, tmp_path):
    """A checkpoint saved before a field existed loads with that field's old behaviour, not today's default."""
    import json

    from zoo.agents.cpl.agent import CPLConfig

    old = CPLConfig.upgrade_saved({"variant": "cpl_kl", "bc_steps": 10})
    assert old["pairing"] == "fixed" and old["cpl_lr_multiplier"] == 1.0
    agent = CPL("gym/Pendulum-v1", data=pendulum_prefs, device="cpu", hidden=(8,), variant="cpl_kl", bc_steps=2)
    path = agent.save(tmp_path / "kl.safetensors")
    from zoo.checkpoint import load_checkpoint, save_checkpoint

    tensors, config = load_checkpoint(path)
    for key in ("pairing", "cpl_lr_multiplier"):  # as an older zoo wrote it
        del config["hyperparameters"][key]
    save_checkpoint(path, tensors, config, kind="agent/CPL")
    loaded = CPL.load(path, device="cpu", data=pendulum_prefs)
    assert loaded.config.cpl_lr_multiplier == 1.0 and loaded.pairing == "fixed"
    assert json.loads(json.dumps(loaded.config.to_dict()))["variant"] == "cpl_kl"


def test_piql_awr_weights_come_from_the_shared_function_at_its_old_temperature(pendulum_prefs, monkeypatch):
    """P-IQL's actor weighs by zoo.losses.awr_weights with temperature 1/3 and cap 100: the reference's
    exp(A / beta) with beta 1/3, capped at 100, as before the rename."""
    import zoo.agents.cpl.piql as piql_module
    from zoo.agents import PIQL
    from zoo.losses import awr_weights

    calls = []

    def spy(advantages, temperature, max_weight=None):
        calls.append((temperature, max_weight))
        weights = awr_weights(advantages, temperature, max_weight)
        assert torch.equal(weights, torch.exp(advantages / (1.0 / 3.0)).clamp(max=100.0))
        return weights

    monkeypatch.setattr(piql_module, "awr_weights", spy)
    agent = PIQL("gym/Pendulum-v1", data=pendulum_prefs, seed=0, device="cpu", hidden=(8,), critic_hidden=(8,),
                 batch_size=4, iql_batch_size=16)
    agent.learn(2, progress=False)
    assert calls == [(1.0 / 3.0, 100.0)] * 2


def test_piql_beta_is_now_awr_temperature(pendulum_prefs, tmp_path):
    from zoo.agents import PIQL
    from zoo.checkpoint import load_checkpoint, save_checkpoint

    with pytest.raises(ConfigError, match="awr_temperature"):
        PIQL("gym/Pendulum-v1", device="cpu", beta=0.5)
    agent = PIQL("gym/Pendulum-v1", device="cpu", hidden=(8,), critic_hidden=(8,), awr_temperature=0.25)
    path = agent.save(tmp_path / "piql.safetensors")
    tensors, config = load_checkpoint(path)
    config["hyperparameters"]["beta"] = config["hyperparameters"].pop("awr_temperature")  # as an older zoo wrote it
    save_checkpoint(path, tensors, config, kind="agent/PIQL")
    with pytest.warns(UserWarning, match="beta=0.25, now awr_temperature=0.25"):
        loaded = PIQL.load(path, device="cpu")
    assert loaded.config.awr_temperature == 0.25


def test_the_preference_learners_are_siblings_holding_only_their_settings(tmp_path, pendulum_prefs):
    from zoo.agents import PIQL, SFT
    from zoo.agents.cpl.family import PreferenceLearner
    from zoo.checkpoint import load_checkpoint, save_checkpoint

    for cls in (CPL, SFT, PIQL):
        assert cls.__mro__[1] is PreferenceLearner and cls.budget_unit == "gradient steps"
    piql_fields, sft_fields = set(PIQL.config_class.field_names()), set(SFT.config_class.field_names())
    assert not {"variant", "alpha", "lam", "bc_coeff", "bc_steps", "warmup_steps", "score_mode"} & piql_fields
    assert "bc_steps" in sft_fields and not {"variant", "alpha", "lam", "warmup_steps"} & sft_fields
    with pytest.raises(ConfigError, match="PIQL no longer has the hyperparameter 'bc_steps'"):
        PIQL("gym/Pendulum-v1", device="cpu", bc_steps=0)
    # a P-IQL checkpoint written while its config still carried CPL's settings loads
    agent = PIQL("gym/Pendulum-v1", device="cpu", hidden=(8,), critic_hidden=(8,))
    path = agent.save(tmp_path / "piql.safetensors")
    tensors, config = load_checkpoint(path)
    config["hyperparameters"].update(variant="cpl", alpha=0.1, lam=0.5, bc_steps=0, warmup_steps=10_000)
    save_checkpoint(path, tensors, config, kind="agent/PIQL")
    loaded = PIQL.load(path, device="cpu", data=pendulum_prefs)
    assert loaded.data is pendulum_prefs and loaded.config == agent.config


def test_data_is_a_path_or_a_dataset_and_load_takes_it_too(tmp_path, pendulum_prefs):
    from zoo.agents import SFT

    path = pendulum_prefs.save(tmp_path / "prefs.npz")
    agent = SFT("gym/Pendulum-v1", data=path, device="cpu", hidden=(8,), bc_steps=2)
    assert len(agent.data.labels) == len(pendulum_prefs.labels)
    agent.learn(4, progress=False)
    ckpt = agent.save(tmp_path / "sft.safetensors")
    assert SFT.load(ckpt, device="cpu").data is None  # checkpoints keep no data
    resumed = SFT.load(ckpt, device="cpu", data=path)
    resumed.learn(2, progress=False)
    assert resumed.num_timesteps == 6
    with pytest.warns(DeprecationWarning, match="data="):
        SFT("gym/Pendulum-v1", dataset=pendulum_prefs, device="cpu", hidden=(8,))
    with pytest.raises(ConfigError, match="data="):
        SFT("gym/Pendulum-v1", device="cpu", hidden=(8,)).learn(1, progress=False)


def test_data_from_another_task_is_a_clear_error(pendulum_prefs):
    with pytest.raises(ConfigError, match="observations have shape .*3.* but gym/MountainCarContinuous-v0 observes"):
        CPL("gym/MountainCarContinuous-v0", data=pendulum_prefs, device="cpu", hidden=(8,))
    with pytest.raises(ConfigError, match="PreferenceDataset or the path"):
        CPL("gym/Pendulum-v1", data={"obs": 1}, device="cpu", hidden=(8,))
