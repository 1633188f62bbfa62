"""Placement strategies: which device a model being loaded goes to.

A strategy orders the devices; the Registry then takes the first device where the
model fits (evicting if it must). A model's ``preferred_device`` / ``preferred_gpu``
always wins over the strategy.
"""

from __future__ import annotations

import itertools
from typing import Sequence

from .devices import Device


class Placement:
    def __init__(self, strategy: str, devices: Sequence[Device]) -> None:
        self.strategy = strategy
        self.devices = list(devices)
        self._round_robin = itertools.count()

    def candidates(self, preferred_device: str | None, preferred_gpu: int) -> list[Device]:
        if preferred_device is not None:
            return [d for d in self.devices if d.id == preferred_device]
        if 0 <= preferred_gpu < len(self.devices):
            return [self.devices[preferred_gpu]]
        return self.ordered()

    def ordered(self) -> list[Device]:
        devices = self.devices
        if self.strategy == "round-robin":
            start = next(self._round_robin) % len(devices)
            return devices[start:] + devices[:start]
        if self.strategy == "least-loaded":
            return sorted(devices, key=lambda d: (len(d.models), d.memory_bytes))
        if self.strategy == "most-free-memory":
            return sorted(devices, key=lambda d: -(d.free_memory_bytes if d.free_memory_bytes is not None else 1 << 62))
        return list(devices)  # "preferred" with no preference: declaration order
