"""Recurrent policies: hidden-state utilities, a GRU/LSTM core with episode-start masking, and the cutting of a
rollout into sequence chunks for truncated backpropagation through time.

A recurrent *state* is a tensor or a tuple of tensors (an LSTM's ``(h, c)``), each with the env axis first:
``(num_envs, ...)``. A collector built with an initial-state factory (see
:class:`zoo.rollout.RolloutCollector`) calls a recurrent policy as ``policy(obs, state, episode_start)``, stores
the state the policy saw before acting at every step, and resets the state to the initial one where an episode
starts. An update then replays the stored sequences::

    core = RecurrentCore(obs_dim, 64, cell="gru")
    collector = RolloutCollector(env, 128, initial_state=core.initial_state)
    rollout = collector.collect(policy)                 # rollout.states[t] is what the policy saw at step t
    chunks = chunk_rollout(rollout, length=16)          # 8 chunks per env, each with its stored initial state
    features, _ = core.sequence(encoder(chunks.split(rollout.obs)), chunks.initial_state, chunks.episode_starts)
    # features[l, b] is the core's output at step l of chunk b; chunks.mask marks the real (unpadded) steps
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

import torch
from torch import nn

State = Union[torch.Tensor, tuple[torch.Tensor, ...]]


# ---------------------------------------------------------------- state utilities

def state_map(fn: Callable[[torch.Tensor], torch.Tensor], state: State) -> State:
    """``fn`` applied to the tensor, or to each tensor of the tuple."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, (tuple, list)):
        return tuple(fn(s) for s in state)
    raise TypeError(f"a recurrent state must be a tensor or a tuple of tensors, got {type(state).__name__}")


def state_zip(fn: Callable[..., torch.Tensor], *states: State) -> State:
    """``fn`` applied across several states of the same structure, tensor by tensor."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return fn(*states)
    return tuple(fn(*parts) for parts in zip(*states))


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``mask`` (env axis) shaped to broadcast over ``like``'s trailing dimensions."""
    return mask.reshape(mask.shape + (1,) * (like.dim() - mask.dim()))


def state_where(mask: torch.Tensor, a: State, b: State) -> State:
    """Rows of ``a`` where ``mask`` (``(num_envs,)`` bool), rows of ``b`` elsewhere."""
    return state_zip(lambda x, y: torch.where(_rows(mask, x), x, y), a, b)


def state_mask(state: State, episode_start: torch.Tensor) -> State:
    """``state`` with the rows where an episode starts zeroed."""
    return state_map(lambda s: s * _rows(~episode_start.bool(), s).to(s.dtype), state)


def state_index(state: State, index) -> State:
    """``state[index]`` for each tensor."""
    return state_map(lambda s: s[index], state)


