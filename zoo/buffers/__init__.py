"""Numba-compiled storage and kernels.

- :class:`ReplayBuffer`, :class:`PrioritizedReplayBuffer`: transitions from
  parallel envs, n-step returns at sample time, a memory-saving mode.
- :class:`TrajectoryStore`, :class:`PreferenceDataset`: whole episodes,
  fixed-length segments and labelled segment pairs (CPL, PARL).
- Kernels (numba for numpy data, torch for device data): :func:`discounted_returns`,
  :func:`gae`, :func:`nstep_targets`, :func:`vtrace`.
"""

from zoo.buffers.kernels import discounted_returns, gae, nstep_targets, vtrace
from zoo.buffers.replay import PrioritizedReplayBuffer, ReplayBuffer, ReplaySample
from zoo.buffers.sumtree import SumTree
from zoo.buffers.trajectories import PreferenceDataset, TrajectoryStore, regret_teacher, reward_sum_teacher

__all__ = ["ReplayBuffer", "PrioritizedReplayBuffer", "ReplaySample", "SumTree", "TrajectoryStore",
           "PreferenceDataset", "regret_teacher", "reward_sum_teacher", "discounted_returns", "gae",
           "nstep_targets", "vtrace"]
