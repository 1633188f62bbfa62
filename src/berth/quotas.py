"""Per-key request quotas: a token bucket for each data-plane API key.

``auth.quota_rps`` requests per second per key on average, with bursts of up to
``auth.quota_burst``. Keys are identified by their position in ``auth.api_keys``, so
the secrets themselves are never used as dictionary keys or logged. Buckets are only
touched on the event loop (HTTP and gRPC share it), so no lock is needed.
"""

from __future__ import annotations

import time


class KeyQuotas:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[int, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def take(self, key: int) -> float | None:
        """Spend one request for ``key``: None when allowed, else seconds until it would be."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate
