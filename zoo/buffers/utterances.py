"""A FIFO replay of utterance transitions (strings), for the language agents' off-policy critics."""

from __future__ import annotations

import numpy as np
import torch

from zoo.envs.text.dialogues import Turn


def _pack_strings(texts: list[str]) -> dict[str, np.ndarray]:
    data = [t.encode("utf-8") for t in texts]
    return {"bytes": np.frombuffer(b"".join(data), dtype=np.uint8).copy(),
            "ends": np.cumsum([len(d) for d in data], dtype=np.int64)}


def _unpack_strings(packed: dict[str, np.ndarray]) -> list[str]:
    raw, ends = np.asarray(packed["bytes"], dtype=np.uint8).tobytes(), np.asarray(packed["ends"]).tolist()
    return [raw[a:b].decode("utf-8") for a, b in zip([0, *ends[:-1]], ends)]


def pack_turns(turns: list[Turn]) -> dict[str, dict | np.ndarray]:
    """Turns as numpy arrays (texts as UTF-8 bytes with end offsets), for a training checkpoint."""
    token_lengths = np.array([len(t.token_ids) for t in turns], dtype=np.int64)
    return {"observations": _pack_strings([t.observation for t in turns]),
            "actions": _pack_strings([t.action for t in turns]),
            "next_observations": _pack_strings([t.next_observation for t in turns]),
            "rewards": np.array([t.reward for t in turns], dtype=np.float64),
            "dones": np.array([t.done for t in turns], dtype=np.bool_),
            "token_ids": np.array([i for t in turns for i in t.token_ids], dtype=np.int64),
            "token_ends": np.cumsum(token_lengths, dtype=np.int64)}


def unpack_turns(packed: dict) -> list[Turn]:
    """The turns of :func:`pack_turns`."""
    texts = [_unpack_strings(packed[k]) for k in ("observations", "actions", "next_observations")]
    ids, ends = np.asarray(packed["token_ids"]).tolist(), np.asarray(packed["token_ends"]).tolist()
    tokens = [tuple(ids[a:b]) for a, b in zip([0, *ends[:-1]], ends)]
    rewards, dones = np.asarray(packed["rewards"]).tolist(), np.asarray(packed["dones"]).tolist()
    if not len(texts[0]) == len(texts[1]) == len(texts[2]) == len(tokens) == len(rewards) == len(dones):
        raise ValueError("the saved turns' fields have different lengths")
    return [Turn(o, a, float(r), n, bool(d), t) for o, a, n, r, d, t in zip(*texts, rewards, dones, tokens)]


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

    def state_dict(self) -> dict:
        """The stored turns and the write position (for a training checkpoint)."""
        return {"capacity": self.capacity, "next": self.next, "turns": pack_turns(self.turns)}

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"the saved utterance replay holds {state['capacity']} turns, this one {self.capacity}")
        self.turns, self.next = unpack_turns(state["turns"]), int(state["next"])

    def sample(self, n: int, rng: np.random.Generator, device="cpu") -> dict:
        if not self.turns:
            raise RuntimeError("the utterance replay is empty")
        picked = sample_turns(self.turns, n, rng)
        return {"observations": [t.observation for t in picked], "actions": [t.action for t in picked],
                "next_observations": [t.next_observation for t in picked],
                "rewards": torch.tensor([t.reward for t in picked], dtype=torch.float32, device=device),
                "dones": torch.tensor([t.done for t in picked], dtype=torch.float32, device=device)}
