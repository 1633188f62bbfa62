"""``berth.v1.InferenceService``: seed 003's inference-role RPCs over the Engine.

``InferBatch`` takes either the seed's two float32 byte fields (``visual_frames``,
``audio_features`` and ``batch_size``; item shapes come from the model's signature)
or named tensors with datatype and shape for any model, and answers in the same
form: per-item raw bytes of the first output for the seed's form, named tensors
otherwise. Management and statistics RPCs carry seed 004's fields.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from grpc import aio

from ..engine import Engine, Prediction
from ..errors import InvalidInput
from ..registry import ModelState
from ..runtimes.base import Signature, TensorSpec
from ..tensors import V2_TO_NUMPY, numpy_dtype, v2_datatype
from . import codec
from .common import Devices, call_timeout, ready_entry
from .errors import guard
from .generated.berth.v1 import berth_pb2 as pb
from .generated.berth.v1 import berth_pb2_grpc as pb_grpc

_FLOAT32 = np.dtype(np.float32)


class BerthServicer(pb_grpc.InferenceServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.devices = Devices(engine)

    # ── inference ─────────────────────────────────────────────────────────
    @guard
    async def InferBatch(self, request: pb.InferBatchRequest, context: aio.ServicerContext) -> pb.InferBatchResponse:
        model = self.engine.resolve_model(request.model_id or None)
        version = request.version or None
        seed_form = not request.inputs
        if seed_form:
            inputs = await self._seed_inputs(model, version, request)
        else:
            if request.visual_frames or request.audio_features:
                raise InvalidInput("give either named inputs or visual_frames/audio_features, not both")
            inputs = _named_inputs(request.inputs)
        timeout = call_timeout(self.engine, context, request.timeout_ms / 1000.0 if request.timeout_ms else None)
        prediction = await self.engine.infer(model, inputs, version=version, timeout_s=timeout)
        return self._answer(prediction, seed_form)

    async def _seed_inputs(self, model: str, version: str | None, request: pb.InferBatchRequest) -> dict[str, np.ndarray]:
        if not request.visual_frames:
            raise InvalidInput("the request has no inputs: send visual_frames (and audio_features) or named inputs")
        batch = request.batch_size
        if batch < 1:
            raise InvalidInput("batch_size must be at least 1")
        entry = ready_entry(self.engine, model, version)
        signature = entry.runtime.signature if entry is not None and entry.runtime is not None else await self.engine.signature(model, version)
        visual, audio = _seed_specs(model, signature)
        feeds = {visual.name: _seed_tensor("visual_frames", request.visual_frames, visual, batch, shared=False)}
        if audio is not None:
            if not request.audio_features:
                raise InvalidInput(f"model '{model}' also takes input '{audio.name}': send audio_features")
            feeds[audio.name] = _seed_tensor("audio_features", request.audio_features, audio, batch, shared=True)
        elif request.audio_features:
            raise InvalidInput(f"model '{model}' takes one input; audio_features has nowhere to go")
        return feeds

    def _answer(self, prediction: Prediction, seed_form: bool) -> pb.InferBatchResponse:
        response = pb.InferBatchResponse(
            inference_time_ms=prediction.compute_ms,
            success=True,
            worker_id=prediction.worker_id,
            gpu_id=self.devices.gpu_id(prediction.device_id),
            device=prediction.device_id,
            queue_time_ms=prediction.queue_ms,
            model_version=prediction.version,
            batch_size=prediction.batch_size,
        )
        if seed_form:
            first = next(iter(prediction.outputs.values()))
            datatype = codec.output_datatype("output", first)
            response.outputs.extend(pb.RawMouthRegion(data=codec.to_raw(datatype, item)) for item in first)
        else:
            for name, array in prediction.outputs.items():
                datatype = codec.output_datatype(name, array)
                response.tensors.add(name=name, datatype=datatype, shape=array.shape, data=codec.to_raw(datatype, array))
        return response

    # ── management ────────────────────────────────────────────────────────
    @guard
    async def ListModels(self, request: pb.ListModelsRequest, context: aio.ServicerContext) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[self._info(row) for row in self.engine.list_models()])

    @guard
    async def LoadModel(self, request: pb.LoadModelRequest, context: aio.ServicerContext) -> pb.LoadModelResponse:
        started = time.perf_counter()
        row = await self.engine.load(_model_id(request.model_id), request.version or None)
        waited_ms = (time.perf_counter() - started) * 1000.0
        return pb.LoadModelResponse(success=True, message=f"model '{row['name']}' is ready", model=self._info(row), load_time_ms=waited_ms)

    @guard
    async def UnloadModel(self, request: pb.UnloadModelRequest, context: aio.ServicerContext) -> pb.UnloadModelResponse:
        row = await self.engine.unload(_model_id(request.model_id), request.version or None)
        return pb.UnloadModelResponse(success=True, message=f"model '{row['name']}' is unloaded", model=self._info(row))

    @guard
    async def GetModelStats(self, request: pb.GetModelStatsRequest, context: aio.ServicerContext) -> pb.GetModelStatsResponse:
        stats = self.engine.model_stats(request.model_id or None)
        return pb.GetModelStatsResponse(models=[self._stats(row) for row in stats["models"]], server=_server_stats(stats["server"]))

    @guard
    async def Health(self, request: pb.HealthRequest, context: aio.ServicerContext) -> pb.HealthResponse:
        health = self.engine.health()
        return pb.HealthResponse(
            healthy=bool(health["live"]),
            ready=bool(health["ready"]),
            loaded_models=int(self.engine.server_stats()["loaded_models"]),
            uptime_s=float(health["uptime_s"]),
            failed_models=health["failed_models"],
            preload_pending=health["preload_pending"],
            accelerated=bool(health["accelerated"]),
            inflight=int(health["inflight"]),
        )

    # ── encoding ──────────────────────────────────────────────────────────
    def _info(self, row: dict[str, Any]) -> pb.ModelInfo:
        return pb.ModelInfo(
            model_id=row["name"],
            version=row["version"],
            state=row["state"],
            loaded=row["state"] == ModelState.READY.value,
            device=row["device"] or "",
            gpu_id=self.devices.gpu_id(row["device"]),
            memory_mb=float(row["memory_mb"]),
            pinned=bool(row["pinned"]),
            backend=row["backend"] or "",
            reason=row["reason"] or "",
            versions=row["versions"],
            usage_count=int(row["stats"]["usage_count"]),
        )

    def _stats(self, row: dict[str, Any]) -> pb.ModelStats:
        stats = row["stats"]
        return pb.ModelStats(
            model_id=row["name"],
            version=row["version"],
            state=row["state"],
            usage_count=int(stats["usage_count"]),
            last_used_unix=float(stats["last_used"] or 0.0),
            memory_mb=float(row["memory_mb"]),
            avg_inference_ms=float(stats["mean_inference_ms"] or 0.0),
            p99_inference_ms=float(stats["p99_inference_ms"] or 0.0),
            inference_count=int(stats["inference_count"]),
            failures=int(stats["failures"]),
            loads=int(stats["loads"]),
            evictions=int(stats["evictions"]),
            device=row["device"] or "",
            pinned=bool(row["pinned"]),
            avg_queue_ms=float(stats["mean_queue_ms"] or 0.0),
            avg_batch_size=float(stats["mean_batch_size"] or 0.0),
        )


def _server_stats(server: dict[str, Any]) -> pb.ServerStats:
    return pb.ServerStats(
        loaded_models=int(server["loaded_models"]),
        max_models=int(server["max_models"]),
        total_memory_mb=float(server["memory_mb"]),
        max_memory_mb=float(server["max_memory_mb"]),
        eviction_policy=str(server["eviction_policy"]),
        resident_models=int(server["resident_models"]),
        inflight=int(server["inflight"]),
        uptime_s=float(server["uptime_s"]),
        devices=[
            pb.DeviceStats(
                id=str(d["id"]),
                kind=str(d["kind"]),
                models=int(d["models"]),
                memory_mb=float(d["memory_mb"]),
                max_memory_mb=float(d["max_memory_mb"] or 0.0),
                workers=int(d["workers"]),
            )
            for d in server["devices"]
        ],
    )


def _named_inputs(tensors: Any) -> dict[str, np.ndarray]:
    inputs: dict[str, np.ndarray] = {}
    for tensor in tensors:
        if tensor.name in inputs:
            raise InvalidInput(f"input '{tensor.name}' is given twice")
        inputs[tensor.name] = codec.from_raw(tensor.name, _v2_name(tensor.name, tensor.datatype), tensor.shape, tensor.data)
    return inputs


def _v2_name(name: str, datatype: str) -> str:
    """A V2 datatype from a V2 name (``FP32``), a numpy name (``float32``) or nothing (FP32)."""
    if not datatype:
        return "FP32"
    if datatype.upper() in V2_TO_NUMPY or datatype.upper() == "BF16":
        return datatype.upper()
    try:
        return v2_datatype(numpy_dtype(datatype))
    except (ValueError, TypeError):
        raise InvalidInput(f"input '{name}' has unknown datatype '{datatype[:32]}'") from None


def _seed_specs(model: str, signature: Signature) -> tuple[TensorSpec, TensorSpec | None]:
    """The inputs the seed's fields feed: those named ``visual`` and ``audio``, else the
    model's first and second inputs."""
    visual, audio = signature.input("visual"), signature.input("audio")
    others = [spec for spec in signature.inputs if spec is not visual and spec is not audio]
    visual = visual or (others.pop(0) if others else None)
    audio = audio or (others.pop(0) if others else None)
    if visual is None or others:
        names = [spec.name for spec in signature.inputs]
        raise InvalidInput(f"model '{model}' takes inputs {names}; visual_frames/audio_features cannot feed them, send named inputs")
    return visual, audio


