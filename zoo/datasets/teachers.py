"""Scripted preference teachers: functions that score gathered segments, and the rule that turns two
scores into a preference label.

A teacher maps a batch of segments ``{field: (B, L, ...)}`` to scores ``(B,)``;
its ``fields`` attribute names the fields it reads (only those are gathered)
and ``teacher_name`` is recorded in a dataset's metadata.
:func:`reward_sum_teacher` scores by the sum of rewards, :func:`regret_teacher`
by CPL's regret proxy ``sum r + V(s_end) - V(s_start)``; :func:`labels_from_scores`
labels a pair 1.0 (``a`` preferred), 0.0 (``b``) or 0.5 (an exact tie).

:class:`ScriptedTeacher` is B-Pref's simulated human (Lee et al., 2021, "B-Pref: Benchmarking
Preference-Based Reinforcement Learning", section 3.2): oracle, noisy (Bradley-Terry), mistake, skip,
equal and myopic teachers over per-step rewards of segment pairs, answering with labels and a mask of the
queries it answered. Labels keep this module's convention (1.0: the FIRST segment preferred); B-Pref's
label 1 means the second.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from zoo.buffers.segments import Obs, as_numpy, map_obs
from zoo.errors import ConfigError, TrajectoryError

__all__ = ["TEACHER_MODES", "ScoreFn", "ScriptedTeacher", "TeacherAnswer", "TeacherConfig", "labels_from_scores",
           "regret_teacher", "reward_sum_teacher", "teacher_name"]

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


# --------------------------------------------------------------------------- B-Pref's scripted teachers

#: B-Pref's teacher modes; :meth:`TeacherConfig.preset` gives each one's settings
TEACHER_MODES = ("oracle", "noisy", "mistake", "skip", "equal", "myopic")

_PRESETS: dict[str, dict[str, float]] = {
    "oracle": {},
    "noisy": {"beta": 1.0},
    "mistake": {"eps_mistake": 0.1},
    "skip": {"eps_skip": 0.1},
    "equal": {"eps_equal": 0.1},
    "myopic": {"gamma": 0.9},
}


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """A B-Pref teacher's settings (defaults: the oracle; :meth:`preset` gives B-Pref's six teachers).

    ``beta`` is the Bradley-Terry rationality (``inf``: deterministic, B-Pref's ``teacher_beta=-1``);
    ``gamma`` weights step ``t`` of an ``L``-step segment by ``gamma^(L-1-t)`` (myopic: recent steps count
    more); ``eps_mistake`` is the chance of flipping a label; ``eps_skip`` / ``eps_equal`` are fractions of the
    segment return scale (:meth:`ScriptedTeacher.set_scale`) below which a query is skipped / answered 0.5.
    ``segment`` is the segment length queries are drawn with (B-Pref: 50).
    """

    beta: float = math.inf
    gamma: float = 1.0
    eps_mistake: float = 0.0
    eps_skip: float = 0.0
    eps_equal: float = 0.0
    segment: int = 50

    def __post_init__(self) -> None:
        if not (isinstance(self.beta, (int, float)) and self.beta > 0):
            raise ConfigError(f"teacher beta must be > 0 (math.inf: a deterministic teacher), got {self.beta!r}")
        if not (isinstance(self.gamma, (int, float)) and 0 < self.gamma <= 1):
            raise ConfigError(f"teacher gamma must lie in (0, 1] (1: not myopic), got {self.gamma!r}")
        for name in ("eps_mistake", "eps_skip", "eps_equal"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ConfigError(f"teacher {name} must lie in [0, 1], got {value!r}")
        if isinstance(self.segment, bool) or not isinstance(self.segment, int) or self.segment < 1:
            raise ConfigError(f"teacher segment must be a positive number of steps, got {self.segment!r}")

    @classmethod
    def preset(cls, mode: str, **overrides: Any) -> TeacherConfig:
        """B-Pref's teacher ``mode`` (one of :data:`TEACHER_MODES`), then ``overrides``."""
        if mode not in _PRESETS:
            raise ConfigError(f"unknown teacher mode {mode!r}; choose from {', '.join(TEACHER_MODES)}")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown teacher setting(s) {sorted(unknown)}; known: "
                              f"{[f.name for f in dataclasses.fields(cls)]}")
        return cls(**{**_PRESETS[mode], **overrides})


