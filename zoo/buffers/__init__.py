"""Numba-compiled storage.

- :class:`ReplayBuffer`, :class:`PrioritizedReplayBuffer`: transitions from
  parallel envs, n-step returns at sample time, a memory-saving mode.
- :class:`TrajectoryStore`: whole episodes and fixed-length segments (CPL, PARL);
  the segment kernels are in :mod:`zoo.buffers.segments`.

Re-exported for convenience (their code lives elsewhere): the return/advantage
estimators of :mod:`zoo.returns` (:func:`discounted_returns`, :func:`gae`,
:func:`nstep_targets`, :func:`vtrace`) and, from :mod:`zoo.datasets`,
:class:`PreferenceDataset`, :func:`regret_teacher` and :func:`reward_sum_teacher`.
"""

from zoo.buffers.replay import PrioritizedReplayBuffer, ReplayBuffer, ReplaySample
from zoo.buffers.sumtree import SumTree
from zoo.buffers.trajectories import DEFAULT_TASK, TrajectoryStore
from zoo.returns import discounted_returns, gae, nstep_targets, vtrace

#: names served from zoo.datasets on first access (zoo.datasets imports zoo.buffers, so not at import time)
_FROM_DATASETS = ("PreferenceDataset", "regret_teacher", "reward_sum_teacher")

__all__ = ["ReplayBuffer", "PrioritizedReplayBuffer", "ReplaySample", "SumTree", "TrajectoryStore", "DEFAULT_TASK",
           *_FROM_DATASETS, "discounted_returns", "gae", "nstep_targets", "vtrace"]


def __getattr__(name: str):
    if name in _FROM_DATASETS:
        import zoo.datasets

        return getattr(zoo.datasets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
