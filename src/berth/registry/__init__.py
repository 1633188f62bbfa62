"""Model lifecycle, capacity, eviction and placement."""

from .devices import Device, discover_devices
from .entry import Lease, ModelEntry, ModelState
from .registry import Registry

__all__ = ["Device", "Lease", "ModelEntry", "ModelState", "Registry", "discover_devices"]
