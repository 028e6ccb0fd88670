"""GBRL: the boosting step, learning on CartPole, checkpoints, and the missing-extra error."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch

pytest.importorskip("gbrl")

import zoo  # noqa: E402
from zoo.agents import GBRL, load_agent  # noqa: E402
from zoo.agents.gbrl import TreeActorCritic  # noqa: E402
from zoo.errors import CheckpointError, ConfigError, MissingExtraError  # noqa: E402


def test_a_boosting_step_moves_the_outputs_against_the_loss_gradient():
    env = zoo.make_env("gym/CartPole-v1", num_envs=1, seed=0)
    agent = GBRL(env, seed=0, device="cpu", policy_lr=0.1, value_lr=0.1)
    policy: TreeActorCritic = agent.policy
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(256, 4)), dtype=torch.float32)
    target = (obs[:, 0] > 0).long()  # a fixed batch and a fixed loss: cross-entropy plus a value regression
    returns = obs[:, 1] * 3.0

    def loss_of(dist, values):
        return -dist.log_prob(target).mean() + 0.5 * (values - returns).square().mean()

    dist, values = policy(obs)
    before = loss_of(dist, values)
    grad_logits, grad_values = torch.autograd.grad(before, [dist.logits, values], retain_graph=True)
    agent.apply_gradients(before)
    assert policy.num_trees() == 1
    with torch.no_grad():
        dist_after, values_after = policy(obs)
    step_logits = dist_after.logits - dist.logits.detach()
    step_values = values_after - values.detach()
    assert float((step_logits * grad_logits).sum()) < 0 and float((step_values * grad_values).sum()) < 0
    assert float(loss_of(dist_after, values_after)) < float(before.detach())


def test_ppo_gbrl_reaches_400_on_cartpole(tmp_path):
    agent = GBRL("gym/CartPole-v1", seed=0, device="cpu")
    best = 0.0
    for _ in range(8):  # evaluated every 16k steps; stops once reached (observed: 426 after 82k steps)
        agent.learn(16_384, progress=False)
        best = max(best, agent.evaluate(10)["return_mean"])
        if best >= 400:
            break
    assert best >= 400, best
    assert 0 < agent.policy.num_trees() <= agent.config.max_trees
    loaded = load_agent(agent.save(tmp_path / "gbrl.safetensors"), device="cpu")
    obs = torch.as_tensor(np.random.default_rng(1).normal(size=(32, 4)), dtype=torch.float32)
    assert torch.equal(agent.act(obs, deterministic=True), loaded.act(obs, deterministic=True))
    assert loaded.policy.num_trees() == agent.policy.num_trees()


def test_tree_cap_and_continuous_actions(tmp_path):
    agent = GBRL("gym/Pendulum-v1", seed=0, device="cpu", num_envs=2, num_steps=32, num_minibatches=4,
                 max_trees=6)
    agent.learn(256, progress=False)
    assert agent.policy.num_trees() == 6  # 4 updates x 4 minibatches would have grown 16
    assert agent.optimizer is not None and agent.policy.log_std.grad is not None
    loaded = load_agent(agent.save(tmp_path / "p.safetensors"), device="cpu")
    obs = torch.zeros(3, 3)
    assert torch.equal(agent.act(obs, deterministic=True), loaded.act(obs, deterministic=True))
    assert torch.equal(agent.policy.log_std, loaded.policy.log_std)


def test_separate_ensembles_save_load_and_train_on(tmp_path, monkeypatch):
    agent = GBRL("gym/CartPole-v1", seed=0, device="cpu", shared_tree_struct=False, num_steps=16, num_minibatches=2)
    agent.learn(256, progress=False)
    assert agent.policy.trees.get_num_trees() == (4, 4)
    monkeypatch.chdir(tmp_path)
    loaded = load_agent(agent.save("s.safetensors"), device="cpu")  # a relative path
    obs = torch.as_tensor(np.random.default_rng(2).normal(size=(8, 4)), dtype=torch.float32)
    assert torch.equal(agent.act(obs, deterministic=True), loaded.act(obs, deterministic=True))
    loaded.learn(256, progress=False)
    assert loaded.policy.trees.get_num_trees() == (8, 8)
    with pytest.raises(ConfigError, match="anneal_lr"):
        GBRL("gym/CartPole-v1", device="cpu", anneal_lr=True)


def test_missing_tree_file_is_a_checkpoint_error(tmp_path):
    agent = GBRL("gym/CartPole-v1", seed=0, device="cpu", num_steps=16, num_minibatches=2)
    agent.learn(128, progress=False)
    path = agent.save(tmp_path / "g.safetensors")
    for companion in tmp_path.glob("g.safetensors.trees*"):
        companion.unlink()
    with pytest.raises(CheckpointError, match="tree ensemble"):
        load_agent(path, device="cpu")


@pytest.mark.parametrize("objective", ["a2c", "awr_on_policy"])
def test_other_objectives_train(objective):
    agent = GBRL("gym/CartPole-v1", seed=0, device="cpu", objective=objective, num_steps=16, num_minibatches=2)
    agent.learn(256, progress=False)
    assert agent.policy.num_trees() > 0


def test_missing_gbrl_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_gbrl(name, *args, **kwargs):
        if name == "gbrl" or name.startswith("gbrl."):
            raise ModuleNotFoundError("No module named 'gbrl'", name="gbrl")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gbrl)
    with pytest.raises(MissingExtraError, match=r'zoo-rl\[gbrl\]'):
        GBRL("gym/CartPole-v1", device="cpu")


def test_minigrid_symbolic_observations_and_categorical_groups():
    pytest.importorskip("minigrid")
    env = zoo.make_env("gym/MiniGrid-DoorKey-5x5-v0", num_envs=2, seed=0)
    obs = env.reset()
    assert obs.shape == (2, 148) and obs.dtype == torch.float32
    assert float(obs[:, -1].max()) <= 3 and float(obs[:, :-1].max()) <= 10  # direction; object/colour/state ids
    agent = GBRL(env, seed=0, device="cpu", num_steps=16, num_minibatches=2)
    assert agent.config.categorical_group == 3  # the MiniGrid preset
    features = agent.policy.features(obs)
    assert features.shape == (2, 50) and features.dtype.kind == "U"  # 49 cells + the direction, as categories
    cell = obs[0, :3].long().tolist()
    assert features[0, 0] == str(cell[0] + 256 * cell[1] + 256 ** 2 * cell[2])
    env.close()


def test_gbrl_solves_an_empty_minigrid_room():
    pytest.importorskip("minigrid")
    agent = GBRL("gym/MiniGrid-Empty-5x5-v0", seed=0, device="cpu", num_envs=8, num_steps=128, update_epochs=4,
                 num_minibatches=4)
    random_return = agent.evaluate(20, deterministic=False)["return_mean"]
    agent.learn(8192, progress=False)
    # observed with seed 0: 0.955 (the shortest path) after 8k steps
    assert agent.evaluate(10)["return_mean"] > max(0.9, random_return + 0.3)


# ----------------------------------------------------------------------------- reference defaults (issue 12)
def test_reference_defaults_and_presets():
    cfg = GBRL("gym/CartPole-v1", device="cpu").config
    assert (cfg.vf_coef, cfg.ent_coef, cfg.policy_grad_clip, cfg.value_grad_clip) == (0.871923, 0.0, 100.0, 10.0)
    other = GBRL("gym/Acrobot-v1", device="cpu").config
    assert (other.vf_coef, other.ent_coef, other.policy_grad_clip, other.value_grad_clip) == \
        (0.871923, 0.0, None, None)
    pendulum = GBRL("gym/Pendulum-v1", device="cpu", num_envs=2, num_steps=8, num_minibatches=2).config
    assert (pendulum.gamma, pendulum.policy_lr, pendulum.normalize_reward, pendulum.log_std_init) == \
        (0.9147, 0.03125, True, -2.0)
    with pytest.raises(ConfigError, match="off-policy learner with a replay buffer"):
        GBRL("gym/CartPole-v1", device="cpu", objective="awr")
    with pytest.raises(ConfigError, match="policy_grad_clip"):
        GBRL("gym/CartPole-v1", device="cpu", policy_grad_clip=0.0)
    with pytest.raises(ConfigError, match="value_grad_clip"):
        GBRL("gym/CartPole-v1", device="cpu", value_grad_clip=float("nan"))


def test_minigrid_preset_has_no_entropy_bonus():
    pytest.importorskip("minigrid")
    from zoo.agents.gbrl import GBRLConfig

    assert GBRLConfig.preset_for("gym/MiniGrid-DoorKey-5x5-v0").get("ent_coef", 0.0) == 0.0  # nor does the preset
    cfg = GBRL("gym/MiniGrid-Empty-5x5-v0", device="cpu", num_envs=2, num_steps=16, num_minibatches=2).config
    assert cfg.ent_coef == 0.0 and cfg.categorical_group == 3


def test_checkpoints_from_before_the_rename_and_the_clips_load_as_trained():
    from zoo.agents.gbrl import GBRLConfig

    with pytest.warns(UserWarning, match="awr_on_policy"):
        old = GBRLConfig.upgrade_saved({"objective": "awr", "vf_coef": 0.5})
    assert old["objective"] == "awr_on_policy" and old["policy_grad_clip"] is None and old["vf_coef"] == 0.5
    assert GBRLConfig.create("gym/CartPole-v1", **old).policy_grad_clip is None  # not the preset's 100


def test_awr_on_policy_weights_come_from_the_shared_function_at_its_old_temperature(monkeypatch):
    """objective="awr_on_policy" weighs by zoo.losses.awr_weights with temperature 1 and cap 20: the weights
    exp(A / awr_beta) (awr_beta 1) capped at 20 it used before the rename."""
    import zoo.agents.gbrl as gbrl_module
    from zoo.losses import awr_weights

    calls = []

    def spy(advantages, temperature, max_weight=None):
        calls.append((temperature, max_weight))
        weights = awr_weights(advantages, temperature, max_weight)
        assert torch.equal(weights, torch.exp(advantages / 1.0).clamp(max=20.0))
        return weights

    monkeypatch.setattr(gbrl_module, "awr_weights", spy)
    agent = GBRL("gym/CartPole-v1", device="cpu", objective="awr_on_policy")
    advantages = torch.tensor([-1.0, 0.0, 2.0, 5.0])
    log_ratio = torch.zeros(4, requires_grad=True)
    loss = agent.policy_loss(log_ratio, advantages, 0.0)
    assert calls == [(1.0, 20.0)]
    assert loss.item() == pytest.approx(0.0)  # -mean(w * 0)
    loss.backward()
    assert log_ratio.grad.tolist() == pytest.approx((-torch.exp(advantages).clamp(max=20.0) / 4).tolist())


def test_awr_beta_is_now_awr_temperature():
    from zoo.agents.gbrl import GBRLConfig

    with pytest.raises(ConfigError, match="awr_temperature"):
        GBRL("gym/CartPole-v1", device="cpu", awr_beta=2.0)
    with pytest.warns(UserWarning, match="awr_temperature=2.0"):
        old = GBRLConfig.upgrade_saved({"objective": "awr_on_policy", "awr_beta": 2.0})
    assert "awr_beta" not in old and GBRLConfig.create("gym/CartPole-v1", **old).awr_temperature == 2.0


@pytest.mark.parametrize("clip", [None, 0.5])
def test_per_sample_gradient_clip_reaches_the_trees(clip):
    """With the clip, one boosting step moves each output by at most lr * clip (a leaf is a mean of clipped
    per-sample gradients); without it, a loss scaled up by 1e4 moves them far more."""
    env = zoo.make_env("gym/CartPole-v1", num_envs=1, seed=0)
    agent = GBRL(env, seed=0, device="cpu", policy_lr=0.1, value_lr=0.1, policy_grad_clip=clip, value_grad_clip=clip)
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(256, 4)), dtype=torch.float32)
    target = (obs[:, 0] > 0).long()
    dist, values = agent.policy(obs)
    agent.apply_gradients(1e4 * (-dist.log_prob(target).mean() + (values - 3.0).square().mean()))
    with torch.no_grad():
        dist_after, values_after = agent.policy(obs)
    logit_step = (dist_after.logits - dist.logits.detach()).norm(dim=1).max()
    value_step = (values_after - values.detach()).abs().max()
    if clip is None:
        assert logit_step > 10.0 and value_step > 10.0, (logit_step, value_step)
    else:  # gbrl's leaf value is the mean gradient times lr (the logits are re-centred by the softmax, not grown)
        assert logit_step <= 0.1 * clip * 2 + 1e-5 and value_step <= 0.1 * clip + 1e-5, (logit_step, value_step)


def test_a2c_takes_the_rollout_as_one_batch_with_the_full_squared_error():
    agent = GBRL("gym/CartPole-v1", seed=0, device="cpu", objective="a2c", num_envs=2, num_steps=16)
    agent.learn(32, progress=False)  # one rollout, one tree (PPO's preset would grow 16 per epoch)
    assert agent.policy.num_trees() == 1
    values, returns = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    assert agent.value_loss(values, returns, values).item() == pytest.approx(2.5)  # mean((V - R)^2), no 1/2
