"""Replay buffers: preallocated numpy storage, numba kernels for gathering, n-step returns at sample time
(the kernel :func:`zoo.returns.nstep_return`).

Storage is laid out ``(slots, num_envs, ...)``: each env's transitions form
one column in time order, so n-step returns and the memory-saving mode can
walk forward in time. ``add`` takes a batch of ``num_envs`` transitions (numpy
arrays or torch tensors); ``sample`` returns torch tensors on the buffer's
device, staged through pinned memory when that device is a GPU.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Union

import gymnasium as gym
import numpy as np
import torch
from numba import njit

from zoo.buffers.sumtree import SumTree
from zoo.envs.host import observation_fields
from zoo.envs.vec import action_spec, torch_dtype
from zoo.returns import nstep_return
from zoo.utils.device import resolve_device

ArrayLike = Union[np.ndarray, torch.Tensor]
Obs = Union[torch.Tensor, dict[str, torch.Tensor]]


class ReplaySample(NamedTuple):
    """A batch of transitions. The TD target is ``rewards + discounts * V(next_observations)``.

    ``rewards`` is the (n-step) discounted reward sum; ``discounts`` is
    ``gamma**k`` for the ``k`` steps summed, or 0 where the episode terminated
    within them (truncation still bootstraps). ``indices`` identify the
    transitions (for priority updates); ``weights`` are importance-sampling
    weights (ones for uniform sampling).
    """

    observations: Obs
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: Obs
    discounts: torch.Tensor
    terminated: torch.Tensor
    indices: torch.Tensor
    weights: torch.Tensor


@njit(cache=True)
def _gather_rows(src, rows, out):
    """``out[j] = src[rows[j]]`` for 2-D arrays (a row is one transition's flattened field)."""
    width = src.shape[1]
    for j in range(rows.shape[0]):
        r = rows[j]
        for k in range(width):
            out[j, k] = src[r, k]


@njit(cache=True)
def _nstep(rewards, terminated, truncated, slots_idx, envs_idx, n, gamma, newest, num_slots,
           out_return, out_discount, out_terminated, out_boot_slot):
    """n-step reward sums for each sampled (slot, env)."""
    for j in range(slots_idx.shape[0]):
        total, discount, term, slot = nstep_return(rewards, terminated, truncated, slots_idx[j], envs_idx[j], n,
                                                   gamma, newest, num_slots)
        out_return[j] = total
        out_discount[j] = discount
        out_terminated[j] = term
        out_boot_slot[j] = slot


@njit(cache=True)
def _sample_flat(obs, next_obs, actions, rewards, terminated, truncated, draws, stored, num_envs, n, gamma,
                 newest, out_index, out_obs, out_next, out_actions, out_rewards, out_discounts, out_terminated):
    """One pass for the common case (array observations, next observations stored): draw uniform
    indices from random words, gather, and compute (n-step) returns."""
    num_slots = rewards.shape[0]
    width_obs, width_act = obs.shape[1], actions.shape[1]
    for j in range(draws.shape[0]):
        f = np.int64(draws[j] % np.uint64(stored))
        out_index[j] = f
        s, e = f // num_envs, f % num_envs
        for k in range(width_obs):
            out_obs[j, k] = obs[f, k]
        for k in range(width_act):
            out_actions[j, k] = actions[f, k]
        total, discount, term, slot = nstep_return(rewards, terminated, truncated, s, e, n, gamma, newest, num_slots)
        out_rewards[j] = total
        out_discounts[j] = discount
        out_terminated[j] = term
        b = slot * num_envs + e
        for k in range(width_obs):
            out_next[j, k] = next_obs[b, k]


def _interleaved(slots: int, envs: int, fields: list[tuple[tuple, Any]]) -> list[np.ndarray]:
    """Zeroed ``(slots, envs, *shape)`` arrays of the given dtypes, stored record by record in one block."""
    offsets, offset = [], 0
    for shape, dtype in fields:
        dtype = np.dtype(dtype)
        offset = -(-offset // dtype.itemsize) * dtype.itemsize
        offsets.append(offset)
        offset += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    row = -(-offset // 8) * 8
    block = np.zeros(slots * envs * row, dtype=np.uint8)
    views = []
    for (shape, dtype), off in zip(fields, offsets):
        dtype = np.dtype(dtype)
        inner = [int(np.prod(shape[i + 1:], dtype=np.int64)) * dtype.itemsize for i in range(len(shape))]
        views.append(np.ndarray((slots, envs, *shape), dtype=dtype, buffer=block, offset=off,
                                strides=(envs * row, row, *inner)))
    return views


def _as_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class ReplayBuffer:
    """A circular buffer of transitions from ``num_envs`` parallel envs.

    ``capacity`` counts transitions (rounded up to a multiple of ``num_envs``).
    ``n_step > 1`` makes ``sample`` return n-step returns computed by a numba
    kernel at sample time: sums stop at episode ends, a terminated episode
    does not bootstrap, a truncated one bootstraps from its true final
    observation. ``optimize_memory`` stores each observation once (the next
    observation is the following slot of the same env); the final observations
    of finished episodes go to a small side store, so the mode stays exact at
    episode boundaries and across the circular wrap.
    """

    def __init__(self, capacity: int, observation_space: gym.Space, action_space: gym.Space, num_envs: int = 1,
                 device: str | torch.device = "cpu", n_step: int = 1, gamma: float = 0.99,
                 optimize_memory: bool = False, seed: int | None = None):
        if not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be positive, got {num_envs}")
        if not isinstance(n_step, (int, np.integer)) or n_step < 1:
            raise ValueError(f"n_step must be an integer >= 1, got {n_step!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        self.num_envs = int(num_envs)
        self.num_slots = -(-int(capacity) // self.num_envs)
        self.capacity = self.num_slots * self.num_envs
        self.device = resolve_device(device)
        self.n_step, self.gamma, self.optimize_memory = int(n_step), float(gamma), bool(optimize_memory)
        self.rng = np.random.default_rng(seed)
        self.observation_space, self.action_space = observation_space, action_space
        self._obs_fields = observation_fields(observation_space)
        self._dict_obs = list(self._obs_fields) != [None]
        shape, dtype = action_spec(action_space)
        self._action_shape = shape
        self._action_dtype = np.int64 if dtype == torch.int64 else np.float32
        S, N = self.num_slots, self.num_envs
        self._fast_path = not self._dict_obs and not optimize_memory
        scalars = [(self._action_shape, self._action_dtype), ((), np.float32), ((), np.bool_), ((), np.bool_)]
        if self._fast_path:
            # One record per transition (obs, next obs, action, reward, flags side by side): a sampled
            # transition then costs a few neighbouring cache lines instead of one miss per field.
            (shp, dt), = self._obs_fields.values()
            views = _interleaved(S, N, [(shp, dt), (shp, dt)] + scalars)
            self.observations = {None: views[0]}
            self.next_observations = {None: views[1]}
            self.actions, self.rewards, self.terminated, self.truncated = views[2:]
        else:
            self.observations = {k: np.zeros((S, N, *shp), dtype=dt) for k, (shp, dt) in self._obs_fields.items()}
            self.actions, self.rewards, self.terminated, self.truncated = (
                np.zeros((S, N, *shape), dtype=dtype) for shape, dtype in scalars)
            if optimize_memory:
                self.next_observations = None
                self._latest_next = {k: np.zeros((N, *shp), dtype=dt) for k, (shp, dt) in self._obs_fields.items()}
                self._final_index = np.full((S, N), -1, dtype=np.int64)
                self._final_store = {k: np.zeros((max(16, N), *shp), dtype=dt)
                                     for k, (shp, dt) in self._obs_fields.items()}
                self._final_free = list(range(max(16, N)))[::-1]
            else:
                self.next_observations = {k: np.zeros((S, N, *shp), dtype=dt)
                                          for k, (shp, dt) in self._obs_fields.items()}
        self.pos = 0
        self.full = False
        self._staging: dict[int, dict[str, Any]] = {}
        # the common case (array observations, next observations stored) samples in one numba call
        self._pool = np.empty(0, dtype=np.uint64)
        self._pool_pos = 0
        if self._fast_path:
            rows = S * N
            self._obs2d = self.observations[None].reshape(rows, -1)
            self._next2d = self.next_observations[None].reshape(rows, -1)
            self._act2d = self.actions.reshape(rows, -1)

    # -- size ---------------------------------------------------------------
    def __len__(self) -> int:
        return self.capacity if self.full else self.pos * self.num_envs

    @property
    def newest_slot(self) -> int:
        return (self.pos - 1) % self.num_slots

    def nbytes(self) -> int:
        """Bytes of numpy storage held (observations dominate)."""
        arrays = list(self.observations.values()) + [self.actions, self.rewards, self.terminated, self.truncated]
        if self.next_observations is not None:
            arrays += list(self.next_observations.values())
        else:
            arrays += list(self._final_store.values()) + [self._final_index]
        return int(sum(a.nbytes for a in arrays))

    # -- training checkpoints --------------------------------------------------------
    def _layout(self) -> dict[str, Any]:
        """What a saved state must match to load into this buffer."""
        return {"capacity": self.capacity, "num_envs": self.num_envs, "optimize_memory": self.optimize_memory,
                "observations": {str(k): [list(shp), np.dtype(dt).str] for k, (shp, dt) in self._obs_fields.items()},
                "actions": [list(self._action_shape), np.dtype(self._action_dtype).str]}

    def _slot_fields(self) -> dict[str, np.ndarray]:
        """The ``(slots, envs, ...)`` arrays, by name (observations of a dict space as ``observations/<key>``)."""
        fields = {}
        for name, store in (("observations", self.observations), ("next_observations", self.next_observations)):
            for k, array in (store or {}).items():
                fields[name if k is None else f"{name}/{k}"] = array
        fields.update(actions=self.actions, rewards=self.rewards, terminated=self.terminated, truncated=self.truncated)
        if self.optimize_memory:
            fields["final_index"] = self._final_index
        return fields

    def state_dict(self) -> dict[str, Any]:
        """Everything stored, as numpy arrays and scalars (for a training checkpoint): the filled slots of every
        field, the write position, the sampling generator and its pool of drawn words, and in the memory-saving
        mode the side store of final observations."""
        filled = self.num_slots if self.full else self.pos
        state: dict[str, Any] = {
            "layout": self._layout(), "pos": int(self.pos), "full": bool(self.full),
            "fields": {name: np.ascontiguousarray(a[:filled]) for name, a in self._slot_fields().items()},
            "rng": self.rng.bit_generator.state, "pool": self._pool.copy(), "pool_pos": int(self._pool_pos)}
        if self.optimize_memory:
            state["latest_next"] = {str(k): v.copy() for k, v in self._latest_next.items()}
            state["final_store"] = {str(k): v.copy() for k, v in self._final_store.items()}
            state["final_free"] = np.asarray(self._final_free, dtype=np.int64)
        return state

    def _check_layout(self, state: Mapping[str, Any]) -> None:
        if state.get("layout") != self._layout():
            raise ValueError(f"the saved replay buffer has layout {state.get('layout')}, this one {self._layout()} "
                             "(capacity, num_envs, memory mode, observation or action shapes differ)")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s contents; a ValueError names what does not fit this buffer."""
        self._check_layout(state)
        pos, full = int(state["pos"]), bool(state["full"])
        filled = self.num_slots if full else pos
        saved = state["fields"]
        fields = self._slot_fields()
        if set(saved) != set(fields):
            raise ValueError(f"the saved replay buffer holds the fields {sorted(saved)}, this one {sorted(fields)}")
        for name, array in fields.items():
            value = np.asarray(saved[name])
            if value.shape != (filled, *array.shape[1:]) or value.dtype != array.dtype:
                raise ValueError(f"the saved replay field {name!r} is {value.dtype}{list(value.shape)}, expected "
                                 f"{array.dtype}{[filled, *array.shape[1:]]}")
        for name, array in fields.items():
            array[...] = -1 if name == "final_index" else 0  # -1: no final observation kept for that slot
            array[:filled] = saved[name]
        self.pos, self.full = pos, full
        self.rng.bit_generator.state = dict(state["rng"])
        self._pool = np.array(state["pool"], dtype=np.uint64)
        self._pool_pos = int(state["pool_pos"])
        if self.optimize_memory:
            for k in self._latest_next:
                self._latest_next[k][...] = state["latest_next"][str(k)]
            self._final_store = {k: np.array(state["final_store"][str(k)]) for k in self._final_store}
            self._final_free = [int(i) for i in np.asarray(state["final_free"])]

    def truncate_open_episodes(self) -> None:
        """Mark the newest transition of every env whose episode is still open as truncated: after a resume
        the envs start new episodes, so that n-step returns and the memory-saving mode's next observations do
        not run from the old episode into the new one (truncation still bootstraps from the stored next
        observation)."""
        if len(self) == 0:
            return
        slot = self.newest_slot
        open_ = ~(self.terminated[slot] | self.truncated[slot])
        if self.optimize_memory:
            self._keep_finals(slot, self._latest_next, open_)
        self.truncated[slot] |= open_

    # -- add --------------------------------------------------------------------
    def _check(self, name: str, value: ArrayLike, shape: tuple, dtype: np.dtype) -> np.ndarray:
        array = value if isinstance(value, np.ndarray) else _as_numpy(value)
        if array.shape == shape and array.dtype == dtype:
            return array
        if array.shape != shape:
            raise ValueError(f"ReplayBuffer.add: '{name}' has shape {array.shape}, expected {shape} "
                             f"(num_envs={self.num_envs})")
        if not np.can_cast(array.dtype, dtype, casting="same_kind"):
            raise ValueError(f"ReplayBuffer.add: '{name}' has dtype {array.dtype}, expected {np.dtype(dtype)} "
                             f"(or a dtype that casts to it safely)")
        return array

    def _check_obs(self, name: str, obs) -> dict:
        if self._dict_obs:
            if not isinstance(obs, Mapping) or set(obs) != set(self._obs_fields):
                got = sorted(obs) if isinstance(obs, Mapping) else type(obs).__name__
                raise ValueError(f"ReplayBuffer.add: '{name}' must be a dict with keys {sorted(self._obs_fields)}, "
                                 f"got {got}")
            return {k: self._check(f"{name}[{k!r}]", obs[k], (self.num_envs, *shp), dt)
                    for k, (shp, dt) in self._obs_fields.items()}
        shp, dt = self._obs_fields[None]
        return {None: self._check(name, obs, (self.num_envs, *shp), dt)}

    def add(self, obs, actions: ArrayLike, rewards: ArrayLike, next_obs, terminated: ArrayLike,
            truncated: ArrayLike) -> None:
        """Store one transition per env. ``next_obs`` is the true next observation (``info["final_obs"]``)."""
        N, p = self.num_envs, self.pos
        obs = self._check_obs("obs", obs)
        next_obs = self._check_obs("next_obs", next_obs)
        actions = self._check("actions", actions, (N, *self._action_shape), self._action_dtype)
        rewards = self._check("rewards", rewards, (N,), np.float32)
        terminated = self._check("terminated", terminated, (N,), np.bool_)
        truncated = self._check("truncated", truncated, (N,), np.bool_)
        for k, v in obs.items():
            self.observations[k][p] = v
        if self.optimize_memory:
            self._store_finals(p, next_obs, terminated | truncated)
            for k, v in next_obs.items():
                self._latest_next[k][...] = v
        else:
            for k, v in next_obs.items():
                self.next_observations[k][p] = v
        self.actions[p] = actions
        self.rewards[p] = rewards
        self.terminated[p] = terminated
        self.truncated[p] = truncated
        self.pos = (p + 1) % self.num_slots
        self.full = self.full or self.pos == 0

    def _store_finals(self, slot: int, next_obs: dict, done: np.ndarray) -> None:
        """Memory-saving mode: keep the true final observations of episodes that end at ``slot``."""
        for e in np.flatnonzero(self._final_index[slot] >= 0):  # free what the overwritten slot held
            self._final_free.append(int(self._final_index[slot, e]))
            self._final_index[slot, e] = -1
        self._keep_finals(slot, next_obs, done)

    def _keep_finals(self, slot: int, next_obs: dict, done: np.ndarray) -> None:
        for e in np.flatnonzero(done):
            if not self._final_free:
                self._grow_final_store()
            idx = self._final_free.pop()
            for k, v in next_obs.items():
                self._final_store[k][idx] = v[e]
            self._final_index[slot, e] = idx

    def _grow_final_store(self) -> None:
        old = len(next(iter(self._final_store.values())))
        for k, arr in self._final_store.items():
            grown = np.zeros((2 * old, *arr.shape[1:]), dtype=arr.dtype)
            grown[:old] = arr
            self._final_store[k] = grown
        self._final_free.extend(range(2 * old - 1, old - 1, -1))

    # -- sample -----------------------------------------------------------------
    def _sample_indices(self, batch_size: int) -> np.ndarray:
        return self.rng.integers(0, len(self), size=batch_size)

    def sample(self, batch_size: int) -> ReplaySample:
        """``batch_size`` transitions drawn uniformly (with replacement) from what is stored."""
        self._check_sample(batch_size)
        if self._fast_path and self.device.type == "cpu":
            return self._sample_fast(batch_size)
        flat = self._sample_indices(batch_size)
        return self._make_sample(flat, np.ones(batch_size, dtype=np.float32))

    def _random_words(self, count: int) -> np.ndarray:
        """``count`` random 64-bit words from a pool refilled from ``self.rng`` (cheaper than a call per batch)."""
        if self._pool_pos + count > len(self._pool):
            self._pool = self.rng.integers(0, 2**63, size=max(65536, count), dtype=np.uint64)
            self._pool_pos = 0
        words = self._pool[self._pool_pos:self._pool_pos + count]
        self._pool_pos += count
        return words

    def _sample_fast(self, B: int) -> ReplaySample:
        (obs_shape, obs_dtype), = self._obs_fields.values()
        obs = np.empty((B, *obs_shape), dtype=obs_dtype)
        next_obs = np.empty((B, *obs_shape), dtype=obs_dtype)
        actions = np.empty((B, *self._action_shape), dtype=self._action_dtype)
        rewards = np.empty(B, dtype=np.float32)
        discounts = np.empty(B, dtype=np.float32)
        terminated = np.empty(B, dtype=np.bool_)
        index = np.empty(B, dtype=np.int64)
        _sample_flat(self._obs2d, self._next2d, self._act2d, self.rewards, self.terminated, self.truncated,
                     self._random_words(B), len(self), self.num_envs, self.n_step, self.gamma,
                     (self.pos - 1) % self.num_slots, index, obs.reshape(B, -1), next_obs.reshape(B, -1),
                     actions.reshape(B, -1), rewards, discounts, terminated)
        from_numpy = torch.from_numpy
        return ReplaySample(from_numpy(obs), from_numpy(actions), from_numpy(rewards), from_numpy(next_obs),
                            from_numpy(discounts), from_numpy(terminated), from_numpy(index), torch.ones(B))

    def _check_sample(self, batch_size: int) -> None:
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer; add transitions first")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size > len(self):
            raise ValueError(f"cannot sample {batch_size} transitions: the buffer holds only {len(self)}; "
                             f"collect more first (e.g. learning_starts >= batch_size)")

    def _gather(self, field: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        _gather_rows(field.reshape(self.num_slots * self.num_envs, -1), rows, out.reshape(len(rows), -1))
        return out

    def _outputs(self, batch_size: int) -> dict[str, Any]:
        """Arrays to gather into: fresh on the CPU, reused pinned staging buffers for a GPU."""
        if batch_size in self._staging:  # only on a GPU
            staging = self._staging[batch_size]
            staging["event"].synchronize()  # the last copy out of these buffers has finished
            return staging

        if self.device.type == "cuda":
            def alloc(shape, dtype):
                return torch.empty(shape, dtype=torch_dtype(dtype), pin_memory=True).numpy()
        else:
            alloc = np.empty

        B = batch_size
        out = {
            "obs": {k: alloc((B, *shp), dt) for k, (shp, dt) in self._obs_fields.items()},
            "next_obs": {k: alloc((B, *shp), dt) for k, (shp, dt) in self._obs_fields.items()},
            "actions": alloc((B, *self._action_shape), np.dtype(self._action_dtype)),
            "rewards": alloc((B,), np.dtype(np.float32)),
            "discounts": alloc((B,), np.dtype(np.float32)),
            "terminated": alloc((B,), np.dtype(np.bool_)),
            "indices": alloc((B,), np.dtype(np.int64)),
            "weights": alloc((B,), np.dtype(np.float32)),
        }
        if self.device.type == "cuda":
            out["event"] = torch.cuda.Event()
            self._staging[batch_size] = out
        return out

    def _make_sample(self, flat: np.ndarray, weights: np.ndarray) -> ReplaySample:
        B, N = len(flat), self.num_envs
        out = self._outputs(B)
        slots, envs = flat // N, flat % N
        for k in self._obs_fields:
            self._gather(self.observations[k], flat, out["obs"][k])
        self._gather(self.actions, flat, out["actions"])
        if self.n_step == 1:
            out["rewards"][:] = self.rewards.reshape(-1)[flat]
            term = self.terminated.reshape(-1)[flat]
            out["terminated"][:] = term
            out["discounts"][:] = np.where(term, 0.0, self.gamma)
            boot_slots = slots
        else:
            boot_slots = np.empty(B, dtype=np.int64)
            returns = np.empty(B, dtype=np.float64)
            discounts = np.empty(B, dtype=np.float64)
            _nstep(self.rewards, self.terminated, self.truncated, slots, envs, self.n_step, self.gamma,
                   self.newest_slot, self.num_slots, returns, discounts, out["terminated"], boot_slots)
            out["rewards"][:] = returns
            out["discounts"][:] = discounts
        self._gather_next_obs(boot_slots, envs, out["next_obs"])
        out["indices"][:] = flat
        out["weights"][:] = weights
        return self._to_torch(out)

    def _gather_next_obs(self, slots: np.ndarray, envs: np.ndarray, out: dict) -> None:
        flat = slots * self.num_envs + envs
        if not self.optimize_memory:
            for k in self._obs_fields:
                self._gather(self.next_observations[k], flat, out[k])
            return
        # next observation = the following slot of the same env, except where the episode ended
        # there (final observation kept in the side store) or at the newest slot (not yet written).
        final_idx = self._final_index[slots, envs]
        newest = (slots == self.newest_slot) & (final_idx < 0)
        following = ((slots + 1) % self.num_slots) * self.num_envs + envs
        plain = (final_idx < 0) & ~newest
        for k in self._obs_fields:
            rows = np.flatnonzero(plain)
            dst = out[k]
            dst[rows] = self.observations[k].reshape(-1, *self.observations[k].shape[2:])[following[rows]]
            ended = np.flatnonzero(final_idx >= 0)
            dst[ended] = self._final_store[k][final_idx[ended]]
            latest = np.flatnonzero(newest)
            dst[latest] = self._latest_next[k][envs[latest]]

    def _to_torch(self, out: dict) -> ReplaySample:
        dev, cuda = self.device, self.device.type == "cuda"

        def move(a: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(a)
            return t.to(dev, non_blocking=True) if cuda else t

        def move_obs(d: dict):
            moved = {k: move(v) for k, v in d.items()}
            return moved if self._dict_obs else moved[None]

        sample = ReplaySample(move_obs(out["obs"]), move(out["actions"]), move(out["rewards"]),
                              move_obs(out["next_obs"]), move(out["discounts"]), move(out["terminated"]),
                              move(out["indices"]), move(out["weights"]))
        if cuda:
            out["event"].record()
        return sample


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al., 2016) on a numba sum tree.

    A transition is drawn with probability ``P(i) = p_i^alpha / sum_k p_k^alpha``
    (stratified over ``batch_size`` equal segments of the total), new
    transitions get the largest priority seen so far, and the importance
    weights ``w_i = (N * P(i))^-beta`` are divided by the largest possible
    weight, ``(N * min_k P(k))^-beta``, so that they only scale updates down.
    ``update_priorities(indices, td_errors)`` sets ``p_i = |td_i| + eps``.
    """

    def __init__(self, capacity: int, observation_space: gym.Space, action_space: gym.Space, num_envs: int = 1,
                 device: str | torch.device = "cpu", n_step: int = 1, gamma: float = 0.99,
                 optimize_memory: bool = False, seed: int | None = None, alpha: float = 0.6, beta: float = 0.4,
                 eps: float = 1e-6):
        super().__init__(capacity, observation_space, action_space, num_envs, device, n_step, gamma,
                         optimize_memory, seed)
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        self.alpha, self.beta, self.eps = float(alpha), float(beta), float(eps)
        self.tree = SumTree(self.capacity)
        self.max_priority = 1.0

    def add(self, obs, actions, rewards, next_obs, terminated, truncated) -> None:
        slot = self.pos
        super().add(obs, actions, rewards, next_obs, terminated, truncated)
        leaves = slot * self.num_envs + np.arange(self.num_envs)
        self.tree.update(leaves, np.full(self.num_envs, self.max_priority ** self.alpha))

    def state_dict(self) -> dict[str, Any]:
        """The uniform buffer's state with the priorities (both segment trees), the largest priority and beta."""
        return {**super().state_dict(), "tree_sum": self.tree._sum.copy(), "tree_min": self.tree._min.copy(),
                "max_priority": float(self.max_priority), "beta": float(self.beta)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_layout(state)
        if "tree_sum" not in state:
            raise ValueError("the saved replay buffer has no priorities (it was a uniform one); build the agent "
                             "with the prioritized_replay setting it was saved with")
        for name, tree in (("tree_sum", self.tree._sum), ("tree_min", self.tree._min)):
            value = np.asarray(state[name])
            if value.shape != tree.shape or value.dtype != tree.dtype:
                raise ValueError(f"the saved priorities {name!r} are {value.dtype}{list(value.shape)}, expected "
                                 f"{tree.dtype}{list(tree.shape)}")
        super().load_state_dict(state)
        self.tree._sum[...] = state["tree_sum"]
        self.tree._min[...] = state["tree_min"]
        self.max_priority, self.beta = float(state["max_priority"]), float(state["beta"])

    def sample(self, batch_size: int, beta: float | None = None) -> ReplaySample:
        self._check_sample(batch_size)
        beta = self.beta if beta is None else beta
        flat = self.tree.sample(batch_size, self.rng)
        total, n = self.tree.total, len(self)
        probs = self.tree[flat] / total
        max_weight = (n * self.tree.min / total) ** (-beta)
        weights = ((n * probs) ** (-beta) / max_weight).astype(np.float32)
        return self._make_sample(flat, weights)

    def update_priorities(self, indices: ArrayLike, td_errors: ArrayLike) -> None:
        """Set the priorities of sampled transitions from their TD errors."""
        indices = _as_numpy(indices).astype(np.int64).ravel()
        priorities = np.abs(_as_numpy(td_errors).astype(np.float64).ravel()) + self.eps
        if indices.shape != priorities.shape:
            raise ValueError(f"update_priorities got {indices.size} indices but {priorities.size} TD errors")
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices must lie in [0, {len(self)}) (stored transitions)")
        self.max_priority = max(self.max_priority, float(priorities.max(initial=0.0)))
        self.tree.update(indices, priorities ** self.alpha)
