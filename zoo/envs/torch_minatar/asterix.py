"""MinAtar Asterix as batched torch ops (``torch/minatar-asterix``)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from zoo.envs.torch_minatar.base import (
    DOWN,
    LEFT,
    NOOP,
    RIGHT,
    UP,
    Canvas,
    MinAtarTorchEnv,
    State,
    batch_size,
    float32_threshold,
)

RAMP_INTERVAL = 100
INIT_SPAWN_SPEED = 10
INIT_MOVE_INTERVAL = 5
LANES = 8  # one entity slot per row 1..8


class AsterixTorch(MinAtarTorchEnv):
    """Asterix: dodge enemies and pick up gold (+1) that enter rows 1-8 from the sides.

    Channels: player, enemy, trail, gold. Entity ``i`` lives in row ``i + 1``.
    Touching an enemy ends the episode. Every ``RAMP_INTERVAL`` frames the
    spawn interval shrinks, and every second time the move interval too.
    """

    game = "asterix"
    channels = ("player", "enemy", "trail", "gold")
    minimal_actions = (NOOP, LEFT, UP, RIGHT, DOWN)
    fields = {
        "player_x": (torch.int64, ()), "player_y": (torch.int64, ()),
        "alive": (torch.bool, (LANES,)), "x": (torch.int64, (LANES,)), "right": (torch.bool, (LANES,)),
        "gold": (torch.bool, (LANES,)),
        "spawn_speed": (torch.int64, ()), "spawn_timer": (torch.int64, ()), "move_speed": (torch.int64, ()),
        "move_timer": (torch.int64, ()), "ramp_timer": (torch.int64, ()), "ramp_index": (torch.int64, ()),
    }
    step_draws = (("spawn_right", 1), ("spawn_gold", 1), ("spawn_slot", 1))
    constant_start = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._third = float32_threshold(1 / 3)
        self._rows = torch.arange(1, LANES + 1, device=self.device)

    def initial_state(self, draws: Mapping[str, torch.Tensor], n: int) -> State:
        dev = self.device
        full = lambda v: torch.full((n,), v, dtype=torch.int64, device=dev)  # noqa: E731
        lanes_false = torch.zeros(n, LANES, dtype=torch.bool, device=dev)
        return {"player_x": full(5), "player_y": full(5), "alive": lanes_false,
                "x": torch.zeros(n, LANES, dtype=torch.int64, device=dev), "right": lanes_false.clone(),
                "gold": lanes_false.clone(),
                "spawn_speed": full(INIT_SPAWN_SPEED), "spawn_timer": full(INIT_SPAWN_SPEED),
                "move_speed": full(INIT_MOVE_INTERVAL), "move_timer": full(INIT_MOVE_INTERVAL),
                "ramp_timer": full(RAMP_INTERVAL), "ramp_index": full(0)}

    def frame(self, state: State, action: torch.Tensor, draws: Mapping[str, torch.Tensor]):
        alive, x, right, gold = state["alive"], state["x"], state["right"], state["gold"]
        spawn_speed, spawn_timer = state["spawn_speed"], state["spawn_timer"]
        move_speed, move_timer = state["move_speed"], state["move_timer"]

        # spawn into a uniformly chosen free lane (nothing when all are taken)
        spawn = spawn_timer == 0
        spawn_right = draws["spawn_right"][:, 0] < 0.5
        spawn_gold = draws["spawn_gold"][:, 0] < self._third
        free = ~alive
        n_free = free.sum(1)
        k = torch.minimum((draws["spawn_slot"][:, 0] * n_free).floor().long(), n_free - 1)  # randint(n_free)
        chosen = free & (free.long().cumsum(1) == (k + 1).unsqueeze(1)) & (spawn & (n_free > 0)).unsqueeze(1)
        alive = alive | chosen
        x = torch.where(chosen, torch.where(spawn_right, 0, 9).unsqueeze(1), x)
        right = torch.where(chosen, spawn_right.unsqueeze(1), right)
        gold = torch.where(chosen, spawn_gold.unsqueeze(1), gold)
        spawn_timer = torch.where(spawn, spawn_speed, spawn_timer)

        px, py = state["player_x"], state["player_y"]
        px = torch.where(action == LEFT, (px - 1).clamp(min=0), torch.where(action == RIGHT, (px + 1).clamp(max=9), px))
        py = torch.where(action == UP, (py - 1).clamp(min=1), torch.where(action == DOWN, (py + 1).clamp(max=8), py))
        in_player_row = self._rows == py.unsqueeze(1)

        touching = alive & in_player_row & (x == px.unsqueeze(1))
        reward = (touching & gold).sum(1)
        terminal = (touching & ~gold).any(1)
        alive = alive & ~(touching & gold)

        move = move_timer == 0
        move_timer = torch.where(move, move_speed, move_timer)
        moving = alive & move.unsqueeze(1)
        x = x + torch.where(moving, torch.where(right, 1, -1), 0)
        alive = alive & ~(moving & ((x < 0) | (x > 9)))
        touching = moving & alive & in_player_row & (x == px.unsqueeze(1))
        reward = reward + (touching & gold).sum(1)
        terminal = terminal | (touching & ~gold).any(1)
        alive = alive & ~(touching & gold)

        spawn_timer = spawn_timer - 1
        move_timer = move_timer - 1
        ramp_timer, ramp_index = state["ramp_timer"], state["ramp_index"]
        if self.difficulty_ramping:
            ramping = (spawn_speed > 1) | (move_speed > 1)
            tick = ramping & (ramp_timer >= 0)
            bump = ramping & ~tick
            new_move_speed = torch.where(bump & (move_speed > 1) & (ramp_index % 2 == 1), move_speed - 1, move_speed)
            spawn_speed = torch.where(bump & (spawn_speed > 1), spawn_speed - 1, spawn_speed)
            move_speed = new_move_speed
            ramp_index = ramp_index + bump.long()
            ramp_timer = torch.where(tick, ramp_timer - 1, torch.where(bump, RAMP_INTERVAL, ramp_timer))
        nxt = {"player_x": px, "player_y": py, "alive": alive, "x": torch.where(alive, x, 0),
               "right": right & alive, "gold": gold & alive, "spawn_speed": spawn_speed, "spawn_timer": spawn_timer,
               "move_speed": move_speed, "move_timer": move_timer, "ramp_timer": ramp_timer, "ramp_index": ramp_index}
        return nxt, reward.float(), terminal

    def render(self, state: State) -> torch.Tensor:
        canvas = Canvas(batch_size(state), len(self.channels), self.device)
        canvas.mark(0, state["player_y"], state["player_x"])
        alive, x, right = state["alive"], state["x"], state["right"]
        rows = self._rows.expand_as(x)
        canvas.mark(torch.where(state["gold"], 3, 1), rows, x, alive)
        back = torch.where(right, x - 1, x + 1)
        canvas.mark(2, rows, back.clamp(0, 9), alive & (back >= 0) & (back <= 9))
        return canvas.image()

    @classmethod
    def state_from_minatar(cls, game: Any) -> dict[str, np.ndarray]:
        alive = np.array([e is not None for e in game.entities])
        pick = lambda i, default: np.array([e[i] if e is not None else default for e in game.entities])  # noqa: E731
        out = {"player_x": game.player_x, "player_y": game.player_y, "alive": alive,
               "x": pick(0, 0).astype(np.int64), "right": pick(2, False).astype(bool),
               "gold": pick(3, False).astype(bool)}
        for name in ("spawn_speed", "spawn_timer", "move_speed", "move_timer", "ramp_timer", "ramp_index"):
            out[name] = getattr(game, name)
        return {k: np.asarray(v, dtype=np.int64 if cls.fields[k][0] == torch.int64 else bool) for k, v in out.items()}
