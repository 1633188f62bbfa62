"""Raw ASGI endpoints for the OpenAI API, with errors in OpenAI's envelope.

``{"error": {"message", "type", "param", "code"}}`` with 400 (bad request), 404
(unknown model), 429 (the model's waiting queue is full, with ``Retry-After``), 503
(model not loadable now / no capacity), 500. A request id (the body's ``rid``, seed
002's field, else ``X-Request-Id``, else a fresh one) is echoed in ``X-Request-Id``,
the response ``id`` and ``rid``.

While a request generates, a watcher task waits for the ASGI ``http.disconnect``
message; when the client goes away it aborts the request's sequences, which leave the
running batch within one decode step, and the model's lease is released.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ...engine import Engine
from ...errors import BerthError, ErrorKind, ModelNotFound, retry_after
from ...generation import QueueFull
from .. import sse
from ..body import parse_json_object, read_raw_body
from ..disconnect import ClientDisconnected, wait_for_disconnect
from ..errors import STATUS, json_response, scope_request_id
from ..fastlane import CLIENT_GONE, AsgiEndpoint, send_json
from .protocol import BadField
from .serving import OpenAIServing, Prepared

log = logging.getLogger("berth.openai")

_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable", 504: "timeout"}
_CODES = {404: "model_not_found", 429: "rate_limit_exceeded", 503: "model_not_ready", 504: "timeout"}


def error_object(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, the OpenAI error body, extra headers) for any exception."""
    if isinstance(exc, BerthError):
        status = 429 if isinstance(exc, QueueFull) else STATUS[exc.kind]
        message = exc.message
    else:
        status, message = 500, "internal server error"
    wait = retry_after(exc)
    headers: dict[str, str] = {"Retry-After": wait} if wait else {}
    param = exc.param if isinstance(exc, BadField) else ("model" if status == 404 else None)
    body = {"error": {"message": message, "type": _TYPES.get(status, "server_error"), "param": param, "code": _CODES.get(status)}}
    return status, body, headers


def _rid(scope: Scope, body: dict[str, Any]) -> str:
    given = body.get("rid")
    if isinstance(given, str) and 0 < len(given) <= 128 and given.isprintable():
        return given
    return scope_request_id(scope)


class OpenAIApi:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.serving = OpenAIServing(engine)
        self.body_limit = int(engine.config.server.max_body_mb * 1024 * 1024)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", AsgiEndpoint(self.chat), methods=["POST"]),
            Route("/v1/completions", AsgiEndpoint(self.completions), methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model}", self.get_model, methods=["GET"]),
            Route("/v1/generation/stats", self.stats, methods=["GET"]),
        ]

    # ── generation ─────────────────────────────────────────────────────────
    async def chat(self, scope: Scope, receive: Receive, send: Send) -> int:
        return await self._generate(scope, receive, send, chat=True)

    async def completions(self, scope: Scope, receive: Receive, send: Send) -> int:
        return await self._generate(scope, receive, send, chat=False)

    async def _generate(self, scope: Scope, receive: Receive, send: Send, *, chat: bool) -> int:
        rid = scope_request_id(scope)
        try:
            body = parse_json_object(await read_raw_body(scope, receive, self.body_limit))
            rid = _rid(scope, body)
            start = self.serving.start_chat if chat else self.serving.start_completion
            prepared = await start(body, rid)
        except ClientDisconnected:
            return CLIENT_GONE
        except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI error body
            return await self._error(send, exc, rid)
        watcher = asyncio.ensure_future(self._abort_when_gone(receive, prepared))
        try:
            if prepared.stream:
                await self._stream(send, prepared)
            else:
                try:
                    response = await self.serving.collect(prepared)
                except Exception as exc:  # noqa: BLE001
                    return await self._error(send, exc, rid)
                if response is None:  # the client went away
                    return CLIENT_GONE
                await send_json(send, 200, orjson.dumps(response), rid)
        except OSError:
            return CLIENT_GONE  # the client went away while we were sending
        finally:
            watcher.cancel()
            prepared.generation.close()
        return 200

    @staticmethod
    async def _abort_when_gone(receive: Receive, prepared: Prepared) -> None:
        await wait_for_disconnect(receive)
        log.info("client of request %s went away; aborting its generation", prepared.rid)
        prepared.generation.abort()

    async def _stream(self, send: Send, prepared: Prepared) -> None:
        await sse.start(send, prepared.rid)
        async for frame in self.serving.stream(prepared):
            await sse.write(send, frame)
        await sse.finish(send)

    @staticmethod
    async def _error(send: Send, exc: Exception, rid: str) -> int:
        status, body, headers = error_object(exc)
        if status >= 500 and not isinstance(exc, BerthError):
            log.error("OpenAI request %s failed", rid, exc_info=exc)
        return await send_json(send, status, orjson.dumps(body), rid, headers)

    # ── models and stats ───────────────────────────────────────────────────
    def _lm_names(self) -> list[str]:
        return sorted(name for name, spec in self.engine.registry.specs.items() if spec.backend == "lm")

    def _model_object(self, name: str) -> dict[str, Any]:
        spec = self.engine.registry.specs[name]
        path = spec.versions[spec.default_version]
        try:
            created = int(path.stat().st_mtime)
        except OSError:
            created = int(time.time())
        entry = self.engine.registry.entries.get((name, spec.default_version))
        state = entry.state.value if entry is not None else "UNLOADED"
        stats = self.serving.service.stats().get(name)
        berth: dict[str, Any] = {"state": state}
        if entry is not None:
            for key in ("context_length", "torch_threads", "isolation"):
                if entry.info.get(key):
                    berth[key] = entry.info[key]
        if stats is not None:
            berth["running"] = stats["running"]
            berth["waiting"] = stats["waiting"]
        return {"id": name, "object": "model", "created": created, "owned_by": "berth", "berth": berth}

    async def list_models(self, request: Request) -> Response:
        data = [self._model_object(name) for name in self._lm_names()]
        return json_response(request, {"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        name = request.path_params["model"]
        if name not in self._lm_names():
            status, body, headers = error_object(ModelNotFound(f"the model '{name[:64]}' does not exist"))
            return json_response(request, body, status, headers)
        return json_response(request, self._model_object(name))

    async def stats(self, request: Request) -> Response:
        return json_response(request, {"models": self.serving.service.stats()})


__all__ = ["ErrorKind", "OpenAIApi", "error_object"]
