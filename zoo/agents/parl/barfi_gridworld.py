"""BARFI's GridWorld in tabular form (after the reference's ``Maze_badreward`` / ``Maze_goodreward``,
Dhawgupta/gupta2023behavior ``barfi-gw``): an ``n x n`` grid, start bottom-left, goal top-right (+100 on arrival,
terminal), -0.1 per step, actions up/right/down/left with a 10% chance of a uniformly random action, episodes of
``horizon`` steps. The auxiliary reward, kept apart from the environment's, is

- ``"bad"``: +50 for each step that ends in the centre cell (the reference's +50 centre region): a designer's
  "intermediate" reward that makes loitering in the centre worth more than the goal;
- ``"good"``: minus the squared distance (in unit coordinates) of the next cell to the goal: a dense shaping hint;
- ``"none"``: zero.

Everything is float64 tensors: ``transitions (S, A, S)`` and the rewards of each transition ``(S, A, S)``, so
that the expected return of a tabular softmax policy is exact (:func:`exact_return`) and episodes can be drawn
in batches (:func:`sample_episodes`). The goal is absorbing with zero reward.
"""

from __future__ import annotations

import dataclasses

import torch

from zoo.errors import ConfigError

__all__ = ["AUX_KINDS", "Episodes", "GridWorld", "exact_return", "gridworld", "sample_episodes"]

DTYPE = torch.float64
AUX_KINDS = ("bad", "good", "none")
MOVES = ((1, 0), (0, 1), (-1, 0), (0, -1))  # (d_row, d_col): up, right, down, left; row 0 is the bottom


@dataclasses.dataclass(frozen=True)
class GridWorld:
    """``transitions``, ``env_reward``, ``aux_reward`` ``(S, A, S)``; ``initial (S,)``; ``terminal (S,)`` bool."""

    size: int
    transitions: torch.Tensor
    initial: torch.Tensor
    env_reward: torch.Tensor
    aux_reward: torch.Tensor
    terminal: torch.Tensor
    horizon: int
    centre: int
    goal: int

    @property
    def num_states(self) -> int:
        return int(self.transitions.shape[0])

    @property
    def num_actions(self) -> int:
        return int(self.transitions.shape[1])

    def expected(self, reward: torch.Tensor) -> torch.Tensor:
        """``r(s, a) = E_{s'}[R(s, a, s')]`` of a transition reward ``(S, A, S)``."""
        return (self.transitions * reward).sum(-1)


def gridworld(size: int = 5, horizon: int = 20, aux: str = "bad", *, slip: float = 0.1, goal_reward: float = 100.0,
              step_reward: float = -0.1, aux_reward: float = 50.0) -> GridWorld:
    """The GridWorld above (``size`` odd, so that it has a centre cell)."""
    if aux not in AUX_KINDS:
        raise ConfigError(f"unknown auxiliary reward {aux!r}; choose one of {AUX_KINDS}")
    if size < 3 or size % 2 == 0:
        raise ConfigError(f"size must be an odd integer >= 3 (the centre cell holds the auxiliary reward), got {size}")
    if horizon < 1 or not 0 <= slip <= 1:
        raise ConfigError(f"need horizon >= 1 and 0 <= slip <= 1, got horizon={horizon}, slip={slip}")
    n, S, A = size, size * size, len(MOVES)
    goal, centre = S - 1, (n // 2) * n + n // 2
    moved = torch.zeros(S, A, S, dtype=DTYPE)  # the deterministic effect of each action
    for s in range(S):
        r, c = divmod(s, n)
        for a, (dr, dc) in enumerate(MOVES):
            rr, cc = r + dr, c + dc
            moved[s, a, rr * n + cc if 0 <= rr < n and 0 <= cc < n else s] = 1.0
    p = (1 - slip) * moved + slip * moved.mean(1, keepdim=True)
    p[goal] = 0.0
    p[goal, :, goal] = 1.0
    terminal = torch.zeros(S, dtype=torch.bool)
    terminal[goal] = True
    alive = (~terminal).to(DTYPE)[:, None, None]
    arrive = torch.zeros(S, dtype=DTYPE)
    arrive[goal] = 1.0
    env = alive * (step_reward + goal_reward * arrive[None, None, :]).expand(S, A, S)
    if aux == "bad":
        target = torch.zeros(S, dtype=DTYPE)
        target[centre] = aux_reward
        aux_r = alive * target[None, None, :].expand(S, A, S)
    elif aux == "good":
        rows, cols = torch.arange(S) // n, torch.arange(S) % n
        dist2 = ((rows - (n - 1)) ** 2 + (cols - (n - 1)) ** 2).to(DTYPE) / (n - 1) ** 2
        aux_r = alive * (-dist2)[None, None, :].expand(S, A, S)
    else:
        aux_r = torch.zeros(S, A, S, dtype=DTYPE)
    initial = torch.zeros(S, dtype=DTYPE)
    initial[0] = 1.0
    return GridWorld(n, p, initial, env.clone(), aux_r.clone(), terminal, int(horizon), centre, goal)


def exact_return(world: GridWorld, theta: torch.Tensor, reward: torch.Tensor,
                 gamma: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``E_{pi_theta}[sum_{t<H} gamma^t r(s_t, a_t)]`` exactly for ``pi_theta(a|s) = softmax(theta[s])`` and a
    state-action reward ``(S, A)`` (differentiable in ``theta``, ``reward`` and ``gamma``)."""
    pi = torch.softmax(theta, -1)
    d, total, discount = world.initial, torch.zeros((), dtype=theta.dtype), torch.ones((), dtype=theta.dtype)
    for _ in range(world.horizon):
        joint = d[:, None] * pi
        total = total + discount * (joint * reward).sum()
        d = torch.einsum("sa,sap->p", joint, world.transitions)
        discount = discount * gamma
    return total


@dataclasses.dataclass(frozen=True)
class Episodes:
    """A batch of episodes, ``(B, H)`` each: ``states``, ``actions``, the environment's ``rewards``, the auxiliary
    ``aux`` and ``mask`` (1 while the episode runs; steps after the goal are padding)."""

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    aux: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.states.shape[0])

    def index(self, idx: torch.Tensor) -> Episodes:
        return Episodes(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))

    @staticmethod
    def cat(parts: list[Episodes]) -> Episodes:
        return Episodes(*(torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Episodes)))


def sample_episodes(world: GridWorld, theta: torch.Tensor, n: int, generator: torch.Generator) -> Episodes:
    """``n`` episodes of ``pi_theta`` from the start cell (batched; no gradient)."""
    with torch.no_grad():
        pi = torch.softmax(theta.detach(), -1)
        H = world.horizon
        states = torch.zeros(n, H, dtype=torch.long)
        actions = torch.zeros(n, H, dtype=torch.long)
        rewards, aux, mask = (torch.zeros(n, H, dtype=DTYPE) for _ in range(3))
        s = torch.multinomial(world.initial, n, replacement=True, generator=generator)
        for t in range(H):
            a = torch.multinomial(pi[s], 1, generator=generator).squeeze(1)
            nxt = torch.multinomial(world.transitions[s, a], 1, generator=generator).squeeze(1)
            states[:, t], actions[:, t] = s, a
            rewards[:, t], aux[:, t] = world.env_reward[s, a, nxt], world.aux_reward[s, a, nxt]
            mask[:, t] = (~world.terminal[s]).to(DTYPE)
            s = nxt
    return Episodes(states, actions, rewards, aux, mask)
