"""One signal source shared by every open stream.

A real amplifier is one device however many clients watch it, so the source is opened
once: a producer thread (sources block; they never run on the event loop) appends
samples to a ring of the most recent ones, and each stream's frame takes the latest
window from it. The source opens with the first subscriber and closes with the last;
a later subscriber opens it afresh (a replay starts from the beginning again).

Unpaced sources (synthetic, file replay) are asked for exactly as many samples as the
wall clock says are due since the source opened, so they run in real time; a window
is pre-rolled at open so the first frame need not wait. Paced sources (serial) are
read as fast as they deliver. A source that fails, ends, or stays silent for
``timeout_s`` fails the hub: every stream then ends with an error event naming why.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Callable

import numpy as np

from .base import Chunk, SignalSource, SourceError

log = logging.getLogger("berth.streaming")

_TICK_S = 0.005  # how often an unpaced source is topped up


class SignalHub:
    def __init__(self, factory: Callable[[], SignalSource], *, channels: int, window: int, timeout_s: float = 2.0) -> None:
        self._factory = factory
        self.channels = channels
        self.window = window
        self.timeout_s = timeout_s
        self.subscribers = 0
        self._lock = threading.Lock()
        self._run: _Run | None = None

    # ── subscription (event loop) ──────────────────────────────────────────
    def subscribe(self) -> "_Run":
        self.subscribers += 1
        if self._run is None:
            self._run = _Run(self._factory, self.channels, self.window, self.timeout_s)
        return self._run

    def unsubscribe(self) -> None:
        self.subscribers -= 1
        if self.subscribers <= 0:
            self.subscribers = 0
            run, self._run = self._run, None
            if run is not None:
                run.stop()

    @property
    def state(self) -> dict[str, object]:
        run = self._run
        return {
            "subscribers": self.subscribers,
            "running": run is not None and run.error is None,
            "source": run.description if run is not None else None,
            "samples": run.total if run is not None else 0,
            "error": run.error if run is not None else None,
        }


class _Run:
    """One opening of the source: its thread, ring buffer and fate."""

    def __init__(self, factory: Callable[[], SignalSource], channels: int, window: int, timeout_s: float) -> None:
        self.channels = channels
        self.window = window
        self.timeout_s = timeout_s
        self.capacity = max(4 * window, 4096)
        self.ring = np.zeros((self.capacity, channels), dtype=np.float32)
        self.label_ring = np.full(self.capacity, -1, dtype=np.int64)
        self.total = 0
        self.fs = 0.0
        self.description = "opening"
        self.error: str | None = None
        self.last_sample_mono = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(factory,), name="berth-emg-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    async def wait_ready(self, timeout_s: float) -> None:
        """Until a whole window has arrived; raises :class:`SourceError` if it fails first."""
        deadline = time.monotonic() + timeout_s
        while not self._ready.is_set():
            if self.error is not None:
                raise SourceError(self.error)
            if time.monotonic() >= deadline:
                raise SourceError(f"no complete {self.window}-sample window from the signal source within {timeout_s:g} s")
            await asyncio.sleep(0.01)
        if self.error is not None:
            raise SourceError(self.error)

    def latest(self) -> tuple[np.ndarray, int, int]:
        """(the newest ``window`` samples ``[window, channels]``, their last label or -1,
        samples so far). Raises :class:`SourceError` once the source failed or fell silent."""
        if self.error is not None:
            raise SourceError(self.error)
        if time.monotonic() - self.last_sample_mono > self.timeout_s:
            raise SourceError(f"the signal source sent nothing for {self.timeout_s:g} s")
        with self._lock:
            end = self.total % self.capacity
            start = end - self.window
            if start >= 0:
                window = self.ring[start:end].copy()
            else:
                window = np.concatenate((self.ring[start:], self.ring[:end]))
            label = int(self.label_ring[end - 1])
            return window, label, self.total

    # ── producer thread ────────────────────────────────────────────────────
    def _push(self, chunk: Chunk) -> None:
        signal = chunk.signal
        n = len(signal)
        if n == 0:
            return
        if n > self.capacity:
            signal = signal[-self.capacity:]
            labels = chunk.labels[-self.capacity:] if chunk.labels is not None else None
        else:
            labels = chunk.labels
        with self._lock:
            start = self.total % self.capacity
            first = min(len(signal), self.capacity - start)
            self.ring[start:start + first] = signal[:first]
            self.ring[: len(signal) - first] = signal[first:]
            if labels is not None:
                self.label_ring[start:start + first] = labels[:first]
                self.label_ring[: len(signal) - first] = labels[first:]
            else:
                self.label_ring[start:start + first] = -1
                self.label_ring[: len(signal) - first] = -1
            self.total += n
            self.last_sample_mono = time.monotonic()
        if self.total >= self.window:
            self._ready.set()

    def _produce(self, factory: Callable[[], SignalSource]) -> None:
        source: SignalSource | None = None
        try:
            source = factory()
            self.fs = source.fs
            self.description = source.describe
            self.last_sample_mono = time.monotonic()
            if source.paced:
                self._paced(source)
            else:
                self._clocked(source)
        except SourceError as exc:
            self.error = str(exc)
            log.warning("signal source stopped: %s", exc)
        except Exception as exc:  # noqa: BLE001 - a broken source must end streams, not hang them
            self.error = "the signal source failed"
            log.error("signal source failed", exc_info=exc)
        finally:
            if self.error is not None:
                self._ready.set()
            if source is not None:
                source.close()

    def _paced(self, source: SignalSource) -> None:
        chunk_max = max(1, int(source.fs * 0.05))
        while not self._stop.is_set():
            self._push(source.read(chunk_max))

    def _clocked(self, source: SignalSource) -> None:
        # pre-roll one window, as if the source had opened window/fs seconds ago
        self._push(source.read(self.window))
        started = time.monotonic() - self.window / source.fs
        produced = self.window
        while not self._stop.wait(_TICK_S):
            due = int((time.monotonic() - started) * source.fs) - produced
            if due <= 0:
                continue
            if due > self.capacity:  # the thread was starved: skip, keep the clock
                produced += due - self.capacity
                due = self.capacity
            produced += due
            while due > 0:  # a replay may hand out less at its end, then end or loop
                chunk = source.read(due)
                if len(chunk.signal) == 0:
                    raise SourceError("the signal source returned no samples")
                self._push(chunk)
                due -= len(chunk.signal)
