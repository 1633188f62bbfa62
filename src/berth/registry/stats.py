"""Per-model usage and latency statistics (seed 004's fields and more)."""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_WINDOW = 2048  # latencies kept for percentiles


@dataclass
class ModelStats:
    uses_since_load: int = 0
    last_used_mono: float = 0.0  # monotonic, for eviction order
    loads: int = 0
    load_failures: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    eviction_log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    time_to_ready_ms: float | None = None
    inference_count: int = 0
    failures: int = 0
    _latency_sum_ms: float = 0.0
    _latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    _queue_sum_ms: float = 0.0
    batches: int = 0
    batch_rows: int = 0

    @property
    def usage_count(self) -> int:
        """Uses in all: every use is a hit (the model was resident) or a miss."""
        return self.hits + self.misses

    @property
    def last_used(self) -> float | None:
        """Wall-clock time of the last use (derived, so the hot path reads one clock)."""
        if not self.usage_count:
            return None
        return time.time() - (time.monotonic() - self.last_used_mono)

    def record_batch(self, rows: int, requests: int, compute_ms: float, queued_ms: float) -> None:
        """One model call serving ``requests`` requests that waited ``queued_ms`` in all;
        each request's inference time is the batch's compute time."""
        self.batches += 1
        self.batch_rows += rows
        self.inference_count += requests
        self._latency_sum_ms += compute_ms * requests
        self._queue_sum_ms += queued_ms
        self._latencies_ms.extend(itertools.repeat(compute_ms, min(requests, _WINDOW)))

    def record_eviction(self, reason: str) -> None:
        self.evictions += 1
        self.eviction_log.append({"at": time.time(), "reason": reason})

    @property
    def queue_sum_ms(self) -> float:
        """Time every request served so far spent queued, in all."""
        return self._queue_sum_ms

    @property
    def mean_inference_ms(self) -> float | None:
        return self._latency_sum_ms / self.inference_count if self.inference_count else None

    @property
    def p99_inference_ms(self) -> float | None:
        if not self._latencies_ms:
            return None
        return float(np.percentile(np.fromiter(self._latencies_ms, dtype=np.float64), 99))

    def to_dict(self) -> dict[str, Any]:
        mean = self.mean_inference_ms
        p99 = self.p99_inference_ms
        return {
            "usage_count": self.usage_count,
            "last_used": self.last_used,
            "loads": self.loads,
            "load_failures": self.load_failures,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "recent_evictions": list(self.eviction_log),
            "time_to_ready_ms": None if self.time_to_ready_ms is None else round(self.time_to_ready_ms, 3),
            "inference_count": self.inference_count,
            "failures": self.failures,
            "mean_inference_ms": None if mean is None else round(mean, 4),
            "p99_inference_ms": None if p99 is None else round(p99, 4),
            "mean_queue_ms": round(self._queue_sum_ms / self.inference_count, 4) if self.inference_count else None,
            "batches": self.batches,
            "batch_rows": self.batch_rows,
            "mean_batch_size": round(self.batch_rows / self.batches, 3) if self.batches else None,
        }
