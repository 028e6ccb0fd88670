"""MinAtar Seaquest as batched torch ops (``torch/minatar-seaquest``).

MinAtar keeps Seaquest's bullets, enemies and divers in Python lists whose
order decides ties (which fish a bullet hits, which bullet a sub runs into).
Here each list is a fixed number of slots per env, kept in list order (live
slots first, in the order they were appended), so the same ties fall the
same way. The slot counts bound what MinAtar's rules allow (see
:data:`MAX_ENEMIES` and the docs); a spawn beyond them is dropped.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from zoo.envs.torch_minatar.base import (
    DOWN,
    FIRE,
    LEFT,
    NOOP,
    RIGHT,
    UP,
    Canvas,
    MinAtarTorchEnv,
    State,
    batch_size,
    compact,
    float32_threshold,
    onehot,
    randint_from_uniform,
)

MAX_OXYGEN = 200
INIT_SPAWN_SPEED = 20
DIVER_SPAWN_SPEED = 30
INIT_MOVE_INTERVAL = 5
SHOT_COOL_DOWN = 5
ENEMY_SHOT_INTERVAL = 10
DIVER_MOVE_INTERVAL = 5

#: Fish and subs together. With a spawn every frame and a move every 3 (the fastest ramp) an enemy lives 30
#: frames, so at most 30 are on screen; MinAtar's draws rarely leave more than 25.
MAX_ENEMIES = 32
#: Enemy bullets: each sub's shots are 11 frames apart and a bullet lives at most 10, so at most one per sub.
MAX_ENEMY_BULLETS = 32
#: Friendly bullets: one shot per 5 frames, each gone within 9 frames.
MAX_FRIENDLY_BULLETS = 2
#: Divers: one spawn per 30 frames, each gone within 60.
MAX_DIVERS = 2

_ENEMY = ("alive", "x", "y", "right", "sub", "move_timer", "shot_timer")
_BULLET = ("alive", "x", "y", "right")
_DIVER = ("alive", "x", "y", "right", "move_timer")
_LISTS = {"enemy": (_ENEMY, MAX_ENEMIES), "e_bullet": (_BULLET, MAX_ENEMY_BULLETS),
          "f_bullet": (_BULLET, MAX_FRIENDLY_BULLETS), "diver": (_DIVER, MAX_DIVERS)}
_SCALARS = ("oxygen", "diver_count", "sub_x", "sub_y", "sub_or", "e_spawn_speed", "e_spawn_timer", "d_spawn_timer",
            "move_speed", "ramp_index", "shot_timer", "surface")
_BOOLS = {"alive", "right", "sub", "sub_or", "surface"}
#: the integer fields' dtype (every value is small; narrow integers make the host's elementwise ops faster)
INT = torch.int16


def _layout() -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    fields = {name: (torch.bool if name in _BOOLS else INT, ()) for name in _SCALARS}
    for prefix, (names, size) in _LISTS.items():
        for name in names:
            fields[f"{prefix}_{name}"] = (torch.bool if name in _BOOLS else INT, (size,))
    return fields


def _heading(right: torch.Tensor) -> torch.Tensor:
    """+1 for entities moving right, -1 for left."""
    return right.to(INT) * 2 - 1


def _highest(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last True per row (rows without one: 0)."""
    return (mask.long() * torch.arange(1, mask.shape[1] + 1, device=mask.device)).argmax(1)


