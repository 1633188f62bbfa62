"""Servers and SSE helpers shared by the streaming tests.

(No ``__init__.py`` and no ``conftest.py`` here: either would clash with the names of
the top-level ``tests/conftest.py``; this module is imported by name instead.)
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Iterator

import httpx
import orjson

from conftest import BerthServer


def emg_server(workdir: Path, demo_dir: Path, emg: dict[str, Any] | None = None, **kwargs: Any) -> BerthServer:
    """A server on the demo repository with the EMG model preloaded and ``emg`` settings."""
    config: dict[str, Any] = {
        "repository": str(demo_dir / "models"),
        "default_model": "digits",
        "models": {"emg": {"preload": True}},
        "emg": emg or {},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    return BerthServer(config, workdir, **kwargs).start()


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """("comment", text) and ("event", dict) items from SSE lines, parsed strictly:
    every event is exactly one ``data:`` line followed by a blank line."""
    data: str | None = None
    for line in lines:
        if line.startswith(":"):
            assert data is None, "a comment inside an event"
            yield "comment", line[1:].strip()
        elif line.startswith("data: "):
            assert data is None, "berth sends one data line per event"
            data = line[len("data: "):]
        elif line == "":
            if data is not None:
                yield "event", orjson.loads(data)
                data = None
        else:
            raise AssertionError(f"unexpected SSE line {line!r}")


def stream(url: str, body: dict[str, Any], *, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every event of a whole stream (which must end with a final event)."""
    events: list[dict[str, Any]] = []
    with httpx.stream("POST", f"{url}/infer/stream", json=body, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for kind, item in sse_events(response.iter_lines()):
            if kind == "event":
                events.append(item)
                if "status" in item or "error" in item:
                    break
    assert events and ("status" in events[-1] or "error" in events[-1]), "no final event"
    return events


def usage_count(url: str, model: str = "emg") -> int:
    models = httpx.get(f"{url}/models", timeout=10).json()["models"]
    return int(next(m for m in models if m["name"] == model)["stats"]["usage_count"])


def raw_stream_socket(port: int, body: dict[str, Any], rcvbuf: int | None = None) -> socket.socket:
    """A plain socket that has sent ``POST /infer/stream`` (for clients that misbehave)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    payload = orjson.dumps(body)
    sock.sendall(
        b"POST /infer/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload
    )
    return sock
