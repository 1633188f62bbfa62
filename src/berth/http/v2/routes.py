"""The V2 (KServe / Open Inference Protocol) REST endpoints with Triton's extensions.

Thin translators over the Engine: parse (:mod:`.protocol`), call the Engine, encode
(:mod:`.protocol`, :mod:`.metadata`). ``POST .../infer`` and the health probes are raw
ASGI handlers, served by the fast lane and also mounted in Starlette; the rest are
ordinary Starlette routes. Every error is the shared ``{"error", "request_id"}`` body
with the status from :data:`berth.http.errors.STATUS` (not found 404, unavailable 503,
invalid 400, …), which is what ``tritonclient`` reads.
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ... import __version__
from ...config import valid_model_name
from ...engine import Engine
from ...errors import InvalidInput, ModelNotFound
from ...registry import ModelState
from ..body import parse_json_object, read_body, read_raw_body, request_headers
from ..disconnect import cancel_on_disconnect
from ..errors import json_response, scope_request_id
from ..fastlane import AsgiEndpoint, PrefixRoute, RawHandler, send_json
from . import metadata
from .protocol import InferRequest, encode_infer_response, parse_header_length, parse_infer_request, raw_input

_MODELS = "/v2/models/"
_INFER = "/infer"
_SMALL_BODY = 64 * 1024
_HEADER_LENGTH = b"inference-header-content-length"


def _target(name: str, version: str | None) -> tuple[str, str | None]:
    """Refuse names and versions that cannot exist before touching the repository."""
    if not valid_model_name(name):
        raise ModelNotFound(f"unknown model '{name[:64]}'")
    if version is not None and not version.isdigit():
        raise ModelNotFound(f"model '{name}' has no version '{version[:32]}'")
    return name, version


@functools.lru_cache(maxsize=1024)  # bounded: paths come from clients; they repeat a few
def _infer_target(path: str) -> tuple[str, str | None]:
    """(model, version) from ``/v2/models/{m}[/versions/{v}]/infer``."""
    parts = path[len(_MODELS) : -len(_INFER)].split("/")
    if len(parts) == 1:
        return _target(parts[0], None)
    if len(parts) == 3 and parts[1] == "versions":
        return _target(parts[0], parts[2])
    raise ModelNotFound(f"no endpoint at {path[:200]}")


def _path_target(request: Request) -> tuple[str, str | None]:
    return _target(request.path_params["model"], request.path_params.get("version"))


class V2Api:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.body_limit = int(engine.config.server.max_body_mb * 1024 * 1024)

    # ── registration ───────────────────────────────────────────────────────
    def routes(self) -> list[Route]:
        infer = AsgiEndpoint(self.infer)
        return [
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/health/live", AsgiEndpoint(self.live), methods=["GET"]),
            Route("/v2/health/ready", AsgiEndpoint(self.ready), methods=["GET"]),
            Route("/v2/repository/index", self.repository_index, methods=["POST"]),
            Route("/v2/repository/models/{model}/load", self.load, methods=["POST"]),
            Route("/v2/repository/models/{model}/unload", self.unload, methods=["POST"]),
            Route("/v2/models/stats", self.statistics, methods=["GET"]),
            Route("/v2/models/{model}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{model}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{model}/config", self.model_config, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}/config", self.model_config, methods=["GET"]),
            Route("/v2/models/{model}/stats", self.statistics, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}/stats", self.statistics, methods=["GET"]),
            Route("/v2/models/{model}/infer", infer, methods=["POST"]),
            Route("/v2/models/{model}/versions/{version}/infer", infer, methods=["POST"]),
        ]

    def fast_routes(self) -> dict[tuple[str, str], RawHandler]:
        return {("GET", "/v2/health/live"): self.live, ("GET", "/v2/health/ready"): self.ready}

    def prefix_routes(self) -> list[PrefixRoute]:
        return [PrefixRoute("POST", _MODELS, _INFER, self.infer)]

    # ── health and server metadata ─────────────────────────────────────────
    async def live(self, scope: Scope, receive: Receive, send: Send) -> int:
        return await send_json(send, 200, b'{"live":true}', scope_request_id(scope))

    async def ready(self, scope: Scope, receive: Receive, send: Send) -> int:
        ready = bool(self.engine.health()["ready"])
        return await send_json(send, 200 if ready else 503, b'{"ready":true}' if ready else b'{"ready":false}', scope_request_id(scope))

    async def server_metadata(self, request: Request) -> Response:
        return json_response(request, {"name": "berth", "version": __version__, "extensions": metadata.EXTENSIONS})

    # ── inference ──────────────────────────────────────────────────────────
    async def infer(self, scope: Scope, receive: Receive, send: Send) -> int:
        """``POST /v2/models/{m}[/versions/{v}]/infer``: JSON or JSON + binary tensors."""
        body = await read_raw_body(scope, receive, self.body_limit)
        model, version = _infer_target(scope["path"])
        header_length = parse_header_length(request_headers(scope).get(_HEADER_LENGTH))
        if header_length == 0:
            request = await self._raw_request(model, version, body)
        else:
            request = parse_infer_request(body, header_length)
        timeout_s = None
        if request.timeout_us is not None:
            timeout_s = min(request.timeout_us / 1e6, self.engine.default_timeout_s)
        prediction = await cancel_on_disconnect(
            receive, self.engine.infer(model, request.inputs, version=version, timeout_s=timeout_s)
        )
        payload, json_length = encode_infer_response(prediction, request)
        rid = scope_request_id(scope)
        if json_length is None:
            return await send_json(send, 200, payload, rid)
        return await send_json(send, 200, payload, rid, content_type=b"application/octet-stream", number=(_HEADER_LENGTH, json_length))

    async def _raw_request(self, model: str, version: str | None, body: bytes) -> InferRequest:
        signature = await self.engine.signature(model, version)
        if len(signature.inputs) != 1:
            raise InvalidInput(
                f"model '{model}' takes {len(signature.inputs)} inputs; a raw binary request "
                "(Inference-Header-Content-Length: 0) is only for single-input models"
            )
        spec = signature.inputs[0]
        array = raw_input(body, spec.name, spec.dtype, spec.static_tail)
        return InferRequest(None, {spec.name: array}, None, True, None)  # every output binary

    # ── model metadata, readiness, configuration ───────────────────────────
    async def model_metadata(self, request: Request) -> Response:
        model, version = _path_target(request)
        return json_response(request, await metadata.model_document(self.engine, model, version, metadata.model_metadata))

    async def model_config(self, request: Request) -> Response:
        model, version = _path_target(request)
        return json_response(request, await metadata.model_document(self.engine, model, version, metadata.model_config))

    async def model_ready(self, request: Request) -> Response:
        """Ready = loaded now; this does not load the model (an inference would)."""
        model, version = _path_target(request)
        entry = await self.engine.registry.entry(model, version)
        ready = entry.state is ModelState.READY
        return json_response(request, {"name": entry.name, "ready": ready}, 200 if ready else 503)

    # ── repository extension ───────────────────────────────────────────────
    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await read_body(request, _SMALL_BODY)
        return parse_json_object(raw) if raw.strip() else {}

    async def repository_index(self, request: Request) -> Response:
        body = await self._body(request)
        only_ready = body.get("ready", False)
        if not isinstance(only_ready, bool):
            raise InvalidInput("'ready' must be true or false")
        return json_response(request, metadata.repository_index(self.engine.known_entries(), only_ready))

    async def load(self, request: Request) -> Response:
        """Load the model's default version (a no-op when it is already loaded)."""
        model, _ = _path_target(request)
        parameters = (await self._body(request)).get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidInput("'parameters' must be an object")
        overrides = sorted(k for k in parameters if k == "config" or k.startswith("file:"))
        if overrides:
            raise InvalidInput(f"berth loads models from its repository; load parameters {overrides} are not supported")
        await self.engine.load(model)
        return json_response(request, {})

    async def unload(self, request: Request) -> Response:
        """Unload every resident version of the model (Triton unloads the model as a whole)."""
        model, _ = _path_target(request)
        await self._body(request)  # validated; ``unload_dependents`` has no meaning here
        await self.engine.unload_model(model)
        return json_response(request, {})

    # ── statistics extension ───────────────────────────────────────────────
    async def statistics(self, request: Request) -> Response:
        model, version = _path_target(request) if "model" in request.path_params else (None, None)
        entries = await self.engine.statistics_entries(model, version)
        return json_response(request, {"model_stats": [metadata.model_statistics(e) for e in entries]})
