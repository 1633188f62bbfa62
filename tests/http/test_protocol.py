"""The transport ``berth serve`` gives uvicorn: a response head leaves with its body in
one write, and never waits longer than one turn of the event loop. (Every HTTP, SSE and
WebSocket test in the suite also runs through it, since they all start ``berth serve``.)"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Iterator

import pytest

from berth.http.protocol import _HeadJoiningTransport
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
        return ("127.0.0.1", 8080) if name == "sockname" else default


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
    with server.client() as client:  # one connection, several answers on it
        for _ in range(3):
            response = client.post("/infer", json={"input": [1, 2, 3, 4]})
            assert response.status_code == 200 and len(response.json()["probs"]) > 0
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /health HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):  # HTTP/1.0: the server closes after the answer
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length" in head.lower()
    assert int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) == len(body)
