"""``inference.GRPCInferenceService``: the KServe V2 protocol with Triton's extensions.

Each method parses its request into Engine arguments, awaits the Engine and encodes
the answer; failures leave through the one status table in :mod:`.errors`. Outputs
always travel in ``raw_output_contents`` (what the stock Triton clients read first);
inputs are accepted raw or as typed ``contents``.

``ModelStreamInfer`` answers every request of a stream, in order, with one
``ModelStreamInferResponse``; a failed request gets ``error_message`` and the stream
goes on. Up to :data:`STREAM_WINDOW` requests of one stream run at once, so frames a
client pushes back to back can share a dynamic batch.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from grpc import aio

from .. import __version__
from ..engine import Engine, Prediction
from ..errors import InvalidInput, ModelNotFound, ModelNotReady
from ..registry import ModelState
from ..runtimes.base import Signature
from ..tensors import v2_datatype
from . import codec
from .common import Devices, call_timeout, ready_entry
from .errors import Unimplemented, abort, error_text, guard
from .generated import grpc_service_pb2 as pb
from .generated import grpc_service_pb2_grpc as pb_grpc
from .generated import model_config_pb2 as mc

#: requests of one stream in flight at once; the stream reads no further ahead
STREAM_WINDOW = 64
#: what ServerMetadata advertises: only what berth implements
EXTENSIONS = ("model_repository", "statistics", "model_configuration")
_NS_PER_MS = 1_000_000
_MB = 1024 * 1024
#: berth's lifecycle states as the repository extension spells them
_INDEX_STATE = {
    ModelState.READY.value: "READY",
    ModelState.LOADING.value: "LOADING",
    ModelState.UNLOADING.value: "UNLOADING",
    ModelState.UNLOADED.value: "UNAVAILABLE",
    ModelState.FAILED.value: "UNAVAILABLE",
}


class V2Servicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.devices = Devices(engine)

    # ── health and metadata ───────────────────────────────────────────────
    @guard
    async def ServerLive(self, request: pb.ServerLiveRequest, context: aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @guard
    async def ServerReady(self, request: pb.ServerReadyRequest, context: aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=bool(self.engine.health()["ready"]))

    @guard
    async def ModelReady(self, request: pb.ModelReadyRequest, context: aio.ServicerContext) -> pb.ModelReadyResponse:
        # answered from the registry's state: asking must not load the model
        return pb.ModelReadyResponse(ready=ready_entry(self.engine, request.name, request.version or None) is not None)

    @guard
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="berth", version=__version__, extensions=EXTENSIONS)

    @guard
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: aio.ServicerContext) -> pb.ModelMetadataResponse:
        row, signature = await self._describe(request.name, request.version)
        response = pb.ModelMetadataResponse(name=row["name"], versions=row["versions"], platform=row["platform"] or row["backend"])
        for specs, tensors in ((signature.inputs, response.inputs), (signature.outputs, response.outputs)):
            for spec in specs:
                tensors.add(name=spec.name, datatype=v2_datatype(spec.dtype), shape=spec.shape)
        return response

    # ── inference ─────────────────────────────────────────────────────────
    @guard
    async def ModelInfer(self, request: pb.ModelInferRequest, context: aio.ServicerContext) -> pb.ModelInferResponse:
        return await self._infer(request, context)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        pending: asyncio.Queue[asyncio.Future[pb.ModelStreamInferResponse] | None] = asyncio.Queue()
        window = asyncio.Semaphore(STREAM_WINDOW)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await window.acquire()
                    pending.put_nowait(asyncio.ensure_future(self._stream_one(request, context)))
            finally:
                pending.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (answer := await pending.get()) is not None:
                response = await answer
                window.release()
                yield response
            await reader  # a broken request stream ends the call with its error
        except aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - the stream itself failed: a status, never a traceback
            await abort(context, exc, "ModelStreamInfer")
        finally:
            reader.cancel()
            while not pending.empty():
                left = pending.get_nowait()
                if left is not None:
                    left.cancel()

    async def _stream_one(self, request: pb.ModelInferRequest, context: aio.ServicerContext) -> pb.ModelStreamInferResponse:
        try:
            response = await self._infer(request, context)
        except Exception as exc:  # noqa: BLE001 - reported in-band; the stream goes on
            failed = pb.ModelStreamInferResponse(error_message=error_text(exc, "ModelStreamInfer"))
            failed.infer_response.model_name = request.model_name
            failed.infer_response.id = request.id
            return failed
        # one response per request, so each is the request's last (Triton's decoupled flag)
        response.parameters["triton_final_response"].bool_param = True
        return pb.ModelStreamInferResponse(infer_response=response)

    async def _infer(self, request: pb.ModelInferRequest, context: aio.ServicerContext) -> pb.ModelInferResponse:
        model = self.engine.resolve_model(request.model_name or None)
        inputs = decode_inputs(request)
        timeout = call_timeout(self.engine, context, _timeout_parameter(request))
        prediction = await self.engine.infer(model, inputs, version=request.model_version or None, timeout_s=timeout)
        return encode_response(request, prediction)

    # ── configuration and statistics ──────────────────────────────────────
    @guard
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: aio.ServicerContext) -> pb.ModelConfigResponse:
        row, signature = await self._describe(request.name, request.version)
        return pb.ModelConfigResponse(config=self._config(row, signature))

    @guard
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: aio.ServicerContext) -> pb.ModelStatisticsResponse:
        if request.name:
            rows = self.engine.model_stats(request.name)["models"]
            if request.version:
                rows = [row for row in rows if row["version"] == request.version]
                if not rows:
                    raise ModelNotFound(f"model '{request.name}' has no version '{request.version}'")
        else:
            rows = self.engine.list_models()
        return pb.ModelStatisticsResponse(model_stats=[self._statistics(row) for row in rows])

    # ── model repository ──────────────────────────────────────────────────
    @guard
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: aio.ServicerContext) -> pb.RepositoryIndexResponse:
        response = pb.RepositoryIndexResponse()
        for row in self.engine.list_models():
            if request.ready and row["state"] != ModelState.READY.value:
                continue
            reason = row["reason"] or ("unloaded" if row["state"] == ModelState.UNLOADED.value else "")
            response.models.add(name=row["name"], version=row["version"], state=_INDEX_STATE.get(row["state"], "UNKNOWN"), reason=reason)
        return response

    @guard
    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context: aio.ServicerContext) -> pb.RepositoryModelLoadResponse:
        name = _model_name(request.model_name)
        if any(key == "config" or key.startswith("file:") for key in request.parameters):
            raise Unimplemented("berth loads models from its repository only; 'config' and 'file:' load parameters are not supported")
        await self.engine.load(name)
        return pb.RepositoryModelLoadResponse()

    @guard
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        name = _model_name(request.model_name)
        resident = (ModelState.READY.value, ModelState.LOADING.value)
        versions = [row["version"] for row in self.engine.list_models() if row["name"] == name and row["state"] in resident]
        for version in versions or [None]:  # None: still an error for an unknown model
            await self.engine.unload(name, version)
        return pb.RepositoryModelUnloadResponse()

    # ── not offered: shared memory, tracing, log settings ─────────────────
    @guard
    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: aio.ServicerContext
    ) -> pb.SystemSharedMemoryStatusResponse:
        if request.name:
            raise ModelNotFound(f"no system shared-memory region named '{request.name}'")
        return pb.SystemSharedMemoryStatusResponse()  # truthfully: none registered

    @guard
    async def SystemSharedMemoryRegister(self, request: Any, context: aio.ServicerContext) -> Any:
        raise Unimplemented("berth does not support system shared memory; send tensors in raw_input_contents")

    @guard
    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: aio.ServicerContext
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        return pb.SystemSharedMemoryUnregisterResponse()  # nothing is ever registered

    @guard
    async def CudaSharedMemoryStatus(
        self, request: pb.CudaSharedMemoryStatusRequest, context: aio.ServicerContext
    ) -> pb.CudaSharedMemoryStatusResponse:
        if request.name:
            raise ModelNotFound(f"no CUDA shared-memory region named '{request.name}'")
        return pb.CudaSharedMemoryStatusResponse()

    @guard
    async def CudaSharedMemoryRegister(self, request: Any, context: aio.ServicerContext) -> Any:
        raise Unimplemented("berth does not support CUDA shared memory; send tensors in raw_input_contents")

    @guard
    async def CudaSharedMemoryUnregister(
        self, request: pb.CudaSharedMemoryUnregisterRequest, context: aio.ServicerContext
    ) -> pb.CudaSharedMemoryUnregisterResponse:
        return pb.CudaSharedMemoryUnregisterResponse()

    @guard
    async def TraceSetting(self, request: Any, context: aio.ServicerContext) -> Any:
        raise Unimplemented("berth has no trace settings")

    @guard
    async def LogSettings(self, request: Any, context: aio.ServicerContext) -> Any:
        raise Unimplemented("berth's log settings are set at start (--log-level), not over gRPC")

    # ── helpers ───────────────────────────────────────────────────────────
    async def _describe(self, name: str, version: str) -> tuple[dict[str, Any], Signature]:
        """The Engine's description of a model and its signature (loading it if needed)."""
        model = self.engine.resolve_model(name or None)
        entry = ready_entry(self.engine, model, version or None)
        if entry is None:  # not resident: load it, as Triton would have it loaded
            await self.engine.signature(model, version or None)
            entry = ready_entry(self.engine, model, version or None)
        if entry is None or entry.runtime is None:  # unloaded again in the instant since
            raise ModelNotReady(f"model '{model}' is not loaded")
        runtime = entry.runtime
        row = self.engine.describe(entry)
        if entry.batcher is not None:
            row["batching"] = {"max_queue_delay_ms": entry.batcher.max_queue_delay_s * 1000.0, "queue_size": entry.batcher.queue_size}
        return row, runtime.signature

    def _config(self, row: dict[str, Any], signature: Signature) -> mc.ModelConfig:
        max_batch = int(row["max_batch_size"] or 0)
        config = mc.ModelConfig(name=row["name"], platform=row["platform"] or "", backend=row["backend"] or "", max_batch_size=max_batch)
        # with max_batch_size > 0, Triton's dims leave out the batch dimension
        skip = 1 if max_batch > 0 else 0
        for spec in signature.inputs:
            config.input.add(name=spec.name, data_type=_data_type(spec.dtype), dims=spec.shape[skip:])
        for spec in signature.outputs:
            config.output.add(name=spec.name, data_type=_data_type(spec.dtype), dims=spec.shape[skip:])
        config.version_policy.specific.versions.extend(int(v) for v in row["versions"])
        kind, index = self.devices.memory_kind(row["device"])
        group = config.instance_group.add(name=f"{row['name']}_0", count=1)
        group.kind = mc.ModelInstanceGroup.KIND_GPU if kind == "GPU" else mc.ModelInstanceGroup.KIND_CPU
        if kind == "GPU":
            group.gpus.append(index)
        batching = row.get("batching")
        if batching is not None:
            config.dynamic_batching.max_queue_delay_microseconds = int(round(batching["max_queue_delay_ms"] * 1000))
            config.dynamic_batching.default_queue_policy.max_queue_size = int(batching["queue_size"])
        if row["device"]:
            config.parameters["device"].string_value = row["device"]
        config.parameters["memory_mb"].string_value = str(row["memory_mb"])
        return config

    def _statistics(self, row: dict[str, Any]) -> pb.ModelStatistics:
        stats = row["stats"]
        count = int(stats["inference_count"])
        compute_ns = int((stats["mean_inference_ms"] or 0.0) * count * _NS_PER_MS)
        queue_ns = int((stats["mean_queue_ms"] or 0.0) * count * _NS_PER_MS)
        last_used = stats["last_used"]
        result = pb.ModelStatistics(
            name=row["name"],
            version=row["version"],
            last_inference=int(last_used * 1000) if last_used else 0,
            # Triton's meaning, as over HTTP: every batch item is an inference, so a
            # request of several rows counts each; the durations below count requests
            inference_count=int(stats["batch_rows"]),
            execution_count=int(stats["batches"]),
        )
        inference = result.inference_stats
        inference.success.count, inference.success.ns = count, compute_ns + queue_ns
        inference.fail.count = int(stats["failures"])
        inference.queue.count, inference.queue.ns = count, queue_ns
        inference.compute_infer.count, inference.compute_infer.ns = count, compute_ns
        # berth does not time input/output copies apart from the run: their counts match
        # compute_infer's with no time (perf_analyzer refuses statistics whose three
        # compute counts differ: 'Server side statistics compute counts must be the same')
        inference.compute_input.count = inference.compute_output.count = count
        if row["memory_mb"]:
            kind, index = self.devices.memory_kind(row["device"])
            result.memory_usage.add(type=kind, id=index, byte_size=int(row["memory_mb"] * _MB))
        return result


