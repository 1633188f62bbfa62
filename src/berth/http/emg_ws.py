"""``/ws/infer``: the client pushes EMG windows, the server answers one prediction each.

Query parameters: ``backend`` (``accelerated`` — the default —, ``onnxruntime`` or
``pytorch``), or ``model`` (any model taking ``[N, window, channels]``), and
``preprocess`` (``true`` for a per-channel z-score). Each message is one window:

* binary: ``window × channels`` little-endian float32 values, time-major
  (``window[t, c]`` at index ``t * channels + c``);
* text: JSON ``{"window": [[c0, c1, …], …]}`` (rows of channels) or
  ``{"data": [flat, time-major]}``, with an optional ``"id"`` echoed back.

Each answer is a JSON text message: ``seq`` (counts windows from 0), ``id``,
``prediction``, ``gesture``, ``confidence``, ``latency_ms``, ``backend``, ``model``.
A bad message gets ``{"seq", "error"}`` and the socket stays open; windows are
answered in order, one at a time, so a fast sender is held back by TCP, not by
server memory.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..engine import Engine
from ..errors import BerthError, InvalidInput
from ..streaming.preprocess import zscore
from .emg_common import BACKEND_KEYS, Backends, classify_window, window_model

_TRY_AGAIN_LATER = 1013
_POLICY = 1008


class WindowSocket:
    def __init__(self, engine: Engine, backends: Backends) -> None:
        self.engine = engine
        self.backends = backends
        self.emg = backends.emg
        self.open_sockets = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        socket = WebSocket(scope, receive, send)
        if self.open_sockets >= self.emg.max_streams:
            await socket.close(code=_TRY_AGAIN_LATER, reason="too many open sockets")
            return
        self.open_sockets += 1
        try:
            await self._serve(socket)
        except WebSocketDisconnect:
            pass
        finally:
            self.open_sockets -= 1

    async def _serve(self, socket: WebSocket) -> None:
        query = socket.query_params
        backend = query.get("backend", "accelerated")
        model = query.get("model") or (self.backends.model(backend) if backend in BACKEND_KEYS else None)
        preprocess = query.get("preprocess", "false").lower() in ("1", "true", "yes")
        await socket.accept()
        if model is None:
            await socket.close(code=_POLICY, reason=f"backend must be one of {', '.join(BACKEND_KEYS)}")
            return
        try:
            checked = await window_model(self.engine, self.emg, model)
        except BerthError as exc:
            await socket.close(code=_POLICY, reason=exc.message[:120])
            return
        seq = 0
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            reply: dict[str, Any] = {"seq": seq}
            try:
                window, ident = self._window(message)
                if ident is not None:
                    reply["id"] = ident
                if preprocess:
                    window = zscore(window)
                started = time.perf_counter()
                _, fields = await classify_window(self.engine, self.backends, checked, window)
                reply.update(fields)
                reply["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 4)
            except BerthError as exc:
                reply["error"] = exc.message
            await socket.send_text(orjson.dumps(reply).decode())
            seq += 1

    def _window(self, message: dict[str, Any]) -> tuple[np.ndarray, Any]:
        window, channels = self.emg.window, self.emg.channels
        expected = window * channels
        data = message.get("bytes")
        if data is not None:
            if len(data) != expected * 4:
                raise InvalidInput(f"a binary window is {expected * 4} bytes ({window} × {channels} float32); got {len(data)}")
            values = np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(window, channels)
            ident = None
        else:
            text = message.get("text") or ""
            if len(text) > 64 * expected:
                raise InvalidInput("the JSON window is too large")
            try:
                body = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise InvalidInput("a text message must be a JSON object") from None
            if not isinstance(body, dict):
                raise InvalidInput("a text message must be a JSON object")
            ident = body.get("id")
            raw = body.get("window", body.get("data"))
            try:
                values = np.asarray(raw, dtype=np.float32)
            except (TypeError, ValueError):
                raise InvalidInput("'window' must be rows of numbers") from None
            if values.size != expected or values.ndim not in (1, 2) or (values.ndim == 2 and values.shape != (window, channels)):
                raise InvalidInput(f"'window' must be {window} rows of {channels} numbers (or 'data' with {expected} numbers)")
            values = values.reshape(window, channels)
        if not np.isfinite(values).all():
            raise InvalidInput("the window holds a value that is not a finite number")
        return values, ident
