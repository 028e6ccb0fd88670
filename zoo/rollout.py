"""Rollout collection into preallocated device tensors, with episode statistics tracked on the way.

A policy is any callable on a batch of observations (tensors on the env's
device) that returns a :class:`PolicyStep` (or just the actions). The
collector runs it for ``num_steps`` steps of a :class:`~zoo.envs.VecEnv` and
writes observations, actions, log-probs, values, rewards, terminated and
truncated flags, and the bootstrap values of truncated episodes into tensors
allocated once. Nothing is appended to Python lists per step, and for
torch-native envs nothing leaves the device.

Every rollout also records, per step, ``episode_starts`` (the observation is
the first of an episode) and ``policy_versions`` (the collector's
``policy_version`` when the action was chosen: an update count the learner
sets, so that off-policy corrections know how stale each sample is).

**Recurrent policies.** A collector built with ``initial_state=factory``
(``factory(num_envs)`` returns the initial recurrent state: a tensor or a
tuple of tensors, env axis first, e.g. :meth:`zoo.recurrent.RecurrentCore.initial_state`)
calls the policy as ``policy(obs, state, episode_start)``; the policy returns
a :class:`PolicyStep` whose ``state`` is the next state. The collector stores
the state the policy saw before acting at step ``t`` in ``Rollout.states``
and resets it to the initial state where an episode ends, so that an update
can replay the sequences (see :mod:`zoo.recurrent`). A ``value_fn`` for
truncation bootstraps is then called as ``value_fn(final_obs, state,
episode_start)`` with the state after the step. Non-recurrent policies keep
the one-argument call and store no states.

:class:`DoubleBufferedCollector` collects the same :class:`Rollout` from two
halves of the envs (two worker-process ``VecEnv`` s), stepping one half while
the policy acts on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from zoo.envs.host import observation_fields
from zoo.envs.vec import BatchedEnv, Obs, VecEnv, torch_dtype
from zoo.recurrent import State, state_cat, state_copy_, state_map, state_where


class PolicyStep(NamedTuple):
    """What a policy returns for a batch: actions, and optionally their log-probs and state values.

    ``env_action`` is what the env receives when it differs from the stored
    ``action`` (e.g. a Gaussian sample clipped to the action bounds). For text
    envs ``action`` is a list of strings. A recurrent policy returns its next
    recurrent ``state`` (a tensor or tuple of tensors, env axis first).
    """

    action: Any
    log_prob: Optional[torch.Tensor] = None
    value: Optional[torch.Tensor] = None
    env_action: Optional[torch.Tensor] = None
    state: Optional[State] = None

    @property
    def to_env(self) -> Any:
        """What ``step`` receives."""
        return self.action if self.env_action is None else self.env_action


Policy = Callable[..., Union[PolicyStep, torch.Tensor, list]]
ValueFn = Callable[..., torch.Tensor]
StateFactory = Callable[[int], State]


def _as_step(out) -> PolicyStep:
    if isinstance(out, PolicyStep):
        return out
    if isinstance(out, (torch.Tensor, list)):  # a list: the utterances for a text env
        return PolicyStep(out)
    if isinstance(out, tuple):
        return PolicyStep(*out)
    raise TypeError(f"a policy must return a PolicyStep, an action tensor or a list of strings, "
                    f"got {type(out).__name__}")


def obs_index(obs: Obs, index) -> Obs:
    """``obs[index]`` for a tensor or a dict of tensors."""
    return {k: v[index] for k, v in obs.items()} if isinstance(obs, dict) else obs[index]


def obs_copy_(dst: Obs, src: Obs) -> None:
    """In-place copy of a tensor or dict of tensors."""
    if isinstance(dst, dict):
        for k in dst:
            dst[k].copy_(src[k])
    else:
        dst.copy_(src)


def obs_cat(parts: Sequence[Obs], dim: int = 0) -> Obs:
    """Concatenation of tensors (or dicts of tensors) along ``dim``."""
    if isinstance(parts[0], dict):
        return {k: torch.cat([p[k] for p in parts], dim) for k in parts[0]}
    return torch.cat(list(parts), dim)


class EpisodeStats:
    """Running episode return, length and success per env, and a window of finished episodes.

    Everything stays on the device (no host sync per step): finished episodes
    are scattered into ring buffers; :meth:`summary` reads them out.
    ``success`` counts an episode as a success if ``info["success"]`` was
    non-zero at any of its steps (MetaWorld's convention).
    """

    def __init__(self, num_envs: int, device: torch.device, window: int = 100):
        self.window = window
        self.device = torch.device(device)
        self.running_return = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.running_length = torch.zeros(num_envs, dtype=torch.int64, device=device)
        self.running_success = torch.zeros(num_envs, dtype=torch.bool, device=device)
        # one spare slot at the end receives the writes of envs that did not finish
        self.returns = torch.zeros(window + 1, dtype=torch.float64, device=device)
        self.lengths = torch.zeros(window + 1, dtype=torch.int64, device=device)
        self.successes = torch.zeros(window + 1, dtype=torch.float32, device=device)
        self.count = torch.zeros((), dtype=torch.int64, device=device)
        self.has_success = False

    def update(self, reward: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
               success: torch.Tensor | None = None, record: torch.Tensor | None = None) -> None:
        """Add one step; episodes that end are recorded (only where ``record`` is True, if given)."""
        self.running_return += reward
        self.running_length += 1
        if success is not None:
            self.has_success = True
            self.running_success |= success.bool()
        done = terminated | truncated
        recorded = done if record is None else done & record
        slot = (self.count + torch.cumsum(recorded, 0) - 1) % self.window
        slot = torch.where(recorded, slot, self.window)
        self.returns.scatter_(0, slot, self.running_return)
        self.lengths.scatter_(0, slot, self.running_length)
        self.successes.scatter_(0, slot, self.running_success.float())
        self.count += recorded.sum()
        keep = ~done
        self.running_return *= keep
        self.running_length *= keep
        self.running_success &= keep

    @property
    def episodes(self) -> int:
        """Number of finished episodes so far (syncs with the device)."""
        return int(self.count)

    def summary(self, first: int | None = None) -> dict[str, float]:
        """Mean return, length (and success rate) over the last ``window`` finished episodes, or over
        the first ``first`` ones when the window has not wrapped (as ``evaluate_policy`` arranges)."""
        n = min(int(self.count), self.window)
        if first is not None:
            n = min(n, first)
        if n == 0:
            return {"episodes": 0}
        out = {"episodes": int(self.count) if first is None else n, "return_mean": float(self.returns[:n].mean()),
               "return_std": float(self.returns[:n].std(unbiased=False)),
               "length_mean": float(self.lengths[:n].double().mean())}
        if self.has_success:
            out["success_rate"] = float(self.successes[:n].mean())
        return out

    def state_dict(self) -> dict[str, Any]:
        """The window of finished episodes and their count (for a training checkpoint); the episodes under
        way are not kept: after a resume the envs start new ones."""
        return {"window": self.window, "returns": self.returns[:-1].cpu(), "lengths": self.lengths[:-1].cpu(),
                "successes": self.successes[:-1].cpu(), "count": int(self.count), "has_success": self.has_success}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s window (of the same size); the running episodes start from zero."""
        if int(state["window"]) != self.window:
            raise ValueError(f"the saved episode statistics keep {state['window']} episodes, these {self.window}")
        for name in ("returns", "lengths", "successes"):
            getattr(self, name)[:-1] = torch.as_tensor(state[name]).to(self.device, getattr(self, name).dtype)
        self.count.fill_(int(state["count"]))
        self.has_success = bool(state["has_success"])
        for running in (self.running_return, self.running_length, self.running_success):
            running.zero_()


@dataclass
class Rollout:
    """``num_steps x num_envs`` of experience (views into the collector's storage).

    ``bootstrap_values[t, i]`` is the value of the true final observation where
    env ``i``'s episode was truncated at step ``t`` (0 elsewhere); ``next_obs``
    is the observation after the last step, to bootstrap the rollout's tail.
    ``episode_starts[t, i]`` is True where ``obs[t, i]`` is the first
    observation of an episode and ``policy_versions[t, i]`` (int64) is the
    collector's ``policy_version`` when the action was chosen. For a recurrent
    policy, ``states`` holds the state it saw before acting at each step
    (each tensor ``(T, N, ...)``) and ``next_state`` / ``next_episode_start``
    are what it carries into the next rollout; they are ``None`` otherwise.
    ``extras`` (name -> ``(T, N, ...)`` tensor) are per-step inputs a learner
    adds after collection (e.g. ONI's message counts); :meth:`env_columns`
    minibatches carry them along.
    """

    obs: Obs
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    bootstrap_values: torch.Tensor
    next_obs: Obs
    episode_starts: Optional[torch.Tensor] = None
    policy_versions: Optional[torch.Tensor] = None
    states: Optional[State] = None
    next_state: Optional[State] = None
    next_episode_start: Optional[torch.Tensor] = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_envs(self) -> int:
        return self.rewards.shape[1]

    def clone(self) -> "Rollout":
        """A copy with storage of its own (e.g. the slot an asynchronous learner trains on while the collector
        fills its storage again)."""
        return Rollout(**{f.name: _tree(torch.clone, getattr(self, f.name)) for f in fields(self)})

    def copy_(self, src: "Rollout") -> "Rollout":
        """Copy ``src``'s fields into this storage (same shapes, same optional fields); the extras start empty."""
        for name in _STEP_FIELDS + _AFTER_FIELDS:
            _tree_copy_(getattr(self, name), getattr(src, name))
        self.extras = {}
        return self

    def env_columns(self, index: torch.Tensor) -> "Rollout":
        """Every step of the envs ``index`` (a minibatch of whole env columns), extras included."""
        steps = {name: _tree(lambda x: x[:, index], getattr(self, name)) for name in _STEP_FIELDS}
        after = {name: _tree(lambda x: x[index], getattr(self, name)) for name in _AFTER_FIELDS}
        return Rollout(**steps, **after, extras={k: v[:, index] for k, v in self.extras.items()})

    def check_extras(self) -> None:
        """Every extra must be a ``(T, N, ...)`` tensor (so that a minibatch of env columns can carry it)."""
        for name, value in self.extras.items():
            if not isinstance(value, torch.Tensor) or tuple(value.shape[:2]) != (self.num_steps, self.num_envs):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"rollout.extras[{name!r}] must be a tensor of leading shape "
                                 f"({self.num_steps}, {self.num_envs}) (steps x envs), got {shape}")


