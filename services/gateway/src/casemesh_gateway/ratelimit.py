"""Per-user token buckets (per gateway replica)."""

from __future__ import annotations

import time
from collections.abc import Callable

# How often the buckets of users gone quiet are let go.
SWEEP_EVERY_S = 60.0


class RateLimiter:
    def __init__(
        self, *, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        # A bucket left alone this long is full again: the same as none.
        self._full_after = self._burst / self._rate
        self._next_sweep = clock() + SWEEP_EVERY_S

    @property
    def users(self) -> int:
        """How many users it holds a bucket for."""
        return len(self._buckets)

    def allow(self, key: str) -> float:
        """0 when the call may go ahead, else the seconds until it may."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self._rate

    def _sweep(self, now: float) -> None:
        """Forgets the users whose buckets have filled up again, once a
        minute: a replica serving many users over its life keeps only those
        of the last minutes, in one pass a minute (not one per call)."""
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < self._full_after}
        self._next_sweep = now + SWEEP_EVERY_S
