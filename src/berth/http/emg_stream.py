"""``POST /infer/stream``: seed 001's server-paced SSE stream of EMG predictions.

Each stream runs three tasks: the *producer* takes a window from the shared
:class:`~berth.streaming.SignalHub` at every frame slot and awaits ``engine.infer``
(concurrent streams meet in the model's batcher, so they share batched calls); the
*writer* sends events to the socket; the *watcher* waits for the client to leave and
then cancels the other two (an in-flight inference is cancelled with them, and the
batcher drops it). Between producer and writer sits a small :class:`SendBuffer`:
when the client reads slower than frames are made, the oldest undelivered frame is
dropped and counted (``dropped_events`` in the next event), so a stalled reader costs
a bounded amount of memory and never slows the frame clock.

Every stream ends with one explicit event: ``{"status": "completed", ...}`` or
``{"error": ...}``. A comment line (``: keep-alive``) goes out when no event has
for ``emg.keepalive_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from ..engine import Engine
from ..errors import BerthError, ModelNotReady, Overloaded
from ..streaming import FrameClock, SignalHub, SourceError
from ..streaming.preprocess import zscore
from . import sse
from .body import model_name, parse_json_object, read_raw_body
from .disconnect import wait_for_disconnect
from .emg_common import Backends, CpuGauge, WindowModel, classify_window, flag, number, window_model
from .errors import scope_request_id

log = logging.getLogger("berth.http.stream")

_OPENED = sse.comment("berth stream open")  # sent at once, so the client sees the stream has started


@dataclass(slots=True)
class StreamParams:
    duration_s: float | None
    fps: float
    model: str
    preprocess: bool


def parse_params(body: dict[str, Any], backends: Backends) -> StreamParams:
    emg = backends.emg
    duration = number(body, "duration_seconds", None, low=0.0, high=emg.max_duration_s, low_open=True)
    fps = number(body, "fps", 30, low=0.0, high=emg.max_fps, low_open=True)
    use_accelerated = flag(body, "use_tensorrt", True)
    preprocess = flag(body, "preprocess", False)
    model = model_name(body) or backends.model("accelerated" if use_accelerated else "pytorch")
    return StreamParams(duration, fps, model, preprocess)


class SendBuffer:
    """Events waiting for the socket: at most ``capacity`` frames; the final event always fits."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[tuple[dict[str, Any], bool]] = deque()
        self.dropped = 0
        self._ready = asyncio.Event()

    def put(self, payload: dict[str, Any], *, final: bool = False) -> None:
        if not final and len(self.items) >= self.capacity:
            self.items.popleft()  # frames only: nothing is queued after a final event
            self.dropped += 1
        self.items.append((payload, final))
        self._ready.set()

    async def get(self, timeout_s: float) -> tuple[dict[str, Any], bool] | None:
        if not self.items:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout_s)
            except TimeoutError:
                return None
        return self.items.popleft()


class StreamApi:
    def __init__(self, engine: Engine, backends: Backends, hub: SignalHub, cpu: CpuGauge) -> None:
        self.engine = engine
        self.backends = backends
        self.hub = hub
        self.cpu = cpu
        self.emg = backends.emg
        self.open_streams = 0
        self.body_limit = 64 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        body = parse_json_object(await read_raw_body(scope, receive, self.body_limit))
        params = parse_params(body, self.backends)
        if self.open_streams >= self.emg.max_streams:
            raise Overloaded(f"{self.open_streams} streams are open; the limit is emg.max_streams = {self.emg.max_streams}", retry_after_s=5)
        self.open_streams += 1
        subscribed = False
        try:
            model = await window_model(self.engine, self.emg, params.model)
            run = self.hub.subscribe()
            subscribed = True
            try:
                await run.wait_ready(self.emg.source_timeout_s)
            except SourceError as exc:
                raise ModelNotReady(f"the signal source is not available: {exc}") from None
            await sse.start(send, scope_request_id(scope))
            await sse.write(send, _OPENED)
            buffer = SendBuffer(self.emg.send_buffer)
            producer = asyncio.create_task(self._produce(run, params, model, buffer))
            writer = asyncio.create_task(self._write(send, buffer))
            watcher = asyncio.create_task(wait_for_disconnect(receive))
            try:
                await asyncio.wait({writer, watcher}, return_when=asyncio.FIRST_COMPLETED)
                finished = writer.done() and not writer.cancelled() and writer.exception() is None and not watcher.done()
            finally:
                for task in (producer, writer, watcher):
                    task.cancel()
                await asyncio.gather(producer, writer, watcher, return_exceptions=True)
            if finished:  # the final event went out and the client is still there
                await sse.finish(send)
        finally:
            if subscribed:
                self.hub.unsubscribe()
            self.open_streams -= 1
        return 200  # the stream started; how it ended is in its events

    async def _produce(self, run: Any, params: StreamParams, model: WindowModel, buffer: SendBuffer) -> None:
        clock = FrameClock(params.fps)
        total = None if params.duration_s is None else max(1, round(params.duration_s * params.fps))
        frames = rejected = 0
        last_frame = -1
        try:
            while total is None or clock.next_index < total:
                tick = await clock.next()
                if total is not None and tick.index >= total:
                    break  # the slots a late frame overran reached the end
                window, truth, _ = run.latest()
                if params.preprocess:
                    window = zscore(window)
                started = time.perf_counter()
                try:
                    prediction, fields = await classify_window(self.engine, self.backends, model, window)
                except Overloaded:
                    rejected += 1  # the model's queue is full: this frame is lost, the stream goes on
                    continue
                latency_ms = (time.perf_counter() - started) * 1000.0
                last_frame = tick.index
                frames += 1
                buffer.put({
                    "timestamp": time.time(),
                    "frame": tick.index,
                    "latency_ms": round(latency_ms, 4),
                    **fields,
                    "shape": list(next(iter(prediction.outputs.values())).shape),
                    "cpu_percent": self.cpu.read(),
                    "batch_size": prediction.batch_size,
                    "late_ms": round(tick.late_s * 1000.0, 3),
                    "missed_frames": clock.missed_total,
                    "rejected_frames": rejected,
                    "truth": truth if truth >= 0 else None,
                })
            if total is not None:
                await clock.sleep_until_slot(total)  # the stream lasts its whole duration
            elapsed = time.monotonic() - clock.start
            buffer.put({
                "status": "completed",
                "total_frames": frames,
                "duration_seconds": round(elapsed, 4),
                "avg_fps": round(frames / elapsed, 4) if elapsed > 0 else 0.0,
                "missed_frames": clock.missed_total,
                "rejected_frames": rejected,
            }, final=True)
        except (SourceError, BerthError) as exc:
            message = exc.message if isinstance(exc, BerthError) else str(exc)
            buffer.put({"error": message, "timestamp": time.time(), "frame": last_frame}, final=True)
        except Exception as exc:  # noqa: BLE001 - the stream must end with an event, never hang
            log.error("stream failed", exc_info=exc)
            buffer.put({"error": "internal error", "timestamp": time.time(), "frame": last_frame}, final=True)

    async def _write(self, send: Send, buffer: SendBuffer) -> None:
        while True:
            item = await buffer.get(self.emg.keepalive_s)
            if item is None:
                await sse.write(send, sse.KEEP_ALIVE)
                continue
            payload, final = item
            payload["dropped_events"] = buffer.dropped
            if final and "status" in payload:
                payload["delivered_frames"] = payload["total_frames"] - buffer.dropped
            await sse.write(send, sse.event(payload))
            if final:
                return


__all__ = ["SendBuffer", "StreamApi", "StreamParams", "parse_params"]
