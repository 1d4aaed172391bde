"""Per-client token buckets: `rate` requests a second sustained, `burst` at once."""

from __future__ import annotations

import math
from collections import OrderedDict


class RateLimiter:
    """Token bucket per client key; the least recently seen clients are forgotten first.

    Forgetting a client refills its bucket, so `max_clients` bounds memory, not fairness:
    keep it well above the number of clients active within `burst / rate` seconds.
    """

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def acquire(self, client: str, now: float) -> float:
        """Take one token; return 0.0 when allowed, else the seconds until one is free."""
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[client] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait

    @staticmethod
    def retry_after(wait: float) -> str:
        """The Retry-After header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait)))

    def __len__(self) -> int:
        return len(self._buckets)
