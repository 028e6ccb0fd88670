"""A circuit breaker for an annotator's LLM server: after ``threshold`` failed requests in a row it opens
(nothing is requested), after ``cooldown_s`` it lets one probe through (half-open); a probe that succeeds
closes it, one that fails opens it again for twice as long (at most ``max_cooldown_s``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from zoo.errors import ConfigError

CLOSED, OPEN, HALF_OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half-open"}


class CircuitBreaker:
    """Not thread-safe: its owner calls it under its own lock."""

    def __init__(self, threshold: int = 5, cooldown_s: float = 5.0, max_cooldown_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(f"breaker_threshold must be an integer >= 1, got {threshold!r}")
        for name, value in (("breaker_cooldown_s", cooldown_s), ("breaker_max_cooldown_s", max_cooldown_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
        if max_cooldown_s < cooldown_s:
            raise ConfigError(f"breaker_max_cooldown_s ({max_cooldown_s}) must be >= breaker_cooldown_s ({cooldown_s})")
        self.threshold, self.base_cooldown_s, self.max_cooldown_s = threshold, float(cooldown_s), float(max_cooldown_s)
        self.clock = clock
        self.cooldown_s = self.base_cooldown_s
        self.consecutive_failures = 0
        self.trips = 0
        self._open = False
        self._retry_at = 0.0

    @property
    def state(self) -> int:
        if not self._open:
            return CLOSED
        return HALF_OPEN if self.clock() >= self._retry_at else OPEN

    def allowance(self, batch_size: int) -> tuple[int, bool]:
        """How many requests may go now, and whether they are a probe: ``(batch_size, False)`` when closed,
        ``(1, True)`` when half-open, ``(0, False)`` when open."""
        state = self.state
        return (batch_size, False) if state == CLOSED else (1, True) if state == HALF_OPEN else (0, False)

    def seconds_to_probe(self) -> float:
        return max(0.0, self._retry_at - self.clock()) if self._open else 0.0

    def success(self) -> None:
        self.consecutive_failures = 0
        if self._open:
            self._open, self.cooldown_s = False, self.base_cooldown_s

    def failure(self) -> None:
        self.consecutive_failures += 1
        state = self.state
        if state == HALF_OPEN:  # the probe failed
            self.cooldown_s = min(2 * self.cooldown_s, self.max_cooldown_s)
            self._retry_at = self.clock() + self.cooldown_s
        elif state == CLOSED and self.consecutive_failures >= self.threshold:
            self.trips += 1
            self._open, self._retry_at = True, self.clock() + self.cooldown_s