# Rollout fields indexed (T, N, ...) and those describing what comes after the last step, (N, ...).
_STEP_FIELDS = ("obs", "actions", "log_probs", "values", "rewards", "terminated", "truncated", "bootstrap_values",
                "episode_starts", "policy_versions", "states")
_AFTER_FIELDS = ("next_obs", "next_state", "next_episode_start")


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


class _Stream:
    """One ``VecEnv`` writing into env columns ``[lo, hi)`` of a collector's storage, with what it carries
    between steps: the current observations and, for a recurrent policy, its state."""

    def __init__(self, owner: "_CollectorBase", env: VecEnv, lo: int, hi: int):
        self.env, self.lo, self.hi = env, lo, hi
        whole = lo == 0 and hi == owner.num_envs
        cols = (lambda x: x) if whole else (lambda x: x[:, lo:hi])  # views: writes land in the storage
        self.obs_store = {k: cols(v) for k, v in owner._obs_store.items()} if owner._dict_obs \
            else cols(owner._obs_store)
        self.actions, self.log_probs, self.values = cols(owner.actions), cols(owner.log_probs), cols(owner.values)
        self.rewards, self.terminated, self.truncated = cols(owner.rewards), cols(owner.terminated), \
            cols(owner.truncated)
        self.bootstrap_values = cols(owner.bootstrap_values)
        self.versions = np.zeros(owner.num_steps, dtype=np.int64)  # host-side per step; one copy per collect
        self.recurrent = owner.recurrent
        self.obs: Obs | None = None
        # On the host, "did any episode get truncated?" is free; on a GPU it is a sync,
        # so there the bootstrap values are computed for the whole batch every step.
        self.check_truncation_on_host = env.device.type == "cpu"
        if self.recurrent:
            n = hi - lo
            self.states = state_map(cols, owner.states)
            self.initial_state = state_map(lambda s: s.to(env.device), owner._initial_state_fn(n))
            self.state: State = self.initial_state
            self.next_state: State | None = None
            self.episode_start = torch.ones(n, dtype=torch.bool, device=env.device)
            self.no_start = torch.zeros(n, dtype=torch.bool, device=env.device)

    def restart(self, obs: Obs) -> None:
        """Fresh episodes everywhere (after a reset)."""
        self.obs = obs
        if self.recurrent:
            self.state = self.initial_state
            self.episode_start = torch.ones_like(self.episode_start)

    def act(self, t: int, policy: Policy, version: int):
        """Store ``obs[t]`` (and ``states[t]``), run the policy, store its outputs; return the env's actions."""
        obs = self.obs
        obs_copy_(obs_index(self.obs_store, t), obs)
        self.versions[t] = version
        if self.recurrent:
            state_copy_(state_map(lambda s: s[t], self.states), self.state)
            step = _as_step(policy(obs, self.state, self.episode_start))
            if step.state is None:
                raise TypeError("a recurrent collector (built with initial_state=...) needs the policy to return "
                                "PolicyStep(..., state=<next state>)")
            self.next_state = step.state
        else:
            step = _as_step(policy(obs))
        self.actions[t] = step.action
        self.log_probs[t] = 0.0 if step.log_prob is None else step.log_prob
        self.values[t] = 0.0 if step.value is None else step.value.reshape(-1)
        return step.to_env

    def observe(self, t: int, result, value_fn: ValueFn | None) -> dict:
        """Store the env's step ``t`` results; carry the observations (and the reset state) on. Returns ``info``."""
        obs, reward, terminated, truncated, info = result
        self.rewards[t] = reward
        self.terminated[t] = terminated
        self.truncated[t] = truncated
        if value_fn is not None and (not self.check_truncation_on_host or bool(truncated.any())):
            if self.recurrent:
                final_values = value_fn(info["final_obs"], self.next_state, self.no_start)
            else:
                final_values = value_fn(info["final_obs"])
            self.bootstrap_values[t] = torch.where(truncated, final_values.reshape(-1), 0.0)
        else:
            self.bootstrap_values[t] = 0.0
        self.obs = obs
        if self.recurrent:
            done = terminated | truncated
            self.state = state_where(done, self.initial_state, self.next_state)
            self.episode_start = done
        return info


