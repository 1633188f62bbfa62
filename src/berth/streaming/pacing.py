"""Frame slots on the monotonic clock: frame k is due at ``start + k / fps``.

Slots are computed from the start, never by adding periods to the previous frame's
time, so rounding and late wake-ups do not accumulate (no drift). A frame that runs
late is still run and reports how late it was. When a frame is a whole period or more
late, the slots it overran are skipped — never run twice to catch up — and reported as
``missed``.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass


@dataclass(slots=True)
class Tick:
    index: int  # the slot number (frame numbers have gaps where slots were missed)
    due: float  # monotonic time the slot was due
    late_s: float  # how long after ``due`` it started
    missed: int  # slots skipped just before this one


class FrameClock:
    def __init__(self, fps: float, *, start: float | None = None) -> None:
        if not fps > 0:
            raise ValueError("fps must be positive")
        self.fps = fps
        self.period = 1.0 / fps
        self.start = time.monotonic() if start is None else start
        self.next_index = 0
        self.missed_total = 0

    def due(self, index: int) -> float:
        return self.start + index / self.fps

    async def next(self) -> Tick:
        index = self.next_index
        due = self.due(index)
        now = time.monotonic()
        while now < due:  # the loop may wake a timer a little early
            await asyncio.sleep(due - now)
            now = time.monotonic()
        late = now - due
        missed = 0
        if late >= self.period:
            missed = int(math.floor(late * self.fps))
            index += missed
            due = self.due(index)
            late = max(0.0, now - due)
            self.missed_total += missed
        self.next_index = index + 1
        return Tick(index, due, late, missed)

    async def sleep_until_slot(self, index: int) -> None:
        delay = self.due(index) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
