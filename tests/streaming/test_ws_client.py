"""Seed 001's other endpoints, the WebSocket, the Python client and its command line,
all against one live server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from berth.client import AsyncClient, BerthClientError, Client, StreamingInferenceClient
from berth.demo.emg_signal import SyntheticEmg
from conftest import ROOT, BerthServer
from stream_fixtures import emg_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Iterator[BerthServer]:
    running = emg_server(tmp_path_factory.mktemp("seed001"), demo_dir)
    yield running
    running.stop()


def _gesture_windows() -> np.ndarray:
    signal, _ = SyntheticEmg(seed=11, cycle=True, rest_s=(0.2, 0.3), gesture_s=(0.3, 0.4)).record(4.0)
    return signal[: 40 * 200].reshape(40, 200, 16)


# ── HTTP endpoints ─────────────────────────────────────────────────────────
def test_health_carries_seed_001_fields(server: BerthServer) -> None:
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["emg_mode"] == "dummy" and health["tensorrt_available"] is False
    assert "uptime_s" in health  # seed 000's fields are still there


def test_seed_001_infer_bodies_and_seed_000_bodies_share_the_route(server: BerthServer) -> None:
    answer = httpx.post(f"{server.url}/infer", json={"batch": 2, "channels": 16, "length": 200, "steps": 3}).json()
    assert answer["shape"] == "[2, 7]" and answer["backend"] == "pytorch" and answer["model"] == "emg_torch"
    assert float(answer["latency_ms"]) > 0 and 0 <= float(answer["cpu_percent"]) <= 100
    spikes = float(answer["spikes"])
    assert spikes.is_integer() and 0 <= spikes <= 3 * 2 * 7  # positive logits of a [2, 7] output over 3 steps
    assert all(isinstance(answer[k], str) for k in ("latency_ms", "spikes", "cpu_percent", "shape"))  # the seed's strings
    classic = httpx.post(f"{server.url}/infer", json={"input": [0.0] * 784}).json()
    assert classic["model"] == "digits" and len(classic["probs"]) == 10
    accelerated = httpx.post(f"{server.url}/infer/tensorrt", json={"batch": 1, "channels": 16, "length": 200}).json()
    assert accelerated["backend"] == "onnxruntime"  # truthfully: no TensorRT on this machine
    assert 0 <= int(accelerated["prediction"]) < 7 and 0 < float(accelerated["confidence"]) <= 1
    assert accelerated["shape"] == "[1, 7]"


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/infer", {"channels": 8, "length": 200}, "length 200 with 16 channels"),
        ("/infer", {"channels": 16, "length": 200, "steps": 0}, "'steps' is 0"),
        ("/infer", {"channels": 16, "batch": 100000}, "'batch' is 100000"),
        ("/infer/tensorrt", {"batch": "1"}, "'batch' must be an integer"),
        ("/infer/tensorrt", {"batch": 1, "model": "nope"}, "unknown model"),
        ("/benchmark", {"num_iterations": -5}, "'num_iterations' is -5"),
    ],
)
def test_bad_parameters_get_4xx_with_a_message(server: BerthServer, path: str, body: dict[str, Any], words: str) -> None:
    response = httpx.post(f"{server.url}{path}", json=body)
    assert 400 <= response.status_code < 500
    assert words in response.json()["error"]


def test_stream_stats_come_from_the_engine_measurements(server: BerthServer) -> None:
    for _ in range(5):
        httpx.post(f"{server.url}/infer/tensorrt", json={"batch": 1})
    stats = httpx.get(f"{server.url}/infer/stream/stats").json()
    assert (stats["emg_window_size"], stats["emg_channels"], stats["emg_sampling_rate"]) == (200, 16, 2000)
    model = next(m for m in httpx.get(f"{server.url}/models").json()["models"] if m["name"] == "emg")["stats"]
    measured = stats["measured_from"]
    assert measured["inference_count"] >= 5 and measured["mean_inference_ms"] == pytest.approx(model["mean_inference_ms"], rel=0.5)
    assert stats["expected_latency_ms"] >= measured["mean_inference_ms"]
    assert stats["max_throughput_qps"] == pytest.approx(measured["mean_batch_size"] * 1000 / measured["mean_inference_ms"], rel=0.01)


def test_benchmark_reports_each_backend(server: BerthServer) -> None:
    result = httpx.post(f"{server.url}/benchmark", params={"num_iterations": 50}, timeout=60).json()
    assert result["num_iterations"] == 50 and result["batch_size"] == 1
    assert result["pytorch"]["backend"] == "pytorch" and result["onnxruntime"]["backend"] == "onnxruntime"
    assert result["tensorrt"] == result["accelerated"]
    for key in ("pytorch", "onnxruntime", "accelerated"):
        row = result[key]
        assert 0 < row["median_latency_ms"] <= row["p99_latency_ms"] and row["mean_latency_ms"] > 0 and row["throughput_qps"] > 0
    batched = httpx.post(f"{server.url}/benchmark", json={"num_iterations": 20, "batch_size": 32}, timeout=60).json()
    assert batched["batch_size"] == 32 and batched["onnxruntime"]["throughput_qps"] > 0


def test_dashboard_is_a_self_contained_page(server: BerthServer) -> None:
    response = httpx.get(f"{server.url}/dashboard")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page = response.text
    assert "/infer/stream" in page and "AbortController" in page
    assert "http://" not in page and "https://" not in page and "innerHTML" not in page  # no CDN; text only


# ── WebSocket ──────────────────────────────────────────────────────────────
def test_websocket_answers_one_prediction_per_window(server: BerthServer) -> None:
    windows = _gesture_windows()
    ws_url = server.url.replace("http://", "ws://") + "/ws/infer"
    with connect(ws_url) as socket:
        answers = []
        for i, window in enumerate(windows[:20]):
            if i % 2:
                socket.send(window.astype("<f4").tobytes())
            else:
                socket.send(json.dumps({"id": f"w{i}", "window": window.tolist()}))
            answers.append(json.loads(socket.recv()))
        socket.send(b"\x00" * 12)
        bad = json.loads(socket.recv())
        socket.send(json.dumps({"window": [[1, 2]]}))
        bad_json = json.loads(socket.recv())
        socket.send(windows[0].astype("<f4").tobytes())
        still_open = json.loads(socket.recv())
    assert [a["seq"] for a in answers] == list(range(20))
    assert answers[0]["id"] == "w0" and "id" not in answers[1]
    assert all(a["model"] == "emg" and a["backend"] == "onnxruntime" for a in answers)
    assert len({a["prediction"] for a in answers}) >= 3  # the gestures differ and are told apart
    assert bad["seq"] == 20 and "12800 bytes" in bad["error"]
    assert "200 rows of 16 numbers" in bad_json["error"]
    assert still_open["prediction"] == answers[0]["prediction"]
    with connect(ws_url + "?backend=pytorch") as socket:
        torch_answers = []
        for window in windows[:20]:
            socket.send(window.astype("<f4").tobytes())
            torch_answers.append(json.loads(socket.recv()))
    assert torch_answers[0]["backend"] == "pytorch"
    assert [a["prediction"] for a in torch_answers] == [a["prediction"] for a in answers]  # same weights


# ── Python client and command line ─────────────────────────────────────────
def test_sync_client(server: BerthServer) -> None:
    assert StreamingInferenceClient is Client
    with Client(server.url) as client:
        assert client.health_check()["emg_mode"] == "dummy"
        assert client.single_inference(batch=1, channels=16, length=200, steps=1)["shape"] == "[1, 7]"
        assert client.single_inference_tensorrt()["backend"] == "onnxruntime"
        digits = client.infer(np.zeros((28, 28), np.float32), model="digits")
        assert digits["model"] == "digits" and 0 <= digits["top_index"] < 10
        events: list[dict[str, Any]] = []
        summary = client.stream_inference(duration_seconds=1.0, use_tensorrt=True, fps=10, callback=events.append)
        assert summary["status"] == "completed" and summary is events[-1]
        assert 9 <= len(events) - 1 <= 11 and all("prediction" in e for e in events[:-1])
        assert client.stream_stats()["measured_from"]["inference_count"] > 0
        with pytest.raises(BerthClientError) as refused:
            client.stream_inference(duration_seconds=1, fps=0)
        assert refused.value.status == 400 and "'fps' is 0" in refused.value.message
        first = next(iter(client.iter_stream(duration_seconds=None, fps=50)))  # leaving early closes it
        assert "prediction" in first


def test_async_client(server: BerthServer) -> None:
    async def run() -> tuple[Any, ...]:
        async with AsyncClient(server.url) as client:
            seen: list[dict[str, Any]] = []

            async def callback(event: dict[str, Any]) -> None:
                seen.append(event)

            health, single, accelerated, summary = await asyncio.gather(
                client.health_check(),
                client.single_inference(),
                client.single_inference_tensorrt(batch=4),
                client.stream_inference(duration_seconds=0.5, fps=10, use_tensorrt=False, callback=callback),
            )
            digits = await client.infer([0.0] * 784)
            return health, single, accelerated, summary, seen, digits

    health, single, accelerated, summary, seen, digits = asyncio.run(run())
    assert health["status"] == "ok" and single["backend"] == "pytorch" and accelerated["shape"] == "[4, 7]"
    assert summary["status"] == "completed" and seen[0]["backend"] == "pytorch" and len(seen) == summary["total_frames"] + 1
    assert digits["model"] == "digits"


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_command_line_client_and_the_seed_example(server: BerthServer) -> None:
    done = _run_cli("-m", "berth.client", "--url", server.url, "--stream", "--duration", "1", "--fps", "10", "--no-tensorrt")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum("pytorch" in line for line in lines if line.startswith("frame")) >= 9
    assert lines[-1].startswith("completed: 10 frames in 1.")
    example = _run_cli("examples/streaming_client.py", "--url", server.url, "--example", "3")
    assert example.returncode == 0, example.stderr
    assert "example 3" in example.stdout and "on onnxruntime" in example.stdout
    refused = _run_cli("-m", "berth.client", "--url", server.url, "--stream", "--fps", "0")
    assert refused.returncode == 1 and "400" in refused.stderr
    unreachable = _run_cli("-m", "berth.client", "--url", "http://127.0.0.1:9", "--example", "1")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
