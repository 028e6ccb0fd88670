"""torch/grid-*: batched four-rooms and key-door gridworlds against a plain Python reference."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import zoo
from zoo.envs.torch_grid import LAYOUTS, MOVES, GridWorldTorch
from zoo.errors import ActionError


def _reference_step(layout: str, agent: int, key: int, has_key: bool, action: int) -> tuple[int, bool]:
    """One move on the layout's character grid, written plainly."""
    rows = LAYOUTS[layout]
    width = len(rows[0])
    y, x = divmod(agent, width)
    dy, dx = MOVES[action]
    cell = rows[y + dy][x + dx]
    if cell == "#" or (cell == "D" and not has_key):
        return agent, has_key
    agent = (y + dy) * width + x + dx
    return agent, has_key or agent == key


def _shortest_path(layout: str, start: int, goal: int, passable: str) -> list[int]:
    """Actions of a shortest path over the cells whose character is in ``passable`` (breadth-first search)."""
    rows = LAYOUTS[layout]
    width = len(rows[0])
    previous = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            break
        y, x = divmod(cell, width)
        for a, (dy, dx) in enumerate(MOVES):
            nxt = (y + dy) * width + x + dx
            if rows[y + dy][x + dx] in passable and nxt not in previous:
                previous[nxt] = (cell, a)
                queue.append(nxt)
    actions = []
    while previous[goal] is not None:
        goal, a = previous[goal]
        actions.append(a)
    return actions[::-1]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_registered_spaces_and_gymnasium_checker(layout):
    env_id = f"torch/grid-{layout}"
    assert env_id in zoo.list_envs("torch")
    env = zoo.make_env(env_id, num_envs=5, seed=0)
    h, w = len(LAYOUTS[layout]), len(LAYOUTS[layout][0])
    obs = env.reset()
    assert env.env_id == env_id and obs.shape == (5, h, w, len(env.planes)) and obs.dtype == torch.uint8
    assert (obs[:, :, :, 1].flatten(1).sum(1) == 1).all()  # one agent per env
    check_env(zoo.envs.make_single_env(env_id, seed=0), skip_render_check=True)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_batched_steps_match_the_reference(layout):
    n = 64
    env = GridWorldTorch(layout, num_envs=n, seed=1, max_episode_steps=50)
    env.reset()
    rng = np.random.default_rng(1)
    width = env.width
    for _ in range(400):
        state = env.get_state()
        actions = rng.integers(0, 4, size=n)
        obs, reward, terminated, truncated, info = env.step(torch.as_tensor(actions))
        final = info["final_obs"]
        for i in range(n):
            agent, has_key = _reference_step(layout, int(state["agent"][i]), int(state["key"][i]),
                                             bool(state["has_key"][i]), int(actions[i]))
            y, x = divmod(agent, width)
            assert final[i, y, x, 1] == 1 and final[i, :, :, 1].sum() == 1
            at_goal = LAYOUTS[layout][y][x] == "G"
            assert bool(terminated[i]) == at_goal
            steps = int(state["elapsed"][i]) + 1
            assert bool(truncated[i]) == (not at_goal and steps >= 50)
            expected = 1 - 0.9 * steps / 50 if at_goal else 0.0
            assert float(reward[i]) == pytest.approx(expected, abs=1e-6)
            if env.has_door:
                assert final[i, :, :, 3].sum() == (0 if has_key else 1)
        done = terminated | truncated
        assert (env.elapsed[done] == 0).all() and not env.has_key[done].any()


def test_four_rooms_shortest_path_earns_the_discounted_reward():
    env = GridWorldTorch("four-rooms", num_envs=1, seed=0)
    env.reset()
    start = 1 * env.width + 1
    env.set_state({"agent": torch.tensor([start]), "key": torch.tensor([0]), "has_key": torch.tensor([False])})
    path = _shortest_path("four-rooms", start, env.goal, passable=".G")
    for t, a in enumerate(path):
        _, reward, terminated, _, _ = env.step(torch.tensor([a]))
        assert bool(terminated) == (t == len(path) - 1)
    assert float(reward) == pytest.approx(1 - 0.9 * len(path) / 100)


def test_key_door_needs_the_key():
    env = GridWorldTorch("key-door", num_envs=2, seed=0)
    env.reset()
    width = env.width
    beside_door = 3 * width + 3  # the door is at (3, 4)
    env.set_state({"agent": torch.tensor([beside_door, beside_door]), "key": torch.tensor([width + 1, beside_door]),
                   "has_key": torch.tensor([False, True])})
    env.step(torch.tensor([1, 1]))  # right, into the door
    assert env.agent.tolist() == [beside_door, beside_door + 1]
    path = _shortest_path("key-door", beside_door + 1, env.goal, passable=".G")
    for a in path:
        _, reward, terminated, _, _ = env.step(torch.tensor([a, a]))
    assert bool(terminated[1]) and float(reward[1]) > 0 and not bool(terminated[0])


def test_starts_are_uniform_and_the_key_never_under_the_agent():
    env = GridWorldTorch("key-door", num_envs=20_000, seed=3)
    env.reset()
    assert not (env.agent == env.key).any()
    counts = torch.bincount(env.agent, minlength=env.height * env.width)[env.start_cells]
    assert counts.min() > 0.8 * counts.float().mean()
    assert set(env.key.unique().tolist()) == set(env.key_cells.tolist())


def test_seeding_errors_and_device():
    a, b = zoo.make_env("torch/grid-four-rooms", 32, seed=7), zoo.make_env("torch/grid-four-rooms", 32, seed=7)
    assert torch.equal(a.reset(), b.reset())
    with pytest.raises(ActionError, match="actions must be 0"):
        a.step(torch.full((32,), 4))
    with pytest.raises(ValueError, match="unknown gridworld layout"):
        GridWorldTorch("maze")
    with pytest.raises(ValueError, match="on a wall"):
        a.set_state({"agent": torch.zeros(32, dtype=torch.int64), "key": torch.zeros(32, dtype=torch.int64),
                     "has_key": torch.zeros(32, dtype=torch.bool)})
    assert a.reset().device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_cuda():
    env = zoo.make_env("torch/grid-key-door", 256, device="cuda", seed=0)
    obs = env.reset()
    for _ in range(20):
        obs, reward, terminated, truncated, info = env.step(env.sample_actions())
    assert obs.device.type == reward.device.type == info["final_obs"].device.type == "cuda"
