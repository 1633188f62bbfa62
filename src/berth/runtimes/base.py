"""The contract every runtime (one per framework) implements.

A runtime loads one model file onto one device, reports its signature, runs a batch
of named numpy arrays and unloads. It knows nothing about queues, HTTP or capacity:
the Registry and Scheduler own those. ``run`` is called from device worker threads,
possibly from several at once, so it must be thread-safe (onnxruntime and torch both
release the GIL while they compute).
"""

from __future__ import annotations

import abc
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, numpy dtype and shape (``-1`` = variable)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @functools.cached_property
    def static_tail(self) -> tuple[int, ...] | None:
        """The item shape (all but the batch dim) when fully known, else None."""
        tail = self.shape[1:]
        return tail if self.shape and all(d >= 0 for d in tail) else None

    @functools.cached_property
    def item_size(self) -> int | None:
        """Elements in one item (the product of the static tail), or None if variable."""
        tail = self.static_tail
        return None if tail is None else int(np.prod(tail, dtype=np.int64))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype.name, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @functools.cached_property
    def lone_input(self) -> TensorSpec | None:
        """The model's only input, if it has just one (what the Engine checks first)."""
        return self.inputs[0] if len(self.inputs) == 1 else None

    def input(self, name: str) -> TensorSpec | None:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }


def default_intra_op_threads() -> int:
    """Every CPU this process may run on but one (left to the event loop), at least 1."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


@dataclass(frozen=True)
class Placement:
    """Where a runtime should put the model: berth device id and framework device.

    ``framework_device`` is what the framework understands (``"cpu"``, ``"cuda:1"``);
    a device declared in config as a CPU stand-in for a GPU has ``"cpu"`` here.
    """

    device_id: str
    framework_device: str = "cpu"


@dataclass
class RuntimeInfo:
    """What a runtime reports about itself after load, for stats and /config."""

    backend: str
    platform: str
    accelerated: bool = False
    details: dict[str, Any] = field(default_factory=dict)


Batch = Mapping[str, np.ndarray]


class Runtime(abc.ABC):
    """Base class for a framework runtime. Subclasses set ``backend`` and ``platform``."""

    backend: ClassVar[str]
    platform: ClassVar[str]
    #: ``run`` computes on the calling thread's CPU (with the framework's own CPU
    #: threads, which that thread waits for), so its CPU time measures a run without
    #: the wait for the GIL that follows it on a busy server. False wherever a run may
    #: wait without computing: on a GPU, in another process, in user code.
    cpu_timed: bool = False

    def __init__(self, path: Path, placement: Placement, options: Mapping[str, Any] | None = None):
        self.path = path
        self.placement = placement
        self.options: Mapping[str, Any] = options or {}

    @classmethod
    def prepare(cls, framework_device: str) -> None:
        """Initialise the framework once per process and device (import, thread pools,
        arenas, a CUDA context and its math libraries).

        The Registry calls this before it measures a load, so the first model of a
        framework on a device is not charged with the framework's own start-up memory
        (on a GPU the CUDA context alone is hundreds of megabytes).
        """

    @abc.abstractmethod
    def load(self) -> None:
        """Read the model from ``self.path`` onto the device. Blocking; runs in a thread."""

    @property
    @abc.abstractmethod
    def signature(self) -> Signature:
        """Inputs and outputs; valid after :meth:`load`."""

    @abc.abstractmethod
    def run(self, inputs: Batch) -> dict[str, np.ndarray]:
        """Run one batch (leading dimension = batch) and return every output."""

    def unload(self) -> None:
        """Drop references so the memory can be freed. Blocking; runs in a thread."""

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(backend=self.backend, platform=self.platform)

    def healthy(self) -> bool:
        """False when something the runtime depends on has died (a worker thread or
        process); the server then reports itself not ready."""
        return True

    def device_memory_bytes(self) -> int | None:
        """Accelerator allocator bytes in use on this runtime's device, if it can tell.

        The Registry reads this before load and after warm-up; ``None`` means the
        model lives in host memory and the process RSS delta is measured instead.
        """
        return None

    def measured_memory_bytes(self) -> int | None:
        """The model's memory as the runtime itself measures it after warm-up, or None.

        When not None the Registry books this figure instead of its own RSS or device
        delta. A model in its own worker process (``isolation: process``) reports the
        worker's RSS here: the server's RSS does not grow by what the model holds.
        """
        return None

    def warmup_inputs(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        """Zeros shaped from the signature (variable dims become 1)."""
        feeds: dict[str, np.ndarray] = {}
        for spec in self.signature.inputs:
            dims = [d if d > 0 else 1 for d in spec.shape]
            if dims:
                dims[0] = batch_size
            feeds[spec.name] = np.zeros(dims, dtype=spec.dtype)
        return feeds
