"""Scripted preference teachers: functions that score gathered segments, and the rule that turns two
scores into a preference label.

A teacher maps a batch of segments ``{field: (B, L, ...)}`` to scores ``(B,)``;
its ``fields`` attribute names the fields it reads (only those are gathered)
and ``teacher_name`` is recorded in a dataset's metadata.
:func:`reward_sum_teacher` scores by the sum of rewards, :func:`regret_teacher`
by CPL's regret proxy ``sum r + V(s_end) - V(s_start)``; :func:`labels_from_scores`
labels a pair 1.0 (``a`` preferred), 0.0 (``b``) or 0.5 (an exact tie).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from zoo.buffers.segments import Obs, as_numpy, map_obs
from zoo.errors import TrajectoryError

__all__ = ["ScoreFn", "labels_from_scores", "regret_teacher", "reward_sum_teacher", "teacher_name"]

ScoreFn = Callable[[dict[str, Any]], Any]


def labels_from_scores(score_a: Any, score_b: Any) -> np.ndarray:
    """Labels ``1.0`` where ``score_a > score_b``, ``0.0`` where smaller, ``0.5`` on exact ties (float32)."""
    a = np.asarray(as_numpy(score_a), dtype=np.float64)
    b = np.asarray(as_numpy(score_b), dtype=np.float64)
    if a.shape != b.shape:
        raise TrajectoryError(f"score shapes differ: {a.shape} vs {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise TrajectoryError("teacher scores must be finite (got NaN or inf)")
    return np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5)).astype(np.float32)


def teacher_name(fn: Callable[..., Any]) -> str:
    """The name a teacher is recorded under (its ``teacher_name``, else its function or type name)."""
    return str(getattr(fn, "teacher_name", None) or getattr(fn, "__name__", None) or type(fn).__name__)


def reward_sum_teacher(segments: Mapping[str, Any]) -> np.ndarray:
    """Score = sum of a segment's rewards, ``(B, L) -> (B,)`` (float64)."""
    return np.asarray(segments["rewards"], dtype=np.float64).sum(axis=1)


reward_sum_teacher.teacher_name = "reward_sum"  # type: ignore[attr-defined]
reward_sum_teacher.fields = ("rewards",)  # type: ignore[attr-defined]


def regret_teacher(value_fn: Callable[[Obs], Any]) -> ScoreFn:
    """Teacher scoring a segment by CPL's regret proxy ``sum_{t<L-1} r_t + V(s_{L-1}) - V(s_0)``.

    The sum of advantages ``r_t + V(s_{t+1}) - V(s_t)`` over the segment's
    ``L - 1`` transitions telescopes to this. ``value_fn`` maps a batch of
    observations ``(B, ...)`` (a dict for dict observations) to values ``(B,)``
    (numpy or torch).
    """

    def regret(segments: Mapping[str, Any]) -> np.ndarray:
        obs = segments["observations"]
        rewards = np.asarray(segments["rewards"], dtype=np.float64)
        first = map_obs(obs, lambda a: a[:, 0])
        last = map_obs(obs, lambda a: a[:, -1])
        B = rewards.shape[0]
        v0 = np.asarray(as_numpy(value_fn(first)), dtype=np.float64)
        v1 = np.asarray(as_numpy(value_fn(last)), dtype=np.float64)
        if v0.shape not in ((B,), (B, 1)) or v1.shape not in ((B,), (B, 1)):
            raise TrajectoryError(
                f"value_fn must return one value per observation: expected shape ({B},), got {v0.shape} and {v1.shape}"
            )
        return rewards[:, :-1].sum(axis=1) + v1.reshape(B) - v0.reshape(B)

    regret.teacher_name = "regret"  # type: ignore[attr-defined]
    regret.fields = ("observations", "rewards")  # type: ignore[attr-defined]
    return regret
