"""The one table from error kind to HTTP status, and the JSON error body.

Bodies are ``{"error": "<message>", "request_id": "<id>"}`` — the V2 protocol's shape,
which the seed JSON API shares. Unknown exceptions become a fixed 500 message; their
detail goes to the log, never to the client.
"""

from __future__ import annotations

import logging
import itertools
import secrets
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from ..errors import BerthError, ErrorKind, Overloaded, retry_after

log = logging.getLogger("berth.http")

STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 400,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.OVERLOADED: 503,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.DEADLINE: 504,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.INTERNAL: 500,
}

REQUEST_ID_HEADER = "x-request-id"


# fresh ids: a random per-process prefix and a counter — unique, unguessable enough to
# not collide across restarts, and far cheaper per request than a new random token
_ID_PREFIX = secrets.token_hex(4)
_id_counter = itertools.count(1)


def fresh_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


def scope_request_id(scope: Scope) -> str:
    """The caller's ``X-Request-Id`` when it is sane, else a fresh one (kept in the scope)."""
    existing = scope.get("berth.request_id")
    if existing:
        return str(existing)
    given = None
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            given = value
            break
    return assign_request_id(scope, given)


def assign_request_id(scope: Scope, given: bytes | None) -> str:
    """Keep the request's id in the scope: ``given`` (its ``X-Request-Id`` header) when
    it is sane, else a fresh one. The security gate calls this while it reads the
    headers anyway, so handlers never scan them again."""
    text = given.decode("latin-1") if given else ""
    rid = text if 0 < len(text) <= 64 and text.isascii() and text.replace("-", "").replace("_", "").isalnum() else fresh_request_id()
    scope["berth.request_id"] = rid
    return rid


def request_id(request: Request) -> str:
    return scope_request_id(request.scope)


def error_body(message: str, rid: str) -> bytes:
    return orjson.dumps({"error": message, "request_id": rid})


def json_response(request: Request, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer (numpy arrays and scalars allowed) carrying the request id."""
    all_headers = {REQUEST_ID_HEADER: request_id(request), **(headers or {})}
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type="application/json", headers=all_headers)


def error_headers(exc: BerthError) -> dict[str, str]:
    wait = retry_after(exc)
    return {"Retry-After": wait} if wait else {}


def error_response(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(request, {"error": message, "request_id": request_id(request)}, status, headers)


async def berth_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BerthError)
    status = STATUS[exc.kind]
    headers = error_headers(exc)
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
