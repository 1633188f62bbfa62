"""Waiting in a test for something another thread or process does."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

_T = TypeVar("_T")


def wait_until(condition: Callable[[], _T], *, what: str, timeout: float = 10.0, interval: float = 0.02) -> _T:
    """Call ``condition`` until it returns something truthy, and return that.

    ``condition`` is checked at least once, the last time at the deadline. After
    ``timeout`` seconds this raises ``AssertionError``: "timed out after 5 s waiting
    for <what>", so ``what`` reads best as a phrase such as "the worker to exit". An
    exception from ``condition`` propagates at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
