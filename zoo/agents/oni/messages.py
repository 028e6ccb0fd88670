"""NetHack messages as ONI handles them: text <-> the 256-byte observation row, and distinct rows found fast.

The ``message`` observation is 256 bytes, latin-1, NUL padded; the learner holds it as a uint8 tensor
``(..., 256)``. The annotator, the label tables and the prompts see its text (:func:`decode_message`); the
per-episode counts and the batched reward models group identical rows (:func:`unique_messages`), hashing each
row once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numba import njit

from zoo.errors import PreferenceDatasetError
from zoo.llm.nethack_prompts import decode_message

__all__ = [
    "MESSAGE_LEN",
    "GrowableRows",
    "decode_message",
    "encode_message",
    "message_key",
    "message_rows",
    "unique_messages",
]

MESSAGE_LEN = 256


def message_key(message: bytes | np.ndarray | torch.Tensor) -> bytes:
    """The canonical bytes of a message (its decoded text re-encoded): what tables and the annotator key on."""
    return decode_message(message).encode("latin-1")


def encode_message(text: str) -> np.ndarray:
    """A message's text as the observation's ``(256,)`` uint8 row, NUL padded."""
    try:
        data = text.encode("latin-1")
    except (UnicodeEncodeError, AttributeError) as exc:
        raise PreferenceDatasetError(f"message {text!r:.80} is not latin-1 text ({exc}); pass the decoded "
                                     "NetHack message (zoo.agents.oni.rewards.decode_message)") from None
    if len(data) > MESSAGE_LEN:
        raise PreferenceDatasetError(f"message {text!r:.80}... is {len(data)} bytes; NetHack messages hold at "
                                     f"most {MESSAGE_LEN}")
    row = np.zeros(MESSAGE_LEN, dtype=np.uint8)
    row[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    return row


_C1, _C2 = np.uint64(0x87C37B91114253D5), np.uint64(0x4CF5AD432745937F)
_M1, _M2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)


@njit(cache=True, inline="always")
def _rotl(x: np.uint64, r: int) -> np.uint64:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(cache=True)
def hash_rows(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of a ``(N, 256)`` uint8 array, as int64 (MurmurHash3-style mixing of the row's
    32 little-endian words, then its finaliser). Stable across versions: counter checkpoints store it."""
    words = rows.view(np.uint64)
    out = np.empty(rows.shape[0], np.int64)
    for i in range(rows.shape[0]):
        h = np.uint64(0x9E3779B97F4A7C15)
        for j in range(words.shape[1]):
            k = words[i, j] * _C1
            k = _rotl(k, 31) * _C2
            h ^= k
            h = _rotl(h, 27) * np.uint64(5) + np.uint64(0x52DCE729)
        h ^= h >> np.uint64(33)
        h *= _M1
        h ^= h >> np.uint64(33)
        h *= _M2
        h ^= h >> np.uint64(33)
        out[i] = np.int64(h)
    return out


def unique_messages(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)`` of the distinct rows of a ``(N, 256)`` uint8 array: ``rows[first]`` are distinct and
    ``rows == rows[first][inverse]``. Each row is hashed once (:func:`hash_rows`) and the grouping is checked
    exactly, with an exact fallback on a hash collision."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    if rows.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, first, inverse = np.unique(hash_rows(rows), return_index=True, return_inverse=True)
    if not np.array_equal(rows[first[inverse]], rows):
        index: dict[bytes, int] = {}
        inverse = np.fromiter((index.setdefault(r.tobytes(), len(index)) for r in rows), np.int64, len(rows))
        first = np.zeros(len(index), np.int64)
        first[inverse[::-1]] = np.arange(len(rows) - 1, -1, -1)
    return first.astype(np.int64), inverse.reshape(-1).astype(np.int64)


def message_rows(messages: torch.Tensor | np.ndarray, what: str = "messages") -> tuple[np.ndarray, tuple]:
    """``(rows (N, 256) uint8 numpy, leading shape)`` of a message batch ``(..., 256)``, checked."""
    if not isinstance(messages, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{what} must be a torch tensor or numpy array of shape (..., {MESSAGE_LEN}), got "
                        f"{type(messages).__name__}")
    arr = messages.detach().cpu().numpy() if isinstance(messages, torch.Tensor) else messages
    if arr.ndim < 1 or arr.shape[-1] != MESSAGE_LEN:
        raise ValueError(f"{what} must have shape (..., {MESSAGE_LEN}) (NetHack's message observation), got "
                         f"{tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.integer) or (arr.size and (arr.min() < 0 or arr.max() > 255)):
            raise TypeError(f"{what} must hold bytes (uint8, or integers in [0, 255]), got dtype {arr.dtype}; "
                            "pass obs['message'] unchanged")
        arr = arr.astype(np.uint8)
    return arr.reshape(-1, MESSAGE_LEN), tuple(arr.shape[:-1])


class GrowableRows:
    """A growable array of rows (amortised O(1) appends: the capacity doubles)."""

    def __init__(self, shape: tuple[int, ...], dtype: Any):
        self.data = np.zeros((16, *shape), dtype)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def extend(self, rows: np.ndarray) -> None:
        need = self.n + len(rows)
        if need > len(self.data):
            grown = np.zeros((max(need, 2 * len(self.data)), *self.data.shape[1:]), self.data.dtype)
            grown[:self.n] = self.data[:self.n]
            self.data = grown
        self.data[self.n:need] = rows
        self.n = need

    def view(self) -> np.ndarray:
        return self.data[:self.n]
