"""Server-sent events over raw ASGI: the framing the OpenAI and seed-001 streams share.

An event is ``data: <json>`` and a blank line; a comment (``: text``) carries nothing
for the client and keeps idle connections, and the proxies between, from timing out.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Send

from .errors import REQUEST_ID_HEADER

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx would otherwise hold events back in its buffer
]
_ID_HEADER = REQUEST_ID_HEADER.encode()


def event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def comment(text: str) -> bytes:
    return b": " + text.encode() + b"\n\n"


KEEP_ALIVE = comment("keep-alive")


async def start(send: Send, rid: str) -> None:
    """Start a 200 event-stream response that echoes the request id."""
    await send({"type": "http.response.start", "status": 200, "headers": [*_HEADERS, (_ID_HEADER, rid.encode())]})


async def write(send: Send, frame: bytes) -> None:
    await send({"type": "http.response.body", "body": frame, "more_body": True})


async def finish(send: Send) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})
