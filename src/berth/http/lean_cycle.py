"""A lean request/response cycle for the inference routes (``POST …/infer``).

uvicorn runs every HTTP request through its ``RequestResponseCycle``: an
``asyncio.Event`` per request, a ``receive`` that waits on it, a ``send`` that checks
every response header with two regular expressions and writes the head on its own.
Counted through the real protocol (uvicorn's part of a V2 binary request, X-Forwarded
middleware included), that is about 1,000 Python bytecodes per request on top of the
app's own, as much as a whole bare V2 handler. For the routes where a model server
spends its life, the protocol (:mod:`.protocol`) hands the request to a
:class:`LeanCycle` instead, about 400 bytecodes with the protocol's own part.

A lean cycle keeps the ASGI contract (the app it runs is the same app, with the same
scope, ``receive`` and ``send`` semantics) and what the protocol reads and writes on a
cycle (``more_body``, ``message_event``, ``response_complete``, ``disconnected``,
``keep_alive``, ``run_asgi``), so pipelining, flow control, keep-alive and graceful
shutdown behave as before. What it does with less:

* the request body is kept as the chunks that arrived and handed over in one piece,
  also in the scope (``berth.body``) when it was all there before the app started;
* waiting for more body, or for the client to leave, is one future, made only when
  someone actually waits; ``Expect: 100-continue`` is looked for only then;
* the cycle is the ASGI ``send`` itself, and a handler with its whole answer ready
  hands it to :meth:`LeanCycle.respond`, which writes head and body in one call with
  no ASGI messages (:func:`berth.http.fastlane.send_json` does);
* otherwise the head is written with the first body message, in one ``writelines``: a
  body given in one message gets its ``Content-Length`` when the app gave none, a
  streamed one is chunked; all names are checked with one regular expression, all
  values with another;
* a lost connection cancels the task awaiting the request's work
  (:func:`berth.http.disconnect.cancel_on_disconnect`), with no watcher task.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Callable

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

__all__ = ["LeanCycle", "expects_continue", "header_lines"]

# a header name or value with a control character, or a name with a separator, would
# let a value smuggle a header or a whole response in
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_SERVER_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)
_NO_BODY_STATUSES = frozenset({204, 304})


def _nothing() -> None:
    pass


#: (status, default headers, head start) of the last answer, as one tuple so that a
#: reader always sees the three together
_last_head: list[tuple[int, Any, bytes]] = [(0, None, b"")]


def _head_start(status: int, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The status line and the server's own headers (the date, which uvicorn renews
    every second as a new list). Both come from the server, never from a client."""
    last_status, last_headers, head = _last_head[0]
    if last_status == status and last_headers is default_headers:
        return head
    head = STATUS_LINE[status] + b"".join(b"%b: %b\r\n" % (name.lower(), value) for name, value in default_headers)
    _last_head[0] = (status, default_headers, head)
    return head


