"""Small helpers both servicers share: call deadlines, registry and device lookups."""

from __future__ import annotations

from grpc import aio

from ..engine import Engine
from ..registry import ModelEntry, ModelState
from ..registry.devices import Device


def call_timeout(engine: Engine, context: aio.ServicerContext, *limits_s: float | None) -> float:
    """Seconds the Engine may spend on this call: the server's request timeout, cut
    short by the client's gRPC deadline and any per-request limit given."""
    candidates = [engine.default_timeout_s, *(limit for limit in limits_s if limit)]
    remaining = context.time_remaining()  # None when the client set no deadline
    if remaining is not None:
        candidates.append(max(0.0, remaining))
    return min(candidates)


def ready_entry(engine: Engine, name: str, version: str | None) -> ModelEntry | None:
    """The model's registry entry if it is READY now, else None; loads nothing.

    For readiness checks, which must neither load a model nor count as a use of it.
    """
    registry = engine.registry
    spec = registry.specs.get(name)
    if spec is None:
        return None
    entry = registry.entries.get((name, version or spec.default_version))
    if entry is None or entry.state is not ModelState.READY or entry.runtime is None:
        return None
    return entry


class Devices:
    """Berth device ids to the :class:`Device` they name (fixed at start)."""

    def __init__(self, engine: Engine) -> None:
        self._by_id = {device.id: device for device in engine.devices}

    def get(self, device_id: str | None) -> Device | None:
        return self._by_id.get(device_id) if device_id else None

    def gpu_id(self, device_id: str | None) -> int:
        """The CUDA index of a device, -1 for CPUs and unknown ids (seed 003's gpu_id)."""
        device = self.get(device_id)
        ordinal = device.cuda_ordinal if device is not None else None
        return -1 if ordinal is None else ordinal
