"""What the five torch MinAtar games share: actions, sticky actions, random draws, auto-reset, state access.

A game subclass declares its state layout (:attr:`MinAtarTorchEnv.fields`), the
uniform draws its rules use (:attr:`step_draws`, :attr:`reset_draws`) and four
functions: :meth:`initial_state`, :meth:`frame` (one MinAtar ``act`` for every
env at once), :meth:`render` (MinAtar's ``state()``) and
:meth:`state_from_minatar` (read one MinAtar game object into the layout).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
from gymnasium import spaces

from zoo.envs.torch_envs import TorchVecEnv
from zoo.errors import ActionError

# MinAtar's action codes (its ``action_map`` order): no-op, left, up, right, down, fire.
NOOP, LEFT, UP, RIGHT, DOWN, FIRE = range(6)
NUM_FULL_ACTIONS = 6
GRID = 10

State = dict[str, torch.Tensor]
#: (name, count) -> uniforms in [0, 1) of shape (num_envs, count); the test hook that replaces the generator.
DrawSource = Callable[[str, int], torch.Tensor]


def float32_threshold(p: float) -> float:
    """The smallest float32 ``t >= p``: for a float32 uniform ``u``, ``u < t`` exactly when ``u < p`` in reals.

    MinAtar compares float64 draws with ``p``; with float32 draws this threshold
    keeps ``u < p`` the same decision for every representable ``u``.
    """
    t = np.float32(p)
    if float(t) < p:
        t = np.nextafter(t, np.float32(np.inf))
    return float(t)


def randint_from_uniform(u: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """``low + floor(u * (high - low))`` in float32, kept below ``high``: a uniform integer in ``[low, high)``."""
    n = high - low
    return (u * n).floor().long().clamp_(max=n - 1) + low


def batch_size(state: Mapping[str, torch.Tensor]) -> int:
    """How many envs a state holds."""
    return next(iter(state.values())).shape[0]


def count_cells(grid: torch.Tensor) -> torch.Tensor:
    """How many cells of each env's bool ``(n, ...)`` map are set (int32; faster than a bool ``sum`` on the host)."""
    return grid.reshape(grid.shape[0], -1).view(torch.uint8).sum(1, dtype=torch.int32)


def onehot(index: torch.Tensor, size: int) -> torch.Tensor:
    """``(num_envs,)`` indices -> ``(num_envs, size)`` bool masks (an index outside ``[0, size)`` marks nothing)."""
    return torch.arange(size, device=index.device) == index.unsqueeze(1)


