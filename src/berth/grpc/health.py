"""The standard ``grpc.health.v1.Health`` service, following the Engine's readiness.

Load balancers and Kubernetes gRPC probes ask this service, not berth's own RPCs.
The overall status (service ``""``) and each berth service report ``SERVING`` while
the Engine is ready (every preloaded model loaded) and ``NOT_SERVING`` otherwise; a
small task re-reads readiness every :data:`POLL_S` seconds, so ``Watch`` streams see
changes. On shutdown every status turns ``NOT_SERVING`` before the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from ..engine import Engine

log = logging.getLogger("berth.grpc")

POLL_S = 1.0
SERVICES = ("", "inference.GRPCInferenceService", "berth.v1.InferenceService")


class HealthReporter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.servicer = health_aio.HealthServicer()
        self._serving: bool | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._poll(), name="berth-grpc-health")

    async def refresh(self) -> None:
        serving = bool(self.engine.health()["ready"])
        if serving == self._serving:
            return
        self._serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in SERVICES:
            await self.servicer.set(service, status)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - a probe must never take the server down
                log.exception("health refresh failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.servicer.enter_graceful_shutdown()
