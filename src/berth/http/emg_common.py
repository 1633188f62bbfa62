"""Shared pieces of the seed-001 EMG API: which model serves which backend, what ran,
a bank of demo windows, the CPU gauge, the window-classifier check and reading, and
parameter checks with clear messages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil

from ..config import EMG_ACCELERATED_MODEL, EmgConfig
from ..demo.emg_signal import SyntheticEmg
from ..engine import Engine, Prediction
from ..errors import InvalidInput
from ..streaming.preprocess import softmax_rows
from ..registry import ModelEntry

#: backend key in requests and the /benchmark answer → how it is chosen
BACKEND_KEYS = ("pytorch", "onnxruntime", "accelerated")


@dataclass(slots=True)
class Backends:
    """Model names for each backend; the accelerated one is the ``TENSORRT_ENGINE``
    model when it is servable, else the onnxruntime model (its fastest execution
    provider: TensorRT or CUDA when present, else CPU)."""

    engine: Engine
    emg: EmgConfig

    def model(self, key: str) -> str:
        if key == "pytorch":
            return self.emg.torch_model
        if key == "accelerated" and EMG_ACCELERATED_MODEL in self.engine.registry.specs:
            return EMG_ACCELERATED_MODEL
        return self.emg.model

    def tensorrt_engine_problem(self) -> str | None:
        if not self.emg.tensorrt_engine:
            return None
        registry = self.engine.registry
        servable = EMG_ACCELERATED_MODEL in registry.specs and EMG_ACCELERATED_MODEL not in registry.repository.problems
        return None if servable else "the TENSORRT_ENGINE file cannot be served by any runtime here"

    def tensorrt_available(self) -> bool:
        """TensorRT can run here: onnxruntime has its provider and a CUDA device exists."""
        if not any(d.kind == "cuda" for d in self.engine.devices):
            return False
        try:
            from ..runtimes.onnx import available_providers

            return "TensorrtExecutionProvider" in available_providers()
        except ImportError:
            return False

    def label(self, prediction: Prediction) -> str:
        """What actually ran the prediction, from the model's loaded runtime."""
        entry = self.engine.registry.entries.get((prediction.model, prediction.version))
        return backend_label(entry) if entry is not None else "unknown"


def backend_label(entry: ModelEntry) -> str:
    backend = entry.spec.backend
    if backend == "onnx":
        providers = entry.info.get("providers") or []
        if providers and providers[0] == "TensorrtExecutionProvider":
            return "tensorrt"
        if providers and providers[0] == "CUDAExecutionProvider":
            return "onnxruntime-cuda"
        return "onnxruntime"
    if backend in ("torchscript", "torch_export"):
        return "pytorch"
    return backend


class CpuGauge:
    """System CPU percent, sampled at most every 0.25 s (psutil's non-blocking form)."""

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # the first reading only primes the counter
        self._at = 0.0
        self._value = 0.0

    def read(self) -> float:
        now = time.monotonic()
        if now - self._at >= 0.25:
            self._value = float(psutil.cpu_percent(interval=None))
            self._at = now
        return self._value


class WindowBank:
    """Synthetic windows for seed 001's ``/infer`` (the seed fed random tensors): made
    once, cycling through every gesture, handed out round-robin."""

    SIZE = 64

    def __init__(self, window: int, channels: int, fs: float) -> None:
        self.shape = (window, channels)
        self._fs = fs
        self._bank: np.ndarray | None = None
        self._next = 0

    def build(self) -> None:
        window, channels = self.shape
        generator = SyntheticEmg(channels=max(channels, 4), fs=int(round(self._fs)), seed=7, cycle=True)
        signal, _ = generator.read(self.SIZE * window)
        self._bank = signal[:, :channels].reshape(self.SIZE, window, channels).copy()

    def take(self, n: int) -> np.ndarray:
        if self._bank is None:
            self.build()
        assert self._bank is not None
        index = (self._next + np.arange(n)) % self.SIZE
        self._next = int(index[-1] + 1) % self.SIZE
        return self._bank[index]


def number(body: dict[str, Any], key: str, default: Any, *, low: float, high: float, integer: bool = False, low_open: bool = False) -> Any:
    """``body[key]`` checked: a number (an integer if asked) within the bounds."""
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise InvalidInput(f"'{key}' must be {'an integer' if integer else 'a number'}")
    if not np.isfinite(value) or value < low or (low_open and value == low) or value > high:
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        raise InvalidInput(f"'{key}' is {value:g}; it must be {bound} and at most {high:g}")
    return int(value) if integer else float(value)


def flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"'{key}' must be true or false")
    return value


@dataclass(frozen=True, slots=True)
class WindowModel:
    """A model that classifies one EMG window per row: its input's name and labels."""

    name: str
    input_name: str
    labels: list[str] | None


async def window_model(engine: Engine, emg: EmgConfig, model: str) -> WindowModel:
    """Check that ``model`` takes one input of [N, window, channels] windows (loading it
    if needed; ModelNotFound for an unknown one), for the SSE stream and the WebSocket."""
    signature = await engine.signature(model)
    window = (emg.window, emg.channels)
    if len(signature.inputs) != 1 or signature.inputs[0].static_tail != window:
        shapes = [list(spec.shape) for spec in signature.inputs]
        raise InvalidInput(f"model '{model}' takes inputs shaped {shapes}; EMG windows are [N, {window[0]}, {window[1]}]")
    spec = engine.registry.specs.get(model)
    return WindowModel(model, signature.inputs[0].name, spec.settings.labels if spec is not None else None)


async def classify_window(engine: Engine, backends: Backends, model: WindowModel, window: np.ndarray) -> tuple[Prediction, dict[str, Any]]:
    """Run one window; the prediction and the fields every EMG answer carries about it
    (top class, its label and confidence, what ran it)."""
    prediction = await engine.infer(model.name, {model.input_name: window[np.newaxis]})
    probs = softmax_rows(next(iter(prediction.outputs.values())))[0]
    top = int(probs.argmax())
    labels = model.labels
    return prediction, {
        "prediction": top,
        "gesture": labels[top] if labels and top < len(labels) else None,
        "confidence": round(float(probs[top]), 6),
        "backend": backends.label(prediction),
        "model": prediction.model,
    }
