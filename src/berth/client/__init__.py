"""berth's Python client: :class:`Client` and :class:`AsyncClient` over HTTP (httpx),
:class:`GrpcClient` and :class:`AsyncGrpcClient` over gRPC (grpcio; imported on first use).

Seed 001's ``StreamingInferenceClient`` is :class:`Client`. ``python -m berth.client``
is the command line (``--stream --duration --fps --no-tensorrt --url --example N``, ``--grpc HOST:PORT``).
"""

from typing import Any

from ._async import AsyncClient
from ._common import DEFAULT_URL, BerthClientError, GrpcError, SseParser, StreamError
from ._sync import Client, StreamingInferenceClient

__all__ = ["DEFAULT_URL", "AsyncClient", "AsyncGrpcClient", "BerthClientError", "Client", "GrpcClient", "GrpcError", "SseParser",
           "StreamError", "StreamingInferenceClient"]


def __getattr__(name: str) -> Any:
    if name == "GrpcClient":
        from ._grpc_sync import GrpcClient
        return GrpcClient
    if name == "AsyncGrpcClient":
        from ._grpc_async import AsyncGrpcClient
        return AsyncGrpcClient
    raise AttributeError(f"module 'berth.client' has no attribute {name!r}")