class _CollectorBase:
    """Preallocated ``num_steps x num_envs`` storage on the envs' device, shared by the collectors."""

    def __init__(self, envs: Sequence[VecEnv], num_steps: int, stats_window: int,
                 initial_state: StateFactory | None):
        if num_steps < 1:
            raise ValueError(f"num_steps must be positive, got {num_steps}")
        for env in envs:
            if not isinstance(getattr(env, "action_shape", None), tuple):  # also lets wrappers of a VecEnv in
                raise TypeError(f"rollout collection needs numeric VecEnvs (tensor observations and actions), "
                                f"got {type(env).__name__}")
        first = envs[0]
        self.num_steps, self.num_envs = int(num_steps), sum(e.num_envs for e in envs)
        T, N, dev = self.num_steps, self.num_envs, first.device
        fields = observation_fields(first.single_observation_space)
        self._dict_obs = list(fields) != [None]
        obs = {k: torch.zeros((T, N, *shape), dtype=torch_dtype(dtype), device=dev) for k, (shape, dtype) in fields.items()}
        self._obs_store: Obs = obs if self._dict_obs else obs[None]
        self.actions = torch.zeros((T, N, *first.action_shape), dtype=first.action_dtype, device=dev)
        self.log_probs = torch.zeros((T, N), dtype=torch.float32, device=dev)
        self.values = torch.zeros((T, N), dtype=torch.float32, device=dev)
        self.rewards = torch.zeros((T, N), dtype=torch.float32, device=dev)
        self.terminated = torch.zeros((T, N), dtype=torch.bool, device=dev)
        self.truncated = torch.zeros((T, N), dtype=torch.bool, device=dev)
        self.bootstrap_values = torch.zeros((T, N), dtype=torch.float32, device=dev)
        self.episode_starts = torch.zeros((T, N), dtype=torch.bool, device=dev)
        self.policy_versions = torch.zeros((T, N), dtype=torch.int64, device=dev)
        #: the behaviour policy's version (an update count): the learner sets it; each step stores it.
        self.policy_version = 0
        self.recurrent = initial_state is not None
        self._initial_state_fn = initial_state
        self.states: State | None = None
        if self.recurrent:
            template = initial_state(N)
            self.states = state_map(lambda s: torch.zeros((T, *s.shape), dtype=s.dtype, device=dev), template)
        self.stats = EpisodeStats(N, dev, window=stats_window)
        self.total_steps = 0
        self._first_start = torch.ones(N, dtype=torch.bool, device=dev)  # episode_starts of the next step 0
        self._streams: list[_Stream] = []
        lo = 0
        for env in envs:
            self._streams.append(_Stream(self, env, lo, lo + env.num_envs))
            lo += env.num_envs

    def _finish(self) -> Rollout:
        """Per-collect bookkeeping (episode starts, policy versions) and the rollout's views."""
        done = self.terminated | self.truncated
        self.episode_starts[0] = self._first_start
        self.episode_starts[1:] = done[:-1]
        self._first_start = done[-1].clone()
        versions = np.empty((self.num_steps, self.num_envs), dtype=np.int64)
        for s in self._streams:
            versions[:, s.lo:s.hi] = s.versions[:, None]
        self.policy_versions.copy_(torch.from_numpy(versions))
        self.total_steps += self.num_steps * self.num_envs
        next_state = next_start = None
        if self.recurrent:
            parts = self._streams
            next_state = parts[0].state if len(parts) == 1 else state_cat([s.state for s in parts])
            next_start = self._first_start
        return Rollout(self._obs_store, self.actions, self.log_probs, self.values, self.rewards, self.terminated,
                       self.truncated, self.bootstrap_values, self.next_obs, self.episode_starts,
                       self.policy_versions, self.states, next_state, next_start)


