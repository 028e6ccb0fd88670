"""MinAtar Space Invaders as batched torch ops (``torch/minatar-space_invaders``)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from zoo.envs.torch_minatar.base import FIRE, GRID, LEFT, NOOP, RIGHT, MinAtarTorchEnv, State, count_cells, onehot

SHOT_COOL_DOWN = 5
ENEMY_MOVE_INTERVAL = 12
ENEMY_SHOT_INTERVAL = 10


class SpaceInvadersTorch(MinAtarTorchEnv):
    """Space Invaders: shoot (+1 each) a 4x6 block of aliens that sweeps sideways and steps down at the edges.

    Channels: cannon, alien, alien_left, alien_right (the block's direction),
    friendly_bullet, enemy_bullet. The alien nearest the cannon's column
    shoots every ``ENEMY_SHOT_INTERVAL`` frames; aliens move faster as fewer
    remain, and each new wave is one frame faster (down to 6). The episode
    ends when an alien or an enemy bullet reaches the cannon, or the block
    turns at an edge while an alien is on the bottom row. Deterministic apart
    from sticky actions.
    """

    game = "space_invaders"
    channels = ("cannon", "alien", "alien_left", "alien_right", "friendly_bullet", "enemy_bullet")
    minimal_actions = (NOOP, LEFT, RIGHT, FIRE)
    fields = {
        "pos": (torch.int64, ()), "alien_dir": (torch.int64, ()), "enemy_move_interval": (torch.int64, ()),
        "alien_move_timer": (torch.int64, ()), "alien_shot_timer": (torch.int64, ()),
        "ramp_index": (torch.int64, ()), "shot_timer": (torch.int64, ()),
        "aliens": (torch.bool, (GRID, GRID)), "f_bullets": (torch.bool, (GRID, GRID)),
        "e_bullets": (torch.bool, (GRID, GRID)),
    }
    constant_start = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._wave = torch.zeros(GRID, GRID, dtype=torch.bool, device=self.device)
        self._wave[0:4, 2:8] = True
        columns = torch.arange(GRID, device=self.device)
        self._columns = columns
        self._rows_plus_one = torch.arange(1, GRID + 1, device=self.device)

    def initial_state(self, draws: Mapping[str, torch.Tensor], n: int) -> State:
        dev = self.device
        full = lambda v: torch.full((n,), v, dtype=torch.int64, device=dev)  # noqa: E731
        empty = torch.zeros(n, GRID, GRID, dtype=torch.bool, device=dev)
        return {"pos": full(5), "alien_dir": full(-1), "enemy_move_interval": full(ENEMY_MOVE_INTERVAL),
                "alien_move_timer": full(ENEMY_MOVE_INTERVAL), "alien_shot_timer": full(ENEMY_SHOT_INTERVAL),
                "ramp_index": full(0), "shot_timer": full(0), "aliens": self._wave.expand(n, -1, -1).clone(),
                "f_bullets": empty, "e_bullets": empty.clone()}

    def frame(self, state: State, action: torch.Tensor, draws: Mapping[str, torch.Tensor]):
        n = self.num_envs
        pos, shot_timer = state["pos"], state["shot_timer"]
        fire = (action == FIRE) & (shot_timer == 0)
        shot_timer = torch.where(fire, SHOT_COOL_DOWN, shot_timer)
        pos_mask = onehot(pos, GRID)  # the cannon's column
        f_bullets = state["f_bullets"].clone()
        f_bullets[:, 9] |= pos_mask & fire.unsqueeze(1)
        pos = torch.where(action == LEFT, (pos - 1).clamp(min=0),
                          torch.where(action == RIGHT, (pos + 1).clamp(max=9), pos))
        pos_mask = onehot(pos, GRID)

        # bullets advance one row (friendly up, enemy down); those leaving the grid vanish
        no_row = f_bullets.new_zeros(n, 1, GRID)
        f_bullets = torch.cat((f_bullets[:, 1:], no_row), 1)
        e_bullets = torch.cat((no_row, state["e_bullets"][:, :-1]), 1)
        aliens = state["aliens"]
        terminal = (e_bullets[:, 9] & pos_mask).any(1) | (aliens[:, 9] & pos_mask).any(1)

        alien_dir, move_timer = state["alien_dir"], state["alien_move_timer"]
        move = move_timer == 0
        count = count_cells(aliens)
        move_timer = torch.where(move, torch.minimum(count.long(), state["enemy_move_interval"]), move_timer)
        turn = move & ((aliens[:, :, 0].any(1) & (alien_dir < 0)) | (aliens[:, :, 9].any(1) & (alien_dir > 0)))
        terminal = terminal | (turn & aliens[:, 9].any(1))
        alien_dir = torch.where(turn, -alien_dir, alien_dir)
        sideways = torch.where((alien_dir < 0).view(-1, 1, 1), aliens.roll(-1, 2), aliens.roll(1, 2))
        aliens = torch.where(turn.view(-1, 1, 1), aliens.roll(1, 1),  # the bottom row wraps to the top, as in MinAtar
                             torch.where((move & ~turn).view(-1, 1, 1), sideways, aliens))
        terminal = terminal | (aliens[:, 9] & pos_mask).any(1)

        # the lowest alien of the occupied column nearest the cannon (ties: the left one) drops a bullet in place
        shot_clock = state["alien_shot_timer"]
        shoot = shot_clock == 0
        shot_clock = torch.where(shoot, ENEMY_SHOT_INTERVAL, shot_clock)
        occupied = aliens.any(1)
        distance = (self._columns - pos.unsqueeze(1)).abs() * 2 + (self._columns > pos.unsqueeze(1)).long()
        column = torch.where(occupied, distance, 4 * GRID).argmin(1)
        in_column = aliens.gather(2, column.view(-1, 1, 1).expand(-1, GRID, 1)).squeeze(2)
        row = (in_column.long() * self._rows_plus_one).argmax(1)
        drop = shoot & occupied.any(1)
        cell = onehot(row * GRID + column, GRID * GRID).view(n, GRID, GRID) & drop.view(-1, 1, 1)
        e_bullets = e_bullets | cell

        kills = aliens & f_bullets
        reward = count_cells(kills).float()
        aliens = aliens & ~kills
        f_bullets = f_bullets & ~kills

        shot_timer = shot_timer - (shot_timer > 0).long()
        move_timer = move_timer - 1
        shot_clock = shot_clock - 1
        cleared = count_cells(aliens) == 0
        interval, ramp_index = state["enemy_move_interval"], state["ramp_index"]
        if self.difficulty_ramping:
            faster = cleared & (interval > 6)
            interval = interval - faster.long()
            ramp_index = ramp_index + faster.long()
        aliens = torch.where(cleared.view(-1, 1, 1), self._wave, aliens)
        nxt = {"pos": pos, "alien_dir": alien_dir, "enemy_move_interval": interval, "alien_move_timer": move_timer,
               "alien_shot_timer": shot_clock, "ramp_index": ramp_index, "shot_timer": shot_timer, "aliens": aliens,
               "f_bullets": f_bullets, "e_bullets": e_bullets}
        return nxt, reward, terminal

    def render(self, state: State) -> torch.Tensor:
        aliens = state["aliens"]
        left = (state["alien_dir"] < 0).view(-1, 1, 1)
        cannon = torch.zeros_like(aliens)
        cannon[:, 9] = onehot(state["pos"], GRID)
        planes = (cannon, aliens, aliens & left, aliens & ~left, state["f_bullets"], state["e_bullets"])
        return torch.stack(planes, dim=-1).to(torch.uint8)

    @classmethod
    def state_from_minatar(cls, game: Any) -> dict[str, np.ndarray]:
        out = {name: np.int64(getattr(game, name)) for name in
               ("pos", "alien_dir", "enemy_move_interval", "alien_move_timer", "alien_shot_timer", "ramp_index",
                "shot_timer")}
        out.update(aliens=np.asarray(game.alien_map) != 0, f_bullets=np.asarray(game.f_bullet_map) != 0,
                   e_bullets=np.asarray(game.e_bullet_map) != 0)
        return out
