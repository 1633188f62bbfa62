"""The HTTP protocol ``berth serve`` gives uvicorn: its httptools protocol, with two changes.

Inference requests (``POST`` to a plain path ending in ``/infer``) run on a
:class:`~berth.http.lean_cycle.LeanCycle` instead of uvicorn's general request cycle;
every other request takes uvicorn's cycle, and both run the same ASGI app.

And each response head is written together with its body. uvicorn writes a response's
status line and headers as soon as the app sends ``http.response.start`` and the body
when it sends ``http.response.body``: two writes, so two system calls and, on a socket
with Nagle's algorithm off (uvicorn turns it off), two TCP segments, each waking the
client. Joined, a small answer costs one system call and one segment: under
perf_analyzer (V2 binary) that measured 3–4% more requests per second at 8 connections
and 2–7% at 64 on this project's 2-core machine; with wrk it is within the noise
(bench/RESULTS.md). So the protocol hands uvicorn a transport that holds back a write
which is a response head (it starts with the status line and ends with the blank line)
and sends it with the next write, in one ``writelines`` call (one ``writev`` under
uvloop). A held head never waits long: it also goes out at the next turn of the event
loop, when the connection closes, and before anything else is done with the transport,
so an app that streams (Server-Sent Events, a head sent long before the body) sees no
change beyond that one turn. Order and bytes on the wire are exactly what uvicorn wrote.
(A lean cycle writes head and body in one call itself.)
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .lean_cycle import LeanCycle, expects_continue

__all__ = ["HttpProtocol"]

_STATUS_LINE_START = b"HTTP/1.1 "
# a path ending in /infer made of plain path characters only: nothing to unescape, no
# query or fragment to split off, so the scope's path is the bytes as they came
_LEAN_PATH = re.compile(rb"/(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]*/)?infer\Z")
_HEAD_END = b"\r\n\r\n"


class _HeadJoiningTransport:
    """A transport that sends a response head with the write that follows it."""

    __slots__ = ("_transport", "_loop", "_head")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, data))
        elif data.startswith(_STATUS_LINE_START) and data.endswith(_HEAD_END):
            self._head = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        self.flush()
        self._transport.writelines(chunks)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        head = self._head
        return self._transport.get_write_buffer_size() + (len(head) if head is not None else 0)

    def __getattr__(self, name: str) -> Any:
        # everything else (reading, extra info, flow limits, abort) is the transport's own
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """What ``berth serve`` gives uvicorn as its ``http`` protocol: the head-joining
    transport, and a :class:`~berth.http.lean_cycle.LeanCycle` for inference requests.

    A request takes the lean cycle when it is a ``POST`` to a plain path ending in
    ``/infer`` (seed-000 ``/infer`` and every V2 infer route): no query, no
    percent-escapes, no upgrade, and uvicorn not limiting concurrency. Everything else
    takes uvicorn's own cycle. Both run the same ASGI app.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_HeadJoiningTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        parser = self.parser
        url = self.url
        if (
            _LEAN_PATH.match(url) is None
            or parser.get_method() != b"POST"
            or parser.should_upgrade()
            or self.limit_concurrency is not None
        ):
            # uvicorn's cycle, told of ``Expect: 100-continue`` as its on_header would
            self.expect_100_continue = expects_continue(self.headers)
            super().on_headers_complete()
            return
        # what uvicorn puts in the scope here, for a path that needs no parsing
        scope = self.scope
        http_version = parser.get_http_version()
        scope["method"] = "POST"
        if http_version != "1.1":
            scope["http_version"] = http_version
        root = self.root_path
        scope["path"] = root + url.decode("ascii") if root else url.decode("ascii")
        scope["raw_path"] = root.encode("ascii") + url if root else url
        scope["query_string"] = b""
        existing = self.cycle
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        self.cycle = cycle = LeanCycle(self, scope, keep_alive)  # type: ignore[assignment]  # the cycle's duck type
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, self.app)  # type: ignore[arg-type]
        else:  # pipelined behind a request still being answered: queued as uvicorn queues
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's, less its test for ``Expect`` on every header (done once, when needed)
        self.headers.append((name.lower(), value))

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle.__class__ is LeanCycle:
            cycle.client_gone()  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle.__class__ is LeanCycle:
            cycle.take_body(body)  # type: ignore[attr-defined]
        else:
            super().on_body(body)
