"""Host-simulated environments (gymnasium, dm-control, MetaWorld, NLE, MinAtar) behind ``VecEnv``.

The envs step in this process (``vectorization="sync"``) or in worker
processes (``vectorization="process"``), each worker stepping a contiguous
group of envs and writing into preallocated numpy buffers that live in shared
memory. Either way the parent turns those buffers into torch tensors on the
chosen device once per step. ``step_async`` / ``step_wait`` split a step so
that the parent can work while the workers step.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from zoo.envs.vec import Obs, VecEnv, torch_dtype
from zoo.errors import ActionError

EnvFn = Callable[[], gym.Env]
VECTORIZATIONS = ("sync", "process")


def observation_fields(space: gym.Space) -> dict[str | None, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each observation array: key ``None`` for a flat space, one per key for a Dict."""
    if isinstance(space, spaces.Dict):
        fields: dict[str | None, tuple[tuple[int, ...], np.dtype]] = {}
        for key, sub in space.spaces.items():
            if isinstance(sub, spaces.Dict):
                raise TypeError(f"nested Dict observation spaces are not supported (key {key!r})")
            fields[key] = observation_fields(sub)[None]
        return fields
    if isinstance(space, spaces.Discrete):
        return {None: ((), np.dtype(np.int64))}
    if isinstance(space, (spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)):
        torch_dtype(space.dtype)  # raises for dtypes torch cannot hold
        return {None: (tuple(space.shape), np.dtype(space.dtype))}
    raise TypeError(f"zoo does not support observation spaces of type {type(space).__name__}: {space}")