def compact(alive: torch.Tensor, fields: Mapping[str, torch.Tensor], size: int | None = None
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Move the live slots of ``(num_envs, K)`` arrays to the front in their order, the rest zeroed, ``size`` wide.

    This keeps slot order equal to the order of MinAtar's Python lists
    (append at the end, remove anywhere).
    """
    n, k = alive.shape
    size = k if size is None else size
    dest = torch.where(alive, alive.long().cumsum(1) - 1, size)  # dead slots go to a scratch column
    packed_alive = torch.arange(size, device=alive.device) < alive.sum(1, keepdim=True)
    packed = {}
    for name, value in fields.items():
        out = value.new_zeros(n, size + 1)
        out.scatter_(1, dest, value)
        packed[name] = out[:, :size]
    return packed_alive, packed


class Canvas:
    """Builds ``(num_envs, 10, 10, C)`` uint8 observations by marking cells; marks where a mask is False are dropped."""

    def __init__(self, num_envs: int, channels: int, device: torch.device):
        self.num_envs, self.channels = num_envs, channels
        self.per_env = GRID * GRID * channels
        self.scratch = num_envs * self.per_env  # one cell past the images takes the masked-out marks
        self.flat = torch.zeros(self.scratch + 1, dtype=torch.uint8, device=device)
        self.offset = torch.arange(num_envs, device=device) * self.per_env

    def mark(self, channel, y: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Set cells ``(y, x)`` of ``channel`` (int or tensor) to 1; ``y``, ``x``: ``(n,)`` or ``(n, K)``."""
        offset = self.offset if y.dim() == 1 else self.offset.unsqueeze(1)
        index = offset + (y * GRID + x) * self.channels + channel
        if mask is not None:
            index = torch.where(mask, index, self.scratch)
        self.flat.index_fill_(0, index.reshape(-1), 1)

    def image(self) -> torch.Tensor:
        return self.flat[:-1].view(self.num_envs, GRID, GRID, self.channels)


class MinAtarTorchEnv(TorchVecEnv):
    """A MinAtar game as batched torch ops: ``num_envs`` copies in tensors on ``device``, stepped together.

    Observations are MinAtar's ``10x10xC`` channels (uint8 0/1, MinAtar's
    channel order), as the ``minatar/<game>`` host suite serves them. Actions
    index the full 6-action set (MinAtar's ``n, l, u, r, d, f``) or, with
    ``use_minimal_action_set=True``, the game's minimal set. With probability
    ``sticky_action_prob`` (MinAtar's 0.1) an env repeats its previous action;
    as in one MinAtar ``Environment`` reused across episodes, the previous
    action carries over automatic resets (an explicit :meth:`reset` clears it
    to no-op, like a fresh ``Environment``). Episodes end on MinAtar's terminal
    rule, or are truncated after ``max_episode_steps`` (10,000, the host
    suite's limit), and reset automatically.

    Randomness: every step draws float32 uniforms from the env's
    ``torch.Generator`` (MinAtar's ``rand()`` / ``randint()`` become
    comparisons and ``floor(u * n)``). Setting :attr:`draw_source` to a callable
    ``(name, count) -> (num_envs, count) tensor`` replaces the generator, so a
    test can feed a MinAtar ``Environment`` and this env the same numbers.
    """

    #: MinAtar's module name (``minatar.environments.<game>``).
    game: ClassVar[str]
    channels: ClassVar[tuple[str, ...]]
    #: MinAtar's ``minimal_action_set()`` (codes in the full set).
    minimal_actions: ClassVar[tuple[int, ...]]
    #: state layout: name -> (dtype, per-env shape); every tensor has leading size ``num_envs``.
    fields: ClassVar[dict[str, tuple[torch.dtype, tuple[int, ...]]]]
    #: uniforms the game's rules may use in one frame (name, count), besides the sticky-action draw.
    step_draws: ClassVar[tuple[tuple[str, int], ...]] = ()
    #: uniforms a reset uses (name, count).
    reset_draws: ClassVar[tuple[tuple[str, int], ...]] = ()
    #: whether every episode starts from the same observation (it is then rendered once and reused).
    constant_start: ClassVar[bool] = False

    def __init__(self, num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None, *,
                 sticky_action_prob: float = 0.1, difficulty_ramping: bool = True,
                 use_minimal_action_set: bool = False, max_episode_steps: int = 10_000):
        if not 0.0 <= float(sticky_action_prob) <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob}")
        if int(max_episode_steps) < 1:
            raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}")
        actions = self.minimal_actions if use_minimal_action_set else tuple(range(NUM_FULL_ACTIONS))
        obs_space = spaces.Box(0, 1, (GRID, GRID, len(self.channels)), dtype=np.uint8)
        super().__init__(num_envs, torch.device(device), obs_space, spaces.Discrete(len(actions)), seed=seed)
        self.env_id = f"torch/minatar-{self.game}"
        self.sticky_action_prob = float(sticky_action_prob)
        self.difficulty_ramping = bool(difficulty_ramping)
        self.use_minimal_action_set = bool(use_minimal_action_set)
        self.max_episode_steps = int(max_episode_steps)
        self.action_set = torch.tensor(actions, dtype=torch.int64, device=self.device)
        self.draw_source: DrawSource | None = None
        #: take the shortcuts that read values back to Python (skip resets when no episode ended, reset only
        #: the finished rows, Seaquest's slot narrowing): free on the CPU, a sync per step on an accelerator.
        #: The tests turn them off to run the accelerator's code path on the CPU.
        self.host_shortcuts = self.device.type == "cpu"
        self._sticky_threshold = float32_threshold(self.sticky_action_prob)
        self._frame_draws = (("sticky", 1),) + tuple(self.step_draws) + tuple(self.reset_draws)
        self._start_obs: torch.Tensor | None = None
        self.state: State = {name: torch.zeros(self.num_envs, *shape, dtype=dtype, device=self.device)
                             for name, (dtype, shape) in self.fields.items()}
        self.last_action = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self.elapsed = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)

    # -- what each game defines ------------------------------------------
    def initial_state(self, draws: Mapping[str, torch.Tensor], n: int) -> State:
        """MinAtar's ``reset()`` for ``n`` envs, from the :attr:`reset_draws` in ``draws`` (rows: those envs)."""
        raise NotImplementedError

    def frame(self, state: State, action: torch.Tensor, draws: Mapping[str, torch.Tensor]
              ) -> tuple[State, torch.Tensor, torch.Tensor]:
        """MinAtar's ``act(action)`` for every env: ``(next state, reward float32, terminal bool)``."""
        raise NotImplementedError

    def render(self, state: State) -> torch.Tensor:
        """MinAtar's ``state()``: ``(n, 10, 10, C)`` uint8 for a state of ``n`` envs."""
        raise NotImplementedError

    @classmethod
    def state_from_minatar(cls, game: Any) -> dict[str, np.ndarray]:
        """One MinAtar game object (``Environment(...).env``) in this class's state layout (numpy, no batch axis)."""
        raise NotImplementedError

    @classmethod
    def canonical(cls, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One env's state in a form where equal game states compare equal (identity unless a game overrides it)."""
        return {k: np.asarray(v) for k, v in state.items()}

    # -- random draws -----------------------------------------------------
    def _draws(self, spec: Sequence[tuple[str, int]]) -> dict[str, torch.Tensor]:
        if self.draw_source is None:
            total = sum(count for _, count in spec)
            u = torch.rand(self.num_envs, total, generator=self.generator, device=self.device)
            out, start = {}, 0
            for name, count in spec:
                out[name] = u[:, start:start + count]
                start += count
            return out
        out = {}
        for name, count in spec:
            value = torch.as_tensor(self.draw_source(name, count), dtype=torch.float32, device=self.device)
            if value.shape != (self.num_envs, count):
                raise ValueError(f"{self.env_id}: draw_source({name!r}, {count}) returned shape {tuple(value.shape)}, "
                                 f"expected ({self.num_envs}, {count})")
            out[name] = value
        return out

    # -- the VecEnv protocol ----------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None) -> torch.Tensor:
        self._check_no_step_in_flight("reset()")
        self._seed_generator(seed)
        self.state = self.initial_state(self._draws(self.reset_draws), self.num_envs)
        self.last_action.zero_()
        self.elapsed.zero_()
        return self.render(self.state)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        if self._step_in_flight:
            self._check_no_step_in_flight("step()")
        actions = self.check_actions(actions)
        n_actions = int(self.action_set.numel())
        if self.device.type == "cpu" and (actions.min() < 0 or actions.max() >= n_actions):  # free on the host only
            raise ActionError(f"{self.env_id}: actions must be in [0, {n_actions}) ({self.single_action_space}), got "
                              f"values in [{int(actions.min())}, {int(actions.max())}]")
        draws = self._draws(self._frame_draws)
        action = self.action_set[actions]
        sticky = draws["sticky"][:, 0] < self._sticky_threshold
        action = torch.where(sticky, self.last_action, action)
        self.last_action = action
        state, reward, terminated = self.frame(self.state, action, draws)
        self.elapsed += 1
        truncated = ~terminated & (self.elapsed >= self.max_episode_steps)  # as the host suite: never both
        done = terminated | truncated
        final_obs = self.render(state)
        if self.host_shortcuts and not bool(done.any()):  # nothing to reset
            self.state = state
            return final_obs, reward, terminated, truncated, {"final_obs": final_obs}
        if self.host_shortcuts:  # reset only the finished envs' rows
            rows = done.nonzero().squeeze(1)
            fresh = self.initial_state({name: u[rows] for name, u in draws.items()}, rows.numel())
            for name, value in state.items():
                value[rows] = fresh[name]
            self.state = state
            self.elapsed[rows] = 0
            obs = final_obs.clone()
            obs[rows] = self._initial_obs(fresh, rows.numel())
        else:  # no host sync on an accelerator: a fresh start for every env, kept where done
            fresh = self.initial_state(draws, self.num_envs)
            self.state = {name: torch.where(done.view(-1, *([1] * (value.dim() - 1))), fresh[name], value)
                          for name, value in state.items()}
            self.elapsed = torch.where(done, 0, self.elapsed)
            obs = torch.where(done.view(-1, 1, 1, 1), self._initial_obs(fresh, self.num_envs), final_obs)
        return obs, reward, terminated, truncated, {"final_obs": final_obs}

    def _initial_obs(self, fresh: State, n: int) -> torch.Tensor:
        if not self.constant_start:
            return self.render(fresh)
        if self._start_obs is None:
            self._start_obs = self.render(self.initial_state(self._draws(self.reset_draws), self.num_envs))[:1].clone()
        return self._start_obs.expand(n, -1, -1, -1)

    # -- state access -----------------------------------------------------
    def get_state(self) -> dict[str, torch.Tensor]:
        """A copy of every env's state: the game's :attr:`fields`, ``last_action`` (full-set code) and ``elapsed``."""
        out = {name: value.clone() for name, value in self.state.items()}
        out["last_action"] = self.last_action.clone()
        out["elapsed"] = self.elapsed.clone()
        return out

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Set every env's state from a mapping like :meth:`get_state`'s (tensors or arrays, leading size ``num_envs``).

        All game fields are required; ``last_action`` is kept and ``elapsed``
        zeroed when absent.
        """
        known = set(self.fields) | {"last_action", "elapsed"}
        unknown = sorted(set(state) - known)
        missing = sorted(set(self.fields) - set(state))
        if unknown or missing:
            raise KeyError(f"{self.env_id}: set_state got unknown fields {unknown} and lacks {missing}; "
                           f"the fields are {sorted(self.fields)} (plus optional 'last_action', 'elapsed')")
        layout = dict(self.fields, last_action=(torch.int64, ()), elapsed=(torch.int64, ()))
        new = {}
        for name, value in state.items():
            dtype, shape = layout[name]
            tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
            if tuple(tensor.shape) != (self.num_envs, *shape):
                raise ValueError(f"{self.env_id}: set_state field {name!r} has shape {tuple(tensor.shape)}, "
                                 f"expected {(self.num_envs, *shape)} (num_envs first)")
            new[name] = tensor.to(device=self.device, dtype=dtype).clone()
        self.last_action = new.pop("last_action", self.last_action)
        self.elapsed = new.pop("elapsed", torch.zeros_like(self.elapsed))
        self.state = new

    def set_state_from_minatar(self, environments: Sequence[Any]) -> None:
        """Copy ``num_envs`` MinAtar ``Environment`` objects (or their game objects) into this env, last actions too."""
        if len(environments) != self.num_envs:
            raise ValueError(f"{self.env_id}: got {len(environments)} MinAtar environments for "
                             f"num_envs={self.num_envs}")
        rows, last = [], []
        for env in environments:
            game = getattr(env, "env", env)
            module = type(game).__module__.rsplit(".", 1)[-1]
            if module != self.game:
                raise ValueError(f"{self.env_id}: got a MinAtar '{module}' game, expected '{self.game}'")
            rows.append(self.state_from_minatar(game))
            last.append(int(getattr(env, "last_action", 0)))
        state = {name: np.stack([row[name] for row in rows]) for name in self.fields}
        state["last_action"] = np.asarray(last, dtype=np.int64)
        self.set_state(state)

    def state_row(self, i: int) -> dict[str, np.ndarray]:
        """Env ``i``'s game state as numpy arrays (the layout of :meth:`state_from_minatar`)."""
        return {name: value[i].cpu().numpy() for name, value in self.state.items()}

    def difficulty_ramp(self) -> torch.Tensor | None:
        """MinAtar's ``difficulty_ramp()`` per env (its ramp index), or None for games that do not ramp."""
        return self.state["ramp_index"].clone() if "ramp_index" in self.state else None