class _Signal:
    """What uvicorn's protocol calls a cycle's ``message_event``: ``set`` wakes whoever
    waits in :meth:`LeanCycle.receive`. Nothing needs remembering between a ``set`` and
    a wait: the waiter looks at the cycle's state before it waits and again when it
    wakes, and nothing can change that state between its look and its wait (one
    thread, no await in between). So a ``set`` with nobody waiting is a no-op, and a
    future is made only for a real wait."""

    __slots__ = ("_loop", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():  # done: cancelled with a waiter that gave up
            waiter = self.waiter = self._loop.create_future()
        await waiter


class LeanCycle:
    """One request and its response, served without uvicorn's general cycle.

    The cycle is the ASGI ``send`` callable itself, so a handler that already has its
    whole answer can skip the messages: :meth:`respond` writes it at once."""

    # per-request state that starts the same for every request lives on the class: an
    # instance sets only what differs
    disconnected = False
    more_body = True  # the protocol's on_message_complete sets it False
    buffered = 0  # bytes of body waiting in ``chunks``
    body_taken = False  # the app has had the last of the body
    response_started = False
    response_complete = False
    _head_written = False
    _chunked = False
    _remaining = -1  # bytes still owed under the response's Content-Length; -1: none given
    _continue_checked = False  # whether an ``Expect: 100-continue`` was looked for (once)
    #: the handler task awaiting work for this request, cancelled if the client leaves
    #: (berth.http.disconnect.cancel_on_disconnect)
    watcher: asyncio.Task[Any] | None = None
    gone_while_watched = False

    def __init__(self, protocol: Any, scope: dict[str, Any], keep_alive: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.transport: asyncio.Transport = protocol.transport
        self.flow: FlowControl = protocol.flow
        self.keep_alive = keep_alive
        self.on_response: Callable[[], None] = protocol.on_response_complete
        self.message_event = _Signal(protocol.loop)
        self.chunks: list[bytes] = []
        self._status = 0
        self._headers: Any = ()

    # ── fed by the protocol ────────────────────────────────────────────────
    def take_body(self, chunk: bytes) -> None:
        """A piece of the request body arrived (the protocol's ``on_body``)."""
        if self.response_complete:
            return  # answered already (a refused upload): the rest is read and dropped
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        if self.buffered > HIGH_WATER_LIMIT:
            self.flow.pause_reading()  # resumed when the app asks for more
        if self.message_event.waiter is not None:
            self.message_event.set()

    # ── the ASGI app's side ────────────────────────────────────────────────
    async def run_asgi(self, app: Any) -> None:
        chunks = self.chunks
        if not self.more_body and chunks:
            # the whole body is here (a small request comes in one read): a raw handler
            # takes it from the scope (berth.http.body.read_raw_body), with no message;
            # ``receive`` still hands it over to anyone who asks
            self.scope["berth.body"] = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            result = await app(self.scope, self.receive, self)
        except BaseException as exc:
            self.protocol.logger.error("Exception in ASGI application\n", exc_info=exc)
            self._fail()
        else:
            if result is not None:
                self.protocol.logger.error("ASGI callable should return None, but returned '%s'.", result)
                self._fail()
            elif not self.response_complete and not self.disconnected:
                self.protocol.logger.error("ASGI callable returned without completing response.")
                self._fail()
        finally:
            self.on_response = _nothing

    def _fail(self) -> None:
        """The app broke off: a 500 when nothing was written yet, else the connection ends
        (a half-sent response cannot be repaired)."""
        if not self._head_written and not self.disconnected and not self.response_complete:
            self._head_written = True
            self.transport.write(_SERVER_ERROR)
        self.response_complete = True
        self.keep_alive = False
        self.transport.close()

    def client_gone(self) -> None:
        """The connection was lost (the protocol's ``connection_lost``)."""
        watcher = self.watcher
        if watcher is not None and not self.response_complete:
            self.gone_while_watched = True
            watcher.cancel()

    async def receive(self) -> dict[str, Any]:
        while not self.disconnected and not self.response_complete:
            chunks = self.chunks
            if chunks or (not self.more_body and not self.body_taken):
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self.chunks = []
                self.buffered = 0
                more_body = self.more_body
                self.body_taken = not more_body
                return {"type": "http.request", "body": body, "more_body": more_body}
            # nothing to hand over: wait for more body, the end of the response, or the
            # client leaving
            if self.more_body and not self._continue_checked:
                self._continue_checked = True
                self._send_continue_if_expected()
            self.flow.resume_reading()
            await self.message_event.wait()
        return {"type": "http.disconnect"}

    def _send_continue_if_expected(self) -> None:
        """A client that sent ``Expect: 100-continue`` waits for this before it sends
        the body, so it is sent when the app first waits for body that has not come."""
        if expects_continue(self.scope["headers"]) and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def respond(self, status: int, header_lines: bytes, body: bytes) -> bool:
        """Answer at once with ``body`` and the header lines given (``name: value\\r\\n``
        each, safe and complete, ``Content-Length`` included) after the server's own
        (the date); False, with nothing done, where this cycle cannot: a response
        already begun, or a client not reading what it was sent (then the caller takes
        the ASGI way, which waits for it)."""
        if self.response_started or self.disconnected or self.flow.write_paused:
            return False
        self.response_started = self.response_complete = self._head_written = True
        self._continue_checked = True  # no interim answer after the final one
        protocol = self.protocol
        if not self.keep_alive:
            header_lines += b"connection: close\r\n"
        self.transport.writelines((_head_start(status, protocol.server_state.default_headers), header_lines, b"\r\n", body))
        if protocol.access_log:
            self._log_access(status)
        self._finish()
        return True

    async def __call__(self, message: dict[str, Any]) -> None:
        """ASGI ``send``."""
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self.response_started = True
            self._continue_checked = True
            self._status = message["status"]
            self._headers = message.get("headers", ())
            return
        if self.response_complete:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")
        if kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if not self._head_written:
            head, framed = self._head(body, more_body), self._framed(body, more_body)
            self._head_written = True
            self.transport.writelines((head, framed))
        elif body or not more_body:
            self.transport.write(self._framed(body, more_body))
        if not more_body:
            if self._remaining > 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self._finish()

    def _finish(self) -> None:
        """The response is all written: a waiting ``receive`` hears so, a connection not
        kept alive ends, and the protocol goes on (the next pipelined request, the
        keep-alive timer)."""
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()

    def _head(self, body: bytes, more_body: bool) -> bytes:
        """The status line and headers, with the framing uvicorn would choose: the
        app's ``Content-Length``, else the length of a body sent in one piece, else
        chunks."""
        status = self._status
        default_headers = self.protocol.server_state.default_headers
        headers = default_headers + list(self._headers) if default_headers else self._headers
        parts = [STATUS_LINE[status]]
        length_given = close_given = False
        for name, value in headers:
            name = name.lower()
            if name == b"content-length":
                length_given = True
                self._remaining = int(value)
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self._chunked = True
            elif name == b"connection" and b"close" in [token.strip() for token in value.lower().split(b",")]:
                self.keep_alive = False
                close_given = True
            parts += (name, b": ", value, b"\r\n")
        _check_fields(parts[1::4], parts[3::4])
        if length_given and self._chunked:
            raise RuntimeError("Response gives both Content-Length and chunked Transfer-Encoding.")
        if not length_given and not self._chunked and status not in _NO_BODY_STATUSES:
            if more_body:
                self._chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                self._remaining = len(body)
                parts.append(b"content-length: %d\r\n" % len(body))
        if not self.keep_alive and not close_given:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if self.protocol.access_log:
            self._log_access(status)
        return b"".join(parts)

    def _log_access(self, status: int) -> None:
        scope = self.scope
        client = scope.get("client")
        self.protocol.access_logger.info(
            '%s - "%s %s HTTP/%s" %d',
            "%s:%d" % client if client else "", scope["method"], scope["path"], scope["http_version"], status,
        )  # fmt: skip

    def _framed(self, body: bytes, more_body: bool) -> bytes:
        """``body`` as it goes on the wire: a chunk, or counted against the length."""
        if self._chunked:
            if not more_body:
                return b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
            return b"%x\r\n%b\r\n" % (len(body), body)
        if self._remaining >= 0:
            if len(body) > self._remaining:
                raise RuntimeError("Response content longer than Content-Length")
            self._remaining -= len(body)
        return body


def header_lines(headers: dict[str, str]) -> bytes:
    """``name: value\\r\\n`` for each header (names lower-cased), refusing a name or
    value that could break out of its line."""
    names = [name.lower().encode("latin-1") for name in headers]
    values = [value.encode("latin-1") for value in headers.values()]
    _check_fields(names, values)
    return b"".join(b"%b: %b\r\n" % field for field in zip(names, values))


def _check_fields(names: list[bytes], values: list[bytes]) -> None:
    """Refuse header names or values that could break out of their lines (uvicorn's two
    checks, each run once over all the fields)."""
    if _BAD_NAME.search(b"".join(names)) or _BAD_VALUE.search(b"".join(values)):
        raise RuntimeError("Invalid HTTP header name or value.")


def expects_continue(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request headers (lower-case names) carry ``Expect: 100-continue``."""
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in headers)
