"""Execution slots of one device: a fixed pool of worker threads shared by its models.

A batcher takes a slot before it hands a batch to the pool and gives it back when the
batch is done. When every slot is busy the batcher is queued here and woken, in
arrival order, as slots free up; meanwhile its own queue keeps growing, which is
exactly what lets the next batch be bigger.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Protocol


class _Waiter(Protocol):
    def dispatch(self) -> None: ...


_local = threading.local()


def current_worker_id() -> int:
    """The index of the device worker thread running this code (-1 elsewhere)."""
    return getattr(_local, "worker_id", -1)


class DeviceWorkers:
    def __init__(self, device_id: str, workers: int, first_worker_id: int = 0) -> None:
        self.device_id = device_id
        self.size = workers
        self.free = workers
        self._waiting: deque[_Waiter] = deque()
        ids = itertools.count(first_worker_id)
        lock = threading.Lock()

        def _name_thread() -> None:
            with lock:
                _local.worker_id = next(ids)

        self.executor = ThreadPoolExecutor(workers, thread_name_prefix=f"berth-{device_id}", initializer=_name_thread)

    def try_acquire(self, waiter: _Waiter) -> bool:
        if self.free > 0:
            self.free -= 1
            return True
        if waiter not in self._waiting:
            self._waiting.append(waiter)
        return False

    def release(self) -> None:
        self.free += 1
        while self.free > 0 and self._waiting:
            self._waiting.popleft().dispatch()

    def forget(self, waiter: _Waiter) -> None:
        try:
            self._waiting.remove(waiter)
        except ValueError:
            pass

    def submit(self, fn: Callable[[], object]):  # type: ignore[no-untyped-def]
        return self.executor.submit(fn)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
