"""The HTTP application: routes from each API family, error handlers, lifespan.

Starlette directly (FastAPI is built on it) keeps the data-plane hot path to a route
match and a function call; every route is a plain ``async def`` over the Engine.
"""

from __future__ import annotations

import contextlib
import gc
from typing import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..engine import Engine
from ..errors import BerthError
from .fastlane import FastLane
from .errors import berth_error_handler, http_exception_handler, unexpected_error_handler
from .management import ManagementApi
from .seed_api import SeedApi


def _index_route(engine: Engine) -> Route:
    async def index(request: Request) -> Response:
        return Response(
            orjson.dumps(
                {
                    "name": "berth",
                    "default_model": engine.default_model,
                    "endpoints": [
                        "GET /health", "GET /config", "POST /infer", "POST /infer-batch", "POST /blast",
                        "POST /save-session", "GET /models", "GET /models/{name}", "POST /models/{name}/load",
                        "POST /models/{name}/unload", "POST /models/{name}/pin", "GET /stats",
                    ],
                }
            ),
            media_type="application/json",
        )

    return Route("/", index, methods=["GET"])


def create_app(engine: Engine, *, manage_engine: bool = True) -> FastLane:
    """The ASGI app. With ``manage_engine`` the app's lifespan starts and stops the Engine."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_engine:
            await engine.start()
            # everything alive now (modules, sessions, preloaded models) lives as long as
            # the server: keep it out of the collector's scans so a full collection under
            # load does not walk the whole heap
            gc.freeze()
        try:
            yield
        finally:
            if manage_engine:
                await engine.stop()

    seed = SeedApi(engine)
    app = Starlette(
        routes=[*seed.routes(), *ManagementApi(engine).routes(), _index_route(engine)],
        exception_handlers={
            BerthError: berth_error_handler,
            HTTPException: http_exception_handler,
            Exception: unexpected_error_handler,
        },
        lifespan=lifespan,
    )
    app.state.engine = engine
    return FastLane(app, seed.fast_routes())
