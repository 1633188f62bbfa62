"""Prometheus ``/metrics``: request counts and latency per route, and the Engine's state.

Per-request numbers are kept in plain dicts by a small ASGI middleware (a dict
increment and a bisect per request: no locks, no label lookups on the hot path) and
turned into metric families only when ``/metrics`` is scraped, together with what the
Engine knows (queue depths, batch sizes, loads, evictions, memory per model and
device). Labels come only from route templates, model names and device ids, never
from raw request paths, so a client cannot grow the label space.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..engine import Engine
from ..histogram import Histogram
from ..registry import ModelState

_UNMATCHED = "<unmatched>"


class RouteMetrics(Histogram):
    """One route template's requests: a latency histogram plus a count per status,
    recorded with one call."""

    __slots__ = ("statuses",)

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[int, int] = {}

    def record(self, status: int, seconds: float) -> None:
        statuses = self.statuses
        statuses[status] = statuses.get(status, 0) + 1
        self.observe(seconds)


class RequestMetrics:
    """ASGI middleware recording method, route template, status and duration.

    The fast lane (:class:`~berth.http.fastlane.FastLane`) sits in front of it and
    records the routes it answers itself, each into the :class:`RouteMetrics` it got
    from :meth:`route` once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes: dict[tuple[str, str], RouteMetrics] = {}

    def route(self, method: str, route: str) -> RouteMetrics:
        metrics = self.routes.get((method, route))
        if metrics is None:
            metrics = self.routes[(method, route)] = RouteMetrics()
        return metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or _UNMATCHED
            self.route(scope["method"], route).record(status[0], time.perf_counter() - started)


class _EngineCollector(Collector):
    def __init__(self, engine: Engine, requests: RequestMetrics) -> None:
        self.engine = engine
        self.http = requests

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily("berth_http_requests", "HTTP requests by route template and status", labels=["method", "route", "status"])
        latency = HistogramMetricFamily("berth_http_request_duration_seconds", "HTTP request duration by route template", labels=["method", "route"])
        for (method, route), metrics in list(self.http.routes.items()):
            for status, count in list(metrics.statuses.items()):
                requests.add_metric([method, route, str(status)], count)
            latency.add_metric([method, route], metrics.buckets(), metrics.total)
        yield requests
        yield latency

        registry = self.engine.registry
        state = GaugeMetricFamily("berth_model_state", "1 for the model's current state", labels=["model", "version", "state"])
        memory = GaugeMetricFamily("berth_model_memory_bytes", "Memory a model holds (measured after load, estimate while loading)", labels=["model", "version", "device"])
        queue = GaugeMetricFamily("berth_model_queue_depth", "Requests waiting in the model's queue", labels=["model", "version"])
        inflight = GaugeMetricFamily("berth_model_inflight", "Requests holding a lease on the model", labels=["model", "version"])
        loads = CounterMetricFamily("berth_model_loads", "Completed model loads", labels=["model", "version"])
        evictions = CounterMetricFamily("berth_model_evictions", "Model evictions (capacity or idle)", labels=["model", "version"])
        inferences = CounterMetricFamily("berth_model_inferences", "Requests served by the model", labels=["model", "version"])
        batches = CounterMetricFamily("berth_model_batches", "Model calls (batches)", labels=["model", "version"])
        rows = CounterMetricFamily("berth_model_batch_rows", "Rows in all batches; divide by batches for the mean batch size", labels=["model", "version"])
        for entry in list(registry.entries.values()):
            labels = [entry.name, entry.version]
            for candidate in ModelState:
                state.add_metric([*labels, candidate.value], 1.0 if entry.state is candidate else 0.0)
            if entry.device is not None:
                memory.add_metric([*labels, entry.device.id], entry.memory_bytes)
            queue.add_metric(labels, entry.batcher.depth if entry.batcher else 0)
            inflight.add_metric(labels, entry.leases)
            stats = entry.stats
            loads.add_metric(labels, stats.loads)
            evictions.add_metric(labels, stats.evictions)
            inferences.add_metric(labels, stats.inference_count)
            batches.add_metric(labels, stats.batches)
            rows.add_metric(labels, stats.batch_rows)
        yield from (state, memory, queue, inflight, loads, evictions, inferences, batches, rows)

        device_memory = GaugeMetricFamily("berth_device_memory_bytes", "Memory held by models on the device", labels=["device"])
        device_limit = GaugeMetricFamily("berth_device_memory_limit_bytes", "The device's memory budget", labels=["device"])
        device_models = GaugeMetricFamily("berth_device_models", "Models resident on the device", labels=["device"])
        for device in self.engine.devices:
            device_memory.add_metric([device.id], device.memory_bytes)
            if device.max_memory_bytes is not None:
                device_limit.add_metric([device.id], device.max_memory_bytes)
            device_models.add_metric([device.id], len(device.models))
        yield from (device_memory, device_limit, device_models)
        yield from _generation_families(registry)
        yield GaugeMetricFamily("berth_inflight_requests", "Requests the Engine is working on", value=self.engine.inflight)
        yield GaugeMetricFamily("berth_ready", "1 when the server is ready", value=1.0 if self.engine.health()["ready"] else 0.0)


def _generation_families(registry: Any) -> Iterator[Any]:
    """Continuous-batching state and per-request TTFT/TPS of resident language models."""
    running = GaugeMetricFamily("berth_generation_running_sequences", "Sequences in the decode batch", labels=["model"])
    waiting = GaugeMetricFamily("berth_generation_waiting_sequences", "Sequences waiting to join the batch", labels=["model"])
    tokens = CounterMetricFamily("berth_generation_tokens", "Tokens processed", labels=["model", "kind"])
    ttft = HistogramMetricFamily("berth_generation_ttft_seconds", "Time to first token", labels=["model"])
    tps = HistogramMetricFamily("berth_generation_tokens_per_second", "Decode speed of each finished sequence", labels=["model"])
    queue = HistogramMetricFamily("berth_generation_queue_seconds", "Time waiting before prefill", labels=["model"])
    for entry in list(registry.entries.values()):
        scheduler = getattr(entry.runtime, "scheduler", None)
        if scheduler is None:
            continue
        stats = scheduler.stats()
        running.add_metric([entry.name], stats["running"])
        waiting.add_metric([entry.name], stats["waiting"])
        tokens.add_metric([entry.name, "prompt"], stats["prompt_tokens"])
        tokens.add_metric([entry.name, "completion"], stats["generated_tokens"])
        for family, histogram in ((ttft, scheduler.ttft), (tps, scheduler.tps), (queue, scheduler.queue_time)):
            family.add_metric([entry.name], histogram.buckets(), histogram.total)
    yield from (running, waiting, tokens, ttft, tps, queue)


def metrics_route(engine: Engine, requests: RequestMetrics) -> Route:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_EngineCollector(engine, requests))

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Route("/metrics", metrics, methods=["GET"])
