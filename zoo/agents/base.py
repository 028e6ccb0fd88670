"""The agent contract shared by every algorithm: construction, learn/act/evaluate, save/load.

Subclasses set ``config_class`` (and ``budget_unit``, what ``learn(n)``
counts) and implement ``_build`` (networks and optimizers), ``_learn`` (the
training loop) and ``_act``. Saving and loading, the agent's own random
generators, the schedule horizon, evaluation, logging and the progress bar
live here once.
"""

from __future__ import annotations

import functools
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from gymnasium import spaces
from torch import nn

from zoo import __version__
from zoo.agents.checkpointing import CheckpointSchedule, read_training_state, write_training_state
from zoo.agents.config import AgentConfig
from zoo.agents.guard import NumericalGuard
from zoo.checkpoint import (CompanionParts, CompanionWriter, load_checkpoint, pack_state, save_checkpoint,
                            unpack_state)
from zoo.envs import make_env
from zoo.envs.host import HostVecEnv
from zoo.envs.vec import BatchedEnv, VecEnv
from zoo.errors import CheckpointError, ConfigError, MissingExtraError
from zoo.logger import RunLogger
from zoo.progress import TrainingProgress
from zoo.rollout import Obs, evaluate_policy
from zoo.utils.device import resolve_device
from zoo.utils.seeding import AgentRandomness, check_seed

#: ``callback(agent, metrics) -> bool | None``; returning False stops training.
Callback = Callable[["Agent", dict], Optional[bool]]

CHECKPOINT_KIND_PREFIX = "agent/"


