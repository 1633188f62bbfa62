"""The protocol ``berth serve`` gives uvicorn.

Its transport sends a response head with its body in one write, and never holds a head
longer than one turn of the event loop. Inference requests (``POST …/infer``) run on
its lean cycle: HTTP semantics are checked here on the wire (keep-alive, pipelining,
HTTP/1.0, ``Connection: close``, bodies in pieces, big bodies, ``Expect:
100-continue``, chunked uploads, errors), and the ASGI side with small apps of the
test's own. (Every HTTP, SSE and WebSocket test in the suite also runs through this
protocol, since they all start ``berth serve``.)"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any, BinaryIO, Iterator

import pytest
import uvicorn
from uvicorn.server import ServerState

from berth.http.disconnect import ClientDisconnected, cancel_on_disconnect
from berth.http.protocol import HttpProtocol, _HeadJoiningTransport
from conftest import BerthServer
from http_fixtures import start_linear_server

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"


class RecordingTransport:
    """What the real transport was asked to do, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, chunks: Any) -> None:
        self.calls.append(("writelines", list(chunks)))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 40000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def sent(self) -> bytes:
        """Everything written, in order."""
        return b"".join(data if kind == "write" else b"".join(data) for kind, data in self.calls if kind != "close")


def test_a_head_leaves_with_the_body_in_one_call() -> None:
    async def scenario() -> list[tuple[str, Any]]:
        real = RecordingTransport()
        joined = _HeadJoiningTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        joined.write(HEAD)
        assert real.calls == [] and joined.get_write_buffer_size() == len(HEAD)
        joined.write(b"{}")
        await asyncio.sleep(0)  # the pending flush finds nothing left to send
        return real.calls

    assert asyncio.run(scenario()) == [("writelines", [HEAD, b"{}"])]


def test_a_head_alone_goes_out_at_the_next_turn_and_before_a_close() -> None:
    async def scenario() -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
        loop = asyncio.get_running_loop()
        streaming = RecordingTransport()
        joined = _HeadJoiningTransport(streaming, loop)  # type: ignore[arg-type]
        joined.write(HEAD)
        await asyncio.sleep(0)
        joined.write(b"data: 1\n\n")  # a later chunk (an event stream) goes on its own
        closing = RecordingTransport()
        joined = _HeadJoiningTransport(closing, loop)  # type: ignore[arg-type]
        joined.write(HEAD)
        joined.close()
        return streaming.calls, closing.calls

    streaming, closing = asyncio.run(scenario())
    assert streaming == [("write", HEAD), ("write", b"data: 1\n\n")]
    assert closing == [("write", HEAD), ("close", None)]


def test_other_writes_pass_straight_through() -> None:
    async def scenario() -> list[tuple[str, Any]]:
        real = RecordingTransport()
        joined = _HeadJoiningTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        joined.write(b"0\r\n\r\n")  # ends like a head but is no status line
        joined.write(b"HTTP/1.1 is only text here")  # starts like one but does not end like one
        assert joined.get_extra_info("sockname") == ("127.0.0.1", 8080) and not joined.is_closing()
        return real.calls

    assert asyncio.run(scenario()) == [("write", b"0\r\n\r\n"), ("write", b"HTTP/1.1 is only text here")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    running = start_linear_server(tmp_path_factory.mktemp("protocol"))
    yield running
    running.stop()


def test_keep_alive_and_http_1_0_answers_arrive_whole(server: BerthServer) -> None:
    """Through uvicorn's cycle and the head-joining transport (inference requests take
    the lean cycle: tested on the wire below)."""
    with server.client() as client:  # one connection, several answers on it
        for _ in range(3):
            response = client.get("/v2/models/m")
            assert response.status_code == 200 and response.json()["name"] == "m"
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /health HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):  # HTTP/1.0: the server closes after the answer
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length" in head.lower()
    assert int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) == len(body)


# ── the lean cycle, on the wire against a real server ─────────────────────────
def _read_response(stream: BinaryIO) -> tuple[int, dict[bytes, bytes], bytes]:
    """One response off the stream: status, headers (lower-cased names), body."""
    status = int(stream.readline().split()[1])
    headers: dict[bytes, bytes] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while size := int(stream.readline().strip(), 16):
            body += stream.read(size)
            stream.readline()
        stream.readline()
        return status, headers, body
    return status, headers, stream.read(int(headers.get(b"content-length", b"0")))


def _request(host: str, body: bytes, *, path: str = "/infer", extra: str = "", version: str = "1.1") -> bytes:
    return f"POST {path} HTTP/{version}\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.fixture()
def connection(server: BerthServer) -> Iterator[tuple[socket.socket, BinaryIO, str]]:
    host = server.url.removeprefix("http://")
    name, port = host.split(":")
    with socket.create_connection((name, int(port)), timeout=10) as sock, sock.makefile("rb") as stream:
        yield sock, stream, host


SEED_BODY = json.dumps({"input": [1, 2, 3, 4]}).encode()
V2_BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}).encode()


