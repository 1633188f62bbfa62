"""Seed 001's real-time EMG API over the Engine.

| route | what |
|---|---|
| ``POST /infer`` with ``{batch, channels, length, steps}`` | PyTorch backend (dispatched here from the seed-000 ``/infer`` handler by the body's keys) |
| ``POST /infer/tensorrt`` | the accelerated backend (``TENSORRT_ENGINE`` model, else onnxruntime's fastest provider) |
| ``POST /infer/stream`` | SSE stream of predictions on the signal source (:mod:`.emg_stream`) |
| ``GET /infer/stream/stats`` | source settings and throughput/latency measured by the engine |
| ``POST /benchmark`` | mean/median/p99/throughput per backend |
| ``GET /ws/infer`` | WebSocket: one prediction per window the client sends (:mod:`.emg_ws`) |
| ``GET /dashboard`` | a small page that starts/stops a stream and shows predictions |

Seed 001 answered ``/infer`` and ``/infer/tensorrt`` with numbers as strings
(``"latency_ms": "2.456"``); berth keeps that shape. ``GET /health`` gains the seed's
``tensorrt_available`` and ``emg_mode`` through :meth:`EmgApi.health_fields`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from ..engine import Engine, Prediction
from ..errors import InvalidInput, ModelNotFound
from ..streaming import make_hub
from ..streaming.preprocess import softmax_rows
from .body import model_name, read_json_object
from .disconnect import ClientDisconnected, cancel_on_disconnect
from .emg_common import BACKEND_KEYS, Backends, CpuGauge, WindowBank, number
from .emg_stream import StreamApi
from .emg_ws import WindowSocket
from .errors import REQUEST_ID_HEADER, json_response, request_id, scope_request_id
from .fastlane import AsgiEndpoint, send_json

_DASHBOARD = Path(__file__).resolve().parent.parent / "web" / "dashboard.html"
_DASHBOARD_CSP = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; form-action 'none'"
_MAX_STEPS = 100
_SMALL_BODY = 16 * 1024


class EmgApi:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.emg = engine.config.emg
        self.backends = Backends(engine, self.emg)
        self.cpu = CpuGauge()
        self.hub = make_hub(engine.config)
        self.windows = WindowBank(self.emg.window, self.emg.channels, self.emg.fs)
        self.stream = StreamApi(engine, self.backends, self.hub, self.cpu)
        self.socket = WindowSocket(engine, self.backends)
        self._benchmark_lock = asyncio.Lock()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/infer/tensorrt", self.infer_accelerated, methods=["POST"]),
            Route("/infer/stream", AsgiEndpoint(self.stream, lane_errors=True), methods=["POST"]),
            Route("/infer/stream/stats", self.stream_stats, methods=["GET"]),
            Route("/benchmark", self.benchmark, methods=["POST"]),
            Route("/dashboard", self.dashboard, methods=["GET"]),
            WebSocketRoute("/ws/infer", self.socket),
        ]

    def health_fields(self) -> dict[str, Any]:
        return {"tensorrt_available": self.backends.tensorrt_available(), "emg_mode": self.emg.mode}

    @staticmethod
    def is_seed001_body(body: dict[str, Any]) -> bool:
        """Seed 001's ``/infer`` body (``channels``/``length``/``steps``), not seed 000's (``input``/``image``)."""
        return "input" not in body and "image" not in body and any(k in body for k in ("channels", "length", "steps"))

    # ── single inference ───────────────────────────────────────────────────
    def _windows(self, body: dict[str, Any]) -> np.ndarray:
        batch = number(body, "batch", 1, low=1, high=self.emg.max_batch, integer=True)
        channels = number(body, "channels", self.emg.channels, low=1, high=1 << 16, integer=True)
        length = number(body, "length", self.emg.window, low=1, high=1 << 20, integer=True)
        if (length, channels) != (self.emg.window, self.emg.channels):
            raise InvalidInput(
                f"the EMG model takes windows of length {self.emg.window} with {self.emg.channels} channels; "
                f"got length {length}, channels {channels}"
            )
        return self.windows.take(batch)

    async def _run(self, model: str, windows: np.ndarray, receive: Receive) -> tuple[Prediction, float]:
        started = time.perf_counter()
        # the model's one input is found under the lease the inference takes anyway
        prediction = await cancel_on_disconnect(receive, self.engine.infer_values(model, windows, batched=True))
        return prediction, (time.perf_counter() - started) * 1000.0

    async def infer_seed001(self, scope: Scope, receive: Receive, send: Send, body: dict[str, Any]) -> int:
        """``POST /infer`` with seed 001's body: ``steps`` runs of the PyTorch backend.

        berth's models do not spike: ``spikes`` counts positive output activations over
        all steps (the seed's field, kept so its clients parse the answer)."""
        steps = number(body, "steps", 1, low=1, high=_MAX_STEPS, integer=True)
        model = model_name(body) or self.backends.model("pytorch")
        total_ms = 0.0
        spikes = 0
        prediction = None
        for _ in range(steps):
            prediction, latency_ms = await self._run(model, self._windows(body), receive)
            total_ms += latency_ms
            spikes += int((next(iter(prediction.outputs.values())) > 0).sum())
        assert prediction is not None
        logits = next(iter(prediction.outputs.values()))
        payload = {
            "latency_ms": f"{total_ms:.3f}",
            "spikes": f"{float(spikes):.1f}",
            "cpu_percent": f"{self.cpu.read():.1f}",
            "shape": str(list(logits.shape)),
            "backend": self.backends.label(prediction),
            "model": prediction.model,
        }
        return await send_json(send, 200, orjson.dumps(payload), scope_request_id(scope))

    async def infer_accelerated(self, request: Request) -> Response:
        body = await read_json_object(request, _SMALL_BODY)
        model = model_name(body) or self.backends.model("accelerated")
        try:
            prediction, latency_ms = await self._run(model, self._windows(body), request.receive)
        except ClientDisconnected:
            return Response(status_code=499)
        logits = next(iter(prediction.outputs.values()))
        probs = softmax_rows(logits)[0]
        top = int(probs.argmax())
        return json_response(request, {
            "latency_ms": f"{latency_ms:.3f}",
            "prediction": str(top),
            "confidence": f"{float(probs[top]):.4f}",
            "cpu_percent": f"{self.cpu.read():.1f}",
            "shape": str(list(logits.shape)),
            "backend": self.backends.label(prediction),
            "model": prediction.model,
        })

    # ── stats and benchmark ────────────────────────────────────────────────
    async def stream_stats(self, request: Request) -> Response:
        model = self.backends.model("accelerated")
        measured: dict[str, Any] = {"model": model, "inference_count": 0}
        throughput = latency = None
        entry = self.engine.registry.entries.get((model, self.engine.registry.specs[model].default_version)) if model in self.engine.registry.specs else None
        if entry is not None:
            stats = entry.stats.to_dict()
            measured.update({k: stats[k] for k in ("inference_count", "batches", "mean_batch_size", "mean_inference_ms", "mean_queue_ms")})
            if stats["mean_inference_ms"]:
                # one worker: rows per model call / time per call, as the engine measured them
                throughput = round(stats["mean_batch_size"] / (stats["mean_inference_ms"] / 1000.0), 2)
                latency = round(stats["mean_inference_ms"] + (stats["mean_queue_ms"] or 0.0), 4)
        return json_response(request, {
            "tensorrt_available": self.backends.tensorrt_available(),
            "emg_mode": self.emg.mode,
            "emg_window_size": self.emg.window,
            "emg_channels": self.emg.channels,
            "emg_sampling_rate": self.emg.fs,
            "max_throughput_qps": throughput,
            "expected_latency_ms": latency,
            "measured_from": measured,
            "active_streams": self.stream.open_streams,
            "max_streams": self.emg.max_streams,
            "max_fps": self.emg.max_fps,
            "source": self.hub.state,
            "tensorrt_engine_problem": self.backends.tensorrt_engine_problem(),
        })

    async def benchmark(self, request: Request) -> Response:
        body: dict[str, Any] = dict(request.query_params)
        for key in ("num_iterations", "batch_size"):
            if key in body:
                try:
                    body[key] = int(body[key])
                except ValueError:
                    raise InvalidInput(f"'{key}' must be an integer") from None
        if request.headers.get("content-length", "0") != "0":
            body.update(await read_json_object(request, _SMALL_BODY))
        iterations = number(body, "num_iterations", 1000, low=1, high=self.emg.max_benchmark_iterations, integer=True)
        batch = number(body, "batch_size", 1, low=1, high=self.emg.max_batch, integer=True)
        windows = self.windows.take(batch)
        try:
            async with self._benchmark_lock:
                results = await cancel_on_disconnect(request.receive, self._benchmark(iterations, windows))
        except ClientDisconnected:
            return Response(status_code=499)
        results["tensorrt"] = results["accelerated"]  # seed 001's key; its "backend" says what ran
        results.update({"num_iterations": iterations, "batch_size": batch})
        return json_response(request, results)

    async def _benchmark(self, iterations: int, windows: np.ndarray) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for key in BACKEND_KEYS:
            model = self.backends.model(key)
            try:
                signature = await self.engine.signature(model)
            except ModelNotFound:
                results[key] = {"model": model, "error": f"model '{model}' is not available"}
                continue
            feeds = {signature.inputs[0].name: windows}
            for _ in range(min(10, iterations)):  # warm-up, not counted
                prediction = await self.engine.infer(model, feeds)
            times = np.empty(iterations)
            started = time.perf_counter()
            for i in range(iterations):
                t0 = time.perf_counter()
                prediction = await self.engine.infer(model, feeds)
                times[i] = time.perf_counter() - t0
            wall = time.perf_counter() - started
            times *= 1000.0
            results[key] = {
                "model": model,
                "backend": self.backends.label(prediction),
                "mean_latency_ms": round(float(times.mean()), 4),
                "median_latency_ms": round(float(np.median(times)), 4),
                "p99_latency_ms": round(float(np.percentile(times, 99)), 4),
                "throughput_qps": round(iterations * len(windows) / wall, 2),
            }
        return results

    async def dashboard(self, request: Request) -> Response:
        html = await asyncio.to_thread(_DASHBOARD.read_bytes)
        return Response(html, media_type="text/html; charset=utf-8", headers={
            "content-security-policy": _DASHBOARD_CSP, "cache-control": "no-cache", REQUEST_ID_HEADER: request_id(request),
        })
