"""Per-client token buckets: pure logic, the clock is passed in.

A model behind a public API can be stolen by querying it, so the router offers
a first line of defence: each client (its bearer token, else its address) gets
``rate`` requests per second with bursts up to ``burst``. The table of buckets
is bounded (least recently seen clients are forgotten first), so a flood of new
addresses cannot grow memory without limit.
"""

from __future__ import annotations

import math
from collections import OrderedDict


class RateLimiter:
    """Token buckets keyed by client; ``take`` answers 0 (allowed) or seconds to wait."""

    def __init__(self, rate: float, burst: float, max_clients: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, now: float) -> float:
        """Spend one token of ``client``; return 0 if allowed, else seconds until one refills."""
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            tokens -= 1
            wait = 0.0
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait: float) -> str:
    """Value of a ``Retry-After`` header: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))
