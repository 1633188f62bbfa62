"""Per-model queues, the dynamic batcher and the device worker slots."""

from .batcher import Batcher, InferResult
from .workers import DeviceWorkers

__all__ = ["Batcher", "DeviceWorkers", "InferResult"]