def with_own_randomness(method):
    """Run an agent method with the agent's own torch generator state in place of the global one."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.randomness.active():
            return method(self, *args, **kwargs)

    return wrapper


class Agent:
    """``Name(env, *, seed=0, device="auto", **hyperparameters)``: the shared agent contract.

    ``env`` is an env id (built with ``config.num_envs`` envs on ``device``) or
    a :class:`~zoo.envs.VecEnv`. Hyperparameters are validated against
    ``config_class``; the defaults are the paper's (or the reference code's),
    with presets per task family where the reference code has them.
    """

    config_class: type[AgentConfig] = AgentConfig
    #: the env classes this agent runs on (numeric VecEnvs; language agents take text games)
    env_types: tuple[type, ...] = (VecEnv,)
    #: what ``learn(n)`` counts: "env steps", "gradient steps", "dialogue turns", "generations"
    budget_unit: str = "env steps"
    #: offline agents learn from ``data=`` (a dataset object or a path) and implement :meth:`use_data`
    learns_from_data: bool = False
    #: what ``data=`` holds, for messages ("a preference dataset", "logged dialogues")
    data_description: str = "data"

    def __init__(self, env: str | VecEnv, *, seed: int = 0, device: str | torch.device = "auto", data: Any = None,
                 **hyperparameters):
        if "dataset" in hyperparameters and self.learns_from_data:
            warnings.warn(f"{type(self).__name__}(dataset=...) is now data=...", DeprecationWarning, stacklevel=2)
            data = hyperparameters.pop("dataset") if data is None else data
        if data is not None and not self.learns_from_data:
            raise ConfigError(f"{type(self).__name__} learns from its env and takes no data=; the offline agents "
                              f"({', '.join(_offline_agent_names())}) do")
        self.device = resolve_device(device)
        if not isinstance(env, (str, *self.env_types)):
            raise TypeError(f"env must be an env id or a {' or '.join(t.__name__ for t in self.env_types)}, "
                            f"got {type(env).__name__}")
        self.env_id: str | None = env if isinstance(env, str) else env.env_id
        self.config = self.config_class.create(self.env_id, **hyperparameters)
        try:
            self.seed = check_seed(seed)
        except ValueError:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}") from None
        #: the agent's own torch and numpy generators (the global ones are left alone)
        self.randomness = AgentRandomness(self.seed, self.device)
        #: the horizon schedules run over (``config.schedule_steps``, else the first ``learn()``'s total)
        self.schedule_steps: int | None = None
        self.num_timesteps = 0
        self.logger: RunLogger | None = None
        #: the path of the last checkpoint this agent wrote or was loaded from (named by NumericalError)
        self.last_checkpoint: Path | None = None
        #: what an offline agent learns from (see :meth:`use_data`); None until given
        self.data: Any = None
        with self.randomness.active():
            self.env = self._make_env(env)
            self._build()
            if data is not None:
                self.use_data(data)

    def _make_env(self, env: str | VecEnv) -> VecEnv:
        if isinstance(env, str):
            env = make_env(env, num_envs=getattr(self.config, "num_envs", 1), device=self.device, seed=self.seed)
            if not isinstance(env, self.env_types):
                env.close()
                raise ConfigError(f"{type(self).__name__} does not run on {self.env_id} (a "
                                  f"{type(env).__name__}); it needs a {' or '.join(t.__name__ for t in self.env_types)}")
        if env.device != self.device:
            raise ConfigError(f"the env lives on {env.device} but the agent on {self.device}; build the env with "
                              f"device={str(self.device)!r} or pass device={str(env.device)!r}")
        return env

    @property
    def np_random(self):
        """The agent's numpy ``Generator`` (seeded from ``seed``; saved in checkpoints)."""
        return self.randomness.numpy

    def schedule_progress(self) -> float:
        """Fraction of the schedule horizon done: ``num_timesteps / schedule_steps``, at most 1."""
        return min(1.0, self.num_timesteps / max(self.schedule_steps or 1, 1))

    def default_schedule_steps(self, total_steps: int) -> int:
        """The horizon when ``schedule_steps`` is not set: the first ``learn()`` call's budget, counted from
        the steps done so far (families that learn in whole rollouts round it to what the call will run)."""
        return self.num_timesteps + total_steps

    # -- to implement -------------------------------------------------------
    def _build(self) -> None:
        """Create networks and optimizers (on ``self.device``)."""
        raise NotImplementedError

    def _learn(self, total_steps: int, report: Callable[[dict], bool]) -> None:
        """Train for ``total_steps`` env steps; call ``report(metrics)`` now and then (False = stop)."""
        raise NotImplementedError

    def _act(self, obs: Obs, deterministic: bool) -> torch.Tensor:
        """Actions for a batch of observations on ``self.device``."""
        raise NotImplementedError

    def use_data(self, data: Any) -> None:
        """Learn from ``data`` from now on (offline agents: a dataset object or the path of one; they load it,
        check that it fits the env, and keep it as ``self.data``)."""
        raise ConfigError(f"{type(self).__name__} learns from its env and takes no data")

    def state_modules(self) -> dict[str, nn.Module]:
        """Modules whose ``state_dict`` is checkpointed."""
        return {}

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers whose state is checkpointed."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """JSON-able counters and schedules that a checkpoint restores (e.g. DQN's epsilon)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved (only the keys it declares)."""
        for key in self.extra_state():
            if key in state:
                setattr(self, key, state[key])

    def training_state(self) -> dict[str, Any]:
        """What a training checkpoint adds to :meth:`save`'s state so that a run goes on where it stopped
        (replay contents, the window of episode statistics, training counters): a tree of tensors, numpy
        arrays, scalars and strings (:func:`zoo.checkpoint.pack_state`); the default has none."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`training_state` returned (the envs start new episodes: their state is not saved)."""

    def remaining_steps(self, total_steps: int) -> int:
        """What ``learn`` must be asked for so that this agent's budget reaches ``total_steps`` in all (0 when
        nothing is left): a run resumed from a checkpoint then ends where the uninterrupted run would have."""
        return max(0, total_steps - self.num_timesteps)

    # -- the contract ---------------------------------------------------------
    def learn(self, total_steps: int, callback: Callback | None = None, progress: bool = True,
              log_dir: str | os.PathLike | None = None, log_interval_s: float = 2.0,
              on_nonfinite: str = "raise", log_mode: str = "auto", *,
              checkpoint_path: str | os.PathLike | None = None, checkpoint_every: int | None = None,
              checkpoint_interval_s: float | None = None) -> "Agent":
        """Train for ``total_steps`` more units of the agent's budget (``budget_unit``; env steps are counted
        over all envs).

        ``callback(agent, metrics)`` is called at each report; returning False
        stops early. With ``log_dir``, metrics go to CSV and TensorBoard there
        (with the config snapshot; ``log_mode``: ``"auto"`` continues this agent's own run there and refuses
        another's, ``"new"``, ``"resume"``, ``"overwrite"``: see :class:`~zoo.logger.RunLogger`). A non-finite loss or parameter raises
        :class:`~zoo.errors.NumericalError` (``on_nonfinite="rollback"`` or
        ``"skip"`` instead: see :mod:`zoo.agents.guard`).

        With ``checkpoint_path``, a training checkpoint (``save(checkpoint_path, training_state=True)``) is
        written at the first report after ``checkpoint_every`` units or ``checkpoint_interval_s`` seconds
        since the last one, whichever comes first (neither given: every 10 minutes), and when learn returns
        (also when a callback stops it; not when it raises): see :mod:`zoo.agents.checkpointing`. A resumed
        log folder drops the rows past this agent's step (written after its checkpoint by a killed run).
        The last report of a call is always logged.
        """
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ConfigError(f"total_steps must be a positive integer, got {total_steps!r} ({self.budget_unit})")
        if self.learns_from_data and self.data is None:
            raise ConfigError(f"{type(self).__name__} learns from {self.data_description} and has none: build it with "
                              f"{type(self).__name__}(env, data=...) or load it with "
                              f"{type(self).__name__}.load(path, data=...)")
        if self.schedule_steps is None:
            self.schedule_steps = getattr(self.config, "schedule_steps", None) or \
                self.default_schedule_steps(total_steps)
        guard = NumericalGuard(self, on_nonfinite)
        checkpoints = CheckpointSchedule(self, checkpoint_path, checkpoint_every, checkpoint_interval_s)
        if log_dir is not None:
            self.logger = RunLogger(log_dir, config=self.describe(), mode=log_mode, resume_step=self.num_timesteps)
        start_steps, start_time = self.num_timesteps, time.perf_counter()
        last_log = [-float("inf")]
        unlogged: list[tuple[int, dict]] = []  # the last report, if it was not logged
        with TrainingProgress(total_steps, description=type(self).__name__, unit=self.budget_unit,
                              enabled=progress) as bar, self.randomness.active():
            def report(metrics: dict, force: bool = False) -> bool:
                done_steps = self.num_timesteps - start_steps
                metrics = dict(metrics)
                metrics["sps"] = done_steps / max(time.perf_counter() - start_time, 1e-9)
                metrics["time_s"] = time.perf_counter() - start_time
                bar.update(done_steps, metrics.get("return_mean"))
                now = time.perf_counter()
                checkpoint_due = checkpoints.due()
                unlogged.clear()
                if self.logger is not None and (force or checkpoint_due or now - last_log[0] >= log_interval_s):
                    self.logger.log(self.num_timesteps, metrics)
                    last_log[0] = now
                elif self.logger is not None:
                    unlogged.append((self.num_timesteps, metrics))
                guard.check(metrics)
                if checkpoint_due:  # after the guard: a non-finite state is never checkpointed
                    checkpoints.write()
                if callback is not None:
                    with self.randomness.suspended():  # the callback's draws are the caller's, not the agent's
                        if callback(self, metrics) is False:
                            return False
                return True

            self._learn(total_steps, report)
            if self.logger is not None:
                for step, metrics in unlogged:  # the last report, before the checkpoint of its step
                    self.logger.log(step, metrics)
            checkpoints.finish()
        if self.logger is not None:
            self.logger.flush()
        return self

    @with_own_randomness
    @torch.no_grad()
    def act(self, obs: Obs, deterministic: bool = False) -> torch.Tensor:
        """Actions for a batch of observations (tensors, or a dict of tensors), on the env's device."""
        if isinstance(obs, dict):
            obs = {k: torch.as_tensor(v, device=self.device) for k, v in obs.items()}
        else:
            obs = torch.as_tensor(obs, device=self.device)
        self._check_batch(obs)
        return self._act(obs, deterministic)

    def _check_batch(self, obs: Obs) -> None:
        """A ConfigError unless ``obs`` is a batch of observations of the env's single observation space."""
        space = self.env.single_observation_space
        if isinstance(space, spaces.Dict) != isinstance(obs, dict):
            raise ConfigError(f"act() takes {'a dict of tensors' if isinstance(space, spaces.Dict) else 'a tensor'} "
                              f"for the observation space {space}, got {type(obs).__name__}")
        items = [(k, obs[k] if k in obs else None, space[k]) for k in space.spaces] if isinstance(obs, dict) \
            else [(None, obs, space)]
        for key, value, sub in items:
            name = f"observations[{key!r}]" if key is not None else "observations"
            if value is None:
                raise ConfigError(f"act(): {name} is missing (the observation space has keys {list(space.spaces)})")
            shape = tuple(getattr(sub, "shape", None) or ())
            if tuple(value.shape[1:]) != shape:
                hint = " (one observation? pass obs[None], a batch of one)" if tuple(value.shape) == shape else ""
                raise ConfigError(f"act(): {name} have shape {tuple(value.shape)}, expected (batch, "
                                  f"{', '.join(map(str, shape))}) for {space if key is None else sub}{hint}")

    def evaluate(self, n_episodes: int = 10, deterministic: bool = True, env: BatchedEnv | None = None,
                 seed: int | None = None) -> dict[str, float]:
        """Mean/std return, mean length (and success rate) over ``n_episodes`` fresh episodes.

        Runs on ``env`` if given, else on a new env like the training one
        (seeded apart from training), so that training envs keep their state.
        A stochastic policy samples from a stream of its own, seeded with
        ``seed``: evaluating never changes what training draws next, and the
        same parameters and seed give the same result. Numeric and text envs
        go through the same loop (:func:`~zoo.rollout.evaluate_policy`).
        """
        if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
            raise ConfigError(f"evaluate() needs a positive number of episodes, got n_episodes={n_episodes!r}")
        seed = self.seed + 1_000_003 if seed is None else seed
        own_env = env is None
        if own_env:
            env = self.evaluation_env(n_episodes)
        try:
            with self.randomness.isolated(seed):
                return evaluate_policy(env, lambda obs: self._act(obs, deterministic), n_episodes, seed=seed)
        finally:
            if own_env:
                env.close()

    def close(self) -> None:
        """Release what the agent holds open: its env (worker processes) and, for agents that run one, their
        background machinery (APPO's collector thread, ONI's annotator)."""
        self.env.close()

    def evaluation_env(self, n_episodes: int) -> BatchedEnv:
        """A fresh env like the training one for ``evaluate`` (at most 8 copies, stepped in-process)."""
        if self.env_id is None:
            raise ConfigError("evaluate() needs env= when the agent was built from a VecEnv without an id")
        kwargs = dict(self.env.make_kwargs)
        if isinstance(self.env, HostVecEnv):
            kwargs["vectorization"] = "sync"
        return make_env(self.env_id, num_envs=min(n_episodes, 8), device=self.device, **kwargs)

    def describe(self) -> dict[str, Any]:
        """What a run folder's ``config.json`` records."""
        env_kwargs = dict(self.env.make_kwargs)
        try:
            json.dumps(env_kwargs)
        except TypeError:  # e.g. a torch dtype: recorded as text, not rebuilt on load
            env_kwargs = {"__unrestorable__": repr(env_kwargs)}
        return {"agent": type(self).__name__, "env_id": self.env_id, "env_kwargs": env_kwargs, "seed": self.seed,
                "device": str(self.device), "zoo_version": __version__, "budget_unit": self.budget_unit,
                "hyperparameters": self.config.to_dict()}

    # -- checkpoints ----------------------------------------------------------
    def save(self, path: str | os.PathLike, training_state: bool = False) -> Path:
        """Write a safetensors checkpoint (networks, optimizers, step count, schedule horizon, random generators,
        counters, config); atomic. With ``training_state``, also the training state (:meth:`training_state`:
        the replay buffer, the episode statistics' window, counters) as a companion part, so that a loaded
        agent goes on training where this one stopped (the envs start new episodes)."""
        tensors: dict[str, torch.Tensor] = {}
        for name, module in self.state_modules().items():
            for key, value in module.state_dict().items():
                tensors[f"modules/{name}/{key}"] = value
        skeletons = {}
        for name, optimizer in self.state_optimizers().items():
            packed, skeletons[name] = pack_state(optimizer.state_dict(), f"optimizers/{name}")
            tensors.update(packed)
        for name, state in self.randomness.state_tensors().items():
            tensors[f"randomness/{name}"] = state
        config = dict(self.describe(), num_timesteps=self.num_timesteps, schedule_steps=self.schedule_steps,
                      numpy_random=self.randomness.numpy_state(), optimizers=skeletons,
                      extra_state=self.extra_state())
        state = self.training_state() if training_state else None
        if state is not None:
            config["training_state"] = True
        target = Path(os.fspath(path)).expanduser().resolve()

        def companions(parts: CompanionWriter) -> None:
            self.save_companions(target, parts)
            if state is not None:
                write_training_state(parts, state)

        # the companions are written under new names first; the header, listing them with their hashes, commits all
        saved = save_checkpoint(path, tensors, config, kind=CHECKPOINT_KIND_PREFIX + type(self).__name__,
                                companions=companions)
        self.last_checkpoint = saved
        return saved

    def save_companions(self, path: Path, parts: CompanionWriter) -> None:
        """Write state that is not torch tensors beside the checkpoint at ``path`` (e.g. a tree ensemble in
        its library's own file format), under the base paths ``parts.part(label, description)`` hands out
        (never under fixed names: the old checkpoint keeps its files until the new one is committed); the
        default has none."""

    def load_companions(self, path: Path, parts: CompanionParts) -> None:
        """Read what :meth:`save_companions` wrote beside the checkpoint at ``path``: ``parts.base(label)``
        (already checked against the checkpoint's manifest), or None for a checkpoint saved before manifests."""

    @classmethod
    def load(cls, path: str | os.PathLike, env: str | VecEnv | None = None,
             device: str | torch.device = "auto", data: Any = None, models: Mapping[str, str] | None = None,
             **deprecated) -> "Agent":
        """Rebuild an agent from :meth:`save`'s checkpoint (on ``env`` if given, else its env id), with its
        training state when it is a training checkpoint (the envs start new episodes); offline
        agents take ``data=`` to go on learning (datasets are not stored in checkpoints). ``models`` names
        pretrained models (a hub id or a directory) for the hyperparameters that load one (a language agent's
        ``actor``, ``critic_encoder``): a checkpoint that names one outside its own folder is loaded only when
        the caller passes it here, so that a checkpoint never makes zoo download or read models elsewhere."""
        if "dataset" in deprecated:
            warnings.warn("load(..., dataset=...) is now data=...", DeprecationWarning, stacklevel=2)
            data = deprecated.pop("dataset") if data is None else data
        if deprecated:
            raise TypeError(f"load() got unexpected keyword arguments {sorted(deprecated)}")
        kind = CHECKPOINT_KIND_PREFIX + cls.__name__ if cls is not Agent else None
        tensors, config, parts = load_checkpoint(path, kind=kind, parts=True)
        if cls is Agent:
            from zoo.agents import get_agent

            if not isinstance(config.get("agent"), str):
                raise CheckpointError(f"{path}: the checkpoint's 'agent' is {config.get('agent')!r}, not a name")
            try:
                cls = get_agent(config["agent"])
            except ConfigError as exc:
                raise CheckpointError(f"{path}: {exc}") from exc
        if isinstance(config.get("hyperparameters"), dict):
            config["hyperparameters"] = cls.checked_model_paths(path, config["hyperparameters"], models or {})
        try:
            agent = cls._rebuild(path, tensors, config, parts, env, device)
        except (CheckpointError, MissingExtraError):
            raise
        except (ConfigError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise CheckpointError(f"{path}: the checkpoint's record is malformed or does not fit this agent "
                                  f"({type(exc).__name__}: {exc}); it was not written by this zoo's save(), or was "
                                  f"changed since") from exc
        if data is not None:
            with agent.randomness.active():
                agent.use_data(data)
        agent.last_checkpoint = Path(os.fspath(path)).expanduser().resolve()
        return agent

    @classmethod
    def checked_model_paths(cls, path, hyperparameters: dict, models: Mapping[str, str]) -> dict:
        """The saved hyperparameters with the caller's ``models`` in, after refusing a saved model spec that
        points outside the checkpoint's folder (agents that load pretrained models override; the base has
        none)."""
        if models:
            raise ConfigError(f"{cls.__name__} loads no pretrained models; models= is for language agents")
        return hyperparameters

    @classmethod
    def _rebuild(cls, path, tensors: dict, config: dict, parts, env, device) -> "Agent":
        """The agent a loaded checkpoint describes, with its state restored (``load``'s body)."""
        for name, kinds in (("agent", str), ("env_id", (str, type(None))), ("seed", int), ("hyperparameters", dict),
                            ("optimizers", dict), ("num_timesteps", int), ("extra_state", dict)):
            if name in config and not isinstance(config[name], kinds) or isinstance(config.get(name), bool):
                raise CheckpointError(f"{path}: the checkpoint's '{name}' is {config[name]!r}, not a "
                                      f"{getattr(kinds, '__name__', kinds)}")
        env_kwargs = config.get("env_kwargs") or {}
        if env is None and env_kwargs and "__unrestorable__" not in env_kwargs:
            num_envs = config["hyperparameters"].get("num_envs", 1)
            env = make_env(config["env_id"], num_envs=num_envs, device=resolve_device(device), seed=config["seed"],
                           **env_kwargs)
        agent = cls(env if env is not None else config["env_id"], seed=config["seed"], device=device,
                    **cls.config_class.upgrade_saved(config["hyperparameters"]))
        for name, module in agent.state_modules().items():
            prefix = f"modules/{name}/"
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(state)
            except RuntimeError as exc:
                raise CheckpointError(f"{path}: the saved '{name}' network does not fit this agent: {exc}") from exc
        for name, optimizer in agent.state_optimizers().items():
            prefix = f"optimizers/{name}"
            opt_tensors = {k: v.to(agent.device) for k, v in tensors.items() if k.startswith(prefix + "/")}
            optimizer.load_state_dict(unpack_state(opt_tensors, config["optimizers"][name]))
        agent.num_timesteps = int(config.get("num_timesteps", 0))
        if config.get("schedule_steps") is not None:
            agent.schedule_steps = int(config["schedule_steps"])
        agent.randomness.load_state_tensors({k[len("randomness/"):]: v for k, v in tensors.items()
                                             if k.startswith("randomness/")})
        if isinstance(config.get("numpy_random"), dict):
            agent.randomness.load_numpy_state(config["numpy_random"])
        agent.load_extra_state(config.get("extra_state", {}))
        resolved = Path(os.fspath(path)).expanduser().resolve()
        agent.load_companions(resolved, parts)
        if config.get("training_state") is True:
            agent.load_training_state(read_training_state(resolved, parts))
        return agent



def load_agent(path: str | os.PathLike, env: str | VecEnv | None = None, device: str | torch.device = "auto",
               data: Any = None, models: Mapping[str, str] | None = None) -> Agent:
    """Load any registered agent's checkpoint (the class is read from the file)."""
    return Agent.load(path, env=env, device=device, data=data, models=models)


def _offline_agent_names() -> list[str]:
    from zoo.agents import get_agent, list_agents

    return [name for name in list_agents() if get_agent(name).learns_from_data]

