"""Batched torch gridworlds (``torch/grid-<layout>``): four rooms and key-door, cheap enough for meta-training.

The TA-LPG paper's own gridworlds are not described in the project's notes,
so these are the classic shapes: Sutton, Precup & Singh's (1999) four rooms,
and a two-room key-door task (pick up the key to pass the door). Rewards follow
MiniGrid's: ``1 - 0.9 * steps / max_episode_steps`` on reaching the goal, 0
otherwise; reaching the goal ends the episode, ``max_episode_steps`` truncates it.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from gymnasium import spaces

from zoo.envs.torch_envs import TorchVecEnv
from zoo.errors import ActionError

# '#' wall, 'G' goal, 'D' door (locked until the key is held), 'k' cells where the key may lie; the agent
# starts on a 'k' cell where the layout has them (not the key's), else on any '.' cell.
LAYOUTS = {
    "four-rooms": (
        "#############",
        "#.....#.....#",
        "#.....#.....#",
        "#...........#",
        "#.....#.....#",
        "#.....#.....#",
        "##.####.....#",
        "#.....###.###",
        "#.....#.....#",
        "#.....#.....#",
        "#...........#",
        "#.....#....G#",
        "#############",
    ),
    "key-door": (
        "#########",
        "#kkk#...#",
        "#kkk#...#",
        "#kkkD...#",
        "#kkk#...#",
        "#kkk#..G#",
        "#########",
    ),
}
#: actions: up, right, down, left
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))


class GridWorldTorch(TorchVecEnv):
    """``num_envs`` copies of one gridworld layout, stepped together as torch ops on ``device``.

    Observations: ``(H, W, C)`` uint8 0/1 planes (wall, agent, goal, and for
    layouts with a door: key (until picked up), door). Actions: 0 up, 1 right,
    2 down, 3 left; moving into a wall (or the locked door) stays put. The
    agent starts on a uniformly drawn start cell; the key, where there is one,
    on a uniformly drawn key cell other than the agent's.
    """

    def __init__(self, layout: str = "four-rooms", num_envs: int = 1, device: str | torch.device = "cpu",
                 seed: int | None = None, max_episode_steps: int = 100):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown gridworld layout {layout!r}; layouts: {', '.join(LAYOUTS)}")
        if int(max_episode_steps) < 1:
            raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}")
        rows = LAYOUTS[layout]
        grid = np.array([list(r) for r in rows])
        self.layout, self.height, self.width = layout, grid.shape[0], grid.shape[1]
        self.has_door = bool((grid == "D").any())
        self.planes = ("wall", "agent", "goal") + (("key", "door") if self.has_door else ())
        obs_space = spaces.Box(0, 1, (self.height, self.width, len(self.planes)), dtype=np.uint8)
        super().__init__(num_envs, torch.device(device), obs_space, spaces.Discrete(len(MOVES)), seed=seed)
        self.env_id = f"torch/grid-{layout}"
        self.max_episode_steps = int(max_episode_steps)
        dev = self.device
        self.walls = torch.as_tensor(grid == "#", device=dev)
        self.door = torch.as_tensor(grid == "D", device=dev)
        self.goal = int(np.flatnonzero(grid.ravel() == "G")[0])
        key_cells = np.flatnonzero(grid.ravel() == "k")
        start_cells = np.flatnonzero(grid.ravel() == ("k" if len(key_cells) else "."))
        self.key_cells = torch.as_tensor(key_cells, device=dev)
        self.start_cells = torch.as_tensor(start_cells, device=dev)
        self.moves = torch.as_tensor([dy * self.width + dx for dy, dx in MOVES], device=dev)
        static = [self.walls, torch.zeros_like(self.walls), self._cell_plane(self.goal)]
        if self.has_door:
            static += [torch.zeros_like(self.walls), self.door]
        self._static = torch.stack(static, -1).to(torch.uint8)
        n = self.num_envs
        self.agent = torch.zeros(n, dtype=torch.int64, device=dev)  # flat cell index y * width + x
        self.key = torch.zeros(n, dtype=torch.int64, device=dev)
        self.has_key = torch.zeros(n, dtype=torch.bool, device=dev)
        self.elapsed = torch.zeros(n, dtype=torch.int64, device=dev)

    def _cell_plane(self, cell: int) -> torch.Tensor:
        plane = torch.zeros(self.height * self.width, dtype=torch.bool, device=self.device)
        plane[cell] = True
        return plane.view(self.height, self.width)

    def _starts(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Start cells for ``n`` episodes: (agent, key); the key never on the agent's cell."""
        u = torch.rand(n, 2, generator=self.generator, device=self.device)
        if not self.has_door:
            pick = (u[:, 0] * len(self.start_cells)).long().clamp_(max=len(self.start_cells) - 1)
            return self.start_cells[pick], torch.zeros(n, dtype=torch.int64, device=self.device)
        n_keys = len(self.key_cells)
        key_pick = (u[:, 1] * n_keys).long().clamp_(max=n_keys - 1)
        key = self.key_cells[key_pick]
        # the agent: uniform over the start cells other than the key's
        others = self.start_cells.unsqueeze(0) != key.unsqueeze(1)
        rank = (u[:, 0] * others.sum(1)).long().clamp_(max=len(self.start_cells) - 2)
        pick = (others.long().cumsum(1) == (rank + 1).unsqueeze(1)) & others
        return self.start_cells[pick.long().argmax(1)], key

    def reset(self, seed: int | None = None, options: dict | None = None) -> torch.Tensor:
        self._check_no_step_in_flight("reset()")
        self._seed_generator(seed)
        self.agent, self.key = self._starts(self.num_envs)
        self.has_key.zero_()
        self.elapsed.zero_()
        return self.render()

    def render(self) -> torch.Tensor:
        """The observation planes of every env: ``(num_envs, H, W, C)`` uint8."""
        n, cells = self.num_envs, self.height * self.width
        obs = self._static.expand(n, -1, -1, -1).clone().view(n, cells, -1)
        rows = torch.arange(n, device=self.device)
        obs[rows, self.agent, 1] = 1
        if self.has_door:
            obs[rows, self.key, 3] = (~self.has_key).to(torch.uint8)
        return obs.view(n, self.height, self.width, -1)

    def step(self, actions: torch.Tensor):
        if self._step_in_flight:
            self._check_no_step_in_flight("step()")
        actions = self.check_actions(actions)
        if self.device.type == "cpu" and (actions.min() < 0 or actions.max() >= len(MOVES)):
            raise ActionError(f"{self.env_id}: actions must be 0 (up), 1 (right), 2 (down) or 3 (left), got values in "
                              f"[{int(actions.min())}, {int(actions.max())}]")
        target = self.agent + self.moves[actions]  # the border is walls: never off the grid
        blocked = self.walls.view(-1)[target] | (self.door.view(-1)[target] & ~self.has_key)
        self.agent = torch.where(blocked, self.agent, target)
        if self.has_door:
            self.has_key = self.has_key | (self.agent == self.key)
        self.elapsed += 1
        terminated = self.agent == self.goal
        reward = torch.where(terminated, 1.0 - 0.9 * self.elapsed.float() / self.max_episode_steps, 0.0)
        truncated = ~terminated & (self.elapsed >= self.max_episode_steps)
        done = terminated | truncated
        final_obs = self.render()
        agent, key = self._starts(self.num_envs)  # drawn for every env (no host sync), kept where done
        self.agent = torch.where(done, agent, self.agent)
        self.key = torch.where(done, key, self.key)
        self.has_key = self.has_key & ~done
        self.elapsed = torch.where(done, 0, self.elapsed)
        obs = torch.where(done.view(-1, 1, 1, 1), self.render(), final_obs)
        return obs, reward.float(), terminated, truncated, {"final_obs": final_obs}

    def get_state(self) -> dict[str, torch.Tensor]:
        """Every env's state: ``agent`` and ``key`` (flat cell indices ``y * width + x``), ``has_key``, ``elapsed``."""
        return {"agent": self.agent.clone(), "key": self.key.clone(), "has_key": self.has_key.clone(),
                "elapsed": self.elapsed.clone()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Set every env's state from a mapping like :meth:`get_state`'s (``elapsed`` zeroed when absent)."""
        known = {"agent", "key", "has_key", "elapsed"}
        if set(state) - known or not {"agent", "key", "has_key"} <= set(state):
            raise KeyError(f"{self.env_id}: set_state needs 'agent', 'key', 'has_key' (and optionally 'elapsed'), "
                           f"got {sorted(state)}")
        values = {}
        for name, value in state.items():
            tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
            if tuple(tensor.shape) != (self.num_envs,):
                raise ValueError(f"{self.env_id}: set_state field {name!r} has shape {tuple(tensor.shape)}, "
                                 f"expected ({self.num_envs},)")
            values[name] = tensor.to(self.device, torch.bool if name == "has_key" else torch.int64).clone()
        agent = values["agent"]
        if self.device.type == "cpu":  # a free check on the host
            on_grid = bool(((agent >= 0) & (agent < self.height * self.width)).all())
            if not on_grid or bool(self.walls.view(-1)[agent].any()):
                raise ValueError(f"{self.env_id}: set_state puts an agent off the grid or on a wall "
                                 f"(cells are y * {self.width} + x)")
        self.agent, self.key, self.has_key = values["agent"], values["key"], values["has_key"]
        self.elapsed = values.get("elapsed", torch.zeros_like(self.elapsed))


def _grid_class(layout: str):
    def build(num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None, **kwargs):
        return GridWorldTorch(layout, num_envs=num_envs, device=device, seed=seed, **kwargs)
    build.__doc__ = f"``torch/grid-{layout}``: :class:`GridWorldTorch` with the {layout!r} layout."
    return build


#: task name under the ``torch`` suite -> builder
TORCH_GRIDS = {f"grid-{layout}": _grid_class(layout) for layout in LAYOUTS}
