"""What APPO's learner trains on: a rollout (or some of its env columns) with per-step extras, and its storage.

A :class:`RolloutBatch` holds the fields of a :class:`~zoo.rollout.Rollout`, time-major ``(T, N, ...)``,
plus ``extras``: per-step tensors ``(T, N, ...)`` that the learner's ``on_rollout`` hook may add (e.g. ONI's
intrinsic-reward inputs) and that every minibatch carries along (``columns``). In asynchronous mode each
collected rollout is copied into one of a few preallocated slots (:meth:`RolloutBatch.copy_`), so that the
collector can fill its own storage again while the learner trains on the copy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from zoo.recurrent import State
from zoo.rollout import Obs, Rollout

_STEP_FIELDS = ("obs", "actions", "log_probs", "values", "rewards", "terminated", "truncated", "bootstrap_values",
                "episode_starts", "policy_versions", "states")
_NEXT_FIELDS = ("next_obs", "next_state", "next_episode_start")


def _tree(fn: Callable[[torch.Tensor], torch.Tensor], x: Any) -> Any:
    """``fn`` over a tensor, a dict or tuple of tensors, or None."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, dict):
        return {k: fn(v) for k, v in x.items()}
    return tuple(fn(v) for v in x)


def _tree_copy_(dst: Any, src: Any) -> None:
    if isinstance(dst, torch.Tensor):
        dst.copy_(src)
    elif isinstance(dst, dict):
        for k in dst:
            dst[k].copy_(src[k])
    elif dst is not None:
        for d, s in zip(dst, src):
            d.copy_(s)


@dataclass
class RolloutBatch:
    """``T x N`` steps of experience: ``obs[t]`` (a tensor or dict of tensors), the behaviour policy's
    ``actions``, ``log_probs`` and ``values``, the env's ``rewards``, ``terminated`` / ``truncated``, the
    ``bootstrap_values`` of truncated episodes, ``episode_starts``, ``policy_versions`` (the version that chose
    each action), the recurrent ``states`` seen before acting; ``next_obs`` / ``next_state`` /
    ``next_episode_start`` after the last step; ``extras`` (name -> ``(T, N, ...)`` tensor)."""

    obs: Obs
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    bootstrap_values: torch.Tensor
    episode_starts: torch.Tensor
    policy_versions: torch.Tensor
    states: State | None
    next_obs: Obs
    next_state: State | None
    next_episode_start: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_envs(self) -> int:
        return self.rewards.shape[1]

    @classmethod
    def from_rollout(cls, rollout: Rollout) -> RolloutBatch:
        """The rollout's fields (views: no copy); it must come from a recurrent collector."""
        if rollout.states is None or rollout.next_episode_start is None:
            raise ValueError("APPO trains on recurrent rollouts: build the collector with initial_state=...")
        return cls(**{name: getattr(rollout, name) for name in _STEP_FIELDS + _NEXT_FIELDS})

    def clone(self) -> RolloutBatch:
        """Storage of its own (the slot a collected rollout is copied into)."""
        values = {f.name: _tree(torch.clone, getattr(self, f.name)) for f in dataclasses.fields(self)}
        return RolloutBatch(**values)

    def copy_(self, src: RolloutBatch | Rollout) -> RolloutBatch:
        """Copy ``src``'s fields into this storage (same shapes); the extras start empty."""
        for name in _STEP_FIELDS + _NEXT_FIELDS:
            _tree_copy_(getattr(self, name), getattr(src, name))
        self.extras = {}
        return self

    def columns(self, index: torch.Tensor) -> RolloutBatch:
        """The env columns ``index`` (all steps of those envs), extras included."""
        steps = {name: _tree(lambda x: x[:, index], getattr(self, name)) for name in _STEP_FIELDS}
        after = {name: _tree(lambda x: x[index], getattr(self, name)) for name in _NEXT_FIELDS}
        extras = {k: v[:, index] for k, v in self.extras.items()}
        return RolloutBatch(**steps, **after, extras=extras)

    def check_extras(self) -> None:
        """Every extra must be a ``(T, N, ...)`` tensor (so that minibatches can carry it)."""
        for name, value in self.extras.items():
            if not isinstance(value, torch.Tensor) or tuple(value.shape[:2]) != (self.num_steps, self.num_envs):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"rollout.extras[{name!r}] must be a tensor of leading shape "
                                 f"({self.num_steps}, {self.num_envs}) (steps x envs), got {shape}")
