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
from starlette.types import ASGIApp

from ..engine import Engine
from ..errors import BerthError
from .fastlane import FastLane
from .emg_api import EmgApi
from .errors import berth_error_handler, http_exception_handler, unexpected_error_handler
from .management import ManagementApi
from .openai import OpenAIApi
from .metrics import RequestMetrics, metrics_route
from .security import SecurityGate
from .seed_api import SeedApi
from .ui import ui_routes
from .v2 import V2Api


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
                        "POST /models/{name}/unload", "POST /models/{name}/pin", "GET /stats", "GET /metrics",
                        "GET /v2 (KServe V2: health, metadata, infer, repository, statistics)",
                        "POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models",
                        "POST /infer/stream (seed 001 SSE)", "GET /ws/infer (WebSocket)", "GET /ui/ (web UI)",
                    ],
                }
            ),
            media_type="application/json",
        )

    return Route("/", index, methods=["GET"])


def create_app(engine: Engine, *, manage_engine: bool = True) -> ASGIApp:
    """The ASGI app. With ``manage_engine`` the app's lifespan starts and stops the Engine.

    Outside in: SecurityGate (Host, Origin, credentials) → FastLane (raw handlers for
    the hottest routes, recording their own metrics) → RequestMetrics → Starlette
    (every route).
    """

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

    request_metrics = RequestMetrics(None)  # type: ignore[arg-type]  # wired to the app below, once it exists
    seed = SeedApi(engine)
    seed.seed001 = emg = EmgApi(engine)
    v2 = V2Api(engine)
    app = Starlette(
        routes=[
            *seed.routes(),
            *ManagementApi(engine).routes(),
            *v2.routes(),
            *emg.routes(),
            *OpenAIApi(engine).routes(),
            metrics_route(engine, request_metrics),
            *ui_routes(_index_route(engine)),  # GET / (HTML for browsers, else the JSON index), /ui/*, /static/*
        ],
        exception_handlers={
            BerthError: berth_error_handler,
            HTTPException: http_exception_handler,
            Exception: unexpected_error_handler,
        },
        lifespan=lifespan,
    )
    app.state.engine = engine
    request_metrics.app = app
    lane = FastLane(request_metrics, {**seed.fast_routes(), **v2.fast_routes()}, v2.prefix_routes(), request_metrics)
    return SecurityGate(lane, engine.config, engine.quotas)
