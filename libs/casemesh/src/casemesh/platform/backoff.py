"""How long to wait before trying again: exponential, with jitter."""

from __future__ import annotations

import random


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before retry number `attempt` (1 = first retry): `base`
    doubled at each try up to `cap`, then a random point in its upper half
    (retries that failed together do not come back together)."""
    # The exponent stops growing long before a float would overflow: a peer
    # away for days is tried thousands of times.
    ceiling = min(cap, base * (2 ** min(attempt - 1, 40)))
    return (rng or random).uniform(ceiling / 2, ceiling)
