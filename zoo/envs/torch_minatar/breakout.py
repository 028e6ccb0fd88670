"""MinAtar Breakout as batched torch ops (``torch/minatar-breakout``)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from zoo.envs.torch_minatar.base import (
    GRID,
    LEFT,
    NOOP,
    RIGHT,
    Canvas,
    MinAtarTorchEnv,
    State,
    batch_size,
    count_cells,
    onehot,
    randint_from_uniform,
)

# Ball directions 0..3: up-left, up-right, down-right, down-left.
_DX = (-1, 1, 1, -1)
_DY = (-1, -1, 1, 1)
_BOUNCE_X = (1, 0, 3, 2)       # off a side wall
_BOUNCE_Y = (3, 2, 1, 0)       # off the ceiling, a brick, or the paddle's middle
_DEFLECT = (2, 3, 0, 1)        # off the paddle's corner: both components reverse


class BreakoutTorch(MinAtarTorchEnv):
    """Breakout: a paddle on the bottom row, three rows of bricks (refilled when cleared), +1 per brick.

    Channels: paddle, ball, trail (the ball's previous cell), brick. The ball
    moves diagonally one cell per frame; the episode ends when it reaches the
    bottom row past the paddle. No difficulty ramping.
    """

    game = "breakout"
    channels = ("paddle", "ball", "trail", "brick")
    minimal_actions = (NOOP, LEFT, RIGHT)
    fields = {
        "ball_x": (torch.int64, ()), "ball_y": (torch.int64, ()), "ball_dir": (torch.int64, ()),
        "pos": (torch.int64, ()), "last_x": (torch.int64, ()), "last_y": (torch.int64, ()),
        "strike": (torch.bool, ()), "bricks": (torch.bool, (GRID, GRID)),
    }
    reset_draws = (("ball_start", 1),)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        tables = torch.tensor([_DX, _DY, _BOUNCE_X, _BOUNCE_Y, _DEFLECT], dtype=torch.int64, device=self.device)
        self._dx, self._dy, self._bounce_x, self._bounce_y, self._deflect = tables
        self._full_wall = torch.zeros(GRID, GRID, dtype=torch.bool, device=self.device)
        self._full_wall[1:4] = True

    def initial_state(self, draws: Mapping[str, torch.Tensor], n: int) -> State:
        dev = self.device
        right_start = randint_from_uniform(draws["ball_start"][:, 0], 0, 2) == 1  # randint(2): 0 left, 1 right
        ball_x = torch.where(right_start, 9, 0)
        return {"ball_x": ball_x, "ball_y": torch.full((n,), 3, device=dev), "ball_dir": torch.where(right_start, 3, 2),
                "pos": torch.full((n,), 4, device=dev), "last_x": ball_x.clone(),
                "last_y": torch.full((n,), 3, device=dev), "strike": torch.zeros(n, dtype=torch.bool, device=dev),
                "bricks": self._full_wall.expand(n, -1, -1).clone()}

    def frame(self, state: State, action: torch.Tensor, draws: Mapping[str, torch.Tensor]):
        pos = state["pos"]
        pos = torch.where(action == LEFT, (pos - 1).clamp(min=0), pos)
        pos = torch.where(action == RIGHT, (pos + 1).clamp(max=9), pos)
        last_x, last_y, direction = state["ball_x"], state["ball_y"], state["ball_dir"]
        new_x, new_y = last_x + self._dx[direction], last_y + self._dy[direction]

        side = (new_x < 0) | (new_x > 9)
        new_x = new_x.clamp(0, 9)
        direction = torch.where(side, self._bounce_x[direction], direction)
        ceiling = new_y < 0
        new_y = new_y.clamp(min=0)
        direction = torch.where(ceiling, self._bounce_y[direction], direction)

        bricks = state["bricks"].reshape(-1, GRID * GRID)
        cell = new_y * GRID + new_x
        in_brick = ~ceiling & bricks.gather(1, cell.unsqueeze(1)).squeeze(1)
        breaks = in_brick & ~state["strike"]  # a ball still inside a struck brick passes through the next one
        bricks = (bricks & ~(onehot(cell, GRID * GRID) & breaks.unsqueeze(1))).reshape(-1, GRID, GRID)
        new_y = torch.where(breaks, last_y, new_y)
        direction = torch.where(breaks, self._bounce_y[direction], direction)

        bottom = ~ceiling & ~in_brick & (new_y == 9)
        cleared = bottom & (count_cells(bricks) == 0)
        bricks = torch.where(cleared.view(-1, 1, 1), self._full_wall, bricks)
        paddle_middle = bottom & (last_x == pos)
        paddle_corner = bottom & ~paddle_middle & (new_x == pos)
        direction = torch.where(paddle_middle, self._bounce_y[direction],
                                torch.where(paddle_corner, self._deflect[direction], direction))
        new_y = torch.where(paddle_middle | paddle_corner, last_y, new_y)
        terminal = bottom & ~paddle_middle & ~paddle_corner
        nxt = {"ball_x": new_x, "ball_y": new_y, "ball_dir": direction, "pos": pos, "last_x": last_x,
               "last_y": last_y, "strike": in_brick, "bricks": bricks}
        return nxt, breaks.float(), terminal

    def render(self, state: State) -> torch.Tensor:
        canvas = Canvas(batch_size(state), len(self.channels), self.device)
        canvas.mark(0, torch.full_like(state["pos"], 9), state["pos"])
        canvas.mark(1, state["ball_y"], state["ball_x"])
        canvas.mark(2, state["last_y"], state["last_x"])
        obs = canvas.image()
        obs[..., 3] = state["bricks"]
        return obs

    @classmethod
    def state_from_minatar(cls, game: Any) -> dict[str, np.ndarray]:
        scalar = {name: np.int64(getattr(game, attr)) for name, attr in
                  (("ball_x", "ball_x"), ("ball_y", "ball_y"), ("ball_dir", "ball_dir"), ("pos", "pos"),
                   ("last_x", "last_x"), ("last_y", "last_y"))}
        return {**scalar, "strike": np.bool_(game.strike), "bricks": np.asarray(game.brick_map) != 0}
