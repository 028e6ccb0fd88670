"""PEBBLE's reward ensemble (Bradley-Terry loss, batched members, query selection, training, checkpoint tensors)
and the k-NN state-entropy reward, on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from scipy.stats import spearmanr

from zoo.agents.parl.entropy import StateEntropy, knn_distances, state_entropy_reward
from zoo.agents.parl.reward_model import (
    PreferenceStore,
    RewardEnsemble,
    RewardModelConfig,
    bradley_terry_loss,
    disagreement,
    preference_probability,
    select_queries,
)
from zoo.datasets.teachers import ScriptedTeacher
from zoo.errors import ConfigError, PreferenceDatasetError


def log1pexp(x: float) -> float:
    return math.log1p(math.exp(x))


# ----------------------------------------------------------------------------- pure functions
def test_bradley_terry_loss_hand_computed():
    ra, rb = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    labels = torch.tensor([1.0, 0.5])  # a preferred; equally preferable
    # -log sigmoid(1) = log(1 + e^-1); -(log sigmoid(-2) + log sigmoid(2)) / 2
    expected = (log1pexp(-1.0) + 0.5 * (log1pexp(2.0) + log1pexp(-2.0))) / 2
    assert bradley_terry_loss(ra, rb, labels).item() == pytest.approx(expected, rel=1e-6)
    # label 0 is the same pair the other way round
    assert bradley_terry_loss(rb[:1], ra[:1], torch.zeros(1)).item() == pytest.approx(log1pexp(-1.0), rel=1e-6)
    # members: the members' mean losses summed (B-Pref adds the members' cross-entropies)
    two = bradley_terry_loss(torch.stack([ra, rb]), torch.stack([rb, ra]), labels)
    other = (log1pexp(1.0) + 0.5 * (log1pexp(-2.0) + log1pexp(2.0))) / 2
    assert two.item() == pytest.approx(expected + other, rel=1e-6)
    assert preference_probability(torch.tensor(2.0), torch.tensor(0.0)).item() == pytest.approx(1 / (1 + math.exp(-2)))


def test_disagreement_is_the_population_std_of_member_probabilities_and_selection_takes_the_top():
    ra = torch.tensor([[0.0, 1.0, 3.0], [0.0, 1.0, -3.0]])  # two members, three pairs
    rb = torch.zeros(2, 3)
    p = torch.sigmoid(ra)
    np.testing.assert_allclose(disagreement(ra, rb).numpy(), p.numpy().std(0), rtol=1e-6)
    assert disagreement(ra, rb)[0] == 0 and disagreement(ra, rb)[1] == 0
    assert select_queries(torch.tensor([0.1, 0.5, 0.3, 0.9]), 2, "disagreement").tolist() == [3, 1]
    assert select_queries(None, 3, "uniform").tolist() == [0, 1, 2]
    with pytest.raises(ConfigError, match="unknown query selection"):
        select_queries(None, 1, "entropy")


# ----------------------------------------------------------------------------- the ensemble
def test_the_batched_ensemble_equals_each_member_alone():
    model = RewardEnsemble(3, 2, seed=0)
    assert model.config.ensemble_size == 3 and model.config.hidden == (256, 256, 256)
    x = torch.randn(7, 5)
    batched = model.member_rewards(x)
    for e in range(3):
        h = x
        for i in range(4):
            h = h @ getattr(model.net, f"weight_{i}")[e] + getattr(model.net, f"bias_{i}")[e]
            h = torch.nn.functional.leaky_relu(h) if i < 3 else torch.tanh(h)
        torch.testing.assert_close(batched[e], h.squeeze(-1))
    torch.testing.assert_close(model.reward(x[:, :3], x[:, 3:]), batched.mean(0))
    torch.testing.assert_close(model.reward(x[:, :3], x[:, 3:], chunk=2), batched.mean(0))
    # segments (N, L, d) keep their layout
    torch.testing.assert_close(model.reward(x[:6, :3].reshape(2, 3, 3), x[:6, 3:].reshape(2, 3, 2)),
                               batched.mean(0)[:6].reshape(2, 3))
    # members start apart (each its own initialisation) and the same seed gives the same model
    assert not torch.allclose(batched[0], batched[1])
    torch.testing.assert_close(RewardEnsemble(3, 2, seed=0).member_rewards(x), batched)
    with pytest.raises(ConfigError, match=r"\(\.\.\., 3\) observations"):
        model.reward(torch.zeros(4, 2), torch.zeros(4, 2))


def constructed_ensemble() -> RewardEnsemble:
    """Three members with reward_e(x) = tanh(k_e x_0), k = (0, 1, 3), for x_0 >= 0."""
    model = RewardEnsemble(1, 1, RewardModelConfig(hidden=(4, 4, 4), query_mode="disagreement", large_batch=3))
    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()
        model.net.weight_0[:, 0, 0] = torch.tensor([0.0, 1.0, 3.0])
        for i in (1, 2, 3):
            getattr(model.net, f"weight_{i}")[:, 0, 0] = 1.0
    return model


def test_disagreement_sampling_picks_the_highest_variance_pairs():
    model = constructed_ensemble()
    x = torch.linspace(0, 2, 9)
    torch.testing.assert_close(model.member_rewards(torch.stack([x, torch.zeros(9)], -1)),
                               torch.tanh(torch.tensor([0.0, 1.0, 3.0])[:, None] * x))
    # candidates: 2-step segments with x_0 = level against x_0 = 0; the variance grows with the level
    levels = torch.tensor([0.0, 0.05, 1.0, 0.2, 0.5, 0.0])
    seg_a = torch.stack([levels, torch.zeros(6)], -1)[:, None, :].expand(6, 2, 2)
    seg_b = torch.zeros(6, 2, 2)
    assert model.num_candidates(2) == 6  # large_batch 3
    returns = 2 * torch.tanh(torch.tensor([0.0, 1.0, 3.0])[:, None] * levels)
    by_hand = torch.sigmoid(returns).numpy().std(0)
    with torch.no_grad():
        scores = disagreement(model.member_returns(seg_a), model.member_returns(seg_b))
    np.testing.assert_allclose(scores.numpy(),
                               by_hand, rtol=1e-5, atol=1e-7)
    assert model.select(seg_a, seg_b, 2).tolist() == [2, 4]
    assert model.select(seg_a, seg_b, 2, mode="uniform").tolist() == [0, 1]


def synthetic_segments(n: int, seed: int, length: int = 10):
    g = torch.Generator().manual_seed(seed)
    obs, act = torch.randn(n, length, 3, generator=g), torch.rand(n, length, 1, generator=g) * 2 - 1
    true = (obs @ torch.tensor([1.0, -0.5, 0.25]) + 0.5 * act[..., 0]) / 4
    return obs, act, true


def test_training_learns_the_teachers_ordering_and_stops_at_97_percent():
    torch.manual_seed(0)
    model = RewardEnsemble(3, 1, RewardModelConfig(hidden=(64, 64, 64), lr=1e-3, batch_size=32), seed=1)
    teacher = ScriptedTeacher("oracle", segment=10)
    oa, aa, ta = synthetic_segments(256, 0)
    ob, ab, tb = synthetic_segments(256, 1)
    answer = teacher.label(ta, tb, np.random.default_rng(0))
    model.add_queries(model.features(oa, aa), model.features(ob, ab), answer.labels)
    assert len(model.store) == 256
    first = model.train_epoch()
    assert first.shape == (3,) and first.mean() < 0.97
    stats = model.train_reward(max_epochs=100)
    assert stats["accuracy"] > 0.97 and stats["epochs"] < 100  # stopped early, as B-Pref
    # held-out pairs and the per-step reward
    oc, ac, tc = synthetic_segments(200, 2)
    od, ad, td = synthetic_segments(200, 3)
    pred = model.member_returns(model.features(oc, ac)).mean(0) > model.member_returns(model.features(od, ad)).mean(0)
    assert (pred == (tc.sum(1) > td.sum(1))).float().mean() > 0.85
    rho = spearmanr(model.reward(oc.reshape(-1, 3), ac.reshape(-1, 1)).numpy(), tc.reshape(-1).numpy())[0]
    assert rho > 0.8


def test_state_dict_is_tensors_and_round_trips_through_safetensors(tmp_path):
    model = RewardEnsemble(3, 2, RewardModelConfig(hidden=(16, 16, 16)), seed=0)
    state = model.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert state["net.weight_0"].shape == (3, 5, 16)
    save_file(state, str(tmp_path / "reward.safetensors"))
    other = RewardEnsemble(3, 2, RewardModelConfig(hidden=(16, 16, 16)), seed=5)
    x = torch.randn(4, 5)
    assert not torch.allclose(other.member_rewards(x), model.member_rewards(x))
    other.load_state_dict(load_file(str(tmp_path / "reward.safetensors")))
    torch.testing.assert_close(other.member_rewards(x), model.member_rewards(x))


def test_preference_store_keeps_answered_queries_fifo_and_round_trips():
    store = PreferenceStore(capacity=4)
    seg = torch.arange(5 * 2 * 3, dtype=torch.float32).reshape(5, 2, 3)
    store.add(seg, seg + 1, np.array([1.0, np.nan, 0.0, 0.5, 1.0], np.float32))  # the skipped one is dropped
    assert len(store) == 4 and store.labels.tolist() == [1.0, 0.0, 0.5, 1.0]
    store.add(seg[:1] * 0, seg[:1] * 0, [0.0])  # capacity 4: the oldest goes
    assert store.labels.tolist() == [0.0, 0.5, 1.0, 0.0]
    torch.testing.assert_close(store.seg_a[0], seg[2])
    copy = PreferenceStore(capacity=4)
    copy.load_state(store.state())
    torch.testing.assert_close(copy.seg_b, store.seg_b)
    assert copy.labels.tolist() == store.labels.tolist()
    with pytest.raises(PreferenceDatasetError, match=r"must lie in \[0, 1\]"):
        store.add(seg[:1], seg[:1], [2.0])
    with pytest.raises(PreferenceDatasetError, match="do not match"):
        store.add(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), [1.0])
    with pytest.raises(PreferenceDatasetError, match="no labelled queries"):
        RewardEnsemble(1, 1, RewardModelConfig(hidden=(4,))).train_epoch()


def test_bad_settings_name_the_problem():
    with pytest.raises(ConfigError, match="ensemble_size must be a positive integer"):
        RewardModelConfig(ensemble_size=0)
    with pytest.raises(ConfigError, match="unknown query_mode 'kcenter'"):
        RewardModelConfig(query_mode="kcenter")
    with pytest.raises(ConfigError, match="target_accuracy"):
        RewardModelConfig(target_accuracy=1.5)


# ----------------------------------------------------------------------------- k-NN state entropy
def test_knn_distances_hand_case_and_chunking():
    states = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])
    # nearest other state; second nearest other state
    assert knn_distances(states, states, 1).tolist() == [1.0, 1.0, 2.0, 3.0, 4.0]
    assert knn_distances(states, states, 2, chunk_size=2).tolist() == [3.0, 2.0, 3.0, 4.0, 7.0]
    # queries outside the reference: the k-th nearest reference state, itself included
    assert knn_distances(torch.tensor([[2.0]]), states, 2, states_in_reference=False).tolist() == [1.0]
    g = torch.Generator().manual_seed(0)
    x, ref = torch.randn(37, 4, generator=g), torch.randn(101, 4, generator=g)
    brute = torch.cdist(x, ref).sort(1).values[:, 4]
    torch.testing.assert_close(knn_distances(x, ref, 5, states_in_reference=False, chunk_size=16), brute)
    with pytest.raises(ConfigError, match="at least 6 reference states"):
        knn_distances(states, states, 5)


def test_state_entropy_reward_normalises_by_the_running_std():
    states = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [6.0, 0.0], [10.0, 0.0]])
    module = StateEntropy(k=1)
    reward = module(states, states)
    knn = np.array([1.0, 1.0, 2.0, 3.0, 4.0])
    # the running statistics start at mean 0, var 1, count 1e-4 (B-Pref's), then merge the batch's moments
    count, n = 1e-4, 5
    var = (1.0 * count + knn.var() * n + knn.mean() ** 2 * count * n / (count + n)) / (count + n)
    np.testing.assert_allclose(reward.numpy(), knn / math.sqrt(var), rtol=1e-6)
    assert state_entropy_reward(torch.tensor([2.0]), 4.0).item() == 0.5
    raw = StateEntropy(k=1, normalize=False)
    assert raw(states, states).tolist() == knn.tolist()
