"""Who may call which RPC: the gRPC twin of ``berth.http.security``.

Every RPC is classified once, in :data:`METHOD_CLASSES` (an RPC not listed counts as
``admin``):

* ``public``: liveness, readiness and ``grpc.health.v1`` — always open;
* ``data``: inference and read-only model information — open, or behind
  ``auth.api_keys`` when keys are configured (metadata ``authorization: Bearer <key>``
  or ``x-api-key: <key>``; the admin token is accepted too);
* ``admin``: loading, unloading and the repository — behind ``auth.admin_token``
  (``authorization: Bearer <token>`` or ``x-admin-token``), or, when no admin token
  is set, open to loopback peers only.

Refusals are ``UNAUTHENTICATED`` (missing or wrong credentials) and
``PERMISSION_DENIED`` (management from a non-loopback peer without an admin token),
through the one status table in :mod:`.errors`. Secrets are compared in constant
time and never logged.
"""

from __future__ import annotations

import ipaddress
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable
from urllib.parse import unquote

import grpc
from grpc import aio

from ..config import BerthConfig
from ..credentials import matching_key
from ..errors import BerthError, Forbidden, QuotaExceeded, Unauthorized
from ..quotas import KeyQuotas
from .errors import abort

PUBLIC, DATA, ADMIN = "public", "data", "admin"

_V2 = "/inference.GRPCInferenceService/"
_BERTH = "/berth.v1.InferenceService/"
METHOD_CLASSES: dict[str, str] = {
    "/grpc.health.v1.Health/Check": PUBLIC,
    "/grpc.health.v1.Health/Watch": PUBLIC,
    _V2 + "ServerLive": PUBLIC,
    _V2 + "ServerReady": PUBLIC,
    _BERTH + "Health": PUBLIC,
    _V2 + "ModelReady": DATA,
    _V2 + "ServerMetadata": DATA,
    _V2 + "ModelMetadata": DATA,
    _V2 + "ModelInfer": DATA,
    _V2 + "ModelStreamInfer": DATA,
    _V2 + "ModelConfig": DATA,
    _V2 + "ModelStatistics": DATA,
    _V2 + "SystemSharedMemoryStatus": DATA,
    _V2 + "CudaSharedMemoryStatus": DATA,
    _BERTH + "InferBatch": DATA,
    _BERTH + "ListModels": DATA,
    _BERTH + "GetModelStats": DATA,
    _V2 + "RepositoryIndex": ADMIN,
    _V2 + "RepositoryModelLoad": ADMIN,
    _V2 + "RepositoryModelUnload": ADMIN,
    _BERTH + "LoadModel": ADMIN,
    _BERTH + "UnloadModel": ADMIN,
    # answered UNIMPLEMENTED (or as no-ops), and changing server state if they ever do work
    _V2 + "SystemSharedMemoryRegister": ADMIN,
    _V2 + "SystemSharedMemoryUnregister": ADMIN,
    _V2 + "CudaSharedMemoryRegister": ADMIN,
    _V2 + "CudaSharedMemoryUnregister": ADMIN,
    _V2 + "TraceSetting": ADMIN,
    _V2 + "LogSettings": ADMIN,
}

def peer_is_loopback(peer: str) -> bool:
    """``ipv4:127.0.0.1:5000``, ``ipv6:%5B::1%5D:5000`` (gRPC's peer strings) → True."""
    kind, _, address = peer.partition(":")
    if kind == "unix":
        return True  # a local socket: only this machine can reach it
    if kind == "ipv4":
        host = address.rsplit(":", 1)[0]
    elif kind == "ipv6":
        address = unquote(address)
        host = address[1 : address.find("]")] if address.startswith("[") else address.rsplit(":", 1)[0]
    else:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AuthInterceptor(aio.ServerInterceptor):
    def __init__(self, config: BerthConfig, quotas: KeyQuotas | None = None) -> None:
        auth = config.auth
        self._api_keys = [key.get_secret_value().encode() for key in auth.api_keys]
        self._admin = auth.admin_token.get_secret_value().encode() if auth.admin_token else None
        self._quotas = quotas

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method_class = METHOD_CLASSES.get(details.method, ADMIN)
        if handler is None or method_class == PUBLIC or (method_class == DATA and not self._api_keys):
            return handler
        refusal = self._refusal(method_class, details.invocation_metadata or ())
        return _checked(handler, details.method, refusal)

    def _refusal(self, method_class: str, metadata: Iterable[Any]) -> Callable[[str], BerthError | None]:
        """What to refuse the call with, given its peer; decided once the peer is known."""
        bearer = api_key = admin_header = None
        for key, value in metadata:
            if key == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
                bearer = value[7:].strip().encode()
            elif key == "x-api-key" and isinstance(value, str):
                api_key = value.encode()
            elif key == "x-admin-token" and isinstance(value, str):
                admin_header = value.encode()
        admin_ok = self._admin is not None and matching_key((self._admin,), bearer, admin_header) is not None
        if method_class == DATA:
            if admin_ok:
                return lambda peer: None
            key = matching_key(self._api_keys, bearer, api_key)
            if key is None:
                missing = Unauthorized("this RPC needs an API key (metadata 'authorization: Bearer <key>' or 'x-api-key')")
                return lambda peer: missing
            quotas = self._quotas

            def spend(peer: str) -> BerthError | None:
                wait = quotas.take(key) if quotas is not None else None
                if wait is None:
                    return None
                return QuotaExceeded("this API key is over its request quota (auth.quota_rps); retry later", retry_after_s=wait)

            return spend
        if self._admin is not None:
            error = None if admin_ok else Unauthorized("this RPC needs the admin token (metadata 'authorization: Bearer <token>' or 'x-admin-token')")
            return lambda peer: error
        forbidden = Forbidden("management is allowed from loopback only when no admin token is configured")
        return lambda peer: None if peer_is_loopback(peer) else forbidden


def _checked(handler: grpc.RpcMethodHandler, method: str, refusal: Callable[[str], BerthError | None]) -> grpc.RpcMethodHandler:
    """``handler`` behind the check (the peer is only known inside the call)."""
    where = method.rsplit("/", 1)[-1]

    async def check(context: aio.ServicerContext) -> None:
        error = refusal(context.peer())
        if error is not None:
            await abort(context, error, where)

    if handler.unary_unary is not None:
        inner_unary = handler.unary_unary

        async def unary_unary(request: Any, context: aio.ServicerContext) -> Any:
            await check(context)
            return await inner_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
    if handler.stream_stream is not None:
        inner_stream = handler.stream_stream

        async def stream_stream(requests: AsyncIterator[Any], context: aio.ServicerContext) -> AsyncIterator[Any]:
            await check(context)
            async for response in inner_stream(requests, context):
                yield response

        return grpc.stream_stream_rpc_method_handler(
            stream_stream, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
    raise TypeError(f"{method}: no auth wrapper for this kind of RPC")  # none of berth's non-public RPCs