def _seed_tensor(field: str, data: bytes, spec: TensorSpec, batch: int, *, shared: bool) -> np.ndarray:
    """``batch`` items of float32 bytes shaped like one item of ``spec``; with ``shared``,
    one item may stand for the whole batch (seed 004 sends one audio window per batch)."""
    item = spec.static_tail
    if item is None or spec.item_size is None:
        raise InvalidInput(f"input '{spec.name}' has a variable item shape; send it as a named input with its shape")
    if len(data) % _FLOAT32.itemsize:
        raise InvalidInput(f"{field} holds {len(data)} bytes, not a whole number of float32 values")
    count = len(data) // _FLOAT32.itemsize
    if count == batch * spec.item_size:
        return codec.from_raw(spec.name, "FP32", (batch, *item), data)
    if shared and count == spec.item_size:
        one = codec.from_raw(spec.name, "FP32", (1, *item), data)
        return one if batch == 1 else np.repeat(one, batch, axis=0)
    needed = f"batch_size ({batch}) x {spec.item_size}" + (f" (or one item, {spec.item_size})" if shared else "")
    raise InvalidInput(f"{field} holds {count} float32 values; input '{spec.name}' {list(item)} needs {needed}")


def _model_id(model_id: str) -> str:
    if not model_id:
        raise InvalidInput("model_id is required")
    return model_id
