"""Two halves of the envs as one ``VecEnv``: what an agent holds as ``self.env`` when it collects double-buffered.

:class:`~zoo.rollout.DoubleBufferedCollector` steps two ``VecEnv`` s (the halves, from
:func:`~zoo.rollout.make_env_halves`) one while the policy acts on the other. :class:`EnvHalves` keeps them
together behind the ``VecEnv`` interface (spaces, ``num_envs``, ``close``), so that everything built on
``agent.env`` (evaluation, checkpoints, the bench runner closing it) sees one env of the halves' envs side by
side; its own ``step`` steps both halves at once.
"""

from __future__ import annotations

import torch

from zoo.envs import make_env, resolve
from zoo.envs.vec import Obs, VecEnv
from zoo.rollout import make_env_halves, obs_cat


class EnvHalves(VecEnv):
    """Envs ``0..N_A-1`` are half A's, ``N_A..N-1`` half B's; ``halves`` is ``(A, B)``."""

    def __init__(self, a: VecEnv, b: VecEnv):
        if a.single_observation_space != b.single_observation_space or \
                a.single_action_space != b.single_action_space or a.device != b.device:
            raise ValueError(f"the two halves must have the same spaces and device; got {a} and {b}")
        super().__init__(a.num_envs + b.num_envs, a.device, a.single_observation_space, a.single_action_space)
        self.halves = (a, b)
        self.env_id, self.info_keys, self.host_simulated = a.env_id, tuple(a.info_keys), a.host_simulated
        self.make_kwargs = dict(a.make_kwargs)

    @classmethod
    def make(cls, env_id: str, num_envs: int, seed: int | None = None, **kwargs) -> EnvHalves:
        """``make_env_halves(env_id, num_envs, seed, **kwargs)`` kept together."""
        return cls(*make_env_halves(env_id, num_envs, seed=seed, **kwargs))

    def reset(self, seed: int | None = None, options: dict | None = None) -> Obs:
        a, b = self.halves
        return obs_cat([a.reset(seed=seed), b.reset(seed=None if seed is None else seed + a.num_envs)])

    def step(self, actions: torch.Tensor):
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: torch.Tensor) -> None:
        actions = self.check_actions(actions)
        a, b = self.halves
        a.step_async(actions[:a.num_envs])
        b.step_async(actions[a.num_envs:])

    def step_wait(self):
        parts = [h.step_wait() for h in self.halves]
        (oa, ra, ta, ua, ia), (ob, rb, tb, ub, ib) = parts
        info = {"final_obs": obs_cat([ia["final_obs"], ib["final_obs"]])}
        for key in self.info_keys:
            info[key] = torch.cat([ia[key], ib[key]])
        return obs_cat([oa, ob]), torch.cat([ra, rb]), torch.cat([ta, tb]), torch.cat([ua, ub]), info

    def sample_actions(self) -> torch.Tensor:
        return torch.cat([h.sample_actions() for h in self.halves])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for half in self.halves:
            half.close()


def is_host_simulated(env_id: str) -> bool:
    """True for suites stepped on the host (gymnasium, dm-control, NLE, MinAtar), False for torch-native ones."""
    suite, _ = resolve(env_id)
    return suite.make_vec is None


def make_training_env(env_id: str, num_envs: int, device: torch.device, seed: int, *, double_buffer: bool,
                      vectorization: str, num_workers: int | None) -> VecEnv:
    """The training envs of ``env_id``: two halves of worker processes when ``double_buffer`` applies (a
    host-simulated suite, ``vectorization="process"`` and an even ``num_envs``), else one ``VecEnv``."""
    if not is_host_simulated(env_id):
        return make_env(env_id, num_envs=num_envs, device=device, seed=seed)
    if double_buffer and vectorization == "process" and num_envs >= 2 and num_envs % 2 == 0:
        workers = min(num_envs // 2, num_workers or max(1, _cores() // 2))
        return EnvHalves.make(env_id, num_envs, seed=seed, device=device, vectorization="process",
                              num_workers=workers)
    workers = None if vectorization == "sync" else min(num_envs, num_workers or _cores())
    return make_env(env_id, num_envs=num_envs, device=device, seed=seed, vectorization=vectorization,
                    num_workers=workers)


def _cores() -> int:
    import os

    return os.cpu_count() or 1
