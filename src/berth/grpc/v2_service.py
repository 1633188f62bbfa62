"""``inference.GRPCInferenceService``: the KServe V2 protocol with Triton's extensions.

Each method parses its request into Engine arguments, awaits the Engine and encodes
the answer; failures leave through the one status table in :mod:`.errors`. Outputs
always travel in ``raw_output_contents`` (what the stock Triton clients read first);
inputs are accepted raw or as typed ``contents``.

ModelMetadata, ModelConfig, ModelStatistics and RepositoryIndex answer with the
documents the HTTP API serves (:mod:`berth.http.v2.metadata`), parsed into the
messages with ``json_format.ParseDict``: one builder for both front ends, so they
cannot drift apart.

``ModelStreamInfer`` answers every request of a stream, in order, with one
``ModelStreamInferResponse``; a failed request gets ``error_message`` and the stream
goes on. Up to :data:`STREAM_WINDOW` requests of one stream run at once, so frames a
client pushes back to back can share a dynamic batch.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from google.protobuf import json_format
from grpc import aio

from .. import __version__
from ..engine import Engine, Prediction
from ..errors import InvalidInput, ModelNotFound
from ..http.v2 import metadata
from . import codec
from .common import call_timeout, ready_entry
from .errors import Unimplemented, abort, error_text, guard
from .generated import grpc_service_pb2 as pb
from .generated import grpc_service_pb2_grpc as pb_grpc

#: requests of one stream in flight at once; the stream reads no further ahead
STREAM_WINDOW = 64
#: what ServerMetadata advertises: only what berth implements
EXTENSIONS = ("model_repository", "statistics", "model_configuration")


class V2Servicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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
        model = self.engine.resolve_model(request.name or None)
        document = await metadata.model_document(self.engine, model, request.version or None, metadata.model_metadata)
        return json_format.ParseDict(document, pb.ModelMetadataResponse())

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
        model = self.engine.resolve_model(request.name or None)
        document = await metadata.model_document(self.engine, model, request.version or None, metadata.model_config)
        return json_format.ParseDict({"config": document}, pb.ModelConfigResponse())

    @guard
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: aio.ServicerContext) -> pb.ModelStatisticsResponse:
        entries = await self.engine.statistics_entries(request.name or None, request.version or None)
        document = {"model_stats": [metadata.model_statistics(entry) for entry in entries]}
        return json_format.ParseDict(document, pb.ModelStatisticsResponse())

    # ── model repository ──────────────────────────────────────────────────
    @guard
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: aio.ServicerContext) -> pb.RepositoryIndexResponse:
        models = metadata.repository_index(self.engine.known_entries(), request.ready)
        return json_format.ParseDict({"models": models}, pb.RepositoryIndexResponse())

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
        await self.engine.unload_model(_model_name(request.model_name))
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
