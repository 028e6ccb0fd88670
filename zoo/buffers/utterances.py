"""A FIFO replay of utterance transitions (strings), for the language agents' off-policy critics."""

from __future__ import annotations

import numpy as np
import torch

from zoo.envs.text.dialogues import Turn


def sample_turns(turns: list[Turn], n: int, rng: np.random.Generator) -> list[Turn]:
    """``n`` turns drawn uniformly with replacement."""
    return [turns[i] for i in rng.integers(len(turns), size=n)]


class UtteranceReplay:
    """At most ``capacity`` :class:`~zoo.envs.text.dialogues.Turn` transitions; the oldest go first.
    ``sample(n, rng)`` draws ``n`` with replacement as lists of strings and tensors of rewards / dones."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity, self.turns, self.next = capacity, [], 0

    def __len__(self) -> int:
        return len(self.turns)

    def add(self, turns: list[Turn]) -> None:
        for turn in turns:
            if len(self.turns) < self.capacity:
                self.turns.append(turn)
            else:
                self.turns[self.next] = turn
            self.next = (self.next + 1) % self.capacity

    def sample(self, n: int, rng: np.random.Generator, device="cpu") -> dict:
        if not self.turns:
            raise RuntimeError("the utterance replay is empty")
        picked = sample_turns(self.turns, n, rng)
        return {"observations": [t.observation for t in picked], "actions": [t.action for t in picked],
                "next_observations": [t.next_observation for t in picked],
                "rewards": torch.tensor([t.reward for t in picked], dtype=torch.float32, device=device),
                "dones": torch.tensor([t.done for t in picked], dtype=torch.float32, device=device)}