def decode_inputs(request: pb.ModelInferRequest) -> dict[str, Any]:
    """The request's inputs as arrays, from raw contents or typed contents."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"raw_input_contents holds {len(raw)} entries for {len(request.inputs)} inputs; they must pair up")
    if not request.inputs:
        raise InvalidInput("the request has no inputs")
    inputs: dict[str, Any] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        if name in inputs:
            raise InvalidInput(f"input '{name}' is given twice")
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(f"input '{name}' sets contents while the request uses raw_input_contents")
            inputs[name] = codec.from_raw(name, tensor.datatype, tensor.shape, raw[index])
        elif tensor.HasField("contents"):
            inputs[name] = codec.from_contents(name, tensor.datatype, tensor.shape, tensor.contents)
        else:
            raise InvalidInput(f"input '{name}' has no data: set contents or raw_input_contents")
    return inputs


def encode_response(request: pb.ModelInferRequest, prediction: Prediction) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=prediction.model, model_version=prediction.version, id=request.id)
    outputs = prediction.outputs
    names = [output.name for output in request.outputs] or list(outputs)
    for name in names:
        array = outputs.get(name)
        if array is None:
            raise InvalidInput(f"model '{prediction.model}' has no output named '{name}'; outputs are {list(outputs)}")
        datatype = codec.output_datatype(name, array)
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(codec.to_raw(datatype, array))
    return response


def _timeout_parameter(request: pb.ModelInferRequest) -> float | None:
    """Triton's ``timeout`` request parameter (microseconds), in seconds."""
    if "timeout" not in request.parameters:
        return None
    parameter = request.parameters["timeout"]
    if parameter.WhichOneof("parameter_choice") not in ("int64_param", "uint64_param"):
        raise InvalidInput("the 'timeout' parameter must be an integer number of microseconds")
    value = parameter.int64_param or parameter.uint64_param
    if value < 0:
        raise InvalidInput("the 'timeout' parameter must not be negative")
    return value / 1e6 if value else None


def _model_name(name: str) -> str:
    if not name:
        raise InvalidInput("model_name is required")
    return name


def _data_type(dtype: Any) -> int:
    datatype = v2_datatype(dtype)
    return mc.TYPE_STRING if datatype == "BYTES" else int(mc.DataType.Value(f"TYPE_{datatype}"))
