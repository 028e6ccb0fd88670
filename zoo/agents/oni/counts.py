"""Per-episode message counts ``N(m_t)``, the denominator of ONI's intrinsic reward ``r_int(m_t) / N(m_t)^beta``.

``N(m_t)`` is how often the message of observation ``s_t`` (the one before the action) has appeared in the
current episode, this step included: 1 the first time. Episodes span several rollouts, so a
:class:`MessageCounter` keeps each env's counts between calls. As the reference's ``MessageWrapper``, it keys
on the raw 256 bytes and counts every message alike, the empty one included.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from zoo.agents.oni.messages import MESSAGE_LEN, hash_rows, message_rows
from zoo.errors import CheckpointError, ConfigError

__all__ = ["MessageCounter"]


@njit(cache=True, inline="always")
def _put(keys, counts, stamp, gen, live, b, h, add):
    """Add ``add`` to env ``b``'s count of hash ``h`` (linear probing; a slot is live when its stamp is the env's
    episode stamp, so that a new episode empties a table in O(1)); returns the new count."""
    mask = keys.shape[1] - 1
    i = h & mask
    while True:
        if stamp[b, i] != gen[b]:
            stamp[b, i] = gen[b]
            keys[b, i] = h
            counts[b, i] = add
            live[b] += 1
            return add
        if keys[b, i] == h:
            counts[b, i] += add
            return counts[b, i]
        i = (i + 1) & mask


@njit(cache=True)
def _count(hashes, starts, keys, counts, stamp, gen, live):
    """Counts ``(T, B)`` of the message hashes in time order, updating the per-env tables in place."""
    steps, envs = hashes.shape
    out = np.empty((steps, envs), np.int64)
    for b in range(envs):
        for t in range(steps):
            if starts[t, b]:
                gen[b] += 1
                live[b] = 0
            out[t, b] = _put(keys, counts, stamp, gen, live, b, hashes[t, b], 1)
    return out


@njit(cache=True)
def _rehash(keys, counts, stamp, gen, capacity):
    """The live entries of the tables moved into tables of ``capacity`` (a power of two) slots per env."""
    envs = keys.shape[0]
    new_keys = np.zeros((envs, capacity), np.int64)
    new_counts = np.zeros((envs, capacity), np.int64)
    new_stamp = np.zeros((envs, capacity), np.int64)
    live = np.zeros(envs, np.int64)
    for b in range(envs):
        for i in range(keys.shape[1]):
            if stamp[b, i] == gen[b]:
                _put(new_keys, new_counts, new_stamp, gen, live, b, keys[b, i], counts[b, i])
    return new_keys, new_counts, new_stamp, live


@njit(cache=True)
def _insert(keys, counts, stamp, gen, live, env, hashes, values):
    for i in range(env.shape[0]):
        _put(keys, counts, stamp, gen, live, env[i], hashes[i], values[i])


class MessageCounter:
    """Running per-episode message counts for ``num_envs`` environments.

    ``update(messages, episode_starts)`` takes a rollout's messages ``(T, B, 256)`` (uint8) and episode starts
    ``(T, B)`` (True where ``s_t`` opens an episode), in time order, and returns ``N`` ``(T, B)`` (int64, on the
    messages' device). State carries to the next call; ``state_dict()`` is tensors only. Messages are told apart
    by a 64-bit hash of their bytes (:func:`zoo.agents.oni.messages.hash_rows`), each row hashed once, and
    counted in per-env hash tables by a compiled (numba) loop.
    """

    def __init__(self, num_envs: int):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ConfigError(f"num_envs must be a positive int, got {num_envs!r}")
        self.num_envs = num_envs
        self.reset()

    def update(self, messages: torch.Tensor | np.ndarray, episode_starts: torch.Tensor | np.ndarray) -> torch.Tensor:
        rows, lead = message_rows(messages)
        if len(lead) != 2 or lead[1] != self.num_envs:
            raise ValueError(f"messages must have shape (T, {self.num_envs}, {MESSAGE_LEN}) (a rollout of this "
                             f"counter's {self.num_envs} envs), got {(*lead, MESSAGE_LEN)}")
        starts = episode_starts.detach().cpu().numpy() if isinstance(episode_starts, torch.Tensor) \
            else np.asarray(episode_starts)
        if starts.shape != lead:
            raise ValueError(f"episode_starts must have shape {lead} (one flag per message), got {starts.shape}")
        self._reserve(int(self._live.max()) + lead[0])
        hashes = hash_rows(np.ascontiguousarray(rows)).reshape(lead)
        counts = _count(hashes, np.ascontiguousarray(starts, dtype=np.bool_), self._keys, self._counts,
                        self._stamp, self._gen, self._live)
        device = messages.device if isinstance(messages, torch.Tensor) else torch.device("cpu")
        return torch.from_numpy(counts).to(device)

    def _reserve(self, entries: int) -> None:
        """Grow the tables so that ``entries`` per env keep them at most half full."""
        capacity = self._keys.shape[1]
        if 2 * entries <= capacity:
            return
        while 2 * entries > capacity:
            capacity *= 2
        self._keys, self._counts, self._stamp, self._live = _rehash(self._keys, self._counts, self._stamp,
                                                                    self._gen, capacity)

    def reset(self) -> None:
        """Forget every env's episode (the next message of each counts 1)."""
        self._keys = np.zeros((self.num_envs, 64), np.int64)
        self._counts = np.zeros_like(self._keys)
        self._stamp = np.zeros_like(self._keys)
        self._gen = np.ones(self.num_envs, np.int64)
        self._live = np.zeros(self.num_envs, np.int64)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The current episodes' counts as tensors: ``env``, message ``hash`` and ``counts``, each ``(K,)``."""
        env, slot = np.nonzero(self._stamp == self._gen[:, None])
        return {"num_envs": torch.tensor(self.num_envs, dtype=torch.int64), "env": torch.from_numpy(env.copy()),
                "hash": torch.from_numpy(self._keys[env, slot].copy()),
                "counts": torch.from_numpy(self._counts[env, slot].copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = {"num_envs", "env", "hash", "counts"} - set(state)
        if missing:
            raise CheckpointError(f"the message counter's state lacks {sorted(missing)}; save it with state_dict()")
        if int(state["num_envs"]) != self.num_envs:
            raise CheckpointError(f"the message counter's state is for {int(state['num_envs'])} envs, this counter "
                                  f"has {self.num_envs}: build it with MessageCounter({int(state['num_envs'])})")
        env, keys, counts = (state[k].to(torch.int64).numpy() for k in ("env", "hash", "counts"))
        if not env.shape == keys.shape == counts.shape or env.ndim != 1:
            raise CheckpointError(f"the message counter's state is inconsistent: env {env.shape}, hash "
                                  f"{keys.shape}, counts {counts.shape}")
        if len(env) and not 0 <= env.min() <= env.max() < self.num_envs:
            raise CheckpointError(f"the message counter's state names envs outside [0, {self.num_envs})")
        self.reset()
        self._reserve(int(np.bincount(env, minlength=self.num_envs).max()) if len(env) else 0)
        _insert(self._keys, self._counts, self._stamp, self._gen, self._live, env, keys, counts)
