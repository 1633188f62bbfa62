"""Per-model queues, the dynamic batcher and the device worker slots."""

from .batcher import Batcher, Prediction
from .workers import DeviceWorkers

__all__ = ["Batcher", "DeviceWorkers", "Prediction"]
