"""MinAtar Freeway as batched torch ops (``torch/minatar-freeway``)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from zoo.envs.torch_minatar.base import DOWN, NOOP, UP, Canvas, MinAtarTorchEnv, State, batch_size, randint_from_uniform

PLAYER_SPEED = 3
TIME_LIMIT = 2500
CARS = 8  # car i drives in row i + 1
CHICKEN_COLUMN = 4


class FreewayTorch(MinAtarTorchEnv):
    """Freeway: take the chicken from the bottom row to the top (+1) across eight lanes of cars.

    Channels: chicken, car, and five trail channels (speed1..speed5: the car
    moves once every 1..5 frames; the trail's side gives its direction). A car
    sends the chicken back to the bottom row; each crossing draws new car
    speeds. The chicken moves at most every ``PLAYER_SPEED`` frames. The
    episode ends after ``TIME_LIMIT`` + 1 frames (MinAtar's counter ends it
    when it drops below zero). No difficulty ramping.
    """

    game = "freeway"
    channels = ("chicken", "car", "speed1", "speed2", "speed3", "speed4", "speed5")
    minimal_actions = (NOOP, UP, DOWN)
    fields = {
        "pos": (torch.int64, ()), "move_timer": (torch.int64, ()), "terminate_timer": (torch.int64, ()),
        "car_x": (torch.int64, (CARS,)), "car_timer": (torch.int64, (CARS,)), "car_speed": (torch.int64, (CARS,)),
    }
    step_draws = (("cross_speeds", CARS), ("cross_directions", CARS))
    reset_draws = (("reset_speeds", CARS), ("reset_directions", CARS))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rows = torch.arange(1, CARS + 1, device=self.device)

    @staticmethod
    def _speeds(speed_draws: torch.Tensor, direction_draws: torch.Tensor) -> torch.Tensor:
        """Signed speeds: magnitude ``randint(1, 6)``, sign of ``u - 0.5`` (``u == 0.5`` counts as +1; see the docs)."""
        return randint_from_uniform(speed_draws, 1, 6) * torch.where(direction_draws < 0.5, -1, 1)

    def initial_state(self, draws: Mapping[str, torch.Tensor], n: int) -> State:
        dev = self.device
        speed = self._speeds(draws["reset_speeds"], draws["reset_directions"])
        full = lambda v: torch.full((n,), v, dtype=torch.int64, device=dev)  # noqa: E731
        return {"pos": full(9), "move_timer": full(PLAYER_SPEED), "terminate_timer": full(TIME_LIMIT),
                "car_x": torch.zeros(n, CARS, dtype=torch.int64, device=dev), "car_timer": speed.abs(),
                "car_speed": speed}

    def frame(self, state: State, action: torch.Tensor, draws: Mapping[str, torch.Tensor]):
        pos, move_timer = state["pos"], state["move_timer"]
        can_move = move_timer == 0
        up, down = (action == UP) & can_move, (action == DOWN) & can_move
        move_timer = torch.where(up | down, PLAYER_SPEED, move_timer)
        pos = torch.where(up, (pos - 1).clamp(min=0), torch.where(down, (pos + 1).clamp(max=9), pos))

        crossed = pos == 0
        new_speed = self._speeds(draws["cross_speeds"], draws["cross_directions"])
        speed = torch.where(crossed.unsqueeze(1), new_speed, state["car_speed"])
        timer = torch.where(crossed.unsqueeze(1), new_speed.abs(), state["car_timer"])
        pos = torch.where(crossed, 9, pos)

        # Only a hit changes the chicken's row (to 9, where no car drives), so every car sees the same row.
        car_x = state["car_x"]
        in_row = self._rows == pos.unsqueeze(1)
        hit = in_row & (car_x == CHICKEN_COLUMN)
        moving = timer == 0
        timer = torch.where(moving, speed.abs(), timer - 1)
        car_x = torch.where(moving, car_x + torch.where(speed > 0, 1, -1), car_x)
        car_x = torch.where(car_x < 0, 9, torch.where(car_x > 9, 0, car_x))
        hit = hit | (moving & in_row & (car_x == CHICKEN_COLUMN))
        pos = torch.where(hit.any(1), 9, pos)

        move_timer = move_timer - (move_timer > 0).long()
        terminate_timer = state["terminate_timer"] - 1
        nxt = {"pos": pos, "move_timer": move_timer, "terminate_timer": terminate_timer, "car_x": car_x,
               "car_timer": timer, "car_speed": speed}
        return nxt, crossed.float(), terminate_timer < 0

    def render(self, state: State) -> torch.Tensor:
        canvas = Canvas(batch_size(state), len(self.channels), self.device)
        pos = state["pos"]
        canvas.mark(0, pos, torch.full_like(pos, CHICKEN_COLUMN))
        car_x, speed = state["car_x"], state["car_speed"]
        rows = self._rows.expand_as(car_x)
        canvas.mark(1, rows, car_x)
        back = torch.where(speed > 0, car_x - 1, car_x + 1)
        back = torch.where(back < 0, 9, torch.where(back > 9, 0, back))
        canvas.mark(1 + speed.abs().clamp(1, 5), rows, back)
        return canvas.image()

    @classmethod
    def state_from_minatar(cls, game: Any) -> dict[str, np.ndarray]:
        cars = np.asarray(game.cars, dtype=np.int64)  # rows of [x, row, timer, signed speed]
        return {"pos": np.int64(game.pos), "move_timer": np.int64(game.move_timer),
                "terminate_timer": np.int64(game.terminate_timer), "car_x": cars[:, 0], "car_timer": cars[:, 2],
                "car_speed": cars[:, 3]}
