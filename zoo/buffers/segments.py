"""Segments over flat per-step arrays: the numba index kernels, the gather, and the array helpers shared by
:class:`~zoo.buffers.TrajectoryStore` and :class:`~zoo.datasets.PreferenceDataset`.

A segment is ``length`` consecutive rows of a flat array, named by the row of
its first step. :func:`index_to_start` turns uniform draws over a
cumulative count of valid starts into segment starts, :func:`episode_of`
finds the episode (sorted start offsets) of a step, and :func:`gather`
stacks segments with ``np.take``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import numpy as np
from numba import njit

from zoo.errors import TrajectoryError

__all__ = ["Obs", "RngLike", "as_numpy", "as_rng", "check_count", "check_length", "episode_of", "gather",
           "index_to_start", "map_obs"]

Obs = Union[np.ndarray, dict[str, np.ndarray]]
RngLike = Union[np.random.Generator, int, None]


# --------------------------------------------------------------------------- numba kernels


@njit(cache=True)
def index_to_start(u, cum, ep_start, out):
    """Map ``u[j]`` in ``[0, cum[-1])`` to a flat segment start.

    ``cum`` is the inclusive cumulative count of valid starts per (ordered)
    episode; episode ``e`` owns indices ``[cum[e-1], cum[e])`` whose offsets
    within it are ``u - cum[e-1]``.
    """
    n = cum.shape[0]
    for j in range(u.shape[0]):
        x = u[j]
        lo, hi = 0, n - 1
        while lo < hi:  # first e with cum[e] > x
            mid = (lo + hi) // 2
            if cum[mid] > x:
                hi = mid
            else:
                lo = mid + 1
        prev = cum[lo - 1] if lo > 0 else 0
        out[j] = ep_start[lo] + (x - prev)


@njit(cache=True)
def episode_of(steps, ep_start, out):
    """``out[j]`` = index of the episode (sorted ``ep_start``) that contains flat step ``steps[j]``."""
    n = ep_start.shape[0]
    for j in range(steps.shape[0]):
        x = steps[j]
        lo, hi = 0, n  # last e with ep_start[e] <= x
        while lo < hi:
            mid = (lo + hi) // 2
            if ep_start[mid] <= x:
                lo = mid + 1
            else:
                hi = mid
        out[j] = lo - 1


def gather(array: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Segments ``array[s:s+length]`` for each ``s`` in ``starts``, stacked to ``(B, length, ...)``.

    ``starts`` must already be range-checked. Uses ``np.take`` on the row
    indices: measured here (B = 96 and 1024 segments of 64 steps; rows of
    1, 4, 39 float32 and 64x64x3 uint8) it was as fast as a numba byte-copy
    kernel for image rows and up to 2x faster for small rows.
    """
    starts = np.asarray(starts, dtype=np.int64)
    rows = starts[:, None] + np.arange(length, dtype=np.int64)
    return np.take(array, rows, axis=0)


# --------------------------------------------------------------------------- helpers


def as_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_rng(rng: RngLike) -> np.random.Generator:
    """A numpy ``Generator`` from a generator, a seed or None."""
    return np.random.default_rng(rng)


def check_length(length: Any) -> int:
    """A segment length as an int >= 1, else a :class:`TrajectoryError`."""
    if isinstance(length, (bool, np.bool_)) or not isinstance(length, (int, np.integer)) or length < 1:
        raise TrajectoryError(f"segment length must be a positive int, got {length!r}")
    return int(length)


def check_count(name: str, n: Any) -> int:
    """A count (``name`` in the message) as an int >= 0, else a :class:`TrajectoryError`."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
        raise TrajectoryError(f"{name} must be a non-negative int, got {n!r}")
    return int(n)


def map_obs(obs: Obs, fn: Callable[[np.ndarray], np.ndarray]) -> Obs:
    """``fn`` applied to an observation array, or to each array of a dict of them."""
    return {k: fn(v) for k, v in obs.items()} if isinstance(obs, dict) else fn(obs)

