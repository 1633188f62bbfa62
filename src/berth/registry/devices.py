"""Devices models are placed on: discovered (CPU, CUDA GPUs) or declared in config.

Declared devices let multi-device behaviour be exercised on a CPU-only machine: two
``kind: cpu`` devices named ``gpu0`` and ``gpu1`` are placed, filled and evicted like
GPUs while their models run on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..config import BerthConfig
from ..runtimes.cuda import cuda_device_count, cuda_total_bytes

_MB = 1024 * 1024
_GB = 1024 * _MB


@dataclass(eq=False)
class Device:
    id: str
    kind: str
    framework_device: str
    index: int
    workers: int
    max_models: int | None = None
    max_memory_bytes: int | None = None
    # accounting, mutated only on the event loop
    models: set[tuple[str, str]] = field(default_factory=set)
    memory_bytes: int = 0

    @property
    def cuda_ordinal(self) -> int | None:
        """The CUDA device number (``cuda:3`` → 3), None for other kinds. Not ``index``:
        that is the device's place in berth's list, which differs from the CUDA number
        once devices are declared in the config."""
        if self.kind != "cuda":
            return None
        return int(self.framework_device.partition(":")[2] or 0)

    @property
    def free_memory_bytes(self) -> int | None:
        if self.max_memory_bytes is None:
            return None
        return self.max_memory_bytes - self.memory_bytes

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "framework_device": self.framework_device,
            "workers": self.workers,
            "models": len(self.models),
            "max_models": self.max_models,
            "memory_mb": round(self.memory_bytes / _MB, 2),
            "max_memory_mb": round(self.max_memory_bytes / _MB, 2) if self.max_memory_bytes else None,
        }


def discover_devices(config: BerthConfig) -> list[Device]:
    workers = config.server.worker_count_per_gpu
    if config.devices:
        return [
            Device(
                id=d.name,
                kind=d.kind,
                framework_device=f"cuda:{d.index}" if d.kind == "cuda" else "cpu",
                index=position,
                workers=d.workers or workers,
                max_models=d.max_models,
                max_memory_bytes=int(d.memory_mb * _MB) if d.memory_mb else None,
            )
            for position, d in enumerate(config.devices)
        ]
    gpus = cuda_device_count() if config.gpus.enabled else 0
    if config.gpus.count is not None:
        gpus = min(gpus, config.gpus.count)
    if gpus:
        devices = []
        for index in range(gpus):
            total = cuda_total_bytes(index)
            limit = int(config.gpus.memory_gb_per_gpu * _GB) if config.gpus.memory_gb_per_gpu else (int(total * 0.9) if total else None)
            devices.append(Device(f"cuda:{index}", "cuda", f"cuda:{index}", index, workers, max_memory_bytes=limit))
        return devices
    return [Device("cpu", "cpu", "cpu", 0, min(workers, os.cpu_count() or 1) if workers > 1 else workers)]