class BufferLayout:
    """Where each array of one step lives inside one contiguous byte block.

    The step's outputs (observations, reward, terminated, truncated, info
    values) come first and back to back, so that the parent moves them to the
    device with a single copy; the final observations of finished episodes and
    the actions follow. Offsets are 64-byte aligned so that every array can be
    viewed with its own dtype, in numpy and in torch.
    """

    ALIGN = 64

    def __init__(self, num_envs: int, obs_fields: dict, action_shape: tuple, action_dtype: np.dtype,
                 info_keys: Sequence[str]):
        outputs = [(("obs", k), (num_envs, *shape), dtype) for k, (shape, dtype) in obs_fields.items()]
        outputs += [(("reward", None), (num_envs,), np.dtype(np.float32)),
                    (("terminated", None), (num_envs,), np.dtype(np.bool_)),
                    (("truncated", None), (num_envs,), np.dtype(np.bool_))]
        outputs += [(("info", k), (num_envs,), np.dtype(np.float32)) for k in info_keys]
        others = [(("final", k), (num_envs, *shape), dtype) for k, (shape, dtype) in obs_fields.items()]
        others.append((("actions", None), (num_envs, *action_shape), np.dtype(action_dtype)))
        self.entries: dict[tuple, tuple[int, tuple, np.dtype]] = {}
        offset = 0
        for i, (name, shape, dtype) in enumerate(outputs + others):
            if i == len(outputs):
                self.output_bytes = offset
            self.entries[name] = (offset, shape, np.dtype(dtype))
            nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            offset += -(-nbytes // self.ALIGN) * self.ALIGN
        self.total_bytes = max(offset, self.ALIGN)

    def numpy_views(self, block: np.ndarray) -> dict[tuple, np.ndarray]:
        """Views of every array into ``block`` (a uint8 array of ``total_bytes``)."""
        views = {}
        for name, (offset, shape, dtype) in self.entries.items():
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            views[name] = block[offset:offset + nbytes].view(dtype).reshape(shape)
        return views

    def torch_carvers(self) -> dict[tuple, tuple[int, int, torch.dtype, tuple]]:
        """For each output array: (start, stop, torch dtype, shape) to carve it out of the output block."""
        out = {}
        for name, (offset, shape, dtype) in self.entries.items():
            if offset < self.output_bytes:
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                out[name] = (offset, offset + nbytes, torch_dtype(dtype), shape)
        return out


class EnvGroup:
    """Steps a contiguous slice ``[lo, lo + len(env_fns))`` of the envs, in place in the buffers."""

    def __init__(self, env_fns: Sequence[EnvFn], lo: int, views: dict, obs_keys: list, info_keys: Sequence[str],
                 discrete_actions: bool):
        self.envs = [fn() for fn in env_fns]
        self.lo = lo
        self.obs_keys = obs_keys
        self.info_keys = tuple(info_keys)
        self.discrete = discrete_actions
        self.obs = {k: views[("obs", k)] for k in obs_keys}
        self.final = {k: views[("final", k)] for k in obs_keys}
        self.reward = views[("reward", None)]
        self.terminated = views[("terminated", None)]
        self.truncated = views[("truncated", None)]
        self.actions = views[("actions", None)]
        self.info = {k: views[("info", k)] for k in self.info_keys}

    def _write(self, target: dict, i: int, ob) -> None:
        if None in target:
            target[None][i] = ob
        else:
            for k, buf in target.items():
                buf[i] = ob[k]

    def reset(self, seeds: Sequence[int | None], options: dict | None) -> None:
        for j, env in enumerate(self.envs):
            ob, _ = env.reset(seed=seeds[j], options=options)
            self._write(self.obs, self.lo + j, ob)
            for key, buf in self.info.items():
                buf[self.lo + j] = 0.0

    def step(self) -> None:
        lo, hi = self.lo, self.lo + len(self.envs)
        actions = self.actions[lo:hi]
        actions = actions.tolist() if self.discrete else list(actions.copy())
        rewards, terminations, truncations = [], [], []
        infos = {key: [] for key in self.info}
        single = self.obs.get(None)
        for j, env in enumerate(self.envs):
            ob, reward, terminated, truncated, info = env.step(actions[j])
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
            for key, values in infos.items():
                values.append(info.get(key, 0.0))
            if terminated or truncated:
                self._write(self.final, lo + j, ob)
                ob, _ = env.reset()
            if single is not None:
                single[lo + j] = ob
            else:
                self._write(self.obs, lo + j, ob)
        self.reward[lo:hi] = rewards
        self.terminated[lo:hi] = terminations
        self.truncated[lo:hi] = truncations
        for key, values in infos.items():
            self.info[key][lo:hi] = values

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _worker(conn, parent_end, env_fns, lo, shared, layout: BufferLayout, obs_keys, info_keys, discrete) -> None:
    """Worker-process loop: build a group of envs, then serve reset/step/close commands."""
    parent_end.close()  # so that recv() sees EOF when the parent dies
    try:
        views = layout.numpy_views(np.frombuffer(shared, dtype=np.uint8))
        group = EnvGroup(env_fns, lo, views, obs_keys, info_keys, discrete)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    while True:
        try:
            cmd, arg = conn.recv()
        except (EOFError, KeyboardInterrupt):
            break
        try:
            if cmd == "step":
                group.step()
                conn.send(("ok", None))
            elif cmd == "reset":
                group.reset(*arg)
                conn.send(("ok", None))
            elif cmd == "close":
                group.close()
                conn.send(("ok", None))
                break
            else:
                conn.send(("error", f"unknown command {cmd!r}"))
        except BaseException:
            conn.send(("error", traceback.format_exc()))
    conn.close()


class HostVecEnv(VecEnv):
    """``VecEnv`` over host-simulated gymnasium envs, in-process or in worker processes.

    ``env_fns`` builds one env each (all with the same spaces). ``info_keys``
    names the numeric entries of each env's step ``info`` to return as float32
    tensors (missing entries read as 0). A worker that does not answer within
    ``worker_timeout_s`` is reported as an error instead of hanging the parent.
    """

    def __init__(self, env_fns: Sequence[EnvFn], *, device: str | torch.device = "cpu",
                 vectorization: str = "sync", num_workers: int | None = None, info_keys: Sequence[str] = (),
                 seed: int | None = None, env_id: str = "?", start_method: str | None = None,
                 worker_timeout_s: float = 600.0):
        if vectorization not in VECTORIZATIONS:
            raise ValueError(f"vectorization must be one of {VECTORIZATIONS}, got {vectorization!r}")
        if not env_fns:
            raise ValueError("HostVecEnv needs at least one env function")
        probe = env_fns[0]()
        obs_space, act_space = probe.observation_space, probe.action_space
        super().__init__(len(env_fns), torch.device(device), obs_space, act_space)
        self.env_id = env_id
        self.info_keys = tuple(info_keys)
        self.vectorization = vectorization
        self.worker_timeout_s = worker_timeout_s
        self._seed = seed
        self._first_reset = True
        self._obs_fields = observation_fields(obs_space)
        self._obs_keys = list(self._obs_fields)
        self._dict_obs = self._obs_keys != [None]
        self._discrete = isinstance(act_space, spaces.Discrete)
        self._action_low = self._action_high = None
        if isinstance(act_space, spaces.Discrete):
            self._action_low, self._action_high = int(act_space.start), int(act_space.start + act_space.n - 1)
        elif isinstance(act_space, spaces.MultiDiscrete):
            self._action_low, self._action_high = act_space.start, act_space.start + act_space.nvec - 1
        np_action_dtype = np.int64 if self.action_dtype == torch.int64 else np.float32
        self._layout = BufferLayout(self.num_envs, self._obs_fields, self.action_shape, np_action_dtype,
                                    self.info_keys)
        self._carvers = self._layout.torch_carvers()
        self._workers: list = []
        self._conns: list = []
        if vectorization == "sync":
            if self.device.type == "cuda":  # pinned host memory: faster, asynchronous-capable copies
                block = torch.zeros(self._layout.total_bytes, dtype=torch.uint8, pin_memory=True).numpy()
            else:
                block = np.zeros(self._layout.total_bytes, dtype=np.uint8)
            self._block = block
            self._views = self._layout.numpy_views(block)
            probe_used = [lambda: probe] + list(env_fns[1:])
            self._group = EnvGroup(probe_used, 0, self._views, self._obs_keys, self.info_keys, self._discrete)
        else:
            probe.close()
            self._start_workers(env_fns, num_workers, start_method)

    # -- worker processes -------------------------------------------------
    def _start_workers(self, env_fns, num_workers, start_method) -> None:
        if start_method is None:
            start_method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(start_method)
        num_workers = num_workers or min(self.num_envs, os.cpu_count() or 1)
        if not 1 <= num_workers <= self.num_envs:
            raise ValueError(f"num_workers must be between 1 and num_envs={self.num_envs}, got {num_workers}")
        shared = ctx.RawArray("B", self._layout.total_bytes)
        self._block = np.frombuffer(shared, dtype=np.uint8)
        self._views = self._layout.numpy_views(self._block)
        bounds = np.linspace(0, self.num_envs, num_workers + 1).round().astype(int)
        self._worker_bounds = bounds
        try:
            for w in range(num_workers):
                lo, hi = int(bounds[w]), int(bounds[w + 1])
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, name=f"zoo-env-worker-{w}", daemon=True,
                                   args=(child, parent, list(env_fns[lo:hi]), lo, shared, self._layout, self._obs_keys,
                                         self.info_keys, self._discrete))
                proc.start()
                child.close()
                self._workers.append(proc)
                self._conns.append(parent)
            self._gather("start")
        except BaseException:
            self.close()
            raise

    def _gather(self, what: str) -> None:
        errors = []
        for w, conn in enumerate(self._conns):
            try:
                if not conn.poll(self.worker_timeout_s):
                    raise TimeoutError
                status, payload = conn.recv()
            except EOFError:
                self._workers[w].join(timeout=1)
                status, payload = "error", f"worker {w} died (exit code {self._workers[w].exitcode})"
            except TimeoutError:
                status, payload = "error", f"worker {w} did not answer within {self.worker_timeout_s} s"
            if status != "ok":
                errors.append(f"--- worker {w} ---\n{payload}")
        if errors:
            raise RuntimeError(f"{self.env_id}: {what} failed in env worker process(es):\n" + "\n".join(errors))

    def _broadcast(self, cmd: str, arg=None) -> None:
        for conn in self._conns:
            conn.send((cmd, arg))
        self._gather(cmd)

    # -- numpy -> torch ---------------------------------------------------
    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """A torch copy of ``array`` on the env's device."""
        t = torch.from_numpy(array)
        return t.clone() if self.device.type == "cpu" else t.to(self.device)

    def _outputs(self) -> dict[tuple, torch.Tensor]:
        """The step's outputs (obs, reward, flags, info) as tensors on the device.

        On an accelerator the whole output region moves in one copy and is
        carved into tensors there; on the CPU each array is copied on its own,
        which is cheaper than carving views out of one block.
        """
        if self.device.type == "cpu":
            return {name: torch.from_numpy(self._views[name].copy()) for name in self._carvers}
        block = torch.from_numpy(self._block[:self._layout.output_bytes]).to(self.device)
        return {name: block[start:stop].view(dtype).view(shape)
                for name, (start, stop, dtype, shape) in self._carvers.items()}

    def _carve_obs(self, outputs: dict) -> Obs:
        if self._dict_obs:
            return {k: outputs[("obs", k)] for k in self._obs_keys}
        return outputs[("obs", None)]

    # -- the interface ----------------------------------------------------
    def reset(self, seed: int | Sequence[int] | None = None, options: dict | None = None) -> Obs:
        self._check_open()
        self._check_no_step_in_flight("reset()")
        if seed is None and self._first_reset:
            seed = self._seed
        self._first_reset = False
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} envs")
        if self.vectorization == "sync":
            self._group.reset(seeds, options)
        else:
            for conn, proc_seeds in zip(self._conns, self._split(seeds)):
                conn.send(("reset", (proc_seeds, options)))
            self._gather("reset")
        return self._carve_obs(self._outputs())

    def _split(self, items: list) -> list[list]:
        bounds = self._worker_bounds
        return [items[bounds[w]:bounds[w + 1]] for w in range(len(self._conns))]

    def step(self, actions: torch.Tensor):
        """Step every env with ``actions``: :meth:`step_async` then :meth:`step_wait`."""
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: torch.Tensor) -> None:
        """Validate ``actions``, write them into the (shared) action buffer and start the step.

        With worker processes the step command goes out without waiting, so
        the caller can work (run a policy on other envs, take a gradient step)
        while the simulators step; :meth:`step_wait` gathers the results. With
        ``vectorization="sync"`` the envs step in :meth:`step_wait`.
        """
        self._check_open()
        if self._step_in_flight:
            raise RuntimeError(
                f"{self.env_id}: step_async() called twice in a row (or step() while a step_async() is in "
                f"flight); call step_wait() to receive the pending step's results before sending new actions")
        actions = self.check_actions(actions)
        host_actions = actions.detach().cpu().numpy()
        if host_actions.dtype.kind == "f" and not np.isfinite(host_actions).all():  # one reduction per step
            bad = np.argwhere(~np.isfinite(host_actions).reshape(self.num_envs, -1).all(1)).ravel()
            raise ActionError(f"{self.env_id}: actions of envs {bad[:5].tolist()} are not finite (NaN or inf): "
                              f"{host_actions[bad[0]].tolist()}; a policy that outputs these has diverged "
                              f"(check its loss and learning rate)")
        if self._action_low is not None and (host_actions.min() < np.min(self._action_low)
                                             or host_actions.max() > np.max(self._action_high)):
            bad = (host_actions < self._action_low) | (host_actions > self._action_high)
            if bad.any():
                raise ActionError(
                    f"{self.env_id}: actions {host_actions[bad][:5].tolist()} are outside the action space "
                    f"{self.single_action_space} (valid: {self._action_low}..{self._action_high})")
        self._views[("actions", None)][...] = host_actions
        if self.vectorization != "sync":
            for w, conn in enumerate(self._conns):
                try:
                    conn.send(("step", None))
                except (BrokenPipeError, OSError) as exc:
                    self._step_in_flight = w > 0  # the workers before it are stepping: close() drains them
                    code = self._workers[w].exitcode
                    self.close()
                    raise RuntimeError(f"{self.env_id}: env worker {w} is gone (exit code {code}): {exc}; this "
                                       f"VecEnv is closed, build a new one") from exc
        self._step_in_flight = True

    def step_wait(self):
        """Finish the step started by :meth:`step_async`; return ``(obs, reward, terminated, truncated, info)``."""
        self._check_open()
        self._check_step_in_flight()
        self._step_in_flight = False
        if self.vectorization == "sync":
            self._group.step()
        else:
            self._gather("step")
        outputs = self._outputs()
        obs = self._carve_obs(outputs)
        terminated, truncated = outputs[("terminated", None)], outputs[("truncated", None)]
        done_rows = np.flatnonzero(self._views[("terminated", None)] | self._views[("truncated", None)])
        final = obs
        if done_rows.size:  # a second, small copy: the final observations of the finished episodes
            rows = torch.as_tensor(done_rows, device=self.device)
            if self._dict_obs:
                final = {k: v.clone() for k, v in obs.items()}
                for key in final:
                    final[key][rows] = self._to_device(self._views[("final", key)][done_rows])
            else:
                final = obs.clone()
                final[rows] = self._to_device(self._views[("final", None)][done_rows])
        info: dict[str, Any] = {"final_obs": final}
        for key in self.info_keys:
            info[key] = outputs[("info", key)]
        return obs, outputs[("reward", None)], terminated, truncated, info

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"{self.env_id}: this VecEnv is closed")

    def _drain_replies(self, timeout_s: float = 5.0) -> None:
        """Take one pending reply from each worker, if it comes within ``timeout_s`` (closing: errors ignored)."""
        for conn in self._conns:
            try:
                if conn.poll(timeout_s):
                    conn.recv()
            except (EOFError, OSError):
                pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.vectorization == "sync":
            if hasattr(self, "_group"):
                self._group.close()
            return
        if self._step_in_flight:  # let the workers finish the pending step and take its replies first
            self._step_in_flight = False
            self._drain_replies()
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        self._drain_replies()
        for conn in self._conns:
            conn.close()
        for proc in self._workers:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
