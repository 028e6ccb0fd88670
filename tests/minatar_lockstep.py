"""Run zoo's torch MinAtar games in lockstep with MinAtar's own ``Environment``, the random draws forced equal.

MinAtar draws from ``self.random`` (a ``numpy.random.RandomState``); :class:`ScriptedRandom`
stands in for it and returns, for each calling function, the uniforms that the torch env
received through its ``draw_source`` hook for the same step.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Callable

import numpy as np
import torch

from zoo.envs.torch_minatar import TORCH_MINATAR

# Which MinAtar function consumes which of our draws, in its call order: per step and per reset.
STEP_CALLS = {
    "breakout": {"act": ["sticky"]},
    "asterix": {"act": ["sticky"], "_spawn_entity": ["spawn_right", "spawn_gold", "spawn_slot"]},
    "freeway": {"act": ["sticky"], "_randomize_cars": ["cross_speeds", "cross_directions"]},
    "seaquest": {"act": ["sticky"], "_spawn_enemy": ["enemy_right", "enemy_sub", "enemy_row"],
                 "_spawn_diver": ["diver_right", "diver_row"]},
    "space_invaders": {"act": ["sticky"]},
}
RESET_CALLS = {
    "breakout": {"reset": ["ball_start"]},
    "freeway": {"_randomize_cars": ["reset_speeds", "reset_directions"]},
}


class ScriptedRandom:
    """A stand-in for ``RandomState``: each call returns the next uniforms queued for the function calling it."""

    def __init__(self):
        self.queues: dict[str, list[np.ndarray]] = {}

    def load(self, queues: dict[str, list[np.ndarray]]) -> None:
        self.queues = {k: list(v) for k, v in queues.items()}

    def _next(self) -> np.ndarray:
        caller = sys._getframe(2).f_code.co_name
        if not self.queues.get(caller):
            raise AssertionError(f"MinAtar drew a number in {caller}() that the test did not script")
        return self.queues[caller].pop(0)

    def rand(self, *size):
        u = self._next()
        return float(u[0]) if not size else u.astype(np.float64)

    def randint(self, low, high=None, size=None):
        if high is None:
            low, high = 0, low
        u = self._next()
        n = high - low
        k = np.minimum(np.floor(u.astype(np.float32) * np.float32(n)).astype(np.int64), n - 1) + low
        return int(k[0]) if size is None else k


class Lockstep:
    """``num_envs`` MinAtar environments and one torch env over the same states, stepped together."""

    def __init__(self, game: str, num_envs: int, seed: int, setup: Callable | None = None,
                 every_episode: bool = False, host_shortcuts: bool = True, **env_kwargs):
        """``setup(game, rng)`` edits each MinAtar game's start state (before it is copied into ours); with
        ``every_episode`` it edits every later episode's start too, copied into ours row by row."""
        from minatar import Environment

        self.game, self.num_envs = game, num_envs
        self.setup = setup if every_episode else None
        self.rng = np.random.default_rng(seed)
        self.theirs = []
        for i in range(num_envs):
            env = Environment(game, sticky_action_prob=env_kwargs.get("sticky_action_prob", 0.1),
                              difficulty_ramping=env_kwargs.get("difficulty_ramping", True))
            env.seed(seed * 1000 + i)
            env.reset()
            if setup is not None:
                setup(env.env, self.rng)
            fake = ScriptedRandom()
            env.random = env.env.random = fake
            self.theirs.append(env)
        self.ours = TORCH_MINATAR[f"minatar-{game}"](num_envs=num_envs, seed=seed, max_episode_steps=10**9,
                                                     **env_kwargs)
        self.ours.host_shortcuts = host_shortcuts  # False: the accelerator's code path, on the CPU
        self.ours.reset()
        self.ours.set_state_from_minatar(self.theirs)
        self.ours.draw_source = self._draw
        self._draws: dict[str, np.ndarray] = {}
        self._before: list | None = None
        self.events: Counter = Counter()

    def _draw(self, name: str, count: int) -> torch.Tensor:
        u = self.rng.random((self.num_envs, count), dtype=np.float32)
        u[u == 0.5] = 0.25  # sign(u - 0.5) = 0 gives MinAtar's Freeway a speed-0 car (a documented deviation)
        self._draws[name] = u
        return torch.from_numpy(u)

    def _queues(self, calls: dict[str, list[str]], i: int) -> dict[str, list[np.ndarray]]:
        return {fn: [self._draws[name][i] for name in names] for fn, names in calls.items()}

    def compare(self, ours: dict[str, np.ndarray], i: int, when: str) -> dict[str, np.ndarray]:
        """Assert env ``i``'s state equals MinAtar's; returns MinAtar's (canonical) state."""
        cls = type(self.ours)
        mine = cls.canonical({k: v[i] for k, v in ours.items()})
        theirs = cls.canonical(cls.state_from_minatar(self.theirs[i].env))
        for name in mine:
            if not np.array_equal(mine[name], theirs[name]):
                raise AssertionError(f"{self.game} env {i} {when}: field {name!r} differs:\nours   {mine[name]}\n"
                                     f"theirs {theirs[name]}")
        assert int(self.ours.last_action[i]) == self.theirs[i].last_action
        return theirs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step both with ``actions`` (indices into the env's action set); compare everything; count events."""
        cls = type(self.ours)
        if self._before is None:
            self._before = [cls.canonical(cls.state_from_minatar(env.env)) for env in self.theirs]
        before, self._before = self._before, []
        obs, reward, terminated, truncated, info = self.ours.step(torch.as_tensor(actions))
        final_obs, obs = info["final_obs"].numpy(), obs.numpy()
        ours = {k: v.numpy() for k, v in self.ours.state.items()}
        full = self.ours.action_set.numpy()[actions]
        rewards, terms = np.zeros(self.num_envs), np.zeros(self.num_envs, dtype=bool)
        for i, env in enumerate(self.theirs):
            env.random.load(self._queues(STEP_CALLS[self.game], i))
            r, term = env.act(int(full[i]))
            rewards[i], terms[i] = r, term
            np.testing.assert_array_equal(final_obs[i], env.state().astype(np.uint8),
                                          err_msg=f"{self.game} env {i}: final observation")
            assert float(reward[i]) == r, (self.game, i, float(reward[i]), r)
            assert bool(terminated[i]) == term and not bool(truncated[i]), (self.game, i)
            after = cls.canonical(cls.state_from_minatar(env.env))
            self.events.update(EVENTS[self.game](before[i], after, r, term))
            if term:
                env.random.load(self._queues(RESET_CALLS.get(self.game, {}), i))
                env.reset()
                self.events["episodes"] += 1
            self._before.append(self.compare(ours, i, "after reset" if term else "after step"))
            np.testing.assert_array_equal(obs[i], env.state().astype(np.uint8),
                                          err_msg=f"{self.game} env {i}: observation")
            if term and self.setup is not None:  # a new edited start, copied into our row
                self.setup(env.env, self.rng)
                for name, value in cls.state_from_minatar(env.env).items():
                    self.ours.state[name][i] = torch.as_tensor(value)
                self._before[i] = cls.canonical(cls.state_from_minatar(env.env))
        return rewards, terms


# ------------------------------------------------------------------ what happened in a step (MinAtar's side)

def _breakout_events(b, a, r, term):
    yield from ["brick"] * int(r > 0) + ["terminal"] * int(term)
    if b["bricks"].sum() < 30 and a["bricks"].sum() == 30:
        yield "refill"
    if b["strike"] and a["strike"]:
        yield "pass_through"  # still inside a struck brick and into the next: no bounce, no point
    if a["ball_dir"] != b["ball_dir"] and b["ball_y"] == 8 and a["ball_y"] == 8:
        yield "paddle"


def _asterix_events(b, a, r, term):
    yield from ["gold"] * int(r > 0) + ["terminal"] * int(term)
    if b["spawn_timer"] == 0 and b["alive"].all():
        yield "lanes_full"
    if a["ramp_index"] > b["ramp_index"]:
        yield "ramp"
    if a["move_speed"] < b["move_speed"]:
        yield "faster_moves"


def _freeway_events(b, a, r, term):
    yield from ["cross"] * int(r > 0) + ["terminal"] * int(term)
    if r == 0 and b["pos"] < 9 and a["pos"] == 9:
        yield "hit"
    if (a["car_x"] - b["car_x"] == 9).any() or (b["car_x"] - a["car_x"] == 9).any():
        yield "wrap"


def _seaquest_events(b, a, r, term):
    yield from ["terminal"] * int(term)
    if r > 0 and not (b["sub_y"] == 0 or a["sub_y"] == 0):
        yield "kill"
    if a["diver_count"] > b["diver_count"]:
        yield "diver_pickup"
    if a["oxygen"] == 200 and b["oxygen"] < 200 and a["surface"]:
        yield "surface_full_crew" if b["diver_count"] == 6 else "surface"
    if a["diver_count"] < 0:
        yield "negative_crew"
    if term and b["oxygen"] <= 0:
        yield "oxygen_out"
    if term and a["sub_y"] == 0 and b["diver_count"] == 0 and not b["surface"]:
        yield "surfaced_without_diver"
    if a["e_bullet_alive"].sum() > b["e_bullet_alive"].sum():
        yield "enemy_shot"
    if b["e_spawn_timer"] == 0 and a["enemy_alive"].sum() <= b["enemy_alive"].sum() and not r:
        yield "spawn_blocked_or_hit"
    if a["ramp_index"] > b["ramp_index"]:
        yield "ramp"
    if a["enemy_alive"].sum() >= 20:
        yield "crowded"


def _space_invaders_events(b, a, r, term):
    yield from ["kill"] * int(r > 0) + ["terminal"] * int(term)
    if (a["e_bullets"] & ~np.roll(b["e_bullets"], 1, axis=0)).any():
        yield "enemy_shot"
    if a["aliens"].sum() == 24 and b["aliens"].sum() < 24:
        yield "new_wave"
    if a["ramp_index"] > b["ramp_index"]:
        yield "ramp"
    if a["alien_dir"] != b["alien_dir"]:
        yield "turn"
    if term and b["aliens"][8:].any():
        yield "aliens_landed"


EVENTS = {"breakout": _breakout_events, "asterix": _asterix_events, "freeway": _freeway_events,
          "seaquest": _seaquest_events, "space_invaders": _space_invaders_events}
