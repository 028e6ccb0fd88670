"""Preference datasets from degraded MetaWorld scripted experts."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.buffers import PreferenceDataset
from zoo.cli import main
from zoo.datasets.metaworld_prefs import (BEHAVIOURS, PAPER_TASKS, BehaviourMix, collect_episodes,
                                          make_preference_dataset, scripted_expert)


def test_every_paper_task_has_a_scripted_expert():
    for task in PAPER_TASKS + ("reach-v3",):
        assert hasattr(scripted_expert(task), "get_action")
    with pytest.raises(ValueError, match="no scripted policy"):
        scripted_expert("fly-to-the-moon-v3")


def test_expert_succeeds_and_degradations_hurt():
    only = lambda kind: BehaviourMix(weights={kind: 1.0})  # noqa: E731
    expert = collect_episodes("drawer-open-v3", 3, seed=0, horizon=150, mix=only("expert"))
    biased = collect_episodes("drawer-open-v3", 3, seed=0, horizon=150, mix=only("biased_noise"))

    def success(store):
        return np.mean([store.extras["success"][s:s + n].max() for s, n in
                        zip(store.episode_starts, store.episode_lengths)])

    assert success(expert) == 1.0
    assert success(biased) < 1.0
    assert np.abs(biased.actions).max() <= 1.0
    assert set(np.unique(biased.extras["behaviour"])) == {BEHAVIOURS.index("biased_noise")}


@pytest.mark.parametrize("teacher", ["regret", "reward"])
def test_make_preference_dataset_round_trip(tmp_path, teacher):
    ds = make_preference_dataset("reach-v3", num_episodes=6, num_pairs=40, segment_length=16, regime="sparse",
                                 teacher=teacher, seed=1, horizon=40)
    assert len(ds.labels) == 40 and ds.segment_length == 16
    assert set(np.unique(ds.labels)) <= {0.0, 0.5, 1.0}
    assert ds.metadata["teacher"] == teacher and ds.metadata["task"] == "reach-v3"
    loaded = PreferenceDataset.load(ds.save(tmp_path / "prefs.npz"))
    np.testing.assert_array_equal(loaded.labels, ds.labels)
    assert loaded.metadata == ds.metadata
    # the same seed gives the same dataset (labels included: the teacher's value net is seeded too)
    again = make_preference_dataset("reach-v3", num_episodes=6, num_pairs=40, segment_length=16, regime="sparse",
                                    teacher=teacher, seed=1, horizon=40)
    np.testing.assert_array_equal(again.observations, ds.observations)
    np.testing.assert_array_equal(again.labels, ds.labels)


def test_biases_share_the_datasets_direction():
    """Per-episode biases are jittered around one direction, so cloning the data keeps the bias."""
    mix, rng = BehaviourMix(weights={"biased_noise": 1.0}), np.random.default_rng(0)
    direction = mix.bias_direction(rng)
    biases = np.stack([mix.sample(rng, 100, direction).bias[:3] for _ in range(200)])
    mean = biases.mean(0)
    assert np.dot(mean / np.linalg.norm(mean), direction) > 0.9
    assert np.linalg.norm(mean) > 0.5 * np.linalg.norm(biases, axis=1).mean()


def test_cli_builds_a_dataset(tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert main(["data", "prefs", "--task", "reach-v3", "--episodes", "4", "--pairs", "10", "--segment", "8",
                 "--horizon", "30", "--regime", "sparse", "--out", str(out)]) == 0
    assert out.exists() and "10 pairs" in capsys.readouterr().out