class TeacherAnswer(NamedTuple):
    """A teacher's answers: ``labels`` (float32; 1.0 = the first segment preferred, 0.5 = equally preferable,
    NaN where not answered) and ``answered`` (bool: False where the query was skipped)."""

    labels: np.ndarray
    answered: np.ndarray


class ScriptedTeacher:
    """B-Pref's scripted teacher over pairs of segments' per-step true rewards (B-Pref's ``get_label``).

    In order: a pair is skipped when both segments' (undiscounted) returns are at most the skip threshold;
    it is answered 0.5 when the returns differ by less than the equal threshold; otherwise the label compares
    the myopic (``gamma``-weighted) returns, deterministically or by Bradley-Terry with ``beta``
    (``P(first) = sigmoid(beta (R_a - R_b))``), and is then flipped with probability ``eps_mistake``. Exact
    ties of a deterministic teacher are labelled 0.5 (B-Pref prefers the first segment of a tie).
    The thresholds are ``eps_skip * scale`` and ``eps_equal * scale``, ``scale`` being the return of a
    typical segment (:meth:`set_scale`); a threshold of 0 or below turns its rule off, as in B-Pref.
    """

    def __init__(self, config: TeacherConfig | str = "oracle", **overrides: Any):
        if isinstance(config, str):
            config = TeacherConfig.preset(config, **overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        if not isinstance(config, TeacherConfig):
            raise ConfigError(f"ScriptedTeacher takes a TeacherConfig or a mode name ({', '.join(TEACHER_MODES)}), "
                              f"got {type(config).__name__}")
        self.config = config
        #: the return scale of one segment that the skip / equal thresholds are fractions of
        self.scale: float | None = None

    @property
    def teacher_name(self) -> str:
        return "bpref"

    def set_scale(self, episode_returns: Sequence[float] | np.ndarray | float, episode_length: int) -> float:
        """Set the segment return scale as B-Pref: the mean true return of recent episodes (B-Pref: the last
        10) times ``segment / episode_length``; returns it."""
        returns = np.asarray(as_numpy(episode_returns), dtype=np.float64).reshape(-1)
        if returns.size == 0 or not np.isfinite(returns).all():
            raise ConfigError("set_scale needs at least one finite episode return")
        if isinstance(episode_length, bool) or not isinstance(episode_length, int) or episode_length < 1:
            raise ConfigError(f"episode_length must be a positive number of steps, got {episode_length!r}")
        self.scale = float(returns.mean() * self.config.segment / episode_length)
        return self.scale

    def thresholds(self) -> tuple[float, float]:
        """``(skip, equal)`` return thresholds (0 where the rule is off)."""
        c = self.config
        if (c.eps_skip > 0 or c.eps_equal > 0) and self.scale is None:
            raise ConfigError("a skip or equal teacher needs the segment return scale: call "
                              "teacher.set_scale(recent_episode_returns, episode_length) (or set teacher.scale) "
                              "before asking it")
        scale = 0.0 if self.scale is None else self.scale
        return c.eps_skip * scale, c.eps_equal * scale

    def score(self, rewards: Any) -> np.ndarray:
        """Myopic return ``sum_t gamma^(L-1-t) r_t`` of ``(B, L)`` rewards (B-Pref's weighting), float64."""
        r = self._steps(rewards, "rewards")
        if self.config.gamma == 1.0:
            return r.sum(axis=1)
        weights = self.config.gamma ** np.arange(r.shape[1] - 1, -1, -1, dtype=np.float64)
        return r @ weights

    def probability(self, rewards_a: Any, rewards_b: Any) -> TeacherAnswer:
        """The exact probability (float64) that the teacher labels each pair 1.0 = ``a`` preferred (its
        expected label: 0.5 for equal pairs), and the answered mask; NaN where skipped."""
        ra, rb = self._pair(rewards_a, rewards_b)
        answered, equal = self._rules(ra, rb)
        p = self._first_preferred(ra, rb)
        eps = self.config.eps_mistake
        p = p * (1 - eps) + (1 - p) * eps
        p = np.where(equal, 0.5, p)
        return TeacherAnswer(np.where(answered, p, np.nan), answered)

    def label(self, rewards_a: Any, rewards_b: Any, rng: np.random.Generator) -> TeacherAnswer:
        """Sampled labels (float32; 1.0 = ``a`` preferred, 0.5 = equal, NaN = skipped) and the answered mask.

        ``rewards_a``, ``rewards_b``: ``(B, L)`` per-step true rewards (numpy or torch; ``(B, L, 1)`` too), or
        ``(B,)`` returns for a teacher that is not myopic. ``rng``: a numpy Generator (the only randomness).
        """
        if not isinstance(rng, np.random.Generator):
            raise ConfigError(f"ScriptedTeacher.label needs a numpy Generator (np.random.default_rng(seed)), got "
                              f"{type(rng).__name__}")
        ra, rb = self._pair(rewards_a, rewards_b)
        answered, equal = self._rules(ra, rb)
        p = self._first_preferred(ra, rb)
        if math.isinf(self.config.beta):
            labels = p.copy()  # 1, 0 or 0.5 on exact ties
        else:
            labels = (rng.random(p.shape) < p).astype(np.float64)
        if self.config.eps_mistake > 0:
            flip = rng.random(p.shape) < self.config.eps_mistake
            labels = np.where(flip, 1.0 - labels, labels)
        labels = np.where(equal, 0.5, labels)
        return TeacherAnswer(np.where(answered, labels, np.nan).astype(np.float32), answered)

    # -- helpers ------------------------------------------------------------
    def _steps(self, rewards: Any, name: str) -> np.ndarray:
        r = np.asarray(as_numpy(rewards), dtype=np.float64)
        if r.ndim == 3 and r.shape[-1] == 1:
            r = r[..., 0]
        if r.ndim == 1:
            if self.config.gamma != 1.0:
                raise TrajectoryError(f"a myopic teacher (gamma {self.config.gamma}) needs per-step rewards "
                                      f"(B, L), got returns of shape {r.shape}")
            r = r[:, None]
        if r.ndim != 2:
            raise TrajectoryError(f"{name} must be (B, L) per-step rewards or (B,) returns, got shape {r.shape}")
        if not np.isfinite(r).all():
            raise TrajectoryError(f"{name} must be finite (got NaN or inf)")
        return r

    def _pair(self, rewards_a: Any, rewards_b: Any) -> tuple[np.ndarray, np.ndarray]:
        ra, rb = self._steps(rewards_a, "rewards_a"), self._steps(rewards_b, "rewards_b")
        if ra.shape != rb.shape:
            raise TrajectoryError(f"the two segments' rewards differ in shape: {ra.shape} vs {rb.shape}")
        return ra, rb

    def _rules(self, ra: np.ndarray, rb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(answered, equal) masks from the undiscounted returns, as B-Pref."""
        skip, equal = self.thresholds()
        sa, sb = ra.sum(axis=1), rb.sum(axis=1)
        answered = np.maximum(sa, sb) > skip if skip > 0 else np.ones(sa.shape, bool)
        is_equal = np.abs(sa - sb) < equal if equal > 0 else np.zeros(sa.shape, bool)
        return answered, is_equal

    def _first_preferred(self, ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
        """``P(a preferred)`` before mistakes: 1/0/0.5 when deterministic, else ``sigmoid(beta (R_a - R_b))``."""
        diff = self.score(ra) - self.score(rb)
        if math.isinf(self.config.beta):
            return np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
        return 0.5 * (1.0 + np.tanh(0.5 * self.config.beta * diff))  # a stable sigmoid
