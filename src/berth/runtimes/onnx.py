"""onnxruntime: CPU, and the CUDA and TensorRT execution providers when present."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from .base import Batch, Placement, Runtime, RuntimeInfo, Signature, TensorSpec
from .cuda import cuda_used_bytes

_ORT_TYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(string)": np.dtype(np.object_),
}

# a 65-byte ONNX model (Identity on float[1]) used to initialise onnxruntime once
_IDENTITY_MODEL = base64.b64decode("CAg6NwoQCgF4EgF5IghJZGVudGl0eRIBaVoPCgF4EgoKCAgBEgQKAggBYg8KAXkSCgoICAESBAoCCAFCBAoAEBE=")

ACCELERATED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _dims(shape: list[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


def _provider_name(provider: Any) -> str:
    """A provider as onnxruntime takes it: a name, or (name, options)."""
    return provider if isinstance(provider, str) else provider[0]


def _accelerated(provider_names: list[str]) -> bool:
    return any(name in ACCELERATED_PROVIDERS for name in provider_names)


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


class OnnxRuntime(Runtime):
    """Options: ``intra_op_threads``, ``providers`` (list, or one name), ``tensorrt`` (bool, default
    True when the TensorRT provider is present on a CUDA device)."""

    backend = "onnx"
    platform = "onnx_onnxv1"

    _session: Any = None
    _direct_run: Any = None
    _signature: Signature
    _output_names: list[str]

    def _providers(self) -> list[Any]:
        requested = self.options.get("providers")
        if requested:
            # one provider may be written as a plain string in config.yaml; list() of
            # it would be its characters
            return [requested] if isinstance(requested, str) else list(requested)
        framework = self.placement.framework_device
        if not framework.startswith("cuda"):
            return ["CPUExecutionProvider"]
        index = int(framework.partition(":")[2] or 0)
        present = set(available_providers())
        providers: list[Any] = []
        if "TensorrtExecutionProvider" in present and self.options.get("tensorrt", True):
            providers.append(("TensorrtExecutionProvider", {"device_id": index}))
        if "CUDAExecutionProvider" in present:
            providers.append(("CUDAExecutionProvider", {"device_id": index}))
        providers.append("CPUExecutionProvider")
        return providers

    @classmethod
    def prepare(cls, framework_device: str) -> None:
        import onnxruntime as ort

        placement = Placement(framework_device, framework_device)
        providers = cls(Path("identity.onnx"), placement)._providers()
        session = ort.InferenceSession(_IDENTITY_MODEL, providers=providers)
        session.run(None, {"x": np.zeros(1, dtype=np.float32)})

    def load(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = self.options.get("intra_op_threads")
        if threads:
            options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        providers = self._providers()
        self._session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        # onnxruntime's Python run() re-checks the input names (the Engine already has)
        # and falls back to the CPU when a GPU provider fails; on a CPU-only session
        # that is two microseconds of nothing per call, so call the binding directly
        binding = getattr(self._session, "_sess", None)
        cpu_only = providers == ["CPUExecutionProvider"]
        self._direct_run = binding.run if cpu_only and binding is not None else None
        self.cpu_timed = cpu_only
        self._signature = Signature(
            inputs=tuple(TensorSpec(i.name, _ORT_TYPES.get(i.type, np.dtype(np.float32)), _dims(i.shape)) for i in self._session.get_inputs()),
            outputs=tuple(TensorSpec(o.name, _ORT_TYPES.get(o.type, np.dtype(np.float32)), _dims(o.shape)) for o in self._session.get_outputs()),
        )
        self._output_names = [o.name for o in self._signature.outputs]

    @property
    def signature(self) -> Signature:
        return self._signature

    def run(self, inputs: Batch) -> dict[str, np.ndarray]:
        if self._direct_run is not None:
            results = self._direct_run(self._output_names, inputs if type(inputs) is dict else dict(inputs), None)
        elif self._session is not None:
            results = self._session.run(self._output_names, dict(inputs))
        else:
            raise RuntimeError(f"{self.path.name} is not loaded")
        return dict(zip(self._output_names, results))

    def unload(self) -> None:
        self._session = None
        self._direct_run = None

    def info(self) -> RuntimeInfo:
        providers = list(self._session.get_providers()) if self._session is not None else []
        return RuntimeInfo(
            backend=self.backend,
            platform=self.platform,
            accelerated=_accelerated(providers),
            details={"providers": providers},
        )

    def device_memory_bytes(self) -> int | None:
        # a session without a GPU provider (onnxruntime's CPU build on a CUDA machine,
        # or providers: [CPUExecutionProvider]) keeps its weights in host memory, where
        # the Registry measures the RSS delta; the GPU's reading would book it as 0 MB
        providers = self._session.get_providers() if self._session is not None else [_provider_name(p) for p in self._providers()]
        if not _accelerated(providers):
            return None
        return cuda_used_bytes(self.placement.framework_device)
