"""The one table from error kind to HTTP status, and the JSON error body.

Bodies are ``{"error": "<message>", "request_id": "<id>"}`` — the V2 protocol's shape,
which the seed JSON API shares. Unknown exceptions become a fixed 500 message; their
detail goes to the log, never to the client.
"""

from __future__ import annotations

import logging
import math
import secrets

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import BerthError, ErrorKind, Overloaded

log = logging.getLogger("berth.http")

STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 400,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.OVERLOADED: 503,
    ErrorKind.DEADLINE: 504,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.INTERNAL: 500,
}

REQUEST_ID_HEADER = "x-request-id"


def request_id(request: Request) -> str:
    """The caller's ``X-Request-Id`` when it is sane, else a fresh one (kept on the request)."""
    existing = request.scope.get("berth.request_id")
    if existing:
        return str(existing)
    given = request.headers.get(REQUEST_ID_HEADER, "")
    rid = given if 0 < len(given) <= 64 and given.isascii() and given.replace("-", "").replace("_", "").isalnum() else secrets.token_hex(8)
    request.scope["berth.request_id"] = rid
    return rid


def error_response(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    rid = request_id(request)
    body = orjson.dumps({"error": message, "request_id": rid})
    all_headers = {REQUEST_ID_HEADER: rid, **(headers or {})}
    return Response(body, status_code=status, media_type="application/json", headers=all_headers)


async def berth_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BerthError)
    status = STATUS[exc.kind]
    headers = {}
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if status >= 500 and not isinstance(exc, Overloaded):
        log.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc.message)
    return error_response(request, status, exc.message, headers)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Routing errors (404 no such path, 405 wrong method) in the same JSON shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        message = f"method {request.method[:16]} is not allowed on {request.url.path[:200]}"
    elif exc.status_code == 404:
        message = f"no endpoint at {request.url.path[:200]}"
    else:
        message = str(exc.detail)
    return error_response(request, exc.status_code, message, dict(exc.headers or {}))


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, 500, "internal server error")
