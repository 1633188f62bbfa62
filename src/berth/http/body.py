"""Reading request bodies within a size limit and parsing JSON safely."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import Receive, Scope

from ..errors import InvalidInput, PayloadTooLarge
from .disconnect import ClientDisconnected


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) anything over ``limit`` bytes without buffering it."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInput("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body of {declared} bytes is over the {limit}-byte limit")
        return await request.body()
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def request_headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers as a dict (the last of repeated names wins): the one the
    security gate made for the request, else a new one."""
    headers = scope.get("berth.headers")
    return headers if headers is not None else dict(scope["headers"])


async def read_raw_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """:func:`read_body` for a raw ASGI handler."""
    whole = scope.get("berth.body")
    if whole is not None:  # the whole body came before the app started (a lean cycle's)
        if len(whole) > limit:
            raise PayloadTooLarge(f"request body of {len(whole)} bytes is over the {limit}-byte limit")
        return whole
    declared = request_headers(scope).get(b"content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInput("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body of {int(declared)} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
        if not message.get("more_body", False):
            if not chunks:
                return chunk  # the whole body in one message, as small bodies come
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    return parse_json_object(await read_body(request, limit))


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidInput("the request body is empty; send a JSON object")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object")
    return value


def model_name(body: dict[str, Any]) -> str | None:
    """The ``model`` a JSON body names, if any."""
    value = body.get("model")
    if value is not None and not isinstance(value, str):
        raise InvalidInput("'model' must be a string")
    return value