class RolloutCollector(_CollectorBase):
    """Runs a policy in a ``VecEnv`` for ``num_steps`` steps at a time into preallocated tensors.

    Storage lives on ``env.device``. The env is reset on the first
    :meth:`collect` and then carried over between calls. ``info["success"]``
    is tracked when the env provides it. ``initial_state`` (a factory
    ``num_envs -> state``) makes the collector recurrent (see the module's
    docstring); set ``policy_version`` to the learner's update count.
    """

    def __init__(self, env: VecEnv, num_steps: int, stats_window: int = 100,
                 initial_state: StateFactory | None = None):
        super().__init__([env], num_steps, stats_window, initial_state)
        self.env = env
        self.next_obs: Obs | None = None

    def reset(self, seed: int | None = None) -> Obs:
        self.next_obs = self.env.reset(seed=seed)
        self._streams[0].restart(self.next_obs)
        self._first_start.fill_(True)
        return self.next_obs

    @torch.no_grad()
    def collect(self, policy: Policy, value_fn: ValueFn | None = None) -> Rollout:
        """Collect ``num_steps`` steps with ``policy``; ``value_fn`` gives bootstrap values for truncations."""
        if self.next_obs is None:
            self.reset()
        stream, env = self._streams[0], self.env
        stream.obs = self.next_obs
        for t in range(self.num_steps):
            result = env.step(stream.act(t, policy, self.policy_version))
            info = stream.observe(t, result, value_fn)
            self.stats.update(result[1], result[2], result[3], info.get("success"))
        self.next_obs = stream.obs
        return self._finish()


