"""Model management over HTTP: list, inspect, load, unload, pin, stats.

The same operations the gRPC ``berth.v1`` service offers, over the same Engine calls.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import valid_model_name
from ..engine import Engine
from ..errors import InvalidInput, ModelNotFound
from .body import read_json_object
from .errors import json_response

_SMALL_BODY = 4096


def _name(request: Request) -> str:
    name = request.path_params["name"]
    if not valid_model_name(name):
        raise ModelNotFound(f"unknown model '{name[:64]}'")
    return str(name)


def _version(request: Request) -> str | None:
    version = request.query_params.get("version")
    if version is not None and not version.isdigit():
        raise InvalidInput("version must be an integer")
    return version


class ManagementApi:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def routes(self) -> list[Route]:
        return [
            Route("/models", self.list_models, methods=["GET"]),
            Route("/models/{name}", self.describe, methods=["GET"]),
            Route("/models/{name}/load", self.load, methods=["POST"]),
            Route("/models/{name}/unload", self.unload, methods=["POST"]),
            Route("/models/{name}/pin", self.pin, methods=["POST"]),
            Route("/stats", self.stats, methods=["GET"]),
        ]

    async def list_models(self, request: Request) -> Response:
        return json_response(request, {"models": self.engine.list_models(), "server": self.engine.server_stats()})

    async def describe(self, request: Request) -> Response:
        entry = await self.engine.registry.entry(_name(request), _version(request))
        return json_response(request, self.engine.describe(entry))

    async def load(self, request: Request) -> Response:
        return json_response(request, await self.engine.load(_name(request), _version(request)))

    async def unload(self, request: Request) -> Response:
        return json_response(request, await self.engine.unload(_name(request), _version(request)))

    async def pin(self, request: Request) -> Response:
        body = await read_json_object(request, _SMALL_BODY) if request.headers.get("content-length", "0") != "0" else {}
        pinned = body.get("pinned", True)
        if not isinstance(pinned, bool):
            raise InvalidInput("'pinned' must be true or false")
        return json_response(request, await self.engine.pin(_name(request), pinned, _version(request)))

    async def stats(self, request: Request) -> Response:
        model = request.query_params.get("model")
        return json_response(request, self.engine.model_stats(model))
