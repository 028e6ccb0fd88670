"""Sum and min segment trees over leaf priorities, as numba kernels (proportional prioritization).

The trees are flat float64 arrays of size ``2 * size`` (``size`` a power of
two, leaves at ``size + i``, root at 1): updating a leaf or drawing an index
for a prefix sum costs ``O(log size)``. Used by
:class:`~zoo.buffers.PrioritizedReplayBuffer` (Schaul et al., 2016).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _update(sum_tree, min_tree, leaves, values):
    size = sum_tree.shape[0] // 2
    for j in range(leaves.shape[0]):
        i = leaves[j] + size
        sum_tree[i] = values[j]
        min_tree[i] = values[j] if values[j] > 0.0 else np.inf
        i //= 2
        while i >= 1:
            sum_tree[i] = sum_tree[2 * i] + sum_tree[2 * i + 1]
            min_tree[i] = min(min_tree[2 * i], min_tree[2 * i + 1])
            i //= 2


@njit(cache=True)
def _find_prefix(sum_tree, targets, out):
    """For each target u in [0, total), the leaf i with prefix(i) <= u < prefix(i + 1); zero leaves are never hit."""
    size = sum_tree.shape[0] // 2
    for j in range(targets.shape[0]):
        u = targets[j]
        i = 1
        while i < size:
            left = 2 * i
            if sum_tree[left + 1] <= 0.0 or (u < sum_tree[left] and sum_tree[left] > 0.0):
                i = left
            else:
                u -= sum_tree[left]
                i = left + 1
        out[j] = i - size


@njit(cache=True)
def _stratified_targets(total, uniforms, out):
    """One target per equal-width stratum of [0, total), as in the PER paper's sampling."""
    n = uniforms.shape[0]
    width = total / n
    for j in range(n):
        u = (j + uniforms[j]) * width
        out[j] = min(u, total * (1.0 - 1e-12))


class SumTree:
    """Priorities of ``capacity`` leaves with ``O(log n)`` update, total, minimum and prefix-sum sampling."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        size = 1
        while size < capacity:
            size *= 2
        self._sum = np.zeros(2 * size, dtype=np.float64)
        self._min = np.full(2 * size, np.inf, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self._sum[1])

    @property
    def min(self) -> float:
        """Smallest non-zero priority (inf when empty)."""
        return float(self._min[1])

    def __getitem__(self, leaves) -> np.ndarray:
        return self._sum[np.asarray(leaves) + self._sum.shape[0] // 2]

    def update(self, leaves: np.ndarray, priorities: np.ndarray) -> None:
        leaves = np.ascontiguousarray(leaves, dtype=np.int64).ravel()
        priorities = np.ascontiguousarray(priorities, dtype=np.float64).ravel()
        if leaves.shape != priorities.shape:
            raise ValueError(f"got {leaves.size} leaves but {priorities.size} priorities")
        if leaves.size and (leaves.min() < 0 or leaves.max() >= self.capacity):
            raise IndexError(f"leaf indices must lie in [0, {self.capacity}), got {leaves.min()}..{leaves.max()}")
        if not np.all(np.isfinite(priorities)) or np.any(priorities < 0):
            raise ValueError("priorities must be finite and non-negative")
        _update(self._sum, self._min, leaves, priorities)

    def sample(self, batch_size: int, rng: np.random.Generator, stratified: bool = True) -> np.ndarray:
        """Leaves drawn with probability proportional to their priority."""
        if self.total <= 0.0:
            raise ValueError("cannot sample from a sum tree whose priorities are all zero")
        uniforms = rng.random(batch_size)
        targets = np.empty(batch_size, dtype=np.float64)
        if stratified:
            _stratified_targets(self.total, uniforms, targets)
        else:
            np.minimum(uniforms * self.total, self.total * (1.0 - 1e-12), out=targets)
        out = np.empty(batch_size, dtype=np.int64)
        _find_prefix(self._sum, targets, out)
        return out
