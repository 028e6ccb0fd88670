"""Preference datasets: labelled pairs of segments and their file format.

:class:`PreferenceDataset` holds pairs of segments over flat observation and
action arrays, with labels in ``{0, 0.5, 1}`` (or any soft label in
``[0, 1]``): ``1.0`` means segment ``a`` is preferred, ``0.0`` segment ``b``,
``0.5`` a tie. It is built from a :class:`~zoo.buffers.TrajectoryStore` with a
scripted teacher (:mod:`zoo.datasets.teachers`), or from the user's own
arrays, and is saved as a compressed ``.npz`` that is loaded with
``allow_pickle=False`` and validated field by field.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from zoo.buffers.segments import Obs, RngLike, as_numpy, as_rng, check_count, check_length, gather, map_obs
from zoo.buffers.trajectories import TrajectoryStore
from zoo.datasets.teachers import ScoreFn, labels_from_scores, teacher_name
from zoo.errors import PreferenceDatasetError, TrajectoryError

__all__ = ["FORMAT", "FORMAT_VERSION", "PreferenceDataset", "PreferenceDatasetError", "to_torch"]

FORMAT = "zoo.PreferenceDataset"
"""Value of the ``format`` field that marks a saved :class:`PreferenceDataset`."""
FORMAT_VERSION = 1


def to_torch(batch: Mapping[str, Any], device: Any = "cpu") -> dict[str, Any]:
    """Batch of numpy arrays (nested dicts allowed) -> torch tensors on ``device`` (dtypes kept)."""
    import torch

    def conv(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: conv(x) for k, x in v.items()}
        return torch.from_numpy(np.ascontiguousarray(v)).to(device)

    return {k: conv(v) for k, v in batch.items()}


def _json_dict(metadata: Any, what: str = "metadata") -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise PreferenceDatasetError(f"{what} must be a dict, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(dict(metadata), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise PreferenceDatasetError(f"{what} must be JSON-serialisable: {e}") from None


class PreferenceDataset:
    """Pairs of segments over flat observation/action arrays, with preference labels.

    Pair ``k`` compares ``observations[starts_a[k] : starts_a[k] + L]`` (and the
    same actions) with the segment at ``starts_b[k]``; ``labels[k]`` is 1.0
    when ``a`` is preferred, 0.0 when ``b`` is, 0.5 for a tie (soft labels in
    ``[0, 1]`` are allowed). Optional ``scores_a``/``scores_b`` keep the
    teacher's scores (for CPL's score mode).
    """

    def __init__(self, observations: Obs | Mapping[str, Any], actions: Any, starts_a: Any, starts_b: Any,
                 segment_length: int, labels: Any, metadata: Mapping[str, Any] | None = None,
                 scores_a: Any = None, scores_b: Any = None) -> None:
        E = PreferenceDatasetError
        if isinstance(segment_length, (bool, np.bool_)) or not isinstance(segment_length, (int, np.integer)) \
                or segment_length < 1:
            raise E(f"segment_length must be a positive int, got {segment_length!r}")
        L = int(segment_length)
        if isinstance(observations, Mapping):
            if not observations or not all(isinstance(k, str) for k in observations):
                raise E("observations: a dict of observations needs at least one entry and str keys")
            obs: Obs = {k: as_numpy(v) for k, v in observations.items()}
            obs_fields = [(f"observations[{k!r}]", v) for k, v in obs.items()]
        else:
            obs = as_numpy(observations)
            obs_fields = [("observations", obs)]
        act = as_numpy(actions)
        n = act.shape[0] if act.ndim else -1
        for name, arr in [*obs_fields, ("actions", act)]:
            if arr.dtype.kind == "O":
                raise E(f"{name}: object arrays are not supported")
            if arr.ndim == 0 or arr.shape[0] != n:
                raise E(f"{name}: expected leading size {n} (the number of steps in actions), got shape {arr.shape}")
        sa, sb = as_numpy(starts_a), as_numpy(starts_b)
        for name, arr in (("starts_a", sa), ("starts_b", sb)):
            if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
                raise E(f"{name}: expected a 1-D integer array, got shape {arr.shape}, dtype {arr.dtype}")
        if sa.shape != sb.shape:
            raise E(f"starts_b: expected shape {sa.shape} (as starts_a), got {sb.shape}")
        K = sa.shape[0]
        sa, sb = sa.astype(np.int64), sb.astype(np.int64)
        for name, arr in (("starts_a", sa), ("starts_b", sb)):
            if K and (arr.min() < 0 or arr.max() + L > n):
                bad = arr[(arr < 0) | (arr + L > n)][0]
                raise E(f"{name}: segment start {bad} out of range; starts must lie in [0, {n - L}] "
                        f"for segments of length {L} over {n} steps")
        lab = as_numpy(labels)
        if lab.shape != (K,):
            raise E(f"labels: expected shape ({K},), got {lab.shape}")
        if lab.dtype.kind not in "biuf":
            raise E(f"labels: expected a numeric dtype, got {lab.dtype}")
        lab = lab.astype(np.float32)
        if K and not (np.isfinite(lab).all() and lab.min() >= 0.0 and lab.max() <= 1.0):
            raise E("labels: values must lie in [0, 1] (1: a preferred, 0: b preferred, 0.5: tie)")
        if (scores_a is None) != (scores_b is None):
            raise E("scores_a and scores_b must be given together")
        scores: list[np.ndarray | None] = [None, None]
        if scores_a is not None:
            for i, (name, s) in enumerate((("scores_a", scores_a), ("scores_b", scores_b))):
                arr = as_numpy(s)
                if arr.shape != (K,) or arr.dtype.kind not in "biuf":
                    raise E(f"{name}: expected a numeric array of shape ({K},), got shape {arr.shape}, "
                            f"dtype {arr.dtype}")
                scores[i] = arr.astype(np.float32)
        self.observations = obs
        self.actions = act
        self.starts_a, self.starts_b = sa, sb
        self.segment_length = L
        self.labels = lab
        self.scores_a, self.scores_b = scores
        self.metadata = _json_dict(metadata)
        self._segments: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_arrays(cls, observations: Obs | Mapping[str, Any], actions: Any, starts_a: Any, starts_b: Any,
                    segment_length: int, labels: Any, metadata: Mapping[str, Any] | None = None,
                    scores_a: Any = None, scores_b: Any = None) -> PreferenceDataset:
        """Dataset from the user's own arrays in this layout (validated like a loaded file)."""
        return cls(observations, actions, starts_a, starts_b, segment_length, labels, metadata, scores_a, scores_b)

    # ---------------------------------------------------------------- building from a store
    @classmethod
    def from_store(cls, store: TrajectoryStore, num_pairs: int, length: int, teacher: ScoreFn,
                   rng: RngLike = None, regime: str = "dense", *, num_segments: int | None = None,
                   task: str | None = None, same_task: bool = True, compact: bool = True,
                   chunk_size: int = 4096, metadata: Mapping[str, Any] | None = None) -> PreferenceDataset:
        """Sample ``num_pairs`` labelled pairs of ``length``-step segments from ``store``.

        ``regime="sparse"``: disjoint fixed pairs, as CPL's "sparse" data: the
        ``2 * num_pairs`` segment starts are all distinct and each segment is in
        exactly one pair (:meth:`TrajectoryStore.sample_segment_pairs` with
        ``replace=False``).

        ``regime="dense"``: many comparisons per segment, as CPL's "dense" data:
        a pool of ``num_segments`` distinct segments (default
        ``max(2, ceil(num_pairs / 4))``, so each takes part in about 8
        comparisons) is drawn uniformly without replacement; the pool is walked
        in a random order, cyclically, to pick each pair's ``a`` (so every
        segment is ``a`` in ``floor`` or ``ceil`` of ``num_pairs / pool size``
        pairs), and ``b`` is uniform over the other pool segments (of the same
        task when ``same_task``; segments alone in their task are then left
        out). Each pool segment is scored once; the same pair may recur by chance.

        ``teacher`` maps gathered segments to scores (:func:`reward_sum_teacher`,
        :func:`regret_teacher`); labels follow :func:`labels_from_scores` and the
        scores are kept. ``compact=True`` keeps only the steps the segments
        cover (overlapping or touching segments share rows) and renumbers the
        starts. ``task`` restricts to one task; ``metadata`` is merged into the
        recorded metadata.
        """
        num_pairs = check_count("num_pairs", num_pairs)
        length = check_length(length)
        rng = as_rng(rng)
        if regime == "sparse":
            sa, sb = store.sample_segment_pairs(num_pairs, length, rng, replace=False, same_task=same_task, task=task)
            score_a = store.score_segments(sa, length, teacher, chunk_size)
            score_b = store.score_segments(sb, length, teacher, chunk_size)
            pool_size = 2 * num_pairs
        elif regime == "dense":
            m = max(2, math.ceil(num_pairs / 4)) if num_segments is None else check_count("num_segments", num_segments)
            pool = store.sample_segments(m, length, rng, task=task, replace=False)
            groups = store.task_of(pool) if same_task else np.zeros(m, dtype=np.int64)
            uniq, inv, sizes = np.unique(groups, return_inverse=True, return_counts=True)
            keep = sizes[inv] >= 2
            pool, inv = pool[keep], inv[keep]
            if num_pairs and pool.size == 0:
                raise TrajectoryError("dense regime: no two pool segments share a task; raise num_segments")
            order = np.argsort(inv, kind="stable")  # pool positions grouped by task
            pool, inv = pool[order], inv[order]
            sizes = np.bincount(inv, minlength=uniq.size)
            offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
            walk = rng.permutation(pool.size)
            a_idx = walk[np.arange(num_pairs) % max(pool.size, 1)] if num_pairs else np.zeros(0, dtype=np.int64)
            g = inv[a_idx]
            local_a = a_idx - offsets[g]
            j = rng.integers(0, sizes[g] - 1) if num_pairs else np.zeros(0, dtype=np.int64)
            b_idx = offsets[g] + j + (j >= local_a)
            perm = rng.permutation(num_pairs)
            a_idx, b_idx = a_idx[perm], b_idx[perm]
            scores = store.score_segments(pool, length, teacher, chunk_size)
            sa, sb, score_a, score_b = pool[a_idx], pool[b_idx], scores[a_idx], scores[b_idx]
            pool_size = int(pool.size)
        else:
            raise TrajectoryError(f"regime must be 'dense' or 'sparse', got {regime!r}")
        labels = labels_from_scores(score_a, score_b)

        used = np.unique(store.task_of(np.concatenate([sa, sb])))
        obs, act = store.observations, store.actions
        if compact:
            rows, sa, sb = _compact_rows(sa, sb, length)
            obs = map_obs(obs, lambda a: a[rows])
            act = act[rows]
        else:
            obs = map_obs(obs, np.array)
            act = np.array(act)
        meta: dict[str, Any] = {
            "source": "TrajectoryStore",
            "task": task,
            "tasks": [store.tasks[t] for t in used],
            "segment_length": length,
            "regime": regime,
            "num_pairs": num_pairs,
            "num_segments": pool_size,
            "same_task": bool(same_task),
            "teacher": teacher_name(teacher),
            "labels": "1.0: a preferred, 0.0: b preferred, 0.5: exact tie of teacher scores",
            "compacted": bool(compact),
        }
        meta.update(_json_dict(metadata))
        return cls(obs, act, sa, sb, length, labels, meta, score_a, score_b)

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_pairs(self) -> int:
        """Number of labelled pairs ``K``."""
        return len(self)

    @property
    def num_steps(self) -> int:
        """Number of rows in the flat observation/action arrays."""
        return int(self.actions.shape[0])

    def __repr__(self) -> str:
        return (f"PreferenceDataset(num_pairs={len(self)}, segment_length={self.segment_length}, "
                f"num_steps={self.num_steps}, regime={self.metadata.get('regime')!r})")

    def get(self, indices: Any) -> dict[str, Any]:
        """Pairs ``indices`` as ``{obs_a, act_a, obs_b, act_b, label[, score_a, score_b]}`` numpy arrays.

        ``obs_*`` are ``(B, L, ...)`` (a dict of such for dict observations).
        """
        idx = np.asarray(indices, dtype=np.int64)
        L = self.segment_length
        sa, sb = self.starts_a[idx], self.starts_b[idx]
        batch: dict[str, Any] = {
            "obs_a": map_obs(self.observations, lambda a: gather(a, sa, L)),
            "act_a": gather(self.actions, sa, L),
            "obs_b": map_obs(self.observations, lambda a: gather(a, sb, L)),
            "act_b": gather(self.actions, sb, L),
            "label": self.labels[idx],
        }
        if self.scores_a is not None:
            batch["score_a"] = self.scores_a[idx]
            batch["score_b"] = self.scores_b[idx]  # type: ignore[index]
        return batch

    def sample(self, batch_size: int, rng: RngLike = None) -> dict[str, Any]:
        """A batch of ``batch_size`` pairs drawn uniformly with replacement."""
        if len(self) == 0:
            raise PreferenceDatasetError("cannot sample from an empty preference dataset")
        return self.get(as_rng(rng).integers(0, len(self), size=check_count("batch_size", batch_size)))

    def segments(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct segments the pairs use: their starts and the teacher's score of each (needs scores)."""
        if self.scores_a is None:
            raise PreferenceDatasetError("this dataset keeps no teacher scores, so its segments cannot be re-paired")
        if self._segments is None:
            starts = np.concatenate([self.starts_a, self.starts_b])
            scores = np.concatenate([self.scores_a, self.scores_b])  # type: ignore[list-item]
            unique, first = np.unique(starts, return_index=True)
            self._segments = (unique, scores[first])
        return self._segments

    def sample_random_partners(self, batch_size: int, rng: RngLike = None) -> dict[str, Any]:
        """A batch of ``batch_size`` fresh pairs: two segments drawn uniformly (with replacement) from all of
        the dataset's segments, labelled by the teacher's scores as :func:`labels_from_scores` (CPL's reference
        sampling of dense data, where each segment meets a new random partner in every batch)."""
        starts, scores = self.segments()
        if starts.size == 0:
            raise PreferenceDatasetError("cannot sample from an empty preference dataset")
        rng = as_rng(rng)
        n = check_count("batch_size", batch_size)
        ia, ib = rng.integers(0, starts.size, size=n), rng.integers(0, starts.size, size=n)
        L = self.segment_length
        return {"obs_a": map_obs(self.observations, lambda a: gather(a, starts[ia], L)),
                "act_a": gather(self.actions, starts[ia], L),
                "obs_b": map_obs(self.observations, lambda a: gather(a, starts[ib], L)),
                "act_b": gather(self.actions, starts[ib], L),
                "label": labels_from_scores(scores[ia], scores[ib]),
                "score_a": scores[ia], "score_b": scores[ib]}

    def batches(self, batch_size: int, rng: RngLike = None, drop_last: bool = False) -> Iterator[dict[str, Any]]:
        """One pass over all pairs in batches (shuffled when ``rng`` is given, in order when it is ``None``)."""
        batch_size = check_count("batch_size", batch_size)
        if batch_size == 0:
            raise PreferenceDatasetError("batch_size must be positive")
        order = np.arange(len(self)) if rng is None else as_rng(rng).permutation(len(self))
        stop = len(self) - (len(self) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            yield self.get(order[i: i + batch_size])

    to_torch = staticmethod(to_torch)

    # ---------------------------------------------------------------- files
    def _fields(self) -> tuple[dict[str, np.ndarray], list[str] | None]:
        arrays: dict[str, np.ndarray] = {}
        if isinstance(self.observations, dict):
            keys = list(self.observations)
            for i, k in enumerate(keys):
                arrays[f"observations.{i}"] = self.observations[k]
        else:
            keys = None
            arrays["observations"] = self.observations
        arrays.update(actions=self.actions, starts_a=self.starts_a, starts_b=self.starts_b, labels=self.labels)
        if self.scores_a is not None:
            arrays.update(scores_a=self.scores_a, scores_b=self.scores_b)  # type: ignore[arg-type]
        return arrays, keys

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a compressed ``.npz`` at exactly ``path`` (atomically: temporary file, then rename)."""
        path = Path(path)
        arrays, keys = self._fields()
        header = {"version": FORMAT_VERSION, "segment_length": self.segment_length, "observation_keys": keys,
                  "has_scores": self.scores_a is not None}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, format=np.array(FORMAT), header=np.array(json.dumps(header)),
                                    metadata=np.array(json.dumps(self.metadata)), **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PreferenceDataset:
        """Read a file written by :meth:`save` (``allow_pickle=False``), validating marker, fields, shapes, ranges."""
        path = Path(path)
        E = PreferenceDatasetError

        def fail(msg: str) -> PreferenceDatasetError:
            return E(f"{path}: {msg}")

        try:
            npz = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise
        except ValueError as e:
            raise fail("not an .npz archive (it may be a pickle, which is never loaded)") from e
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise fail(f"not a readable .npz archive ({e})") from e
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise fail("is a single .npy array, not a zoo preference dataset (.npz)")
        with npz:
            names = set(npz.files)

            def read(name: str) -> np.ndarray:
                try:
                    return npz[name]
                except ValueError as e:
                    if "allow_pickle" in str(e) or "Object arrays" in str(e):
                        raise fail(f"field {name!r} holds pickled Python objects; refusing to load it") from e
                    raise fail(f"field {name!r} is corrupt ({e})") from e
                except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
                    raise fail(f"field {name!r} is corrupt ({type(e).__name__}: {e})") from e

            def read_str(name: str) -> str:
                arr = read(name)
                if arr.shape != () or arr.dtype.kind != "U":
                    raise fail(f"field {name!r} must be a string, got shape {arr.shape}, dtype {arr.dtype}")
                return str(arr[()])

            if "format" not in names:
                raise fail(f"not a zoo preference dataset: no 'format' marker (fields: {sorted(names)})")
            fmt = read_str("format")
            if fmt != FORMAT:
                raise fail(f"not a zoo preference dataset: format marker is {fmt!r}, expected {FORMAT!r}")
            for name in ("header", "metadata"):
                if name not in names:
                    raise fail(f"missing field {name!r}")
            try:
                header = json.loads(read_str("header"))
                metadata = json.loads(read_str("metadata"))
            except json.JSONDecodeError as e:
                raise fail(f"header or metadata is not valid JSON ({e})") from e
            if not isinstance(header, dict) or not isinstance(metadata, dict):
                raise fail("header and metadata must be JSON objects")
            if header.get("version") != FORMAT_VERSION:
                raise fail(f"unsupported format version {header.get('version')!r} (this zoo reads {FORMAT_VERSION})")
            keys = header.get("observation_keys")
            if keys is not None and (not isinstance(keys, list) or not keys
                                     or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys)):
                raise fail("header 'observation_keys' must be null or a non-empty list of distinct str")
            has_scores = bool(header.get("has_scores", False))
            obs_names = ["observations"] if keys is None else [f"observations.{i}" for i in range(len(keys))]
            required = [*obs_names, "actions", "starts_a", "starts_b", "labels"]
            if has_scores:
                required += ["scores_a", "scores_b"]
            for name in required:
                if name not in names:
                    raise fail(f"missing field {name!r}")
            extra = names - set(required) - {"format", "header", "metadata"}
            if extra:
                raise fail(f"unexpected fields {sorted(extra)}")
            arrays = {name: read(name) for name in required}
        obs: Obs = arrays["observations"] if keys is None else {
            k: arrays[f"observations.{i}"] for i, k in enumerate(keys)}
        try:
            return cls(obs, arrays["actions"], arrays["starts_a"], arrays["starts_b"], header.get("segment_length"),
                       arrays["labels"], metadata, arrays.get("scores_a"), arrays.get("scores_b"))
        except PreferenceDatasetError as e:
            raise fail(str(e)) from None


def _compact_rows(sa: np.ndarray, sb: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows covered by the segments (overlapping/touching ones merged) and the starts renumbered into them."""
    u = np.unique(np.concatenate([sa, sb]))
    if u.size == 0:
        return np.zeros(0, dtype=np.int64), sa, sb
    new_run = np.concatenate(([True], u[1:] > u[:-1] + length))
    run_start = u[new_run]
    run_end = np.maximum.reduceat(u, np.flatnonzero(new_run)) + length
    run_len = run_end - run_start
    run_off = np.concatenate(([0], np.cumsum(run_len)[:-1]))
    total = int(run_len.sum())
    rows = np.repeat(run_start - run_off, run_len) + np.arange(total, dtype=np.int64)

    def remap(s: np.ndarray) -> np.ndarray:
        r = np.searchsorted(run_start, s, side="right") - 1
        return run_off[r] + (s - run_start[r])

    return rows, remap(sa), remap(sb)