def make_env_halves(env_id: str, num_envs: int, seed: int | None = None, **kwargs) -> tuple[VecEnv, VecEnv]:
    """Two envs of ``num_envs // 2`` copies of ``env_id`` each, for a :class:`DoubleBufferedCollector`.

    The halves get disjoint seeds: ``seed`` and ``seed + num_envs // 2`` (so
    that their first resets use ``seed .. seed + num_envs - 1``, as one env of
    ``num_envs`` copies would). ``kwargs`` go to :func:`zoo.make_env` (e.g.
    ``vectorization="process"``, ``num_workers``, ``device``).
    """
    from zoo.envs import make_env

    if num_envs < 2 or num_envs % 2:
        raise ValueError(f"double-buffered collection needs an even num_envs >= 2, got {num_envs}")
    half = num_envs // 2
    first = make_env(env_id, num_envs=half, seed=seed, **kwargs)
    try:
        second = make_env(env_id, num_envs=half, seed=None if seed is None else seed + half, **kwargs)
    except BaseException:
        first.close()
        raise
    return first, second


class DoubleBufferedCollector(_CollectorBase):
    """Collects a :class:`Rollout` from two halves of the envs, one stepping while the policy acts on the other.

    ``envs`` are two ``VecEnv`` s of the same task (e.g. from :func:`make_env_halves`), best with worker
    processes (``vectorization="process"``), whose ``step_async`` returns at once. Per step ``t``: the policy
    acts on half B and B starts stepping; A's step ``t`` is gathered and stored, the policy acts on A and A
    starts step ``t + 1``; B's step ``t`` is gathered and stored. The policy is thus called on each half
    separately, and the simulators of one half run while it does. The rollout is ``num_steps x (N_A + N_B)``,
    the halves side by side on the env axis, with the same fields (bootstrap values, episode starts, policy
    versions, recurrent states) and the same :class:`EpisodeStats` as :class:`RolloutCollector` gives for one
    env whose envs are A's followed by B's. ``close()`` closes both halves.
    """

    def __init__(self, envs: Sequence[VecEnv], num_steps: int, stats_window: int = 100,
                 initial_state: StateFactory | None = None):
        envs = tuple(envs)
        if len(envs) != 2:
            raise ValueError(f"DoubleBufferedCollector takes two envs (the halves), got {len(envs)}")
        a, b = envs
        if a is b:
            raise ValueError("DoubleBufferedCollector needs two distinct envs, got the same one twice")
        if (a.single_observation_space != b.single_observation_space
                or a.single_action_space != b.single_action_space or a.device != b.device):
            raise ValueError(f"the two halves must have the same spaces and device; got {a} and {b}")
        super().__init__(envs, num_steps, stats_window, initial_state)
        self.envs = envs
        self._with_success = "success" in a.info_keys and "success" in b.info_keys
        self._success = torch.zeros(self.num_envs, dtype=torch.float32, device=a.device)
        self.next_obs: Obs | None = None

    def reset(self, seed: int | None = None) -> Obs:
        """Reset both halves (``seed`` for A, ``seed + N_A`` for B when given)."""
        a, b = self._streams
        a.restart(a.env.reset(seed=seed))
        b.restart(b.env.reset(seed=None if seed is None else seed + a.env.num_envs))
        self._first_start.fill_(True)
        self.next_obs = obs_cat([a.obs, b.obs])
        return self.next_obs

    @torch.no_grad()
    def collect(self, policy: Policy, value_fn: ValueFn | None = None) -> Rollout:
        """Collect ``num_steps`` steps of both halves with ``policy`` (see the class docstring for the order)."""
        if self.next_obs is None:
            self.reset()
        a, b = self._streams
        T = self.num_steps
        success = self._success if self._with_success else None
        a.env.step_async(a.act(0, policy, self.policy_version))
        for t in range(T):
            b.env.step_async(b.act(t, policy, self.policy_version))
            info = a.observe(t, a.env.step_wait(), value_fn)
            if success is not None:
                success[a.lo:a.hi] = info["success"]
            if t < T - 1:
                a.env.step_async(a.act(t + 1, policy, self.policy_version))
            info = b.observe(t, b.env.step_wait(), value_fn)
            if success is not None:
                success[b.lo:b.hi] = info["success"]
            self.stats.update(self.rewards[t], self.terminated[t], self.truncated[t], success)
        self.next_obs = obs_cat([a.obs, b.obs])
        return self._finish()

    def close(self) -> None:
        for env in self.envs:
            env.close()


