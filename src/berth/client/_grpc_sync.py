"""The blocking gRPC client: V2 ``inference.GRPCInferenceService`` and ``berth.v1``."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import grpc
import numpy as np

from ..grpc.generated import grpc_service_pb2 as v2
from ..grpc.generated.berth.v1 import berth_pb2 as bv1
from ..grpc.generated.berth.v1.berth_pb2_grpc import InferenceServiceStub
from ..grpc.generated.grpc_service_pb2_grpc import GRPCInferenceServiceStub
from . import _grpc_common as common
from ._common import StreamError

_DEFAULT: Any = object()


class GrpcClient:
    """berth over gRPC: tensors travel as raw bytes and come back as numpy arrays.

    >>> with GrpcClient("127.0.0.1:50051", api_key="data-key-1") as client:
    ...     client.infer("digits", {"input": np.zeros((1, 28, 28), np.float32)})["probs"]

    ``timeout`` (seconds) is each unary call's deadline, streams have none unless given;
    a failed call raises :class:`~berth.client.GrpcError` (a ``BerthClientError``).
    """

    def __init__(self, target: str = common.DEFAULT_GRPC_TARGET, *, timeout: float | None = 30.0, api_key: str | None = None,
                 admin_token: str | None = None, metadata: Mapping[str, str] | None = None, max_message_size_mb: float = 50,
                 credentials: grpc.ChannelCredentials | None = None, options: Sequence[tuple[str, Any]] | None = None) -> None:
        self.target = common.channel_target(target)
        self.timeout = timeout
        settings = common.channel_options(max_message_size_mb, options)
        if credentials is not None:
            self._channel = grpc.secure_channel(self.target, credentials, options=settings)
        else:
            self._channel = grpc.insecure_channel(self.target, options=settings)
        self._metadata = common.call_metadata(api_key, admin_token, metadata)
        self._v2 = GRPCInferenceServiceStub(self._channel)
        self._berth = InferenceServiceStub(self._channel)
        self._items: dict[tuple[str, str], tuple[np.dtype, tuple[int, ...] | None]] = {}

    def __enter__(self) -> "GrpcClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., Any], request: Any, timeout: float | None = _DEFAULT) -> Any:
        deadline = self.timeout if timeout is _DEFAULT else timeout
        try:
            return method(request, timeout=deadline, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise common.grpc_error(exc, deadline) from None

    # ── health and models ─────────────────────────────────────────────────
    def health_check(self) -> dict[str, Any]:
        """V2 ServerLive and ServerReady with berth.v1 Health's fields."""
        live = self._call(self._v2.ServerLive, v2.ServerLiveRequest())
        ready = self._call(self._v2.ServerReady, v2.ServerReadyRequest())
        return common.health_answer(live, ready, self._call(self._berth.Health, bv1.HealthRequest()))

    def model_metadata(self, model: str, version: str | None = None) -> dict[str, Any]:
        """V2 metadata: ``name``, ``versions``, ``platform``, ``inputs``/``outputs`` (name, datatype, shape)."""
        return common.message_dict(self._call(self._v2.ModelMetadata, v2.ModelMetadataRequest(name=model, version=version or "")))

    def list_models(self) -> list[dict[str, Any]]:
        return common.message_dict(self._call(self._berth.ListModels, bv1.ListModelsRequest()))["models"]  # type: ignore[no-any-return]

    def load_model(self, model: str, version: str | None = None, *, timeout: float | None = _DEFAULT) -> dict[str, Any]:
        return common.message_dict(self._call(self._berth.LoadModel, bv1.LoadModelRequest(model_id=model, version=version or ""), timeout))

    def unload_model(self, model: str, version: str | None = None) -> dict[str, Any]:
        return common.message_dict(self._call(self._berth.UnloadModel, bv1.UnloadModelRequest(model_id=model, version=version or "")))

    def model_stats(self, model: str | None = None) -> dict[str, Any]:
        """seed 004's statistics: ``models`` (one row per version) and ``server``."""
        return common.message_dict(self._call(self._berth.GetModelStats, bv1.GetModelStatsRequest(model_id=model or "")))

    # ── inference ─────────────────────────────────────────────────────────
    def infer(self, model: str, inputs: common.Inputs, version: str | None = None, outputs: Iterable[str] | None = None,
              *, timeout: float | None = _DEFAULT) -> dict[str, np.ndarray]:
        """V2 ModelInfer: ``{name: array}`` in, ``{name: array}`` out (read-only arrays
        over the received bytes; ``outputs`` picks some by name)."""
        request = common.infer_request(model, inputs, version, outputs)
        return common.infer_answer(self._call(self._v2.ModelInfer, request, timeout))

    def infer_stream(self, model: str, inputs: Iterable[common.Inputs], version: str | None = None,
                     outputs: Iterable[str] | None = None, *, timeout: float | None = None,
                     return_errors: bool = False) -> Iterator[dict[str, np.ndarray] | StreamError]:
        """Bidirectional ModelStreamInfer: one answer per input dict, in order, while
        ``inputs`` is still being read. A request the server refuses raises
        :class:`StreamError` (or is yielded as one with ``return_errors``). Leaving
        the loop early cancels the call."""
        names = list(outputs or ())
        failure: list[BaseException] = []

        def requests() -> Iterator[v2.ModelInferRequest]:
            try:
                for index, item in enumerate(inputs):
                    yield common.infer_request(model, item, version, names, str(index))
            except Exception as exc:  # noqa: BLE001 - raised in the caller's thread below
                failure.append(exc)

        call = self._v2.ModelStreamInfer(requests(), timeout=timeout, metadata=self._metadata)
        try:
            for index, response in enumerate(call):
                yield common.stream_answer(response, index, return_errors)
        except grpc.RpcError as exc:
            raise common.grpc_error(exc, timeout) from None
        finally:
            call.cancel()
        if failure:
            raise failure[0]

    def infer_batch(self, model_id: str, visual: Any, audio: Any = None, *, version: str | None = None,
                    timeout: float | None = _DEFAULT) -> dict[str, Any]:
        """berth.v1 InferBatch in seed 003's form: float32 ``visual`` ``[B, ...]`` and
        ``audio`` (``[B, ...]`` or one item for the whole batch). ``outputs`` in the
        answer is the model's first output as one ``[B, *item]`` array."""
        request = common.seed_batch_request(model_id, visual, audio, version)
        response = self._call(self._berth.InferBatch, request, timeout)
        return common.seed_batch_answer(response, *self._output_item(model_id, version))

    def _output_item(self, model: str, version: str | None) -> tuple[np.dtype, tuple[int, ...] | None]:
        key = (model, version or "")
        if key not in self._items:
            self._items[key] = common.output_item(self.model_metadata(model, version))
        return self._items[key]
