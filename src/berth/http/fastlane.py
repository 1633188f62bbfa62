"""A fast lane in front of the Starlette app for the hottest data-plane routes.

Starlette's router, exception middlewares, ``Request`` and ``Response`` cost tens of
microseconds per request; for a model that runs in twenty, that is most of the time.
Routes registered here are matched by exact ``(method, path)`` in one dict lookup and
handed the raw ASGI ``scope``/``receive``/``send``. Routes whose path carries a
parameter (``POST /v2/models/{m}[/versions/{v}]/infer``) are registered as a
:class:`PrefixRoute` — method, path prefix and suffix — tried in order after the exact
lookup misses; such a handler reads its parameters from ``scope["path"]``. Every other
request, and every other method on these paths, goes through the Starlette app as
usual, and the same handlers are also mounted there, so behaviour does not depend on
which way a request came in. Errors map through the same table and body as everywhere
else.

A raw handler returns the status it answered with, so the lane records the request
metrics of its routes itself, with no wrapper around ``send``; everything else is
recorded by the :class:`~berth.http.metrics.RequestMetrics` middleware behind it.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Awaitable, Callable, NamedTuple, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import BerthError
from .disconnect import ClientDisconnected
from .errors import REQUEST_ID_HEADER, STATUS, error_body, error_headers, scope_request_id
from .lean_cycle import LeanCycle, header_lines
from .metrics import RequestMetrics, RouteMetrics

log = logging.getLogger("berth.http")

#: a raw ASGI handler; it returns the HTTP status it answered with
RawHandler = Callable[[Scope, Receive, Send], Awaitable[int]]

JSON = b"application/json"
_ID_HEADER = REQUEST_ID_HEADER.encode()
#: the status recorded for a request whose client went away before its answer
CLIENT_GONE = 499
#: a fast route: its handler and where its requests are counted; ``()`` where the
#: Starlette app serves
_Route = tuple[RawHandler, RouteMetrics | None] | tuple[()]


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    rid: str,
    extra: dict[str, str] | None = None,
    *,
    content_type: bytes = JSON,
    number: tuple[bytes, int] | None = None,
) -> int:
    """Answer with ``body`` in one message, with its length (not chunked) and the
    request id; returns ``status`` for the handler to return. ``number`` is one more
    header, a lower-case name of the caller's and an integer value (the JSON length of
    a V2 binary answer): nothing in it needs checking.

    Served by a :class:`~berth.http.lean_cycle.LeanCycle`, the answer is written at once,
    with no ASGI messages."""
    if send.__class__ is LeanCycle:
        lines = b"content-type: %b\r\ncontent-length: %d\r\n%b: %b\r\n" % (content_type, len(body), _ID_HEADER, rid.encode())
        if number is not None:
            lines += b"%b: %d\r\n" % number
        if extra:
            lines += header_lines(extra)
        if send.respond(status, lines, body):  # type: ignore[attr-defined]
            return status
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), (_ID_HEADER, rid.encode())]
    if number is not None:
        headers.append((number[0], b"%d" % number[1]))
    if extra:
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


class PrefixRoute(NamedTuple):
    """Paths that start with ``prefix`` and end with ``suffix`` (and are longer than both)."""

    method: str
    prefix: str
    suffix: str
    handler: RawHandler


class AsgiEndpoint:
    """Mounts a raw handler in Starlette as an ASGI app rather than a request function.

    Its errors go on to Starlette's exception handlers, unless ``lane_errors``: then
    they are answered here, byte for byte as the fast lane answers them."""

    def __init__(self, handler: RawHandler, *, lane_errors: bool = False) -> None:
        self.handler = handler
        self.lane_errors = lane_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.lane_errors:
            await answer_errors(self.handler, scope, receive, send)
            return
        try:
            await self.handler(scope, receive, send)
        except ClientDisconnected:
            return


class FastLane:
    def __init__(
        self,
        app: ASGIApp,
        routes: dict[tuple[str, str], RawHandler],
        prefix_routes: Sequence[PrefixRoute] = (),
        metrics: RequestMetrics | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        # an exact path is its own metrics label (a fixed path is its own template)
        self.routes: dict[tuple[str, str], _Route] = {key: (handler, self._recorder(*key)) for key, handler in routes.items()}
        self.prefix_routes = tuple(prefix_routes)
        # bounded, since paths come from clients; they repeat the same few model paths
        self._matched = functools.lru_cache(maxsize=1024)(self._match)

    def _recorder(self, method: str, label: str) -> RouteMetrics | None:
        return self.metrics.route(method, label) if self.metrics is not None else None

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # a plain function: a request for another route costs no coroutine frame here
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            route = self.routes.get((method, path)) or self._matched(method, path)
            if route:
                handler, recorder = route
                return self._serve(handler, recorder, scope, receive, send)
        return self.app(scope, receive, send)

    def _match(self, method: str, path: str) -> _Route:
        """The prefix route serving ``method path``, or ``()`` for none."""
        for route in self.prefix_routes:
            if (
                method == route.method
                and path.startswith(route.prefix)
                and path.endswith(route.suffix)
                and len(path) > len(route.prefix) + len(route.suffix)
            ):
                return (route.handler, self._recorder(method, f"{route.prefix}{{model}}{route.suffix}"))
        return ()

    async def _serve(self, handler: RawHandler, recorder: RouteMetrics | None, scope: Scope, receive: Receive, send: Send) -> None:
        # answer_errors written out here: one coroutine frame fewer on every request
        started = time.perf_counter()
        status = 500
        try:
            status = await handler(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 - answered by berth's error table
            status = await answer_error(exc, scope, send)
        finally:
            if recorder is not None:
                recorder.record(status, time.perf_counter() - started)


async def answer_errors(handler: RawHandler, scope: Scope, receive: Receive, send: Send) -> int:
    """Run a raw handler, answering its errors as :func:`answer_error` does; returns
    the status answered."""
    try:
        return await handler(scope, receive, send)
    except Exception as exc:  # noqa: BLE001 - answered by berth's error table
        return await answer_error(exc, scope, send)


async def answer_error(exc: Exception, scope: Scope, send: Send) -> int:
    """Answer a raw handler's error with berth's status table and error body; returns
    the status answered (:data:`CLIENT_GONE` when the client left, with no answer)."""
    # a raw handler raises only before its response starts (a stream ends with an
    # error event of its own instead), so an error can still be answered here
    if isinstance(exc, ClientDisconnected):
        return CLIENT_GONE
    rid = scope_request_id(scope)
    if isinstance(exc, BerthError):
        status = STATUS[exc.kind]
        return await send_json(send, status, error_body(exc.message, rid), rid, error_headers(exc))
    # the last net: a fixed 500, detail to the log
    log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
    return await send_json(send, 500, error_body("internal server error", rid), rid)