@torch.no_grad()
def evaluate_policy(env: BatchedEnv, policy: Policy, n_episodes: int, seed: int | None = None,
                    max_steps: int = 1_000_000, initial_state: StateFactory | None = None) -> dict[str, float]:
    """Run ``policy`` until ``n_episodes`` episodes have finished; return mean/std return, length, success.

    Works for every :class:`~zoo.envs.BatchedEnv`: numeric envs (the policy
    returns actions or a :class:`PolicyStep`) and text envs (the policy returns
    a list of strings). With ``initial_state`` (a factory, as for the
    collectors) the policy is recurrent: called as ``policy(obs, state,
    episode_start)``, its state reset where episodes end. Env ``i`` contributes
    its first ``(n_episodes + i) // num_envs`` episodes (stable-baselines3's
    rule), so that short episodes are not over-represented by envs that finish
    several while another is still running.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be positive, got {n_episodes}")
    # a window that never wraps: the n_episodes recorded sit in slots 0..n_episodes-1
    stats = EpisodeStats(env.num_envs, env.device, window=n_episodes + env.num_envs)
    targets = (n_episodes + torch.arange(env.num_envs, device=env.device)) // env.num_envs
    finished = torch.zeros(env.num_envs, dtype=torch.int64, device=env.device)
    obs = env.reset(seed=seed)
    if initial_state is not None:
        init = state_map(lambda s: s.to(env.device), initial_state(env.num_envs))
        state, start = init, torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
    steps = 0
    while stats.episodes < n_episodes:
        if initial_state is None:
            step = _as_step(policy(obs))
        else:
            step = _as_step(policy(obs, state, start))
        obs, reward, terminated, truncated, info = env.step(step.to_env)
        if initial_state is not None:
            start = terminated | truncated
            state = state_where(start, init, step.state)
        done = terminated | truncated
        stats.update(reward, terminated, truncated, info.get("success"), record=finished < targets)
        finished += done
        steps += 1
        if steps >= max_steps:
            raise RuntimeError(f"evaluate_policy: {n_episodes} episodes did not finish within {max_steps} steps")
    return stats.summary(first=n_episodes)
