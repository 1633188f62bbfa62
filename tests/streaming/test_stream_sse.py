"""``POST /infer/stream`` on a live server (dummy source): framing, pacing, ends,
disconnects, slow readers, limits and bad parameters."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import httpx
import numpy as np
import orjson
import pytest

from berth.http.emg_stream import SendBuffer, StreamApi
from conftest import BerthServer
from stream_fixtures import emg_server, raw_stream_socket, sse_events, stream, usage_count
from waiting import wait_until

MAX_STREAMS = 3
FRAME_FIELDS = {"timestamp", "frame", "latency_ms", "prediction", "confidence", "shape", "backend", "cpu_percent"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Iterator[BerthServer]:
    emg = {"max_streams": MAX_STREAMS, "keepalive_s": 0.3, "send_buffer": 4}
    running = emg_server(tmp_path_factory.mktemp("sse"), demo_dir, emg)
    yield running
    running.stop()


def _active_streams(server: BerthServer) -> int:
    return int(httpx.get(f"{server.url}/infer/stream/stats").json()["active_streams"])


def test_framing_fields_and_completion(server: BerthServer) -> None:
    with httpx.stream("POST", f"{server.url}/infer/stream", json={"duration_seconds": 0.5, "fps": 20}, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        items = list(sse_events(response.iter_lines()))
    assert items[0][0] == "comment"  # sent at once, so the client sees the stream open
    events = [item for kind, item in items if kind == "event"]
    frames, final = events[:-1], events[-1]
    assert 8 <= len(frames) <= 11
    for event in frames:
        assert FRAME_FIELDS <= event.keys()
        assert event["shape"] == [1, 7] and event["backend"] == "onnxruntime" and event["model"] == "emg"
        assert 0 <= event["prediction"] < 7 and 0 < event["confidence"] <= 1
        assert event["gesture"] in ("rest", "fist", "open", "wrist_flex", "wrist_ext", "pinch", "point")
    assert [e["frame"] for e in frames] == sorted({e["frame"] for e in frames})
    assert final["status"] == "completed"
    assert final["total_frames"] == len(frames) + final["dropped_events"]
    assert {"duration_seconds", "avg_fps", "missed_frames"} <= final.keys()


def test_pytorch_backend_and_any_model(server: BerthServer) -> None:
    events = stream(server.url, {"duration_seconds": 0.3, "fps": 10, "use_tensorrt": False, "preprocess": True})
    assert events[0]["backend"] == "pytorch" and events[0]["model"] == "emg_torch"
    events = stream(server.url, {"duration_seconds": 0.3, "fps": 10, "model": "emg"})
    assert events[0]["model"] == "emg" and events[-1]["status"] == "completed"


def test_frame_rate_and_duration_are_kept(server: BerthServer) -> None:
    started = time.monotonic()
    events = stream(server.url, {"duration_seconds": 3.0, "fps": 30})
    elapsed = time.monotonic() - started
    frames, final = events[:-1], events[-1]
    assert final["status"] == "completed"
    assert 85.5 <= len(frames) <= 94.5, f"{len(frames)} frames for 3 s at 30 fps ({final})"
    assert 2.9 <= final["duration_seconds"] <= 3.3 and 2.9 <= elapsed <= 4.5
    # slots on a fixed grid: the last frame lands where its number says, no drift
    times = np.array([e["timestamp"] for e in frames])
    numbers = np.array([e["frame"] for e in frames])
    offsets = times - times[0] - (numbers - numbers[0]) / 30.0
    assert np.abs(offsets).max() < 0.1, f"frames drift from their slots by up to {np.abs(offsets).max():.3f} s"
    # a frame a whole period late skips the slots it overran, so none is that late
    assert all(0.0 <= e["late_ms"] < 1000 / 30 for e in frames), max(e["late_ms"] for e in frames)


def test_keep_alive_comments_between_slow_frames(server: BerthServer) -> None:
    with httpx.stream("POST", f"{server.url}/infer/stream", json={"duration_seconds": 2.0, "fps": 1}, timeout=30) as response:
        items = list(sse_events(response.iter_lines()))
    comments = [text for kind, text in items if kind == "comment" and text == "keep-alive"]
    events = [item for kind, item in items if kind == "event"]
    assert len(comments) >= 2  # keepalive_s is 0.3 here, frames come once a second
    assert len(events) == 3 and events[-1]["status"] == "completed"


def test_disconnect_stops_the_stream_and_its_model_calls(server: BerthServer) -> None:
    with httpx.stream("POST", f"{server.url}/infer/stream", json={"duration_seconds": None, "fps": 100}, timeout=30) as response:
        seen = 0
        for kind, _ in sse_events(response.iter_lines()):
            seen += kind == "event"
            if seen == 10:
                break
    left = time.monotonic()
    wait_until(lambda: _active_streams(server) == 0, timeout=0.5, what="the stream to end after its client left")
    assert time.monotonic() - left <= 0.6
    before = usage_count(server.url)
    time.sleep(0.5)
    assert usage_count(server.url) == before, "the model is still being called after the client left"


def test_a_stalled_reader_does_not_hold_back_the_frame_clock(server: BerthServer) -> None:
    sock = raw_stream_socket(server.port, {"duration_seconds": 3.0, "fps": 400}, rcvbuf=4096)
    try:
        time.sleep(2.5)  # read nothing while the server makes ~1000 frames
        sock.settimeout(10)
        received = b""
        while b'"status":"completed"' not in received and b'"error"' not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    finally:
        sock.close()
    assert received.startswith(b"HTTP/1.1 200")
    body = received.split(b"\r\n\r\n", 1)[1].decode()
    # the body is chunked (no Content-Length): pick the data lines out of it
    events = [orjson.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
    final = events[-1]
    assert final["status"] == "completed", final
    assert final["total_frames"] + final["missed_frames"] >= 1100  # the clock kept its slots
    assert final["delivered_frames"] == final["total_frames"] - final["dropped_events"] == len(events) - 1


def test_the_send_buffer_drops_the_oldest_frames_for_a_client_that_stops_reading() -> None:
    """The kernel and uvicorn absorb a few MB before ``send`` blocks (too slow to reach
    in a test over loopback), so the buffer behind them is checked in-process."""
    api = StreamApi(None, SimpleNamespace(emg=SimpleNamespace(keepalive_s=5.0)), None, None)  # type: ignore[arg-type]

    async def scenario() -> tuple[list[dict[str, Any]], SendBuffer]:
        buffer = SendBuffer(4)
        sent: list[bytes] = []
        reading = asyncio.Event()

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["body"])
            if len(sent) == 3:
                await reading.wait()  # the client stops reading here

        writer = asyncio.create_task(api._write(send, buffer))
        for frame in range(1000):
            buffer.put({"frame": frame})
            await asyncio.sleep(0)
            assert len(buffer.items) <= 4
        buffer.put({"status": "completed", "total_frames": 1000}, final=True)
        reading.set()
        await asyncio.wait_for(writer, 5)
        return [orjson.loads(body[6:]) for body in sent], buffer

    events, buffer = asyncio.run(scenario())
    assert len(events) == 3 + 4 + 1 and buffer.dropped == 1000 - 3 - 4
    assert [e["frame"] for e in events[3:7]] == [996, 997, 998, 999]  # the newest frames survive
    assert events[3]["dropped_events"] == buffer.dropped  # reported in the next event delivered
    assert events[-1] == {"status": "completed", "total_frames": 1000, "dropped_events": 993, "delivered_frames": 7}


def test_too_many_streams_are_refused_clearly(server: BerthServer) -> None:
    def hold(_: int) -> list[dict[str, Any]]:
        return stream(server.url, {"duration_seconds": 1.5, "fps": 5})

    with concurrent.futures.ThreadPoolExecutor(MAX_STREAMS) as pool:
        holders = [pool.submit(hold, i) for i in range(MAX_STREAMS)]
        wait_until(lambda: _active_streams(server) == MAX_STREAMS, timeout=5, what=f"{MAX_STREAMS} streams to be open")
        refused = httpx.post(f"{server.url}/infer/stream", json={"duration_seconds": 1, "fps": 5}, timeout=10)
        assert refused.status_code == 503
        assert "limit is emg.max_streams = 3" in refused.json()["error"]
        assert int(refused.headers["retry-after"]) >= 1
        assert all(h.result()[-1]["status"] == "completed" for h in holders)
    assert httpx.post(f"{server.url}/infer/stream", json={"duration_seconds": 0.2, "fps": 5}, timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"fps": 0}, 400, "'fps' is 0"),
        ({"fps": 10**6}, 400, "at most 1000"),
        ({"fps": "fast"}, 400, "'fps' must be a number"),
        ({"duration_seconds": -1}, 400, "'duration_seconds' is -1"),
        ({"duration_seconds": 0}, 400, "above 0"),
        ({"use_tensorrt": "yes"}, 400, "'use_tensorrt' must be true or false"),
        ({"model": "no-such-model"}, 404, "unknown model"),
        ({"model": "digits"}, 400, "EMG windows are [N, 200, 16]"),
    ],
)
def test_bad_parameters_are_refused_before_streaming(server: BerthServer, body: dict[str, Any], status: int, words: str) -> None:
    response = httpx.post(f"{server.url}/infer/stream", json=body, timeout=30)
    assert response.status_code == status
    assert words in response.json()["error"]
    assert response.headers["content-type"] == "application/json"