def _first(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first True per row (rows without one: 0)."""
    return mask.to(torch.uint8).argmax(1)


class SeaquestTorch(MinAtarTorchEnv):
    """Seaquest: a two-cell submarine shoots fish and subs (+1), rescues divers and surfaces for oxygen.

    Channels: sub_front, sub_back, friendly_bullet, trail, enemy_bullet,
    enemy_fish, enemy_sub, oxygen_guage, diver_guage, diver (MinAtar's names).
    Surfacing with 1-5 divers drops one and refills oxygen; with 6 it scores
    ``oxygen * 10 // 200`` and empties the bar. Each surfacing speeds enemies
    up. The episode ends on contact with a fish, sub or enemy bullet, when
    oxygen runs out, or when surfacing with no diver.
    """

    game = "seaquest"
    channels = ("sub_front", "sub_back", "friendly_bullet", "trail", "enemy_bullet", "enemy_fish", "enemy_sub",
                "oxygen_guage", "diver_guage", "diver")
    minimal_actions = (NOOP, LEFT, UP, RIGHT, DOWN, FIRE)
    fields = _layout()
    step_draws = (("enemy_right", 1), ("enemy_sub", 1), ("enemy_row", 1), ("diver_right", 1), ("diver_row", 1))
    constant_start = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._third = float32_threshold(1 / 3)
        self._columns = torch.arange(10, device=self.device)

    def initial_state(self, draws: Mapping[str, torch.Tensor], n: int) -> State:
        dev = self.device
        state = {name: torch.zeros(n, *shape, dtype=dtype, device=dev) for name, (dtype, shape) in self.fields.items()}
        for name, value in (("oxygen", MAX_OXYGEN), ("sub_x", 5), ("e_spawn_speed", INIT_SPAWN_SPEED),
                            ("e_spawn_timer", INIT_SPAWN_SPEED), ("d_spawn_timer", DIVER_SPAWN_SPEED),
                            ("move_speed", INIT_MOVE_INTERVAL)):
            state[name].fill_(value)
        state["surface"].fill_(True)
        return state

    # -- the frame, in MinAtar's order ------------------------------------
    def frame(self, state: State, action: torch.Tensor, draws: Mapping[str, torch.Tensor]):
        s = dict(state)
        if self.host_shortcuts:
            self._narrow(s)
        reward = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        terminal = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self._spawn(s, draws)
        self._act(s, action)
        reward += self._friendly_bullets(s)
        self._divers(s)
        hits, caught = self._enemies_move(s, subs=True)
        reward += hits
        terminal |= caught
        terminal |= self._enemy_bullets(s)
        hits, caught = self._enemies_move(s, subs=False)
        reward += hits
        terminal |= caught
        points, ended = self._timers_and_surface(s)
        reward += points
        terminal |= ended
        for prefix, (names, size) in _LISTS.items():
            alive, packed = compact(s[f"{prefix}_alive"], {k: s[f"{prefix}_{k}"] for k in names if k != "alive"}, size)
            s[f"{prefix}_alive"] = alive
            s.update({f"{prefix}_{k}": v for k, v in packed.items()})
        return s, reward.float(), terminal

    @staticmethod
    def _narrow(s: State) -> None:
        """Work on the enemy and enemy-bullet slots that this frame can use (the lists are packed): on the host,
        where finding the widest env costs nothing extra, this skips the usually empty tail of 32 slots."""
        enemies = s["enemy_alive"].sum(1)
        subs = (s["enemy_alive"] & s["enemy_sub"]).sum(1)
        bullets = s["e_bullet_alive"].sum(1)
        widths = {"enemy": min(MAX_ENEMIES, int(enemies.max()) + 1),  # + one spawn
                  "e_bullet": min(MAX_ENEMY_BULLETS, max(1, int((bullets + subs).max())))}  # + a shot per sub
        for prefix, width in widths.items():
            for name in _LISTS[prefix][0]:
                s[f"{prefix}_{name}"] = s[f"{prefix}_{name}"][:, :width]

    @staticmethod
    def _append(s: State, prefix: str, values: Mapping[str, torch.Tensor], do: torch.Tensor) -> None:
        """Append one entity per env where ``do`` (lists are packed: the first free slot is the live count)."""
        alive = s[f"{prefix}_alive"]
        slot = onehot(alive.sum(1), alive.shape[1]) & do.unsqueeze(1)
        s[f"{prefix}_alive"] = alive | slot
        for name, value in values.items():
            field = s[f"{prefix}_{name}"]
            s[f"{prefix}_{name}"] = torch.where(slot, value.to(field.dtype).unsqueeze(1), field)

    def _spawn(self, s: State, draws: Mapping[str, torch.Tensor]) -> None:
        spawn = s["e_spawn_timer"] == 0
        right = draws["enemy_right"][:, 0] < 0.5
        is_sub = draws["enemy_sub"][:, 0] < self._third
        row = randint_from_uniform(draws["enemy_row"][:, 0], 1, 9).to(INT)
        # no spawn in a row where an enemy goes the other way
        blocked = (s["enemy_alive"] & (s["enemy_y"] == row.unsqueeze(1))
                   & (s["enemy_right"] != right.unsqueeze(1))).any(1)
        self._append(s, "enemy", {"x": torch.where(right, 0, 9), "y": row, "right": right, "sub": is_sub,
                                  "move_timer": s["move_speed"],
                                  "shot_timer": torch.where(is_sub, ENEMY_SHOT_INTERVAL, 0)}, spawn & ~blocked)
        s["e_spawn_timer"] = torch.where(spawn, s["e_spawn_speed"], s["e_spawn_timer"])

        spawn = s["d_spawn_timer"] == 0
        right = draws["diver_right"][:, 0] < 0.5
        row = randint_from_uniform(draws["diver_row"][:, 0], 1, 9).to(INT)
        self._append(s, "diver", {"x": torch.where(right, 0, 9), "y": row, "right": right,
                                  "move_timer": torch.full_like(row, DIVER_MOVE_INTERVAL)}, spawn)
        s["d_spawn_timer"] = torch.where(spawn, DIVER_SPAWN_SPEED, s["d_spawn_timer"])

    def _act(self, s: State, action: torch.Tensor) -> None:
        fire = (action == FIRE) & (s["shot_timer"] == 0)
        self._append(s, "f_bullet", {"x": s["sub_x"], "y": s["sub_y"], "right": s["sub_or"]}, fire)
        s["shot_timer"] = torch.where(fire, SHOT_COOL_DOWN, s["shot_timer"])
        x, y = s["sub_x"], s["sub_y"]
        s["sub_x"] = torch.where(action == LEFT, (x - 1).clamp(min=0),
                                 torch.where(action == RIGHT, (x + 1).clamp(max=9), x))
        s["sub_or"] = torch.where(action == LEFT, False, torch.where(action == RIGHT, True, s["sub_or"]))
        s["sub_y"] = torch.where(action == UP, (y - 1).clamp(min=0),
                                 torch.where(action == DOWN, (y + 1).clamp(max=8), y))

    def _friendly_bullets(self, s: State) -> torch.Tensor:
        """Bullets move (newest first); each removes the first fish, else the first sub, in its new cell."""
        reward = torch.zeros_like(s["sub_x"])
        for j in reversed(range(MAX_FRIENDLY_BULLETS)):
            alive = s["f_bullet_alive"][:, j]
            x = s["f_bullet_x"][:, j] + _heading(s["f_bullet_right"][:, j])
            live = alive & (x >= 0) & (x <= 9)
            here = s["enemy_alive"] & (s["enemy_x"] == x.unsqueeze(1)) & (s["enemy_y"] == s["f_bullet_y"][:, j:j + 1])
            fish, subs = here & ~s["enemy_sub"], here & s["enemy_sub"]
            hit_fish = live & fish.any(1)
            hit_sub = live & ~hit_fish & subs.any(1)
            width = here.shape[1]
            victim = torch.where(hit_fish.unsqueeze(1), onehot(_first(fish), width),
                                 onehot(_first(subs), width) & hit_sub.unsqueeze(1))
            s["enemy_alive"] = s["enemy_alive"] & ~victim
            reward = reward + (hit_fish | hit_sub).long()
            s["f_bullet_alive"] = s["f_bullet_alive"].clone()
            s["f_bullet_alive"][:, j] = live & ~hit_fish & ~hit_sub
            s["f_bullet_x"] = s["f_bullet_x"].clone()
            s["f_bullet_x"][:, j] = torch.where(alive, x, s["f_bullet_x"][:, j])
        return reward

    def _divers(self, s: State) -> None:
        """Divers (newest first) are picked up on contact while fewer than 6 are aboard, else drift every 6 frames."""
        sx, sy = s["sub_x"], s["sub_y"]
        count = s["diver_count"]
        alive, x, timer = s["diver_alive"].clone(), s["diver_x"].clone(), s["diver_move_timer"].clone()
        for j in reversed(range(MAX_DIVERS)):
            row = s["diver_y"][:, j] == sy
            picked = alive[:, j] & (x[:, j] == sx) & row & (count < 6)
            drifting = alive[:, j] & ~picked
            moves = drifting & (timer[:, j] == 0)
            timer[:, j] = torch.where(moves, DIVER_MOVE_INTERVAL, torch.where(drifting, timer[:, j] - 1, timer[:, j]))
            x[:, j] = torch.where(moves, x[:, j] + _heading(s["diver_right"][:, j]), x[:, j])
            gone = moves & ((x[:, j] < 0) | (x[:, j] > 9))
            picked = picked | (moves & ~gone & (x[:, j] == sx) & row & (count < 6))
            count = count + picked.to(INT)
            alive[:, j] = alive[:, j] & ~picked & ~gone
        s["diver_alive"], s["diver_x"], s["diver_move_timer"], s["diver_count"] = alive, x, timer, count

    def _enemies_move(self, s: State, subs: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Subs (``subs=True``, which also shoot) or fish step; returns (points, whether one touched the player)."""
        sx, sy = s["sub_x"].unsqueeze(1), s["sub_y"].unsqueeze(1)
        kind = s["enemy_sub"] if subs else ~s["enemy_sub"]
        mine = s["enemy_alive"] & kind
        x, y, timer = s["enemy_x"], s["enemy_y"], s["enemy_move_timer"]
        caught = (mine & (x == sx) & (y == sy)).any(1)
        moves = mine & (timer == 0)
        timer = torch.where(moves, s["move_speed"].unsqueeze(1), torch.where(mine, timer - 1, timer))
        x = torch.where(moves, x + _heading(s["enemy_right"]), x)
        gone = moves & ((x < 0) | (x > 9))
        touching = moves & ~gone & (x == sx) & (y == sy)
        caught = caught | touching.any(1)
        # Each moved enemy (newest first) takes the oldest bullet in its new cell: per cell, bullets in list order
        # go to the newest enemies still without one.
        open_ = moves & ~gone & ~touching
        hits = torch.zeros_like(s["sub_x"])
        bullet_alive = s["f_bullet_alive"].clone()
        for j in range(MAX_FRIENDLY_BULLETS):
            there = (open_ & bullet_alive[:, j:j + 1] & (x == s["f_bullet_x"][:, j:j + 1])
                     & (y == s["f_bullet_y"][:, j:j + 1]))
            found = there.any(1)
            taker = onehot(_highest(there), there.shape[1]) & found.unsqueeze(1)
            open_ = open_ & ~taker
            gone = gone | taker
            bullet_alive[:, j] = bullet_alive[:, j] & ~found
            hits = hits + found.long()
        s["f_bullet_alive"] = bullet_alive
        if subs:  # every sub that was there this frame shoots on its clock, removed ones included (MinAtar's order)
            clock = s["enemy_shot_timer"]
            shoots = mine & (clock == 0)
            s["enemy_shot_timer"] = torch.where(shoots, ENEMY_SHOT_INTERVAL, torch.where(mine, clock - 1, clock))
            self._shoot(s, shoots, x)
        s["enemy_x"], s["enemy_move_timer"] = x, timer
        s["enemy_alive"] = s["enemy_alive"] & ~gone
        return hits, caught

    @staticmethod
    def _shoot(s: State, shoots: torch.Tensor, x: torch.Tensor) -> None:
        """Append a bullet per shooting sub, in MinAtar's order (newest sub first), at the sub's cell."""
        width = s["e_bullet_alive"].shape[1]
        rank = shoots.long().flip(1).cumsum(1).flip(1) - 1  # shooters after this one in the list
        dest = s["e_bullet_alive"].sum(1, keepdim=True) + rank
        dest = torch.where(shoots & (dest < width), dest, width)  # a scratch column takes the rest
        for name, value in (("alive", shoots), ("x", x), ("y", s["enemy_y"]), ("right", s["enemy_right"])):
            field = s[f"e_bullet_{name}"]
            wide = torch.cat((field, field.new_zeros(field.shape[0], 1)), 1)
            wide.scatter_(1, dest, value.to(field.dtype))
            s[f"e_bullet_{name}"] = wide[:, :width]

    @staticmethod
    def _enemy_bullets(s: State) -> torch.Tensor:
        alive, x, y = s["e_bullet_alive"], s["e_bullet_x"], s["e_bullet_y"]
        sx, sy = s["sub_x"].unsqueeze(1), s["sub_y"].unsqueeze(1)
        caught = (alive & (x == sx) & (y == sy)).any(1)
        x = torch.where(alive, x + _heading(s["e_bullet_right"]), x)
        stays = alive & (x >= 0) & (x <= 9)
        caught = caught | (stays & (x == sx) & (y == sy)).any(1)
        s["e_bullet_x"], s["e_bullet_alive"] = x, stays
        return caught

    def _timers_and_surface(self, s: State) -> tuple[torch.Tensor, torch.Tensor]:
        for name in ("e_spawn_timer", "d_spawn_timer", "shot_timer"):
            s[name] = s[name] - (s[name] > 0).to(INT)
        oxygen, count = s["oxygen"], s["diver_count"]
        ended = oxygen <= 0
        below = s["sub_y"] > 0
        oxygen = torch.where(below, oxygen - 1, oxygen)
        arriving = ~below & ~s["surface"]
        ended = ended | (arriving & (count == 0))
        surfacing = arriving & (count != 0)
        full_crew = surfacing & (count == 6)
        points = torch.where(full_crew, oxygen * 10 // MAX_OXYGEN, 0)
        # MinAtar empties the crew and then still drops one diver: the count goes to -1 (kept: see the docs)
        count = torch.where(full_crew, 0, count) - surfacing.to(INT)
        s["oxygen"] = torch.where(surfacing, MAX_OXYGEN, oxygen)
        s["diver_count"] = count
        s["surface"] = (s["surface"] & ~below) | surfacing
        if self.difficulty_ramping:
            spawn_speed, move_speed, ramp_index = s["e_spawn_speed"], s["move_speed"], s["ramp_index"]
            ramp = surfacing & ((spawn_speed > 1) | (move_speed > 2))
            s["move_speed"] = move_speed - (ramp & (move_speed > 2) & (ramp_index % 2 == 1)).to(INT)
            s["e_spawn_speed"] = spawn_speed - (ramp & (spawn_speed > 1)).to(INT)
            s["ramp_index"] = ramp_index + ramp.to(INT)
        return points, ended

    # -- observation and MinAtar's state ------------------------------------
    def render(self, s: State) -> torch.Tensor:
        c = {name: i for i, name in enumerate(self.channels)}
        canvas = Canvas(batch_size(s), len(self.channels), self.device)
        x, y = s["sub_x"], s["sub_y"]
        canvas.mark(c["sub_front"], y, x)
        canvas.mark(c["sub_back"], y, torch.where(s["sub_or"], x - 1, x + 1) % 10)  # -1 wraps, as numpy indexing
        canvas.mark(c["friendly_bullet"], s["f_bullet_y"], s["f_bullet_x"].clamp(0, 9), s["f_bullet_alive"])
        canvas.mark(c["enemy_bullet"], s["e_bullet_y"], s["e_bullet_x"].clamp(0, 9), s["e_bullet_alive"])
        ex, ey, alive = s["enemy_x"], s["enemy_y"], s["enemy_alive"]
        canvas.mark(torch.where(s["enemy_sub"], c["enemy_sub"], c["enemy_fish"]), ey, ex.clamp(0, 9), alive)
        canvas.mark(c["diver"], s["diver_y"], s["diver_x"].clamp(0, 9), s["diver_alive"])
        for prefix in ("enemy", "diver"):
            ox, alive = s[f"{prefix}_x"], s[f"{prefix}_alive"]
            back = torch.where(s[f"{prefix}_right"], ox - 1, ox + 1)
            canvas.mark(c["trail"], s[f"{prefix}_y"], back.clamp(0, 9), alive & (back >= 0) & (back <= 9))
        obs = canvas.image()
        bar = s["oxygen"].clamp(min=0) * 10 // MAX_OXYGEN
        obs[:, 9, :, c["oxygen_guage"]] = self._columns < bar.unsqueeze(1)
        obs[:, 9, :, c["diver_guage"]] = (self._columns >= 9 - s["diver_count"].unsqueeze(1)) & (self._columns < 9)
        return obs

    @classmethod
    def state_from_minatar(cls, game: Any) -> dict[str, np.ndarray]:
        out = {name: np.asarray(getattr(game, name), dtype=bool if name in _BOOLS else np.int64) for name in _SCALARS}
        rows = {"enemy": [list(e) + [True] for e in game.e_subs] + [list(f) + [0, False] for f in game.e_fish],
                "e_bullet": [list(b) for b in game.e_bullets], "f_bullet": [list(b) for b in game.f_bullets],
                "diver": [list(d) for d in game.divers]}
        # MinAtar's rows: enemies [x, y, right, move_timer, shot_timer(, sub)]; bullets [x, y, right];
        # divers [x, y, right, move_timer]
        columns = {"enemy": ("x", "y", "right", "move_timer", "shot_timer", "sub"), "e_bullet": ("x", "y", "right"),
                   "f_bullet": ("x", "y", "right"), "diver": ("x", "y", "right", "move_timer")}
        for prefix, (names, size) in _LISTS.items():
            entries = rows[prefix]
            if len(entries) > size:
                raise ValueError(f"MinAtar seaquest has {len(entries)} {prefix} entries, more than the {size} slots "
                                 f"of {cls.__name__}")
            for name in names:
                dtype = bool if name in _BOOLS else np.int64
                out[f"{prefix}_{name}"] = np.zeros(size, dtype=dtype)
            out[f"{prefix}_alive"][:len(entries)] = True
            for i, entry in enumerate(entries):
                for name, value in zip(columns[prefix], entry):
                    out[f"{prefix}_{name}"][i] = value
        return out

    @classmethod
    def canonical(cls, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Subs before fish (each in list order): MinAtar keeps them in two lists, whose interleaving never matters."""
        out = {k: np.asarray(v) for k, v in state.items()}
        live = np.flatnonzero(out["enemy_alive"])
        order = live[np.argsort(~out["enemy_sub"][live], kind="stable")]
        for name in _ENEMY:
            column = out[f"enemy_{name}"]
            packed = np.zeros_like(column)
            packed[:len(order)] = column[order]
            out[f"enemy_{name}"] = packed
        return out