def _probs(body: bytes) -> list[float]:
    return json.loads(body)["probs"]


def test_inference_requests_keep_the_connection_alive(connection: tuple[socket.socket, BinaryIO, str]) -> None:
    sock, stream, host = connection
    answers = []
    for path, body in [("/infer", SEED_BODY), ("/v2/models/m/infer", V2_BODY), ("/infer", SEED_BODY)]:
        sock.sendall(_request(host, body, path=path))
        answers.append(_read_response(stream))
    assert [status for status, _, _ in answers] == [200, 200, 200]
    status, headers, body = answers[0]
    assert headers[b"content-type"] == b"application/json" and int(headers[b"content-length"]) == len(body)
    assert b"date" in headers and len(headers[b"x-request-id"]) > 0 and b"connection" not in headers
    assert _probs(body) == _probs(answers[2][2]) and len(_probs(body)) > 1
    assert json.loads(answers[1][2])["outputs"][0]["shape"] == [1, len(_probs(body))]


def test_pipelined_requests_are_answered_in_order(connection: tuple[socket.socket, BinaryIO, str]) -> None:
    sock, stream, host = connection
    ids = ["first", "second", "third"]
    sock.sendall(b"".join(_request(host, SEED_BODY, extra=f"X-Request-Id: {rid}\r\n") for rid in ids))
    answers = [_read_response(stream) for _ in ids]
    assert [headers[b"x-request-id"].decode() for _, headers, _ in answers] == ids
    assert all(status == 200 for status, _, _ in answers)


@pytest.mark.parametrize("version, extra", [("1.0", ""), ("1.1", "Connection: close\r\n")])
def test_http_1_0_and_connection_close_end_the_connection(connection: tuple[socket.socket, BinaryIO, str], version: str, extra: str) -> None:
    sock, stream, host = connection
    sock.sendall(_request(host, SEED_BODY, extra=extra, version=version))
    status, headers, body = _read_response(stream)
    assert status == 200 and len(_probs(body)) > 1
    assert headers[b"connection"] == b"close"
    assert stream.read() == b""  # the server closed the connection


def test_a_body_in_pieces_and_a_body_past_the_read_buffer(connection: tuple[socket.socket, BinaryIO, str]) -> None:
    sock, stream, host = connection
    request = _request(host, SEED_BODY)
    for start in range(0, len(request), 17):  # headers and body in small pieces, with pauses
        sock.sendall(request[start : start + 17])
        time.sleep(0.002)
    assert _read_response(stream)[0] == 200
    # 300 KB of JSON whitespace: uvicorn pauses reading past 64 KB until the app asks
    padded = b'{"input": [1, 2, 3, 4]' + b" " * 300_000 + b"}"
    sock.sendall(_request(host, padded))
    status, _, body = _read_response(stream)
    assert status == 200 and len(_probs(body)) > 1


def test_expect_100_continue_and_a_chunked_upload(connection: tuple[socket.socket, BinaryIO, str]) -> None:
    sock, stream, host = connection
    head = f"POST /infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {len(SEED_BODY)}\r\n\r\n"
    sock.sendall(head.encode())
    assert stream.readline() == b"HTTP/1.1 100 Continue\r\n" and stream.readline() == b"\r\n"
    sock.sendall(SEED_BODY)
    assert _read_response(stream)[0] == 200
    chunked = f"POST /infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    for piece in (SEED_BODY[:9], SEED_BODY[9:]):
        chunked += b"%x\r\n%b\r\n" % (len(piece), piece)
    sock.sendall(chunked + b"0\r\n\r\n")
    status, _, body = _read_response(stream)
    assert status == 200 and len(_probs(body)) > 1


def test_errors_answer_in_shape_and_keep_the_connection(connection: tuple[socket.socket, BinaryIO, str]) -> None:
    sock, stream, host = connection
    sock.sendall(_request(host, b'{"input": [1, 2,'))
    status, headers, body = _read_response(stream)
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]
    assert json.loads(body)["request_id"] == headers[b"x-request-id"].decode()
    sock.sendall(_request(host, V2_BODY, path="/v2/models/nope/infer"))
    assert _read_response(stream)[0] == 404
    sock.sendall(_request(host, SEED_BODY, path="/no/such/infer"))  # not a fast-lane route: Starlette answers
    status, headers, body = _read_response(stream)
    assert status == 404 and int(headers[b"content-length"]) == len(body) and "no endpoint" in json.loads(body)["error"]
    # declared too big: refused from the headers alone, before any of the body is sent
    sock.sendall(f"POST /infer HTTP/1.1\r\nHost: {host}\r\nContent-Length: {10**10}\r\n\r\n".encode())
    status, _, body = _read_response(stream)
    assert status == 413 and "limit" in json.loads(body)["error"]


