"""The ranking model's pool of the agent's own messages, from which pairs go to the annotator.

ONI-ranking asks the LLM which of two messages is better. The pairs come from the agent's recent experience:
a sample of each learner batch's messages is kept here, and while the annotator's queue is short the learner
requests a few random pairs (facebookresearch/oni: ``OnlinePairsDataset`` and the learner's request rule).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from zoo.agents.oni.messages import (
    MESSAGE_LEN,
    GrowableRows,
    decode_message,
    message_rows,
)
from zoo.errors import CheckpointError, ConfigError

__all__ = ["PairPool"]


class PairPool:
    """The agent's own messages, from which ranking pairs are drawn for the annotator.

    ``add(messages)`` keeps a random 1 in ``subsample`` (10) of a batch's messages (the reference keeps every
    10th row of each minibatch), first in first out beyond ``capacity``. ``request(pending)`` returns
    ``pairs_per_request`` (10) random pairs of the pool's texts (drawn with replacement, as the reference) while
    fewer than ``max_pending`` (200: twice the annotator's batch of 100) pairs wait for the annotator, else none.
    ``dedupe`` keeps one copy of each message (the reference's ``remove_duplicated_obs``, off by default).
    """

    def __init__(self, *, subsample: int = 10, capacity: int = 100_000, pairs_per_request: int = 10,
                 max_pending: int = 200, dedupe: bool = False, seed: int = 0):
        for name, value in (("subsample", subsample), ("capacity", capacity),
                            ("pairs_per_request", pairs_per_request), ("max_pending", max_pending)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"PairPool's {name} must be a positive int, got {value!r}")
        self.subsample, self.capacity, self.pairs_per_request = subsample, capacity, pairs_per_request
        self.max_pending, self.dedupe, self.seed = max_pending, bool(dedupe), seed
        self.generator = torch.Generator().manual_seed(seed)
        self.buffer = GrowableRows((MESSAGE_LEN,), np.uint8)
        self.next = 0  # where the next message goes once the pool is full
        self._keys: set[bytes] = set()

    def __len__(self) -> int:
        return len(self.buffer)

    def add(self, messages: torch.Tensor | np.ndarray) -> int:
        """Keep ``ceil(N / subsample)`` of the ``N`` messages at random; returns how many were stored."""
        rows, _ = message_rows(messages)
        keep = torch.randperm(len(rows), generator=self.generator)[:-(-len(rows) // self.subsample)].numpy()
        chosen = rows[np.sort(keep)]
        if self.dedupe:
            fresh = [not (k in self._keys or self._keys.add(k)) for k in map(np.ndarray.tobytes, chosen)]
            chosen = chosen[np.asarray(fresh, bool)]
        room = self.capacity - len(self.buffer)
        self.buffer.extend(chosen[:room])
        for r in chosen[room:]:  # the pool is full: overwrite the oldest
            if self.dedupe:
                self._keys.discard(self.buffer.data[self.next].tobytes())
            self.buffer.data[self.next] = r
            self.next = (self.next + 1) % self.capacity
        return len(chosen)

    def request(self, pending: int = 0) -> list[tuple[str, str]]:
        """Pairs of message texts to annotate, or ``[]`` when ``pending`` pairs already wait or the pool is empty."""
        if pending >= self.max_pending or len(self.buffer) == 0:
            return []
        rows = self.buffer.view()
        idx = torch.randint(len(rows), (self.pairs_per_request, 2), generator=self.generator).numpy()
        return [(decode_message(rows[i]), decode_message(rows[j])) for i, j in idx]

    def config(self) -> dict[str, Any]:
        return {"subsample": self.subsample, "capacity": self.capacity, "pairs_per_request": self.pairs_per_request,
                "max_pending": self.max_pending, "dedupe": self.dedupe, "seed": self.seed}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"rows": torch.from_numpy(self.buffer.view().copy()), "next": torch.tensor(self.next, dtype=torch.int64),
                "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = {"rows", "next", "rng"} - set(state)
        if missing:
            raise CheckpointError(f"the pair pool's state lacks {sorted(missing)}; save it with state_dict()")
        self.buffer = GrowableRows((MESSAGE_LEN,), np.uint8)
        self.buffer.extend(state["rows"].to(torch.uint8).numpy())
        self.next = int(state["next"])
        self.generator.set_state(state["rng"].to(torch.uint8))
        self._keys = {r.tobytes() for r in self.buffer.view()} if self.dedupe else set()
