"""A fixed-bucket histogram cheap enough for hot paths (a bisect and two adds).

Rendered as a Prometheus histogram at scrape time. Written by one thread at a time
(the event loop, or one decode thread); readers only take a snapshot.
"""

from __future__ import annotations

import bisect
from typing import Sequence

LATENCY_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = LATENCY_SECONDS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``."""
        cumulative = 0
        out = []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts):
            cumulative += count
            out.append((bound, cumulative))
        return out