def state_cat(states: list[State], dim: int = 0) -> State:
    """Concatenation of several states along the env axis (``dim``)."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(states, dim)
    return tuple(torch.cat(parts, dim) for parts in zip(*states))


def state_copy_(dst: State, src: State) -> None:
    """In-place copy of ``src`` into ``dst`` (same structure)."""
    if isinstance(dst, torch.Tensor):
        dst.copy_(src)
    else:
        for d, s in zip(dst, src):
            d.copy_(s)


# ---------------------------------------------------------------- the core

class RecurrentCore(nn.Module):
    """A GRU or LSTM cell that forgets its state where an episode starts.

    ``step(x, state, episode_start)`` acts on one batch (``x``: ``(N, input_size)``); ``sequence(x,
    initial_state, episode_starts)`` replays ``T`` steps (``x``: ``(T, N, input_size)``), zeroing the state
    before every step whose ``episode_starts[t]`` is set, so that a chunk that crosses an episode boundary
    replays exactly what acting computed. Both return ``(output, next_state)``; the output is the new hidden
    ``h`` (``(N, hidden_size)``, or ``(T, N, hidden_size)``). The state is ``h`` for a GRU and ``(h, c)`` for
    an LSTM, env axis first. ``sequence`` runs the same cell step by step, so acting and replay agree to
    float rounding.
    """

    CELLS = ("gru", "lstm")

    def __init__(self, input_size: int, hidden_size: int, cell: str = "gru"):
        super().__init__()
        if cell not in self.CELLS:
            raise ValueError(f"cell must be one of {self.CELLS}, got {cell!r}")
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size}, {hidden_size}")
        self.input_size, self.hidden_size, self.cell_type = int(input_size), int(hidden_size), cell
        self.cell = nn.GRUCell(input_size, hidden_size) if cell == "gru" else nn.LSTMCell(input_size, hidden_size)

    def initial_state(self, num_envs: int, device: torch.device | str | None = None) -> State:
        """The zero state of ``num_envs`` envs (the factory a recurrent collector takes)."""
        if device is None:
            device = self.cell.weight_hh.device
        zeros = lambda: torch.zeros(num_envs, self.hidden_size, dtype=self.cell.weight_hh.dtype,  # noqa: E731
                                    device=device)
        return zeros() if self.cell_type == "gru" else (zeros(), zeros())

    def step(self, x: torch.Tensor, state: State, episode_start: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, State]:
        """One step for a batch: ``state`` is zeroed where ``episode_start`` before the cell runs."""
        if episode_start is not None:
            state = state_mask(state, episode_start)
        if self.cell_type == "gru":
            h = self.cell(x, state)
            return h, h
        h, c = self.cell(x, tuple(state))
        return h, (h, c)

    def sequence(self, x: torch.Tensor, initial_state: State, episode_starts: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, State]:
        """Replay ``T`` steps from ``initial_state``; returns the ``(T, N, hidden_size)`` outputs and the last state."""
        if x.dim() < 3:
            raise ValueError(f"sequence expects x of shape (T, N, input_size), got {tuple(x.shape)}")
        if episode_starts is not None and tuple(episode_starts.shape) != tuple(x.shape[:2]):
            raise ValueError(f"episode_starts has shape {tuple(episode_starts.shape)}, expected {tuple(x.shape[:2])}")
        state, outputs = initial_state, []
        for t in range(x.shape[0]):
            out, state = self.step(x[t], state, None if episode_starts is None else episode_starts[t])
            outputs.append(out)
        return torch.stack(outputs), state

    def extra_repr(self) -> str:
        return f"{self.cell_type}, input_size={self.input_size}, hidden_size={self.hidden_size}"


# ---------------------------------------------------------------- truncated BPTT chunks

@dataclass
class SequenceChunks:
    """A ``num_steps x num_envs`` rollout cut into ``num_chunks`` chunks of ``length`` steps per env.

    Chunk ``c`` of env ``n`` is batch column ``b = c * num_envs + n``. ``split(x)`` turns a ``(T, N, ...)``
    tensor (or a dict of them) into ``(length, B, ...)`` with ``B = num_chunks * num_envs``, zero-padding the
    last chunk when ``length`` does not divide ``T``; ``mask`` (``(length, B)`` bool) marks the real steps and
    ``merge`` is ``split``'s inverse. ``initial_state`` (``B`` rows) is the state stored at each chunk's first
    step, and ``episode_starts`` the per-step flags where the replay must reset the state.
    """

    length: int
    num_steps: int
    num_envs: int
    num_chunks: int
    initial_state: State
    episode_starts: torch.Tensor
    mask: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.num_chunks * self.num_envs

    def _split_tensor(self, x: torch.Tensor) -> torch.Tensor:
        T, N, L, C = self.num_steps, self.num_envs, self.length, self.num_chunks
        if tuple(x.shape[:2]) != (T, N):
            raise ValueError(f"expected a tensor of leading shape ({T}, {N}), got {tuple(x.shape)}")
        pad = C * L - T
        if pad:
            x = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))])
        rest = x.shape[2:]
        return x.reshape(C, L, N, *rest).transpose(0, 1).reshape(L, C * N, *rest)

    def split(self, x: Any) -> Any:
        """``(T, N, ...)`` -> ``(length, num_chunks * N, ...)`` (a dict of tensors: each one)."""
        if isinstance(x, dict):
            return {k: self._split_tensor(v) for k, v in x.items()}
        return self._split_tensor(x)

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """``(length, num_chunks * N, ...)`` -> ``(T, N, ...)`` (drops the padding)."""
        L, C, N = self.length, self.num_chunks, self.num_envs
        rest = y.shape[2:]
        return y.reshape(L, C, N, *rest).transpose(0, 1).reshape(C * L, N, *rest)[:self.num_steps]


def make_chunks(states: State, episode_starts: torch.Tensor, length: int) -> SequenceChunks:
    """Cut per-step ``states`` (each ``(T, N, ...)``) and ``episode_starts`` (``(T, N)``) into chunks of ``length``."""
    if length < 1:
        raise ValueError(f"chunk length must be positive, got {length}")
    T, N = episode_starts.shape[:2]
    C = -(-T // length)
    starts = torch.arange(C, device=episode_starts.device) * length
    initial = state_map(lambda s: s[starts].reshape(C * N, *s.shape[2:]), states)
    chunks = SequenceChunks(length, T, N, C, initial, episode_starts, episode_starts)  # placeholders, set below
    chunks.episode_starts = chunks.split(episode_starts.bool())
    chunks.mask = chunks.split(torch.ones(T, N, dtype=torch.bool, device=episode_starts.device))
    return chunks


def chunk_rollout(rollout, length: int) -> SequenceChunks:
    """The chunks of a recurrent :class:`~zoo.rollout.Rollout` (one collected with an initial-state factory)."""
    if rollout.states is None:
        raise ValueError("this rollout carries no recurrent states: build the collector with "
                         "initial_state=<factory>, e.g. RolloutCollector(env, T, initial_state=core.initial_state)")
    return make_chunks(rollout.states, rollout.episode_starts, length)


__all__ = ["State", "RecurrentCore", "SequenceChunks", "make_chunks", "chunk_rollout", "state_map", "state_zip",
           "state_where", "state_mask", "state_index", "state_cat", "state_copy_"]
