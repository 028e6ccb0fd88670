"""Training checkpoints: what ``learn(..., checkpoint_path=...)`` writes now and then, and the training state in it.

A *training checkpoint* is :meth:`Agent.save(path, training_state=True) <zoo.agents.base.Agent.save>`: the
plain checkpoint (networks, optimizers, step count, schedule horizon, random generators, counters) plus a
companion safetensors part, listed in the checkpoint's manifest with its sha256 like any other part, that
holds what a run needs to go on where it stopped: the replay buffer's contents, the window of episode
statistics that ``return_mean`` is computed over, and the agents' other training counters
(:meth:`Agent.training_state`). The part is tensors plus a JSON skeleton in its header
(:func:`zoo.checkpoint.pack_state`): nothing is unpickled when it is read.

:class:`CheckpointSchedule` is held by one ``learn()`` call, like :class:`~zoo.agents.guard.NumericalGuard`:
at each report it writes a training checkpoint once ``checkpoint_every`` units of the budget or
``checkpoint_interval_s`` seconds have passed since the last one (whichever comes first), and once more when
``learn`` returns. Checkpoints are written at reports only, where every agent's state is consistent, so the
effective interval is at least the agent's report interval (a rollout for on-policy agents, an iteration for
language agents, ``max(1000, budget / 100)`` env steps for off-policy ones).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import safe_open
from safetensors.torch import save_file

from zoo.checkpoint import CompanionParts, CompanionWriter, _prepare_tensors, check_companion_file, pack_state, \
    unpack_state
from zoo.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from zoo.agents.base import Agent

#: the interval when ``learn`` is given a ``checkpoint_path`` and neither ``checkpoint_every`` nor
#: ``checkpoint_interval_s``
DEFAULT_CHECKPOINT_INTERVAL_S = 600.0
#: the manifest label of the training-state part
TRAINING_PART = "training"
_FORMAT = "zoo-training-state"


class CheckpointSchedule:
    """When one ``learn()`` call writes its training checkpoints (see the module docstring).

    ``path`` None disables it. ``every`` counts units of the agent's budget, ``interval_s`` seconds; either
    may be None (both None with a path: every :data:`DEFAULT_CHECKPOINT_INTERVAL_S` seconds).
    """

    def __init__(self, agent: "Agent", path: str | os.PathLike | None, every: int | None = None,
                 interval_s: float | None = None):
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ConfigError(f"checkpoint_every must be a positive integer ({agent.budget_unit}), got {every!r}")
        if interval_s is not None and (isinstance(interval_s, bool) or not isinstance(interval_s, (int, float))
                                       or not math.isfinite(interval_s) or interval_s <= 0):
            raise ConfigError(f"checkpoint_interval_s must be a positive, finite number of seconds, got "
                              f"{interval_s!r}")
        if path is None and (every is not None or interval_s is not None):
            raise ConfigError("checkpoint_every and checkpoint_interval_s need checkpoint_path= (the file the "
                              "training checkpoints are written to)")
        self.agent = agent
        self.path = None if path is None else Path(os.fspath(path)).expanduser().resolve()
        if self.path is not None and self.path.is_dir():
            raise ConfigError(f"checkpoint_path {str(self.path)!r} is a directory; pass a file path, e.g. "
                              f"{str(self.path / 'checkpoint.safetensors')!r}")
        if self.path is not None and every is None and interval_s is None:
            interval_s = DEFAULT_CHECKPOINT_INTERVAL_S
        self.every, self.interval_s = every, None if interval_s is None else float(interval_s)
        self._last_step, self._last_time = agent.num_timesteps, time.monotonic()
        self._written_at: int | None = None
        #: the step counts at which this call wrote checkpoints
        self.steps_written: list[int] = []

    def due(self) -> bool:
        """True when a checkpoint should be written at this report."""
        if self.path is None:
            return False
        steps = self.agent.num_timesteps - self._last_step
        return (self.every is not None and steps >= self.every) or \
            (self.interval_s is not None and time.monotonic() - self._last_time >= self.interval_s)

    def write(self) -> Path:
        """Write the training checkpoint now."""
        path = self.agent.save(self.path, training_state=True)
        self._last_step, self._last_time = self.agent.num_timesteps, time.monotonic()
        self._written_at = self.agent.num_timesteps
        self.steps_written.append(self.agent.num_timesteps)
        return path

    def finish(self) -> None:
        """The checkpoint of ``learn``'s end (unless one was written at this very step)."""
        if self.path is not None and self._written_at != self.agent.num_timesteps:
            self.write()


# --------------------------------------------------------------------------- the training-state part

def write_training_state(parts: CompanionWriter, state: dict[str, Any]) -> None:
    """Write ``state`` (a tree of tensors, numpy arrays, scalars and strings) as the checkpoint's training part:
    one safetensors file, its skeleton in the header."""
    base = parts.part(TRAINING_PART, "the training state (replay buffer, episode statistics, counters)")
    tensors, skeleton = pack_state(state, "state")
    save_file(_prepare_tensors(tensors), str(_file(base)),
              metadata={"format": _FORMAT, "skeleton": json.dumps(skeleton, separators=(",", ":"))})


def read_training_state(path: Path, parts: CompanionParts) -> dict[str, Any]:
    """The training state of the checkpoint at ``path`` (its part already checked against the manifest)."""
    base = parts.base(TRAINING_PART)
    if base is None:
        raise CheckpointError(f"checkpoint {str(path)!r} says it holds a training state but has no companion "
                              "manifest listing it; it was not written by this zoo's save()")
    file = _file(base)
    check_companion_file(path, file, "the training state")
    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        if meta.get("format") != _FORMAT:
            raise CheckpointError(f"checkpoint {str(path)!r}: its training-state part {file.name!r} is not a "
                                  f"{_FORMAT} file (format={meta.get('format')!r})")
        state = unpack_state(tensors, json.loads(meta["skeleton"]))
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001  (a corrupt part: safetensors, JSON or the skeleton)
        raise CheckpointError(f"checkpoint {str(path)!r}: its training-state part {file.name!r} is corrupt "
                              f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: its training state is not a record")
    return state


def _file(base: Path) -> Path:
    return base.with_name(base.name + ".safetensors")
