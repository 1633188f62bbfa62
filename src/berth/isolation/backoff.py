"""Restart delays for models whose worker process died while serving.

A crashed worker's model is FAILED for a while, then restarted. The first crash waits
:data:`FIRST_S` (1 s); each further crash, or failed restart, doubles the wait up to
:data:`MAX_S` (30 s). A worker that served for :data:`RESET_S` (60 s) before it
crashed starts the count again, so a model that crashes once a day always comes back
after a second, and one that crashes on every request backs off to one try in 30 s.
Models that fail to load for other reasons keep the Registry's plain ``FAILED_RETRY_S``.

Used on the event loop only, like the rest of the Registry's state.
"""

from __future__ import annotations

import time
from typing import Hashable

FIRST_S = 1.0
MAX_S = 30.0
RESET_S = 60.0


class CrashBackoff:
    def __init__(self) -> None:
        self._crashes: dict[Hashable, int] = {}
        self._ready_at: dict[Hashable, float] = {}
        self._delay: dict[Hashable, float] = {}  # set while the model is FAILED after a crash

    def _set(self, key: Hashable, crashes: int) -> float:
        self._crashes[key] = crashes
        delay = self._delay[key] = min(MAX_S, FIRST_S * 2 ** (crashes - 1))
        return delay

    def loaded(self, key: Hashable) -> None:
        """The model is serving again (its crash count stays until it has served RESET_S)."""
        self._ready_at[key] = time.monotonic()
        self._delay.pop(key, None)

    def crashed(self, key: Hashable) -> float:
        """The worker died while serving; returns the delay before the restart."""
        served = time.monotonic() - self._ready_at.get(key, float("-inf"))
        return self._set(key, 1 if served >= RESET_S else self._crashes.get(key, 0) + 1)

    def restart_failed(self, key: Hashable) -> float | None:
        """A load failed; if it was a restart after a crash, the next delay (else None)."""
        if key not in self._delay:
            return None
        return self._set(key, self._crashes.get(key, 0) + 1)

    def retry_after(self, key: Hashable, default: float) -> float:
        """Seconds a FAILED model waits before a request may load it again."""
        return self._delay.get(key, default)
