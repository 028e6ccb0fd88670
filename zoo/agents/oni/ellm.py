"""The ELLM-style baseline of the ONI paper: ``r_int`` is the bag-of-words cosine similarity of the message and
the task's goal text.

ELLM (Du et al., 2023) rewards the similarity of a caption and a goal under a sentence embedder; ONI's baseline
(``cosine-bow`` in facebookresearch/oni) embeds both texts as bags of words. The reference sums fastText word
vectors; with no model downloads allowed, here a bag of words is its count vector (lower-cased words, a few
English function words dropped), so that ``r_int`` lies in ``[0, 1]``. It needs no labels and no training and has
the reward models' interface (:mod:`zoo.agents.oni.rewards`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from zoo.agents.oni.messages import decode_message
from zoo.agents.oni.rewards import RewardModel
from zoo.errors import ConfigError

__all__ = ["DEFAULT_GOAL", "STOP_WORDS", "BagOfWordsReward", "bag_of_words", "bow_cosine"]

#: the score task's goal, in the spirit of the reference's default (kill monsters, collect gold, descend)
DEFAULT_GOAL = "maximize the score: kill monsters, collect gold and go down the stairs to deeper dungeon levels"

#: function words that would otherwise make most messages look alike ("the", "you", ...)
STOP_WORDS = frozenset(
    ["a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "by", "for", "with", "from", "into", "onto", "as", "is", "are", "was", "were", "be", "been", "it", "its", "it's", "this", "that", "these", "those", "there", "here", "you", "your", "you're", "i", "me", "my", "we", "our", "he", "she", "they", "them", "his", "her", "their", "do", "does", "did", "not", "no", "so", "too", "very"]
)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def bag_of_words(text: str, stop_words: Iterable[str] = STOP_WORDS) -> Counter:
    """Word counts of ``text``: lower-cased runs of letters and digits (an apostrophe suffix kept), stop words
    dropped."""
    stop = stop_words if isinstance(stop_words, (set, frozenset)) else set(stop_words)
    return Counter(w for w in _WORD.findall(text.lower()) if w not in stop)


def bow_cosine(text: str, goal: str, stop_words: Iterable[str] = STOP_WORDS) -> float:
    """``<c(text), c(goal)> / (|c(text)| |c(goal)|)`` of the word-count vectors ``c``; 0 when either is empty."""
    a, b = bag_of_words(text, stop_words), bag_of_words(goal, stop_words)
    dot = sum(n * b[w] for w, n in a.items())
    norm = math.sqrt(sum(n * n for n in a.values()) * sum(n * n for n in b.values()))
    return dot / norm if norm > 0 else 0.0


class BagOfWordsReward(RewardModel):
    """``r_int(m) = cos(bow(m), bow(goal))``, zeroed at or below ``threshold`` when one is given (the reference
    passes -0.5, which never bites a non-negative cosine). Results are cached per message text."""

    kind = "ellm"
    feedback = "none"

    def __init__(self, *, goal: str = DEFAULT_GOAL, stop_words: Iterable[str] | None = STOP_WORDS,
                 threshold: float | None = None, cache_size: int = 1_000_000, seed: int = 0,
                 device: str | torch.device = "cpu"):
        super().__init__(seed=seed, device=device)
        if not isinstance(goal, str) or not bag_of_words(goal, stop_words or ()):
            raise ConfigError(f"goal must be a text with at least one content word, got {goal!r}: pass the "
                              "task's goal, e.g. zoo.agents.oni.ellm.DEFAULT_GOAL")
        self.goal = goal
        self.stop_words = frozenset(stop_words or ())
        self.threshold = None if threshold is None else float(threshold)
        self.cache_size = int(cache_size)
        self._cache: dict[str, float] = {}

    def similarity(self, text: str) -> float:
        """The thresholded cosine of one message text and the goal."""
        value = self._cache.get(text)
        if value is None:
            value = bow_cosine(text, self.goal, self.stop_words)
            if self.threshold is not None and value <= self.threshold:
                value = 0.0
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[text] = value
        return value

    def _unique_rewards(self, rows: np.ndarray) -> torch.Tensor:
        return torch.tensor([self.similarity(decode_message(r)) for r in rows], dtype=torch.float32)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "goal": self.goal, "stop_words": sorted(self.stop_words),
                "threshold": self.threshold, "cache_size": self.cache_size}
