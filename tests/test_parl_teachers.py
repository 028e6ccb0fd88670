"""B-Pref's scripted teachers (zoo.datasets.teachers.ScriptedTeacher) on hand-made segments, mode by mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.datasets.teachers import TEACHER_MODES, ScriptedTeacher, TeacherConfig
from zoo.errors import ConfigError, TrajectoryError

# four pairs of 3-step segments: returns 3 v 0, 0 v 3, 2 v 2 (early v late reward), 2 v 2 (late v early)
A = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
B = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0]])


def test_presets_are_bprefs_settings():
    assert TEACHER_MODES == ("oracle", "noisy", "mistake", "skip", "equal", "myopic")
    assert TeacherConfig.preset("oracle") == TeacherConfig(math.inf, 1.0, 0.0, 0.0, 0.0, 50)
    assert TeacherConfig.preset("noisy").beta == 1.0
    assert TeacherConfig.preset("mistake").eps_mistake == 0.1
    assert TeacherConfig.preset("skip").eps_skip == 0.1
    assert TeacherConfig.preset("equal").eps_equal == 0.1
    assert TeacherConfig.preset("myopic").gamma == 0.9
    assert TeacherConfig.preset("noisy", beta=2.0).beta == 2.0


def test_oracle_labels_first_preferred_as_one_and_ties_half():
    labels, answered = ScriptedTeacher("oracle").label(A, B, np.random.default_rng(0))
    np.testing.assert_array_equal(labels, np.array([1.0, 0.0, 0.5, 0.5], np.float32))
    assert labels.dtype == np.float32 and answered.all()
    # torch inputs and B-Pref's (B, L, 1) layout give the same answers; so do (B,) returns
    same = ScriptedTeacher().label(torch.tensor(A)[..., None], torch.tensor(B)[..., None], np.random.default_rng(0))
    np.testing.assert_array_equal(same.labels, labels)
    np.testing.assert_array_equal(ScriptedTeacher().label(A.sum(1), B.sum(1), np.random.default_rng(0)).labels,
                                  labels)


def test_myopic_weights_recent_steps_more():
    teacher = ScriptedTeacher("myopic")
    # weights gamma^(L-1-t): 0.81, 0.9, 1
    np.testing.assert_allclose(teacher.score(A), [0.81 + 0.9 + 1.0, 0.0, 2 * 0.81, 2.0])
    labels, answered = teacher.label(A, B, np.random.default_rng(0))
    np.testing.assert_array_equal(labels, [1.0, 0.0, 0.0, 1.0])  # the late reward wins the ties
    assert answered.all()
    with pytest.raises(TrajectoryError, match="per-step rewards"):
        teacher.label(A.sum(1), B.sum(1), np.random.default_rng(0))


def test_noisy_teacher_is_bradley_terry_with_beta():
    teacher = ScriptedTeacher("noisy")
    p = teacher.probability(A, B).labels
    np.testing.assert_allclose(p, [1 / (1 + math.exp(-3)), 1 / (1 + math.exp(3)), 0.5, 0.5], rtol=1e-12)
    # sampled labels are Bernoulli(p): the same seed gives the same labels, the frequencies match p
    reps = 20_000
    ra, rb = np.tile(A, (reps, 1)), np.tile(B, (reps, 1))
    labels = teacher.label(ra, rb, np.random.default_rng(1)).labels.reshape(reps, 4)
    np.testing.assert_array_equal(labels.reshape(-1), teacher.label(ra, rb, np.random.default_rng(1)).labels)
    assert set(np.unique(labels)) == {0.0, 1.0}
    np.testing.assert_allclose(labels.mean(0), p, atol=0.015)
    # beta scales the rationality: beta 2 on the 3 v 0 pair
    assert ScriptedTeacher("noisy", beta=2.0).probability(A[:1], B[:1]).labels[0] == pytest.approx(
        1 / (1 + math.exp(-6)))


def test_mistake_teacher_flips_where_its_draw_is_below_eps():
    teacher = ScriptedTeacher("mistake", eps_mistake=0.3)
    ra, rb = np.tile(A[:2], (50, 1)), np.tile(B[:2], (50, 1))
    oracle = np.tile([1.0, 0.0], 50)
    flips = np.random.default_rng(5).random(100) < 0.3  # the teacher's only draws (deterministic labels)
    labels, answered = teacher.label(ra, rb, np.random.default_rng(5))
    np.testing.assert_array_equal(labels, np.where(flips, 1 - oracle, oracle))
    assert 0 < flips.sum() < 100 and answered.all()
    np.testing.assert_allclose(teacher.probability(A, B).labels, [0.7, 0.3, 0.5, 0.5])


def test_skip_teacher_skips_pairs_whose_best_return_is_at_most_the_threshold():
    teacher = ScriptedTeacher("skip", eps_skip=0.25, segment=3)
    with pytest.raises(ConfigError, match="set_scale"):
        teacher.label(A, B, np.random.default_rng(0))
    # scale = mean episode return * segment / episode length = 400 * 3 / 300 = 4 -> threshold 1.0
    assert teacher.set_scale([300.0, 500.0], 300) == pytest.approx(4.0)
    assert teacher.thresholds() == (1.0, 0.0)
    ra = np.array([[0.5, 0.5, 0.5], [0.5, 0.25, 0.25], [0.0, 0.0, 0.0], [-2.0, 0.0, 0.0]])
    rb = np.array([[0.0, 0.0, 0.0], [0.25, 0.25, 0.25], [0.5, 0.5, 0.0], [0.0, 0.0, 0.5]])
    labels, answered = teacher.label(ra, rb, np.random.default_rng(0))
    # best returns 1.5, 1.0 (= threshold: skipped), 1.0 (skipped), 0.5 (skipped)
    np.testing.assert_array_equal(answered, [True, False, False, False])
    assert labels[0] == 1.0 and np.isnan(labels[1:]).all()
    assert np.isnan(teacher.probability(ra, rb).labels[1:]).all()
    # a non-positive threshold turns skipping off (B-Pref's `if thres_skip > 0`)
    teacher.scale = -4.0
    assert teacher.label(ra, rb, np.random.default_rng(0)).answered.all()


def test_equal_teacher_answers_half_within_the_threshold_on_undiscounted_returns():
    teacher = ScriptedTeacher("equal", eps_equal=0.25, gamma=0.9)  # with myopic labels as well
    teacher.scale = 4.0  # threshold 1.0
    ra = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    rb = np.array([[1.0, 1.0, 0.5], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.5]])
    labels, answered = teacher.label(ra, rb, np.random.default_rng(0))
    # |diff| 0.5 -> equal; exactly 1.0 is not below the threshold -> labelled; 3 -> labelled;
    # 0.5 (2 early v 1.5 late) -> equal, although the myopic returns differ (1.62 v 1.5)
    np.testing.assert_array_equal(labels, [0.5, 1.0, 0.0, 0.5])
    assert answered.all()
    np.testing.assert_array_equal(teacher.probability(ra, rb).labels, [0.5, 1.0, 0.0, 0.5])


def test_bad_input_names_the_problem():
    with pytest.raises(ConfigError, match="unknown teacher mode 'grumpy'"):
        ScriptedTeacher("grumpy")
    with pytest.raises(ConfigError, match="eps_mistake must lie in"):
        TeacherConfig(eps_mistake=1.5)
    with pytest.raises(ConfigError, match="beta must be > 0"):
        TeacherConfig(beta=-1)
    with pytest.raises(ConfigError, match="unknown teacher setting"):
        TeacherConfig.preset("noisy", betta=2)
    with pytest.raises(ConfigError, match="numpy Generator"):
        ScriptedTeacher().label(A, B, 0)
    with pytest.raises(TrajectoryError, match="differ in shape"):
        ScriptedTeacher().label(A, B[:2], np.random.default_rng(0))
    with pytest.raises(TrajectoryError, match="finite"):
        ScriptedTeacher().label(A * np.nan, B, np.random.default_rng(0))