# ── the lean cycle's ASGI side, with apps of the test's own ───────────────────
def _connected(app: Any) -> tuple[HttpProtocol, RecordingTransport, ServerState]:
    """A fresh protocol running ``app``, connected to a recording transport (call in a loop)."""
    config = uvicorn.Config(app, http=HttpProtocol, lifespan="off", proxy_headers=False, log_level="critical", interface="asgi3")
    config.load()
    state = ServerState()
    protocol = HttpProtocol(config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport, state


async def _settle(state: ServerState) -> None:
    for _ in range(100):
        await asyncio.sleep(0)
        if not state.tasks:
            return


def _serve_once(app: Any, request: bytes) -> RecordingTransport:
    """Feed ``request`` to a fresh protocol running ``app``; what it wrote."""

    async def scenario() -> RecordingTransport:
        protocol, transport, state = _connected(app)
        protocol.data_received(request)
        await _settle(state)
        return transport

    return asyncio.run(scenario())


LEAN_REQUEST = b"POST /m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


@pytest.mark.parametrize(
    "request_line, lean",
    [
        (b"POST /infer HTTP/1.1", True),
        (b"POST /v2/models/digits/infer HTTP/1.1", True),
        (b"POST /v2/models/digits/versions/2/infer HTTP/1.0", True),
        (b"GET /infer HTTP/1.1", False),
        (b"POST /infer?x=1 HTTP/1.1", False),
        (b"POST /a%20b/infer HTTP/1.1", False),
        (b"POST /infer/stream HTTP/1.1", False),
        (b"POST /v1/chat/completions HTTP/1.1", False),
        (b"POST http://x/infer HTTP/1.1", False),
    ],
)
def test_which_requests_take_the_lean_cycle(request_line: bytes, lean: bool) -> None:
    cycles = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        cycles.append(type(send).__name__)  # the lean cycle is its own send
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = _serve_once(app, request_line + b"\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    assert (cycles == ["LeanCycle"]) is lean, cycles
    assert transport.sent().startswith(b"HTTP/1.1 204 No Content\r\n")


def test_a_streamed_answer_is_chunked_and_a_whole_one_counted() -> None:
    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["body"] == b"{}"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})

    async def whole(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    streamed = _serve_once(streaming, LEAN_REQUEST).sent()
    assert streamed.endswith(b"\r\ntransfer-encoding: chunked\r\n\r\n3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n")
    counted = _serve_once(whole, LEAN_REQUEST)
    assert counted.sent().startswith(b"HTTP/1.1 201 Created\r\n") and counted.sent().endswith(b"content-length: 4\r\n\r\ndone")
    assert counted.calls[0][0] == "writelines" and len(counted.calls) == 1  # head and body in one call


@pytest.mark.parametrize("header", [(b"x-evil", b"a\r\nset-cookie: b"), (b"bad name", b"v")])
def test_a_failing_app_or_a_header_that_breaks_its_line_is_a_500_and_a_close(header: tuple[bytes, bytes]) -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom")

    async def smuggling(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [header]})
        await send({"type": "http.response.body", "body": b"x"})

    for app in (failing, smuggling):
        transport = _serve_once(app, LEAN_REQUEST)
        assert transport.sent().startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), app
        assert b"set-cookie" not in transport.sent() and transport.closing


@pytest.mark.parametrize("leaves", ["while the work waits", "before the work is awaited"])
def test_a_lost_connection_cancels_a_lean_request_s_work(leaves: str) -> None:
    """The protocol tells the lean cycle; the handler's pending work is cancelled (the
    batcher then drops it) and the handler hears ClientDisconnected, not a bare cancel."""

    async def scenario() -> tuple[bool, list[str]]:
        loop = asyncio.get_running_loop()
        work: asyncio.Future[int] = loop.create_future()
        heard: list[str] = []
        gone = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            if leaves == "before the work is awaited":
                await gone.wait()
            try:
                await cancel_on_disconnect(receive, work)
            except ClientDisconnected:
                heard.append("ClientDisconnected")

        protocol, _, state = _connected(app)
        protocol.data_received(LEAN_REQUEST)
        for _ in range(5):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        gone.set()
        await _settle(state)
        return work.cancelled(), heard

    assert asyncio.run(scenario()) == (True, ["ClientDisconnected"])


def test_a_receive_that_gave_up_does_not_spoil_the_next() -> None:
    """A task waiting in ``receive`` for more body is cancelled (a timeout, say); the
    next ``receive`` still waits for the body and gets it."""

    async def scenario() -> bytes:
        got: list[bytes] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            try:
                await asyncio.wait_for(receive(), 0.01)
            except asyncio.TimeoutError:
                pass
            message = await receive()
            got.append(message["body"])
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        protocol, _, state = _connected(app)
        protocol.data_received(b"POST /m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n")  # no body yet
        await asyncio.sleep(0.05)
        protocol.data_received(b"{}")
        for _ in range(50):
            await asyncio.sleep(0.001)
            if got:
                break
        await _settle(state)
        return got[0] if got else b"<nothing>"

    assert asyncio.run(scenario()) == b"{}"
