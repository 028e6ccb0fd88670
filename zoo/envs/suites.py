"""The suite adapters: gymnasium, dm-control, MetaWorld, NetHack (NLE), MinAtar and torch-native envs.

Each adapter builds one plain gymnasium env for a task; ``make_env`` batches
them. Optional simulators are imported only when their suite is used.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from zoo.envs.registry import Suite, register_suite

# ---------------------------------------------------------------- gymnasium
# Ids that other suites register into gymnasium's registry are served by those suites.
_OTHER_SUITE_PREFIXES = ("Meta-World/", "NetHack", "MiniHack-", "MinAtar/")


_MINIGRID_PREFIXES = ("MiniGrid-", "BabyAI-")


def _register_minigrid(required: bool) -> None:
    """Import ``minigrid`` (which registers its ids with gymnasium) when installed, or when ``required``."""
    if any(i.startswith(_MINIGRID_PREFIXES) for i in gym.registry):
        return
    try:
        import minigrid  # noqa: F401
    except ImportError as exc:
        if required:
            from zoo.errors import MissingExtraError

            raise MissingExtraError("MiniGrid environments", "minigrid", exc) from exc


def _gym_tasks() -> list[str]:
    _register_minigrid(required=False)
    return [i for i in gym.registry if not i.startswith(_OTHER_SUITE_PREFIXES)]


def _gym_has_task(task: str) -> bool:
    if task.startswith(_MINIGRID_PREFIXES):
        _register_minigrid(required=True)
    return task in gym.registry and not task.startswith(_OTHER_SUITE_PREFIXES)


class MiniGridSymbolic(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """MiniGrid's symbolic observation as one flat vector: the egocentric 7x7 view's (object, colour, state)
    indices cell by cell, then the agent's direction (the mission text is dropped). Every feature is a small
    integer category; GBRL groups each cell's three into one categorical feature (``categorical_group=3``)."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        image = env.observation_space["image"]
        self.observation_space = spaces.Box(0.0, 255.0, (int(np.prod(image.shape)) + 1,), np.float32)

    def observation(self, obs: dict) -> np.ndarray:
        return np.append(obs["image"].reshape(-1), obs["direction"]).astype(np.float32)


def _make_gym(task: str, seed: int | None = None, **kwargs) -> gym.Env:
    if task.startswith(_MINIGRID_PREFIXES):
        _register_minigrid(required=True)  # also in freshly spawned worker processes
        return MiniGridSymbolic(gym.make(task, **kwargs))
    env = gym.make(task, **kwargs)
    return env


register_suite(Suite(
    name="gym", description="any registered gymnasium environment (gym/<gymnasium id>; MiniGrid ids with the "
                            "minigrid extra, as flat symbolic observations)",
    requires=("gymnasium",), tasks=_gym_tasks, has_task=_gym_has_task, make_single=_make_gym,
))

# ---------------------------------------------------------------- dm-control


def _quiet_mujoco_gl() -> None:
    """State-based tasks need no renderer: without a display, keep dm-control from probing GLFW."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "disable"


def _numpy_compat_for_dm_control() -> None:
    """dm-control 1.0's quadruped (and other domains) call ``np.in1d``, which numpy 2.4 removed; ``np.isin`` is
    its documented replacement with the same result on 1-D input. Installed only when missing."""
    import numpy as np

    if not hasattr(np, "in1d"):
        np.in1d = lambda a, b, *args, **kwargs: np.isin(np.ravel(a), b, *args, **kwargs)


def _dmc_tasks() -> list[str]:
    _quiet_mujoco_gl()
    from dm_control import suite

    return [f"{domain}-{task}" for domain, task in suite.ALL_TASKS]


class DMCEnv(gym.Env):
    """A dm-control suite task as a gymnasium env with flattened float32 state observations.

    The observation is the concatenation of the task's observation arrays in
    their spec order. An episode that ends with discount 0 is ``terminated``;
    one that ends at the time limit (dm-control's default 1000 steps) is
    ``truncated``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, domain: str, task: str, seed: int | None = None, render_mode: str | None = None,
                 render_size: tuple[int, int] = (84, 84), camera_id: int = 0, **task_kwargs):
        if render_mode is None:
            _quiet_mujoco_gl()
        _numpy_compat_for_dm_control()
        from dm_control import suite

        task_kwargs.setdefault("random", seed)
        self._env = suite.load(domain, task, task_kwargs=task_kwargs)
        self.render_mode, self._render_size, self._camera_id = render_mode, render_size, camera_id
        obs_spec = self._env.observation_spec()
        dim = int(sum(np.prod(s.shape, dtype=np.int64) for s in obs_spec.values()))
        self.observation_space = spaces.Box(-np.inf, np.inf, (dim,), dtype=np.float32)
        act = self._env.action_spec()
        self.action_space = spaces.Box(act.minimum.astype(np.float32), act.maximum.astype(np.float32),
                                       dtype=np.float32)

    @staticmethod
    def _flatten(observation: "OrderedDict[str, Any]") -> np.ndarray:
        return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in observation.values()])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
        return self._flatten(self._env.reset().observation), {}

    def step(self, action):
        ts = self._env.step(action)
        terminated = bool(ts.last() and ts.discount == 0.0)
        truncated = bool(ts.last() and not terminated)
        return self._flatten(ts.observation), float(ts.reward or 0.0), terminated, truncated, {}

    def render(self):
        height, width = self._render_size
        return self._env.physics.render(height=height, width=width, camera_id=self._camera_id)

    def close(self):
        self._env.close()


def _make_dmc(task: str, seed: int | None = None, **kwargs) -> gym.Env:
    domain, name = task.split("-", 1)
    return DMCEnv(domain, name, seed=seed, **kwargs)


