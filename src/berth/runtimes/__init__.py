"""Runtimes, one module per framework, behind the small contract in :mod:`.base`.

Framework imports (onnxruntime, torch) happen inside each module's ``load`` path, so
importing this package stays cheap and a missing optional framework only fails the
models that need it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import Batch, Placement, Runtime, RuntimeInfo, Signature, TensorSpec

# backend name -> (module, class); modules are imported on first use
_BACKENDS: dict[str, tuple[str, str]] = {
    "onnx": ("berth.runtimes.onnx", "OnnxRuntime"),
    "torchscript": ("berth.runtimes.torch", "TorchScriptRuntime"),
    "torch_export": ("berth.runtimes.torch", "TorchExportRuntime"),
    "paragon": ("berth.runtimes.paragon", "ParagonRuntime"),
    "python": ("berth.runtimes.python", "PythonRuntime"),
    "lm": ("berth.runtimes.lm", "LMRuntime"),  # a Hugging Face causal-LM folder
}

# model file suffix -> backend, for repository discovery and `berth serve -model`
SUFFIX_BACKENDS: dict[str, str] = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".torchscript": "torchscript",
    ".pt2": "torch_export",
    ".json": "paragon",
    ".py": "python",
}


def backend_for_path(path: Path) -> str | None:
    return SUFFIX_BACKENDS.get(path.suffix.lower())


def runtime_class(backend: str) -> type[Runtime]:
    try:
        module_name, class_name = _BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend '{backend}' (known: {', '.join(_BACKENDS)})") from None
    module = importlib.import_module(module_name)
    cls: type[Runtime] = getattr(module, class_name)
    return cls


__all__ = [
    "Batch",
    "Placement",
    "Runtime",
    "RuntimeInfo",
    "Signature",
    "TensorSpec",
    "backend_for_path",
    "runtime_class",
]
