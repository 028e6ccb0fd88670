"""The batched environment protocol (:class:`BatchedEnv`) and its torch-native numeric form (:class:`VecEnv`)."""

from __future__ import annotations

import abc
from typing import Any, Union

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from zoo.errors import ActionError
from zoo.utils.device import canonical_device

Obs = Union[torch.Tensor, dict[str, torch.Tensor]]

# numpy dtype -> torch dtype for the observation and action tensors zoo returns.
_TORCH_DTYPES = {
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float64): torch.float64,
    np.dtype(np.float16): torch.float16,
    np.dtype(np.uint8): torch.uint8,
    np.dtype(np.int8): torch.int8,
    np.dtype(np.int16): torch.int16,
    np.dtype(np.int32): torch.int32,
    np.dtype(np.int64): torch.int64,
    np.dtype(np.bool_): torch.bool,
}


def torch_dtype(dtype: np.dtype) -> torch.dtype:
    """The torch dtype that holds values of numpy ``dtype``."""
    try:
        return _TORCH_DTYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"numpy dtype {np.dtype(dtype)} has no torch equivalent supported by zoo") from None


def action_spec(space: gym.Space) -> tuple[tuple[int, ...], torch.dtype]:
    """Per-env shape and torch dtype of actions for a single-env action ``space``."""
    if isinstance(space, spaces.Discrete):
        return (), torch.int64
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        return tuple(space.shape), torch.int64
    if isinstance(space, spaces.Box):
        return tuple(space.shape), torch.float32
    raise TypeError(f"zoo does not support action spaces of type {type(space).__name__}: {space}")


class BatchedEnv(abc.ABC):
    """The protocol every batched environment implements, numeric (:class:`VecEnv`) or text.

    ``num_envs`` copies of one environment stepped together:

    * ``reset(seed=None, options=None)`` returns the batch of first observations;
    * ``step(actions)`` returns ``(obs, reward, terminated, truncated, info)``
      with ``reward`` float32 and ``terminated``/``truncated`` bool tensors of
      shape ``(num_envs,)`` on ``device``; finished episodes reset
      automatically and ``info["final_obs"]`` holds the observations each step
      actually led to;
    * ``step_async(actions)`` / ``step_wait()`` split a step in two (the
      gymnasium / stable-baselines3 names), so that a learner can work while
      the simulators step; ``step`` is their composition. The default here is
      for envs that step synchronously: ``step_async`` keeps the actions and
      ``step_wait`` calls ``step``. Host-simulated envs with worker processes
      override both to really overlap;
    * ``sample_actions()`` gives a batch of random valid actions; ``close()``
      releases the envs; the env is a context manager that closes on exit.

    Attributes: ``env_id``, ``num_envs``, ``device``, the single-env gymnasium
    spaces ``single_observation_space`` / ``single_action_space`` and their
    batched forms ``observation_space`` / ``action_space``, ``make_kwargs``
    (the constructor keyword arguments given to ``make_env``, to rebuild the
    same env; ``{}`` by default), ``host_simulated``, ``info_keys`` (the
    numeric ``info`` entries besides ``final_obs``) and ``closed``.
    """

    env_id: str = "?"
    num_envs: int
    device: torch.device
    single_observation_space: gym.Space
    single_action_space: gym.Space
    observation_space: gym.Space
    action_space: gym.Space
    #: numeric ``info`` entries returned by ``step`` besides ``final_obs``.
    info_keys: tuple[str, ...] = ()
    #: True where environments are simulated on the host (numpy/C/Python), False for torch-native ones.
    host_simulated: bool = True
    #: the env constructor's keyword arguments given to ``make_env`` (to rebuild the same env).
    make_kwargs: dict = {}
    closed: bool = False
    #: True between ``step_async`` and ``step_wait``.
    _step_in_flight: bool = False

    def __init__(self, num_envs: int, device: torch.device | str, single_observation_space: gym.Space,
                 single_action_space: gym.Space):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.device = canonical_device(device)
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = gym.vector.utils.batch_space(single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(single_action_space, self.num_envs)
        self.make_kwargs = {}
        self.closed = False
        self._step_in_flight = False
        self._async_actions: Any = None

    # -- the protocol ----------------------------------------------------
    @abc.abstractmethod
    def reset(self, seed: int | list[int] | None = None, options: dict | None = None) -> Any:
        """Reset every env; return the first observations."""

    @abc.abstractmethod
    def step(self, actions: Any) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Step every env with ``actions``; finished episodes reset automatically."""

    @abc.abstractmethod
    def sample_actions(self) -> Any:
        """A batch of random valid actions."""

    def step_async(self, actions: Any) -> None:
        """Start a step with ``actions``; :meth:`step_wait` returns its results.

        This default keeps the actions and steps in :meth:`step_wait` (for envs
        that step synchronously, e.g. torch-native and text envs).
        """
        self._check_no_step_in_flight("step_async()")
        self._async_actions = actions
        self._step_in_flight = True

    def step_wait(self) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Finish the step started by :meth:`step_async`; return ``(obs, reward, terminated, truncated, info)``."""
        self._check_step_in_flight()
        actions, self._async_actions = self._async_actions, None
        self._step_in_flight = False
        return self.step(actions)

    def close(self) -> None:
        """Release the environments (and worker processes)."""
        self.closed = True

    # -- misuse checks shared by every implementation ---------------------
    def _check_no_step_in_flight(self, what: str) -> None:
        if self._step_in_flight:
            raise RuntimeError(
                f"{self.env_id}: {what} called while a step is in flight (step_async() was called and its "
                f"step_wait() was not); call step_wait() first to receive that step's results")

    def _check_step_in_flight(self) -> None:
        if not self._step_in_flight:
            raise RuntimeError(
                f"{self.env_id}: step_wait() called without a step in flight; call step_async(actions) first "
                f"(or step(actions), which does both)")

    def __enter__(self) -> "BatchedEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            if not self.closed:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.env_id!r}, num_envs={self.num_envs}, device={self.device}, "
                f"obs={self.single_observation_space}, act={self.single_action_space})")


