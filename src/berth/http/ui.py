"""The web UI: static pages under ``berth/web``, no build step.

| route | what |
|---|---|
| ``GET /`` | the Home page for browsers (``Accept: text/html``); the JSON index otherwise |
| ``GET /ui/``, ``/ui/about``, ``/ui/test``, ``/ui/stream``, ``/ui/models``, ``/ui/chat`` | the pages |
| ``GET /static/...`` | the pages' CSS and JS (``berth/web/static``) and vendored libraries (``berth/web/vendor``) |

Pages hold no inline script, and are sent with a Content-Security-Policy that allows
scripts from this server only; every value from the server is written as text.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .errors import REQUEST_ID_HEADER, request_id

WEB = Path(__file__).resolve().parent.parent / "web"
PAGES = {"": "home.html", "about": "about.html", "test": "test.html", "stream": "stream.html", "models": "models.html", "chat": "chat.html"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


async def _page(request: Request, file_name: str) -> Response:
    html = await asyncio.to_thread((WEB / "pages" / file_name).read_bytes)
    return Response(html, media_type="text/html; charset=utf-8", headers={
        "content-security-policy": CSP,
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        REQUEST_ID_HEADER: request_id(request),
    })


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept or "application/xhtml+xml" in accept


def ui_routes(index: Route) -> list[BaseRoute]:
    """The UI's routes; ``index`` (the JSON index at ``/``) still answers non-browser clients."""

    async def root(request: Request) -> Response:
        if _wants_html(request):
            return await _page(request, PAGES[""])
        response: Response = await index.endpoint(request)
        response.headers["vary"] = "Accept"
        return response

    async def page(request: Request) -> Response:
        name = request.path_params.get("page", "")
        file_name = PAGES.get(name)
        if file_name is None:
            return Response(b'{"error":"no such page"}', status_code=404, media_type="application/json")
        return await _page(request, file_name)

    async def ui_redirect(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=308)

    return [
        Route("/", root, methods=["GET"]),
        Route("/ui", ui_redirect, methods=["GET"]),
        Route("/ui/", page, methods=["GET"]),
        Route("/ui/{page}", page, methods=["GET"]),
        Mount("/static/vendor", StaticFiles(directory=WEB / "vendor"), name="ui-vendor"),
        Mount("/static", StaticFiles(directory=WEB / "static"), name="ui-static"),
    ]