register_suite(Suite(
    name="dmc", description="DeepMind Control suite tasks, flattened state (dmc/<domain>-<task>)",
    requires=("dm_control",), extra="dmc", tasks=_dmc_tasks, make_single=_make_dmc,
    default_vectorization="process",
))

# ---------------------------------------------------------------- MetaWorld


def _metaworld_tasks() -> list[str]:
    import metaworld

    return list(metaworld.MT1.ENV_NAMES)


class MetaWorldSeeding(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Make ``reset(seed=s)`` deterministic on MetaWorld MT1.

    metaworld 3.1.1 draws the episode's goal from the env's RNG *before* the
    seed given to ``reset`` is applied; here the RNG is seeded first.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.unwrapped.np_random = gym.utils.seeding.np_random(seed)[0]
        return self.env.reset(seed=seed, options=options)


def _make_metaworld(task: str, seed: int | None = None, **kwargs) -> gym.Env:
    import metaworld  # noqa: F401  (registers Meta-World/MT1)

    # MT1: one task family, a goal drawn from its 50 train goals at each reset.
    env = MetaWorldSeeding(gym.make("Meta-World/MT1", env_name=task, seed=seed, **kwargs))
    # metaworld 3.1.1 declares the observation space before the first task makes the goal
    # observable (goal bounds stay [0, 0]); a reset sets a task, then the space is recomputed.
    env.reset(seed=seed)
    base = env.unwrapped
    base.observation_space = base.sawyer_observation_space
    return env


register_suite(Suite(
    name="metaworld", description="MetaWorld MT1 tasks, v3, 500 steps, `success` in info (metaworld/<task>-v3)",
    requires=("metaworld",), extra="metaworld", tasks=_metaworld_tasks, make_single=_make_metaworld,
    info_keys=("success",), default_vectorization="process",
))

# ---------------------------------------------------------------- NetHack (NLE) and MiniHack
# zoo.envs.nethack registers the nethack/ and minihack/ suites; its names stay importable from here.
from zoo.envs.nethack import NETHACK_DEFAULT_KEYS, NETHACK_TASKS, NetHackSeeding  # noqa: F401

# ---------------------------------------------------------------- MinAtar
MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")


class MinAtarEnv(gym.Env):
    """A MinAtar game: ``10x10xC`` uint8 (0/1) channel observations, the full 6-action set by default.

    Sticky actions (probability 0.1) and difficulty ramping are MinAtar's
    defaults. MinAtar has no time limit of its own; ``max_episode_steps``
    (default 10,000) truncates episodes.
    """

    metadata = {"render_modes": []}

    def __init__(self, game: str, sticky_action_prob: float = 0.1, difficulty_ramping: bool = True,
                 use_minimal_action_set: bool = False, max_episode_steps: int = 10_000):
        from minatar import Environment

        self.game = Environment(game, sticky_action_prob=sticky_action_prob, difficulty_ramping=difficulty_ramping)
        self._actions = (self.game.minimal_action_set() if use_minimal_action_set
                         else list(range(self.game.num_actions())))
        self.action_space = spaces.Discrete(len(self._actions))
        self.observation_space = spaces.Box(0, 1, tuple(self.game.state_shape()), dtype=np.uint8)
        self.max_episode_steps = max_episode_steps
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.game.seed(seed)
        self.game.reset()
        self._steps = 0
        return self.game.state().astype(np.uint8), {}

    def step(self, action):
        reward, done = self.game.act(self._actions[int(action)])
        self._steps += 1
        truncated = (not done) and self._steps >= self.max_episode_steps
        return self.game.state().astype(np.uint8), float(reward), bool(done), truncated, {}


def _make_minatar(task: str, seed: int | None = None, **kwargs) -> gym.Env:
    return MinAtarEnv(task, **kwargs)


register_suite(Suite(
    name="minatar", description="MinAtar games, 10x10xC binary channels (minatar/<game>)",
    requires=("minatar",), extra="minatar", tasks=lambda: list(MINATAR_GAMES), make_single=_make_minatar,
))

# ---------------------------------------------------------------- torch-native


def _torch_builders() -> dict:
    from zoo.envs.torch_envs import CartPoleTorch
    from zoo.envs.torch_grid import TORCH_GRIDS
    from zoo.envs.torch_minatar import TORCH_MINATAR

    return {"cartpole": CartPoleTorch, **TORCH_MINATAR, **TORCH_GRIDS}


def _make_torch(task: str, num_envs: int, device, seed: int | None = None, **kwargs):
    return _torch_builders()[task](num_envs=num_envs, device=device, seed=seed, **kwargs)


register_suite(Suite(
    name="torch", description="environments stepped as batched torch ops on the env's device (torch/<task>)",
    requires=("torch",), tasks=lambda: list(_torch_builders()), make_vec=_make_torch,
))

# ---------------------------------------------------------------- text games


def _text_tasks() -> list[str]:
    from zoo.envs.text import GAMES

    return list(GAMES)


def _make_text_vec(task: str, num_envs: int, device, seed: int | None = None, **kwargs):
    from zoo.envs.text import TextVecEnv, make_game

    env = TextVecEnv(make_game(task, **kwargs), num_envs=num_envs, device=device, seed=seed)
    env.make_kwargs = dict(kwargs)
    return env


def _make_text_single(task: str, seed: int | None = None, **kwargs) -> gym.Env:
    from zoo.envs.text import TextGameEnv, make_game

    return TextGameEnv(make_game(task, **kwargs))


register_suite(Suite(
    name="text", description="multi-turn question games with string observations and actions (text/<game>)",
    tasks=_text_tasks, make_vec=_make_text_vec, make_single=_make_text_single, info_keys=("success",),
))
