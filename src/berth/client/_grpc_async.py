"""The asyncio gRPC client (``grpc.aio``): the same methods as :class:`~berth.client.GrpcClient`, awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from grpc import aio

from ..grpc.generated import grpc_service_pb2 as v2
from ..grpc.generated.berth.v1 import berth_pb2 as bv1
from ..grpc.generated.berth.v1.berth_pb2_grpc import InferenceServiceStub
from ..grpc.generated.grpc_service_pb2_grpc import GRPCInferenceServiceStub
from . import _grpc_common as common
from ._common import StreamError

_DEFAULT: Any = object()


class AsyncGrpcClient:
    def __init__(self, target: str = common.DEFAULT_GRPC_TARGET, *, timeout: float | None = 30.0, api_key: str | None = None,
                 admin_token: str | None = None, metadata: Mapping[str, str] | None = None, max_message_size_mb: float = 50,
                 credentials: grpc.ChannelCredentials | None = None, options: Sequence[tuple[str, Any]] | None = None) -> None:
        self.target = common.channel_target(target)
        self.timeout = timeout
        settings = common.channel_options(max_message_size_mb, options)
        if credentials is not None:
            self._channel = aio.secure_channel(self.target, credentials, options=settings)
        else:
            self._channel = aio.insecure_channel(self.target, options=settings)
        self._metadata = common.call_metadata(api_key, admin_token, metadata)
        self._v2 = GRPCInferenceServiceStub(self._channel)
        self._berth = InferenceServiceStub(self._channel)
        self._items: dict[tuple[str, str], tuple[np.dtype, tuple[int, ...] | None]] = {}

    async def __aenter__(self) -> "AsyncGrpcClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any, timeout: float | None = _DEFAULT) -> Any:
        deadline = self.timeout if timeout is _DEFAULT else timeout
        try:
            return await method(request, timeout=deadline, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise common.grpc_error(exc, deadline) from None

    # ── health and models ─────────────────────────────────────────────────
    async def health_check(self) -> dict[str, Any]:
        live, ready, health = await asyncio.gather(
            self._call(self._v2.ServerLive, v2.ServerLiveRequest()),
            self._call(self._v2.ServerReady, v2.ServerReadyRequest()),
            self._call(self._berth.Health, bv1.HealthRequest()),
        )
        return common.health_answer(live, ready, health)

    async def model_metadata(self, model: str, version: str | None = None) -> dict[str, Any]:
        return common.message_dict(await self._call(self._v2.ModelMetadata, v2.ModelMetadataRequest(name=model, version=version or "")))

    async def list_models(self) -> list[dict[str, Any]]:
        return common.message_dict(await self._call(self._berth.ListModels, bv1.ListModelsRequest()))["models"]  # type: ignore[no-any-return]

    async def load_model(self, model: str, version: str | None = None, *, timeout: float | None = _DEFAULT) -> dict[str, Any]:
        return common.message_dict(await self._call(self._berth.LoadModel, bv1.LoadModelRequest(model_id=model, version=version or ""), timeout))

    async def unload_model(self, model: str, version: str | None = None) -> dict[str, Any]:
        return common.message_dict(await self._call(self._berth.UnloadModel, bv1.UnloadModelRequest(model_id=model, version=version or "")))

    async def model_stats(self, model: str | None = None) -> dict[str, Any]:
        return common.message_dict(await self._call(self._berth.GetModelStats, bv1.GetModelStatsRequest(model_id=model or "")))

    # ── inference ─────────────────────────────────────────────────────────
    async def infer(self, model: str, inputs: common.Inputs, version: str | None = None, outputs: Iterable[str] | None = None,
                    *, timeout: float | None = _DEFAULT) -> dict[str, np.ndarray]:
        request = common.infer_request(model, inputs, version, outputs)
        return common.infer_answer(await self._call(self._v2.ModelInfer, request, timeout))

    async def infer_stream(self, model: str, inputs: Iterable[common.Inputs] | AsyncIterable[common.Inputs],
                           version: str | None = None, outputs: Iterable[str] | None = None, *, timeout: float | None = None,
                           return_errors: bool = False) -> AsyncIterator[dict[str, np.ndarray] | StreamError]:
        """As :meth:`GrpcClient.infer_stream`; ``inputs`` may be an async iterable."""
        names = list(outputs or ())
        failure: list[BaseException] = []

        async def requests() -> AsyncIterator[v2.ModelInferRequest]:
            try:
                if isinstance(inputs, AsyncIterable):
                    index = 0
                    async for item in inputs:
                        yield common.infer_request(model, item, version, names, str(index))
                        index += 1
                else:
                    for index, item in enumerate(inputs):
                        yield common.infer_request(model, item, version, names, str(index))
            except Exception as exc:  # noqa: BLE001 - raised in the caller's task below
                failure.append(exc)

        call = self._v2.ModelStreamInfer(requests(), timeout=timeout, metadata=self._metadata)
        try:
            index = 0
            async for response in call:
                yield common.stream_answer(response, index, return_errors)
                index += 1
        except grpc.RpcError as exc:
            raise common.grpc_error(exc, timeout) from None
        finally:
            call.cancel()
        if failure:
            raise failure[0]

    async def infer_batch(self, model_id: str, visual: Any, audio: Any = None, *, version: str | None = None,
                          timeout: float | None = _DEFAULT) -> dict[str, Any]:
        request = common.seed_batch_request(model_id, visual, audio, version)
        response = await self._call(self._berth.InferBatch, request, timeout)
        return common.seed_batch_answer(response, *await self._output_item(model_id, version))

    async def _output_item(self, model: str, version: str | None) -> tuple[np.dtype, tuple[int, ...] | None]:
        key = (model, version or "")
        if key not in self._items:
            self._items[key] = common.output_item(await self.model_metadata(model, version))
        return self._items[key]
