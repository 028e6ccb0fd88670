"""Whole-episode storage with an episode index and fixed-length segment sampling.

:class:`TrajectoryStore` keeps episodes back to back in flat, preallocated
numpy arrays that grow by doubling, with an episode index (start offset,
length, task id). Segments are ``length`` consecutive steps inside one
episode, named by the flat index of their first step; the numba kernels of
:mod:`zoo.buffers.segments` turn uniform draws into segment starts and find
the episode (or task) of a step, and segments are gathered with ``np.take``.
Labelled pairs of segments live in :class:`zoo.datasets.PreferenceDataset`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.buffers.segments import (Obs, RngLike, as_numpy, as_rng, check_count, check_length, episode_of, gather,
                                  index_to_start, map_obs)
from zoo.errors import TrajectoryError

if TYPE_CHECKING:
    from zoo.datasets.teachers import ScoreFn

__all__ = ["DEFAULT_TASK", "TrajectoryError", "TrajectoryStore"]

DEFAULT_TASK = "default"
"""Task name of episodes added with ``task=None`` (sampling with ``task=None`` means all tasks)."""

_CORE_FIELDS = ("observations", "actions", "rewards")


def _storable(given: np.ndarray, expected: np.dtype) -> bool:
    """Whether ``given`` can be stored as ``expected`` without surprise (exact, safe, float->float, ints in range)."""
    g = given.dtype
    if g == expected or np.can_cast(g, expected, casting="safe"):
        return True
    if g.kind == "f" and expected.kind == "f":
        return True
    if g.kind in "iub" and expected.kind in "iu":
        if given.size == 0:
            return True
        info = np.iinfo(expected)
        return bool(given.min() >= info.min and given.max() <= info.max)
    return False


class TrajectoryStore:
    """Whole episodes in flat, growable arrays, with an episode index and segment sampling.

    Step ``t`` of episode ``i`` lives at flat index ``episode_starts[i] + t``;
    ``observations[j]`` is the observation at which ``actions[j]`` was taken and
    ``rewards[j]`` the reward that followed. Rewards are stored as float32;
    observations (an array or a dict of arrays), actions and extra per-step
    fields keep the per-step shape and dtype of the first episode added.
    """

    def __init__(self, capacity: int = 1024, episode_capacity: int = 64) -> None:
        self._capacity = max(1, int(capacity))
        self._ep_capacity = max(1, int(episode_capacity))
        self._num_steps = 0
        self._num_episodes = 0
        self._obs: Obs | None = None
        self._actions: np.ndarray | None = None
        self._rewards: np.ndarray | None = None
        self._extras: dict[str, np.ndarray] = {}
        self._ep_start = np.zeros(self._ep_capacity, dtype=np.int64)
        self._ep_length = np.zeros(self._ep_capacity, dtype=np.int64)
        self._ep_task = np.zeros(self._ep_capacity, dtype=np.int64)
        self._task_names: list[str] = []
        self._task_ids: dict[str, int] = {}

    # ---------------------------------------------------------------- sizes and views
    @property
    def num_episodes(self) -> int:
        """Number of episodes stored."""
        return self._num_episodes

    @property
    def num_steps(self) -> int:
        """Total number of steps over all episodes."""
        return self._num_steps

    def __len__(self) -> int:
        return self._num_episodes

    def __repr__(self) -> str:
        return (f"TrajectoryStore(num_episodes={self._num_episodes}, num_steps={self._num_steps}, "
                f"tasks={self._task_names})")

    @property
    def tasks(self) -> list[str]:
        """Task names, in order of first appearance (the index is the task id)."""
        return list(self._task_names)

    @property
    def episode_starts(self) -> np.ndarray:
        """Flat index of each episode's first step (read-only view)."""
        return self._ro(self._ep_start[: self._num_episodes])

    @property
    def episode_lengths(self) -> np.ndarray:
        """Number of steps of each episode (read-only view)."""
        return self._ro(self._ep_length[: self._num_episodes])

    @property
    def episode_tasks(self) -> np.ndarray:
        """Task id of each episode (index into :attr:`tasks`; read-only view)."""
        return self._ro(self._ep_task[: self._num_episodes])

    @property
    def observations(self) -> Obs:
        """Flat observations ``(num_steps, ...)`` (a dict of arrays for dict observations; read-only views)."""
        self._require_data()
        return map_obs(self._obs, lambda a: self._ro(a[: self._num_steps]))  # type: ignore[arg-type]

    @property
    def actions(self) -> np.ndarray:
        """Flat actions ``(num_steps, ...)`` (read-only view)."""
        self._require_data()
        return self._ro(self._actions[: self._num_steps])  # type: ignore[index]

    @property
    def rewards(self) -> np.ndarray:
        """Flat float32 rewards ``(num_steps,)`` (read-only view)."""
        self._require_data()
        return self._ro(self._rewards[: self._num_steps])  # type: ignore[index]

    @property
    def extras(self) -> dict[str, np.ndarray]:
        """Flat extra per-step fields ``{name: (num_steps, ...)}`` (read-only views)."""
        return {k: self._ro(v[: self._num_steps]) for k, v in self._extras.items()}

    @staticmethod
    def _ro(a: np.ndarray) -> np.ndarray:
        v = a.view()
        v.flags.writeable = False
        return v

    def _require_data(self) -> None:
        if self._actions is None:
            raise TrajectoryError("the store is empty: add an episode first")

    def task_id(self, task: str | None) -> int:
        """Id of a task name (``None`` means :data:`DEFAULT_TASK`); unknown names raise."""
        name = DEFAULT_TASK if task is None else task
        if name not in self._task_ids:
            raise TrajectoryError(f"unknown task {name!r}; the store has tasks {self._task_names}")
        return self._task_ids[name]

    # ---------------------------------------------------------------- adding
    def add_episode(self, obs: Obs | Mapping[str, Any], actions: Any, rewards: Any,
                    task: str | None = None, **extras: Any) -> int:
        """Append one episode of ``T`` steps; returns its index.

        Every per-step array (observations or each of their dict entries,
        actions, rewards ``(T,)``, extras) has leading size ``T >= 1``. The first
        episode fixes the per-step shapes, dtypes, observation keys and extra
        field names; later episodes must match them (values are cast only when
        that loses nothing surprising: float to float, integers in range).
        """
        if task is not None and not isinstance(task, str):
            raise TrajectoryError(f"task must be a str or None, got {type(task).__name__}")
        bad = set(extras) & {*_CORE_FIELDS, "task"}
        if bad:
            raise TrajectoryError(f"extra field names {sorted(bad)} are reserved")
        rew = as_numpy(rewards)
        if rew.ndim != 1:
            raise TrajectoryError(f"rewards: expected shape (T,), got {rew.shape}")
        if rew.dtype.kind not in "biuf":
            raise TrajectoryError(f"rewards: expected a real numeric dtype, got {rew.dtype}")
        T = int(rew.shape[0])
        if T < 1:
            raise TrajectoryError("rewards: an episode needs at least one step, got shape (0,)")

        if isinstance(obs, Mapping):
            if not obs:
                raise TrajectoryError("observations: empty dict")
            if not all(isinstance(k, str) for k in obs):
                raise TrajectoryError("observations: dict keys must be str")
            obs_in: Obs = {k: as_numpy(v) for k, v in obs.items()}
        else:
            obs_in = as_numpy(obs)
        act = as_numpy(actions)
        ext = {k: as_numpy(v) for k, v in extras.items()}

        fields: list[tuple[str, np.ndarray]] = []
        if isinstance(obs_in, dict):
            fields += [(f"observations[{k!r}]", v) for k, v in obs_in.items()]
        else:
            fields.append(("observations", obs_in))
        fields.append(("actions", act))
        fields += [(k, v) for k, v in ext.items()]

        for name, arr in fields:
            if arr.dtype.kind == "O":
                raise TrajectoryError(f"{name}: object arrays are not supported (got dtype object)")
            if arr.ndim == 0 or arr.shape[0] != T:
                raise TrajectoryError(
                    f"{name}: expected {T} steps (leading size of rewards, shape ({T},)), got shape {arr.shape}; "
                    "every per-step array must have the same length T"
                )

        if self._actions is None:
            self._allocate(obs_in, act, ext, max(self._capacity, T))
        else:
            self._check_layout(obs_in, act, ext, T)

        self._ensure_steps(self._num_steps + T)
        s, e = self._num_steps, self._num_steps + T
        if isinstance(obs_in, dict):
            for k, v in obs_in.items():
                self._obs[k][s:e] = v  # type: ignore[index]
        else:
            self._obs[s:e] = obs_in  # type: ignore[index]
        self._actions[s:e] = act  # type: ignore[index]
        self._rewards[s:e] = rew  # type: ignore[index]
        for k, v in ext.items():
            self._extras[k][s:e] = v

        name = DEFAULT_TASK if task is None else task
        if name not in self._task_ids:
            self._task_ids[name] = len(self._task_names)
            self._task_names.append(name)
        if self._num_episodes == self._ep_capacity:
            self._ep_capacity *= 2
            for attr in ("_ep_start", "_ep_length", "_ep_task"):
                old = getattr(self, attr)
                new = np.zeros(self._ep_capacity, dtype=old.dtype)
                new[: self._num_episodes] = old[: self._num_episodes]
                setattr(self, attr, new)
        i = self._num_episodes
        self._ep_start[i], self._ep_length[i], self._ep_task[i] = s, T, self._task_ids[name]
        self._num_episodes += 1
        self._num_steps = e
        return i

    def _allocate(self, obs: Obs, act: np.ndarray, ext: dict[str, np.ndarray], cap: int) -> None:
        self._capacity = cap
        self._obs = map_obs(obs, lambda a: np.empty((cap,) + a.shape[1:], dtype=a.dtype))
        self._actions = np.empty((cap,) + act.shape[1:], dtype=act.dtype)
        self._rewards = np.empty(cap, dtype=np.float32)
        self._extras = {k: np.empty((cap,) + v.shape[1:], dtype=v.dtype) for k, v in ext.items()}

    def _check_layout(self, obs: Obs, act: np.ndarray, ext: dict[str, np.ndarray], T: int) -> None:
        if isinstance(self._obs, dict) != isinstance(obs, dict):
            kind = "a dict of arrays" if isinstance(self._obs, dict) else "an array"
            raise TrajectoryError(f"observations: expected {kind} (fixed by the first episode), "
                                  f"got {type(obs).__name__}")
        if isinstance(self._obs, dict):
            if set(obs) != set(self._obs):  # type: ignore[arg-type]
                raise TrajectoryError(f"observations: expected keys {sorted(self._obs)}, got {sorted(obs)}")
            pairs = [(f"observations[{k!r}]", obs[k], self._obs[k]) for k in self._obs]  # type: ignore[index]
        else:
            pairs = [("observations", obs, self._obs)]
        pairs.append(("actions", act, self._actions))
        if set(ext) != set(self._extras):
            raise TrajectoryError(f"extra fields: expected {sorted(self._extras)} (fixed by the first episode), "
                                  f"got {sorted(ext)}")
        pairs += [(k, ext[k], self._extras[k]) for k in self._extras]
        for name, given, store in pairs:
            expected = (T,) + store.shape[1:]
            if given.shape != expected:
                raise TrajectoryError(f"{name}: expected shape {expected} (T={T} steps x per-step shape "
                                      f"{store.shape[1:]} fixed by the first episode), got {given.shape}")
            if not _storable(given, store.dtype):
                raise TrajectoryError(f"{name}: expected dtype {store.dtype} (fixed by the first episode), "
                                      f"got {given.dtype}, which cannot be stored without loss")

    def _ensure_steps(self, needed: int) -> None:
        if needed <= self._capacity:
            return
        cap = self._capacity
        while cap < needed:
            cap *= 2
        n = self._num_steps

        def grow(a: np.ndarray) -> np.ndarray:
            new = np.empty((cap,) + a.shape[1:], dtype=a.dtype)
            new[:n] = a[:n]
            return new

        self._obs = map_obs(self._obs, grow)  # type: ignore[arg-type]
        self._actions = grow(self._actions)  # type: ignore[arg-type]
        self._rewards = grow(self._rewards)  # type: ignore[arg-type]
        self._extras = {k: grow(v) for k, v in self._extras.items()}
        self._capacity = cap

    # ---------------------------------------------------------------- reading
    def episode(self, i: int) -> dict[str, Any]:
        """Copy of episode ``i`` (negative indices count from the end): fields, extras and ``task`` name."""
        if not -self._num_episodes <= i < self._num_episodes:
            raise IndexError(f"episode {i} out of range for a store of {self._num_episodes} episodes")
        i %= self._num_episodes
        s = int(self._ep_start[i])
        e = s + int(self._ep_length[i])
        out: dict[str, Any] = {
            "observations": map_obs(self._obs, lambda a: a[s:e].copy()),  # type: ignore[arg-type]
            "actions": self._actions[s:e].copy(),  # type: ignore[index]
            "rewards": self._rewards[s:e].copy(),  # type: ignore[index]
        }
        out.update({k: v[s:e].copy() for k, v in self._extras.items()})
        out["task"] = self._task_names[int(self._ep_task[i])]
        return out

    def episode_of(self, steps: Any) -> np.ndarray:
        """Episode index of each flat step index (numba binary search)."""
        steps = self._check_steps(steps)
        out = np.empty(steps.shape[0], dtype=np.int64)
        episode_of(steps, self._ep_start[: self._num_episodes], out)
        return out

    def task_of(self, steps: Any) -> np.ndarray:
        """Task id of each flat step index."""
        return self._ep_task[self.episode_of(steps)]

    def _check_steps(self, steps: Any) -> np.ndarray:
        arr = as_numpy(steps)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise TrajectoryError(f"step indices must be a 1-D integer array, got shape {arr.shape}, dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (arr.min() < 0 or arr.max() >= self._num_steps):
            raise TrajectoryError(f"step indices out of range [0, {self._num_steps})")
        return arr

    # ---------------------------------------------------------------- segments
    def _start_space(self, length: int, task: str | None | object, tasks_first: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cum counts, episode starts, episode task ids) of the valid-start index space, episodes ordered by task."""
        self._require_data()
        n = self._num_episodes
        lengths = self._ep_length[:n]
        counts = np.maximum(lengths - length + 1, 0)
        tids = self._ep_task[:n]
        if task is not _ALL:
            counts = np.where(tids == self.task_id(task), counts, 0)  # type: ignore[arg-type]
        order = np.argsort(tids, kind="stable") if tasks_first else np.arange(n)
        return np.cumsum(counts[order]), self._ep_start[:n][order], tids[order]

    def _no_segments(self, length: int, task: Any, need: str = "") -> TrajectoryError:
        where = "" if task is _ALL else f" of task {DEFAULT_TASK if task is None else task!r}"
        longest = int(self._ep_length[: self._num_episodes].max(initial=0))
        return TrajectoryError(f"no episode{where} is long enough for segments of length {length} "
                               f"(longest episode: {longest} steps){need}")

    def num_segment_starts(self, length: int, task: str | None = None) -> int:
        """Number of valid starts of ``length``-step segments (``task=None``: all tasks)."""
        length = check_length(length)
        cum, _, _ = self._start_space(length, _ALL if task is None else task)
        return int(cum[-1]) if cum.size else 0

    def valid_starts(self, length: int, task: str | None = None) -> np.ndarray:
        """All flat indices where a segment of ``length`` steps fits inside one episode (``task=None``: all tasks)."""
        length = check_length(length)
        cum, ep_start, _ = self._start_space(length, _ALL if task is None else task)
        total = int(cum[-1]) if cum.size else 0
        out = np.empty(total, dtype=np.int64)
        index_to_start(np.arange(total, dtype=np.int64), cum, ep_start, out)
        return out

    def sample_segments(self, batch_size: int, length: int, rng: RngLike = None, task: str | None = None,
                        replace: bool = True) -> np.ndarray:
        """Flat start indices of ``batch_size`` segments of ``length`` steps, each inside one episode.

        Starts are uniform over all valid (episode, offset) positions of the
        task (all tasks when ``task`` is ``None``), so an episode of ``n >= length``
        steps is picked with weight ``n - length + 1``; shorter episodes are
        skipped. ``replace=False`` returns distinct starts.
        """
        batch_size = check_count("batch_size", batch_size)
        length = check_length(length)
        rng = as_rng(rng)
        task_key = _ALL if task is None else task
        cum, ep_start, _ = self._start_space(length, task_key)
        total = int(cum[-1]) if cum.size else 0
        if total == 0:
            raise self._no_segments(length, task_key)
        if not replace and batch_size > total:
            raise TrajectoryError(f"cannot draw {batch_size} distinct segments of length {length}: "
                                  f"only {total} valid starts")
        u = (rng.integers(0, total, size=batch_size, dtype=np.int64) if replace
             else rng.choice(total, size=batch_size, replace=False).astype(np.int64))
        out = np.empty(batch_size, dtype=np.int64)
        index_to_start(u, cum, ep_start, out)
        return out

    def sample_segment_pairs(self, num_pairs: int, length: int, rng: RngLike = None, replace: bool = True,
                             same_task: bool = True, task: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Start indices ``(starts_a, starts_b)`` of ``num_pairs`` pairs of segments; ``a != b`` in every pair.

        ``replace=True``: ``a`` is uniform over the valid starts (of tasks with
        at least two, when ``same_task``) and ``b`` uniform over the other valid
        starts (of ``a``'s task when ``same_task``). ``replace=False``: no start
        appears twice among all ``2 * num_pairs`` segments; the pairs are a
        uniform random choice among all ways of pairing distinct starts (within
        tasks when ``same_task``), in random order. ``task`` restricts to one task.
        """
        num_pairs = check_count("num_pairs", num_pairs)
        length = check_length(length)
        rng = as_rng(rng)
        task_key = _ALL if task is None else task
        cum, ep_start, ep_tids = self._start_space(length, task_key, tasks_first=True)
        total = int(cum[-1]) if cum.size else 0
        if total == 0:
            raise self._no_segments(length, task_key)
        # Per-task blocks of the (task-ordered) start index space.
        if same_task:
            counts = np.diff(cum, prepend=0)
            per_task = np.bincount(ep_tids, weights=counts, minlength=len(self._task_names)).astype(np.int64)
        else:
            per_task = np.array([total], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(per_task)[:-1]))

        if replace:
            ok = per_task >= 2
            if num_pairs and not ok.any():
                raise self._no_segments(length, task_key, need="; pairs need two distinct segments"
                                        + (" of one task" if same_task else ""))
            elig = np.where(ok, per_task, 0)
            ecum = np.cumsum(elig)
            u = rng.integers(0, int(ecum[-1]) if num_pairs else 1, size=num_pairs, dtype=np.int64)
            blk = np.searchsorted(ecum, u, side="right")
            local_a = u - (ecum[blk] - elig[blk])
            j = rng.integers(0, per_task[blk] - 1) if num_pairs else np.zeros(0, dtype=np.int64)
            local_b = j + (j >= local_a)
            ua, ub = offsets[blk] + local_a, offsets[blk] + local_b
        else:
            room = per_task // 2
            if num_pairs > int(room.sum()):
                raise TrajectoryError(
                    f"cannot draw {num_pairs} pairs without replacement: segments of length {length} have only "
                    f"{total} distinct starts" + (f", enough for {int(room.sum())} same-task pairs" if same_task else "")
                )
            ks = (rng.multivariate_hypergeometric(room, num_pairs, method="marginals") if room.size > 1
                  else np.array([num_pairs]))
            ua_parts, ub_parts = [], []
            for t in np.flatnonzero(ks):
                loc = rng.choice(per_task[t], size=2 * ks[t], replace=False).astype(np.int64) + offsets[t]
                ua_parts.append(loc[0::2])
                ub_parts.append(loc[1::2])
            ua = np.concatenate(ua_parts) if ua_parts else np.zeros(0, dtype=np.int64)
            ub = np.concatenate(ub_parts) if ub_parts else np.zeros(0, dtype=np.int64)
            perm = rng.permutation(num_pairs)
            ua, ub = ua[perm], ub[perm]
        sa = np.empty(num_pairs, dtype=np.int64)
        sb = np.empty(num_pairs, dtype=np.int64)
        index_to_start(np.ascontiguousarray(ua, dtype=np.int64), cum, ep_start, sa)
        index_to_start(np.ascontiguousarray(ub, dtype=np.int64), cum, ep_start, sb)
        return sa, sb

    def _check_starts(self, starts: Any, length: int) -> np.ndarray:
        arr = as_numpy(starts)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise TrajectoryError(f"starts must be a 1-D integer array, got shape {arr.shape}, dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (arr.min() < 0 or arr.max() + length > self._num_steps):
            raise TrajectoryError(f"segment starts must lie in [0, {self._num_steps - length}] for length {length} "
                                  f"in a store of {self._num_steps} steps; got [{arr.min()}, {arr.max()}]")
        return arr

    def gather_segments(self, starts: Any, length: int, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Segments as ``{field: (B, length, ...)}``: observations (a dict for dict obs), actions, rewards, extras.

        ``fields`` restricts which fields are gathered. Starts are range-checked
        but not checked to lie inside one episode (see :meth:`episode_of`).
        """
        self._require_data()
        length = check_length(length)
        starts = self._check_starts(starts, length)
        names = (*_CORE_FIELDS, *self._extras) if fields is None else tuple(fields)
        out: dict[str, Any] = {}
        for name in names:
            if name == "observations":
                out[name] = map_obs(self._obs, lambda a: gather(a[: self._num_steps], starts, length))  # type: ignore
            elif name == "actions":
                out[name] = gather(self._actions[: self._num_steps], starts, length)  # type: ignore[index]
            elif name == "rewards":
                out[name] = gather(self._rewards[: self._num_steps], starts, length)  # type: ignore[index]
            elif name in self._extras:
                out[name] = gather(self._extras[name][: self._num_steps], starts, length)
            else:
                raise TrajectoryError(f"unknown field {name!r}; fields are {[*_CORE_FIELDS, *self._extras]}")
        return out

    def score_segments(self, starts: Any, length: int, score_fn: ScoreFn, chunk_size: int = 4096) -> np.ndarray:
        """``score_fn`` applied to the gathered segments, ``chunk_size`` at a time; float64 ``(B,)``.

        Only the fields named by ``score_fn.fields`` are gathered when it has that attribute.
        """
        starts = self._check_starts(starts, check_length(length))
        fields = getattr(score_fn, "fields", None)
        out = np.empty(starts.shape[0], dtype=np.float64)
        for i in range(0, starts.shape[0], max(1, int(chunk_size))):
            chunk = starts[i: i + chunk_size]
            s = np.asarray(as_numpy(score_fn(self.gather_segments(chunk, length, fields))), dtype=np.float64)
            if s.shape != chunk.shape:
                raise TrajectoryError(f"score_fn must return one score per segment: expected shape {chunk.shape}, "
                                      f"got {s.shape}")
            out[i: i + chunk.shape[0]] = s
        return out

    def label_pairs(self, starts_a: Any, starts_b: Any, length: int, score_fn: ScoreFn,
                    chunk_size: int = 4096) -> np.ndarray:
        """Labels of pairs by a scripted teacher: 1.0 if ``a`` scores higher, 0.0 if lower, 0.5 on exact ties
        (:func:`zoo.datasets.teachers.labels_from_scores`)."""
        from zoo.datasets.teachers import labels_from_scores  # datasets build on buffers, not the reverse

        a = self.score_segments(starts_a, length, score_fn, chunk_size)
        b = self.score_segments(starts_b, length, score_fn, chunk_size)
        return labels_from_scores(a, b)


class _AllTasks:
    def __repr__(self) -> str:
        return "<all tasks>"


_ALL: Any = _AllTasks()
