"""Suites of environments behind ``suite/task`` ids, and ``make_env`` / ``list_envs``.

A :class:`Suite` knows its tasks, the optional extra that installs it, and
how to build either one gymnasium env (host-simulated suites) or a whole
``VecEnv`` (torch-native suites). New suites register with
:func:`register_suite`.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym

from zoo.errors import MissingExtraError, UnknownEnvError
from zoo.utils.seeding import derive_seed


@dataclass
class Suite:
    """One family of environments, served under ``<name>/<task>`` ids."""

    name: str
    description: str
    #: modules that must import for the suite to work; ``extra`` installs them.
    requires: tuple[str, ...] = ()
    extra: str | None = None
    #: () -> list of task names (called only when the suite is installed).
    tasks: Callable[[], list[str]] = list
    #: (task, seed, **kwargs) -> gymnasium.Env, for host-simulated suites.
    make_single: Callable[..., gym.Env] | None = None
    #: (task, num_envs, device, seed, **kwargs) -> VecEnv, for torch-native suites.
    make_vec: Callable[..., Any] | None = None
    #: numeric ``info`` entries returned as tensors by ``VecEnv.step``.
    info_keys: tuple[str, ...] = ()
    #: "sync" for envs cheaper than inter-process messaging, "process" for expensive ones.
    default_vectorization: str = "sync"
    #: task -> whether it exists, where that is cheaper or wider than ``tasks()`` (e.g. any gym id).
    has_task: Callable[[str], bool] | None = None
    _task_cache: list[str] | None = field(default=None, repr=False)

    def installed(self) -> bool:
        """Whether every module the suite needs imports here."""
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def ensure_installed(self) -> None:
        for module in self.requires:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise MissingExtraError(f"the '{self.name}' suite", self.extra or self.name, exc) from exc

    def task_list(self) -> list[str]:
        if self._task_cache is None:
            self.ensure_installed()
            self._task_cache = sorted(self.tasks())
        return list(self._task_cache)


_SUITES: dict[str, Suite] = {}


def register_suite(suite: Suite) -> Suite:
    """Add (or replace) a suite; returns it."""
    _SUITES[suite.name] = suite
    return suite


def suites() -> dict[str, Suite]:
    """Registered suites by name."""
    return dict(_SUITES)


def _split_id(env_id: str) -> tuple[Suite, str]:
    if not isinstance(env_id, str) or "/" not in env_id:
        hint = ""
        if isinstance(env_id, str):
            guesses = difflib.get_close_matches(env_id, _all_ids_for_hints(), n=3, cutoff=0.6)
            if env_id in gym.registry:
                guesses.insert(0, f"gym/{env_id}")
            guesses = list(dict.fromkeys(guesses))
            hint = f" Did you mean: {', '.join(guesses)}?" if guesses else ""
        raise UnknownEnvError(f"env ids look like 'suite/task' (suites: {', '.join(sorted(_SUITES))}), "
                              f"got {env_id!r}.{hint}")
    name, task = env_id.split("/", 1)
    if name not in _SUITES:
        close = difflib.get_close_matches(name, list(_SUITES), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(c + '/' + task for c in close)}?" if close else ""
        raise UnknownEnvError(f"unknown suite {name!r} in env id {env_id!r}; suites: {', '.join(sorted(_SUITES))}.{hint}")
    return _SUITES[name], task


def _all_ids_for_hints() -> list[str]:
    ids = []
    for suite in _SUITES.values():
        if suite.installed():
            try:
                ids += [f"{suite.name}/{t}" for t in suite.task_list()]
            except Exception:  # a broken optional suite must not hide the hint
                continue
    return ids


def resolve(env_id: str) -> tuple[Suite, str]:
    """The suite and task of ``env_id``; raises a clear error for unknown ids or missing extras."""
    suite, task = _split_id(env_id)
    suite.ensure_installed()
    exists = suite.has_task(task) if suite.has_task is not None else task in suite.task_list()
    if not exists:
        close = difflib.get_close_matches(task, suite.task_list(), n=5, cutoff=0.5)
        hint = f" Closest ids: {', '.join(suite.name + '/' + c for c in close)}." if close else ""
        raise UnknownEnvError(f"unknown env id {env_id!r}: the '{suite.name}' suite has no task {task!r}.{hint} "
                              f"`zoo list` shows every id.")
    return suite, task


def list_envs(suite: str | None = None, installed_only: bool = True) -> list[str]:
    """Every env id (of one ``suite`` if given). Suites whose extra is missing are skipped
    unless ``installed_only=False``, which lists the suite names alone for them."""
    names = [suite] if suite is not None else sorted(_SUITES)
    ids: list[str] = []
    for name in names:
        if name not in _SUITES:
            raise UnknownEnvError(f"unknown suite {name!r}; suites: {', '.join(sorted(_SUITES))}")
        s = _SUITES[name]
        if not s.installed():
            if not installed_only:
                ids.append(f"{name}/*")
            continue
        ids += [f"{name}/{task}" for task in s.task_list()]
    return ids


def make_single_env(env_id: str, seed: int | None = None, **kwargs) -> gym.Env:
    """The single-env (plain gymnasium) form of ``env_id``, with the same spaces the ``VecEnv`` reports."""
    from zoo.envs.wrappers import SingleFromVec, standardize

    suite, task = resolve(env_id)
    if suite.make_single is None:
        return SingleFromVec(suite.make_vec(task, num_envs=1, device="cpu", seed=seed, **kwargs))
    env = standardize(suite.make_single(task, seed=seed, **kwargs))
    if seed is not None:
        env.action_space.seed(seed)
    return env


def make_env(env_id: str, num_envs: int = 1, device: str = "cpu", seed: int | None = None, *,
             vectorization: str | None = None, num_workers: int | None = None, **kwargs):
    """Build ``num_envs`` copies of ``env_id`` as one batched, torch-native :class:`~zoo.envs.VecEnv`.

    ``device`` is where observations, rewards and actions live ("auto" picks
    CUDA when present). ``seed`` seeds the first reset (env ``i`` gets
    ``seed + i``) and every random choice made when the envs are built.
    Host-simulated suites step in this process (``vectorization="sync"``) or
    in ``num_workers`` worker processes (``"process"``, shared-memory
    buffers); the default is the suite's (``process`` for the expensive
    simulators when more than one env and core are there). Other keyword
    arguments go to the suite's env constructor.
    """
    from zoo.utils.device import resolve_device

    suite, task = resolve(env_id)
    if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    dev = resolve_device(device)
    make_kwargs = dict(kwargs)
    if suite.make_vec is not None:
        if vectorization not in (None, "torch"):
            raise ValueError(f"{env_id} steps as torch ops on its device; vectorization={vectorization!r} does not apply")
        env = suite.make_vec(task, num_envs=num_envs, device=dev, seed=seed, **kwargs)
        env.env_id = env_id
    else:
        env = _make_host_vec(suite, task, env_id, num_envs, dev, seed, vectorization, num_workers, kwargs)
    if seed is not None:
        env.action_space.seed(seed)  # sample_actions() replays too
    env.make_kwargs = make_kwargs  # so that evaluation and checkpoints rebuild the same env
    return env


def _make_host_vec(suite: Suite, task: str, env_id: str, num_envs: int, dev, seed: int | None,
                   vectorization: str | None, num_workers: int | None, kwargs: dict):
    from zoo.envs.host import VECTORIZATIONS, HostVecEnv

    if vectorization is None:
        vectorization = suite.default_vectorization
        if num_envs == 1 or (os.cpu_count() or 1) == 1:
            vectorization = "sync"
    if vectorization not in VECTORIZATIONS:
        raise ValueError(f"vectorization must be one of {VECTORIZATIONS}, got {vectorization!r}")
    info_keys = tuple(kwargs.pop("info_keys", suite.info_keys))
    env_fns = [functools.partial(_build_single, suite.name, task, derive_seed(seed, i), kwargs)
               for i in range(num_envs)]
    return HostVecEnv(env_fns, device=dev, vectorization=vectorization, num_workers=num_workers,
                      info_keys=info_keys, seed=seed, env_id=env_id)


def _build_single(suite_name: str, task: str, seed: int | None, kwargs: dict) -> gym.Env:
    """Build one standardized env (module-level so that worker processes can unpickle it)."""
    from zoo.envs.wrappers import standardize

    import zoo.envs  # noqa: F401  (registers the suites in a spawned worker)

    suite = _SUITES[suite_name]
    return standardize(suite.make_single(task, seed=seed, **kwargs))
