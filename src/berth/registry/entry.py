"""One model version's slot in the Registry: its state, runtime, device and lease count."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..repository import ModelSpec
from .stats import ModelStats

if TYPE_CHECKING:
    from ..runtimes.base import Runtime
    from ..scheduling.batcher import Batcher
    from .devices import Device


class ModelState(enum.Enum):
    UNLOADED = "UNLOADED"
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    FAILED = "FAILED"


ModelKey = tuple[str, str]  # (name, version)


@dataclass(eq=False)
class ModelEntry:
    spec: ModelSpec
    version: str
    state: ModelState = ModelState.UNLOADED
    reason: str | None = None
    runtime: "Runtime | None" = None
    batcher: "Batcher | None" = None
    device: "Device | None" = None
    memory_bytes: int = 0
    memory_measured: bool = False
    leases: int = 0
    pinned: bool = False
    failed_at: float = 0.0
    transition: "asyncio.Future[None] | None" = None  # the load or unload under way
    stats: ModelStats = field(default_factory=ModelStats)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> ModelKey:
        return (self.spec.name, self.version)

    @property
    def resident(self) -> bool:
        """Holds (or is about to hold, or still holds) memory on a device."""
        return self.state in (ModelState.LOADING, ModelState.READY, ModelState.UNLOADING) and self.device is not None

    @property
    def evictable(self) -> bool:
        return self.state is ModelState.READY and self.leases == 0 and not self.pinned


class Lease:
    """Held while a request uses a model; a leased model is never evicted."""

    __slots__ = ("entry", "_registry", "_released", "_counted")

    def __init__(self, entry: ModelEntry, registry: Any, counted: bool = True) -> None:
        self.entry = entry
        self._registry = registry
        self._released = False
        self._counted = counted  # a use of the model (not a metadata lookup)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._registry.release(self.entry, self._counted)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