class VecEnv(BatchedEnv):
    """``num_envs`` copies of one environment, stepped together on torch tensors.

    * ``reset(seed=None)`` returns the batch of observations: a tensor of
      leading size ``num_envs`` on ``device`` (a dict of such tensors for dict
      observation spaces). An integer seed gives env ``i`` the seed ``seed + i``.
    * ``step(actions)`` takes a tensor of leading size ``num_envs`` on
      ``device`` and returns ``(obs, reward, terminated, truncated, info)``:
      ``reward`` float32, ``terminated``/``truncated`` bool, all ``(num_envs,)``.
    * Episodes reset automatically: for an env whose episode ended in this
      step, ``obs`` already holds the first observation of its next episode,
      and ``info["final_obs"]`` holds the true last observation. For every env,
      ``info["final_obs"]`` is the observation the step actually led to (it
      equals ``obs`` where the episode goes on, and may be the same tensor), so
      that truncated episodes can bootstrap from it.
    * Other entries of ``info`` are float32 tensors of shape ``(num_envs,)``
      (for example ``success`` on MetaWorld), valid for every env.
    * ``single_observation_space`` / ``single_action_space`` are the gymnasium
      spaces of one env; ``observation_space`` / ``action_space`` are batched.
    * ``action_shape`` / ``action_dtype`` are the per-env shape and torch dtype
      of the actions ``step`` takes (see :func:`action_spec`).
    """

    action_shape: tuple[int, ...]
    action_dtype: torch.dtype

    def __init__(self, num_envs: int, device: torch.device, single_observation_space: gym.Space,
                 single_action_space: gym.Space):
        super().__init__(num_envs, device, single_observation_space, single_action_space)
        self.action_shape, self.action_dtype = action_spec(single_action_space)
        self._batch_action_shape = torch.Size((self.num_envs, *self.action_shape))

    # -- helpers shared by every implementation -------------------------
    def sample_actions(self) -> torch.Tensor:
        """A batch of uniformly random valid actions on ``device``."""
        sample = np.asarray(self.action_space.sample())
        return torch.as_tensor(sample, dtype=self.action_dtype).to(self.device)

    def check_actions(self, actions: Any) -> torch.Tensor:
        """Validate ``actions`` against the action space; return them as a tensor on ``device``.

        Raises :class:`zoo.errors.ActionError` naming what was expected. Integer
        actions of any integer dtype and continuous actions of any float dtype
        are accepted; a numpy array is accepted when the env lives on the CPU.
        """
        if (isinstance(actions, torch.Tensor) and actions.dtype == self.action_dtype
                and actions.device == self.device and actions.shape == self._batch_action_shape):
            return actions
        expected_shape = (self.num_envs, *self.action_shape)
        kind = "integer" if self.action_dtype == torch.int64 else "floating-point"
        if isinstance(actions, np.ndarray):
            if self.device.type != "cpu":
                raise ActionError(
                    f"{self.env_id}: actions are a numpy array, but this env lives on {self.device}; "
                    f"pass a torch tensor on {self.device}")
            actions = torch.from_numpy(actions)
        elif not isinstance(actions, torch.Tensor):
            raise ActionError(
                f"{self.env_id}: actions must be a torch tensor of shape {expected_shape} "
                f"({kind}, on {self.device}), got {type(actions).__name__}")
        if actions.device != self.device:
            raise ActionError(
                f"{self.env_id}: actions are on {actions.device}, expected them on the env's device {self.device}")
        if tuple(actions.shape) != expected_shape:
            raise ActionError(
                f"{self.env_id}: actions have shape {tuple(actions.shape)}, expected {expected_shape} "
                f"(num_envs={self.num_envs}, action space {self.single_action_space})")
        if self.action_dtype == torch.int64:
            if actions.is_floating_point() or actions.is_complex() or actions.dtype == torch.bool:
                raise ActionError(
                    f"{self.env_id}: actions have dtype {actions.dtype}, expected an integer dtype "
                    f"(torch.int64) for action space {self.single_action_space}")
        elif not actions.is_floating_point():
            raise ActionError(
                f"{self.env_id}: actions have dtype {actions.dtype}, expected a floating-point dtype "
                f"(torch.float32) for action space {self.single_action_space}")
        return actions.to(self.action_dtype)
