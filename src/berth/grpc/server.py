"""Start and stop the gRPC server on the running event loop, beside the HTTP one.

One ``grpc.aio`` server carries the V2 service (``inference.GRPCInferenceService``),
``berth.v1.InferenceService`` and ``grpc.health.v1.Health``, behind the same
credentials as HTTP (:mod:`.auth`). It must run on the loop
the Engine was started on (the Engine's queues and batchers belong to that loop), so
:func:`start_grpc` is awaited from the HTTP app's lifespan, after the Engine starts.
"""

from __future__ import annotations

import logging

from grpc import aio
from grpc_health.v1 import health_pb2_grpc

from ..config import BerthConfig
from ..engine import Engine
from .auth import AuthInterceptor
from .berth_service import BerthServicer
from .generated import grpc_service_pb2_grpc
from .generated.berth.v1 import berth_pb2_grpc
from .health import HealthReporter
from .v2_service import V2Servicer

log = logging.getLogger("berth.grpc")

_MB = 1024 * 1024
#: gRPC's own ceiling for one message
_GRPC_MAX_MESSAGE = 2**31 - 1


class GrpcBindError(RuntimeError):
    """The gRPC port could not be bound (in use, or the host is not local)."""


class GrpcServer:
    """The running ``grpc.aio.Server`` (``.server``), its bound port, and the health
    poller that must stop with it."""

    def __init__(self, server: aio.Server, health: HealthReporter, address: str, port: int) -> None:
        self.server = server
        self.health = health
        self.address = address
        self.port = port

    async def stop(self, grace_s: float | None) -> None:
        """Report NOT_SERVING, refuse new calls, let running ones finish for ``grace_s``."""
        await self.health.stop()
        await self.server.stop(grace_s)
        log.info("gRPC server on %s stopped", self.address)


def server_options(config: BerthConfig) -> list[tuple[str, int]]:
    limit = min(_GRPC_MAX_MESSAGE, int(config.server.max_message_size_mb * _MB))
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        # gRPC turns SO_REUSEPORT on by default, which lets a second server bind the
        # same port silently and split the traffic; a taken port must fail instead
        ("grpc.so_reuseport", 0),
    ]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def start_grpc(engine: Engine, config: BerthConfig) -> GrpcServer:
    """Serve the gRPC services on ``server.host:server.grpc_port`` (port 0: any free one)."""
    server = aio.server(interceptors=[AuthInterceptor(config, engine.quotas)], options=server_options(config))
    grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(V2Servicer(engine), server)
    berth_pb2_grpc.add_InferenceServiceServicer_to_server(BerthServicer(engine), server)
    health = HealthReporter(engine)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    address = _address(config.server.host, config.server.grpc_port)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises RuntimeError when the bind fails
        raise GrpcBindError(f"cannot listen for gRPC on {address}: {exc}") from None
    if port == 0:
        raise GrpcBindError(f"cannot listen for gRPC on {address}")
    await server.start()
    await health.start()
    bound = _address(config.server.host, port)
    log.info("berth gRPC on %s", bound)
    return GrpcServer(server, health, bound, port)

