"""What the sync and async gRPC clients share: channel settings, credentials, the
requests they build, the answers they read and the errors they raise."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import grpc
import numpy as np

from ..grpc.generated import grpc_service_pb2 as v2
from ..grpc.generated.berth.v1 import berth_pb2 as bv1
from . import _grpc_codec as codec
from ._common import GrpcError, StreamError

DEFAULT_GRPC_TARGET = "127.0.0.1:50051"
_MB = 1024 * 1024
_GRPC_MAX_MESSAGE = 2**31 - 1

Inputs = Mapping[str, Any]


def channel_target(target: str) -> str:
    """``host:port`` from ``host:port`` or ``grpc://host:port``."""
    return target.removeprefix("grpc://").rstrip("/")


def channel_options(max_message_size_mb: float, extra: Sequence[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    limit = min(_GRPC_MAX_MESSAGE, int(max_message_size_mb * _MB))
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit), *(extra or ())]


def call_metadata(api_key: str | None, admin_token: str | None, extra: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """``authorization: Bearer <api_key>`` and ``x-admin-token``, as the server reads them."""
    pairs = [(key.lower(), value) for key, value in (extra or {}).items()]
    if api_key:
        pairs.append(("authorization", f"Bearer {api_key}"))
    if admin_token:
        pairs.append(("x-admin-token", admin_token))
    return tuple(pairs)


def grpc_error(exc: grpc.RpcError, timeout: float | None) -> GrpcError:
    code_of = getattr(exc, "code", None)
    code = code_of() if callable(code_of) else None
    name = code.name if code is not None else "UNKNOWN"
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    message = details or str(exc)
    if name == "DEADLINE_EXCEEDED" and message == "Deadline Exceeded" and timeout is not None:
        message = f"no answer within the call's timeout of {timeout:g} s"
    retry_after = None
    trailing = exc.trailing_metadata() if callable(getattr(exc, "trailing_metadata", None)) else None
    for key, value in trailing or ():
        if key == "retry-after":
            try:
                retry_after = float(value)
            except ValueError:
                pass
    return GrpcError(name, message, retry_after)


# ── requests ──────────────────────────────────────────────────────────────
def infer_request(model: str, inputs: Inputs, version: str | None, outputs: Iterable[str] | None, request_id: str = "") -> v2.ModelInferRequest:
    if not inputs:
        raise ValueError("give at least one input")
    request = v2.ModelInferRequest(model_name=model, model_version=version or "", id=request_id)
    for name, value in inputs.items():
        datatype, array = codec.as_tensor(name, value)
        request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(codec.to_raw(datatype, array))
    for name in outputs or ():
        request.outputs.add(name=name)
    return request


def seed_batch_request(model: str, visual: Any, audio: Any, version: str | None) -> bv1.InferBatchRequest:
    """seed 003's InferBatch: float32 bytes, ``batch_size`` items of ``visual``."""
    frames = np.asarray(visual, dtype=np.float32)
    if frames.ndim < 1 or frames.shape[0] < 1:
        raise ValueError("visual must hold at least one item (batch dimension first)")
    request = bv1.InferBatchRequest(model_id=model, version=version or "", batch_size=frames.shape[0], visual_frames=codec.to_raw("FP32", frames))
    if audio is not None:
        request.audio_features = codec.to_raw("FP32", np.asarray(audio, dtype=np.float32))
    return request


# ── answers ───────────────────────────────────────────────────────────────
def infer_answer(response: v2.ModelInferResponse) -> dict[str, np.ndarray]:
    raw = response.raw_output_contents
    if len(raw) != len(response.outputs):
        raise GrpcError("DATA_LOSS", f"the answer holds {len(raw)} raw outputs for {len(response.outputs)} outputs")
    return {tensor.name: codec.from_raw(tensor.name, tensor.datatype, tensor.shape, raw[i]) for i, tensor in enumerate(response.outputs)}


def stream_answer(response: v2.ModelStreamInferResponse, index: int, return_errors: bool) -> dict[str, np.ndarray] | StreamError:
    if response.error_message:
        error = StreamError(f"request {index} of the stream failed: {response.error_message}", {"index": index, "error": response.error_message})
        if return_errors:
            return error
        raise error
    return infer_answer(response.infer_response)


def health_answer(live: v2.ServerLiveResponse, ready: v2.ServerReadyResponse, health: bv1.HealthResponse) -> dict[str, Any]:
    answer = message_dict(health)
    answer.update(live=live.live, ready=ready.ready, status="ok" if live.live and ready.ready else "not ready")
    return answer


def output_item(metadata: dict[str, Any]) -> tuple[np.dtype, tuple[int, ...] | None]:
    """dtype and item shape of a model's first output (None: not fixed)."""
    first = metadata["outputs"][0]
    item = tuple(int(d) for d in first["shape"][1:])
    return np.dtype(codec.V2_TO_NUMPY.get(first["datatype"], np.float32)), (None if any(d < 0 for d in item) else item)


def seed_batch_answer(response: bv1.InferBatchResponse, dtype: np.dtype, item: tuple[int, ...] | None) -> dict[str, Any]:
    """seed 003's answer, with its per-item raw regions as one ``[batch, *item]`` array."""
    answer = message_dict(response, skip=("outputs", "tensors"))
    count = len(response.outputs)
    flat = np.frombuffer(b"".join(region.data for region in response.outputs), dtype=dtype.newbyteorder("<"))
    if item is None:
        item = (flat.size // count,) if count else (0,)
    answer["outputs"] = flat.reshape((count, *item))
    return answer


def message_dict(message: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A protobuf message as a dict of plain values, every field present (int64 stays an int)."""
    result: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if field.name in skip:
            continue
        value = getattr(message, field.name)
        if field.message_type is not None:
            value = [message_dict(item) for item in value] if field.is_repeated else message_dict(value)
        elif field.is_repeated:
            value = list(value)
        result[field.name] = value
    return result
