"""``isolation: process`` behind a real ``berth serve``: answers, batching, unload,
memory, and a worker that crashes while the server and its other models go on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from models import softmax, write_linear_softmax, write_python_model
from waiting import wait_until

_MB = 1024 * 1024

CRASHY = '''
import os
import time

import numpy as np

CRASHED = os.path.join(os.path.dirname(__file__), "crashed")


class Model:
    inputs = [("x", "float32", [-1, 4])]
    outputs = [("y", "float32", [-1, 4])]

    def load(self, model_dir, device):
        if os.path.exists(CRASHED):
            time.sleep(1.5)  # a restart takes a while, so the test sees the gap

    def predict(self, inputs):
        x = inputs["x"]
        if (x[:, 0] == 13).any():
            open(CRASHED, "w").close()
            os._exit(3)  # the worker dies mid-request, as a segfaulting extension would
        return {"y": x * 2}
'''


def _workers(server: Any) -> list[psutil.Process]:
    """The server's worker processes (its children running berth.isolation.worker)."""
    found = []
    for child in psutil.Process(server.process.pid).children():
        try:
            if "berth.isolation.worker" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _model(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.get(f"/models/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def _v2(client: httpx.Client, model: str, row: list[float]) -> httpx.Response:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": row}]}
    return client.post(f"/v2/models/{model}/infer", json=body)


def _y(response: httpx.Response) -> list[float]:
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]["data"]


def test_isolated_onnx_model_serves_batches_from_a_child_and_unload_ends_it(tmp_path: Path, make_server: Any) -> None:
    weights = write_linear_softmax(tmp_path / "repo" / "lin" / "1" / "model.onnx")
    server = make_server({
        "repository": str(tmp_path / "repo"),
        "models": {"lin": {"isolation": "process", "preload": True, "max_queue_delay_ms": 5}},
    })
    (worker,) = _workers(server)
    assert worker.ppid() == server.process.pid
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((48, 4)).astype(np.float32)

    def infer(row: np.ndarray) -> dict[str, Any]:
        with server.client() as client:
            response = client.post("/infer", json={"model": "lin", "input": row.tolist()})
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(infer, rows))
    for row, answer in zip(rows, answers):
        np.testing.assert_allclose(answer["probs"], softmax(row @ weights), rtol=1e-4, atol=1e-5)
    assert max(a["batch_size"] for a in answers) > 1  # concurrent requests shared runs in the worker
    with server.client() as client:
        described = _model(client, "lin")
        assert described["state"] == "READY" and described["backend"] == "onnx"
        assert described["memory_measured"] and described["memory_mb"] > 20  # the worker's RSS
        unloaded = client.post("/models/lin/unload").json()
        assert unloaded["state"] == "UNLOADED" and unloaded["memory_mb"] == 0
        assert not psutil.pid_exists(worker.pid)  # process exit: all its memory is back
        assert _workers(server) == []
        # the next request loads it again, in a new worker
        assert client.post("/infer", json={"model": "lin", "input": rows[0].tolist()}).status_code == 200
        (again,) = _workers(server)
        assert again.pid != worker.pid


def test_memory_booked_is_the_workers_not_the_servers(tmp_path: Path, make_server: Any) -> None:
    write_python_model(tmp_path / "repo" / "big", ballast_bytes=60 * _MB)
    server = make_server({"repository": str(tmp_path / "repo"), "models": {"big": {"isolation": "process"}}})
    serving = psutil.Process(server.process.pid)
    before = serving.memory_info().rss
    with server.client() as client:
        loaded = client.post("/models/big/load").json()
        assert loaded["state"] == "READY"
        (worker,) = _workers(server)
        assert loaded["memory_mb"] >= 55
        assert worker.memory_info().rss >= 60 * _MB
        assert serving.memory_info().rss - before < 30 * _MB  # the 60 MB live in the child
        assert client.get("/stats").json()["server"]["memory_mb"] >= 55
        client.post("/models/big/unload")
        assert not psutil.pid_exists(worker.pid)
        assert client.post("/models/big/load").json()["state"] == "READY"
    (worker,) = _workers(server)
    server.process.kill()  # even a server killed outright leaves no worker behind (stdin EOF)
    server.process.wait(10)
    psutil.wait_procs([worker], timeout=10)
    assert not worker.is_running()


def test_a_crashing_worker_fails_its_request_then_restarts_while_the_server_serves(tmp_path: Path, make_server: Any) -> None:
    crashy = tmp_path / "repo" / "crashy" / "1"
    crashy.mkdir(parents=True)
    (crashy / "model.py").write_text(CRASHY)
    write_python_model(tmp_path / "repo" / "steady")
    server = make_server({
        "repository": str(tmp_path / "repo"),
        "models": {"crashy": {"isolation": "process", "preload": True}, "steady": {"preload": True}},
    })
    ok = [1.0, 2.0, 3.0, 4.0]
    with server.client() as client:
        assert _y(_v2(client, "crashy", ok)) == [2.0, 4.0, 6.0, 8.0]
        (first,) = _workers(server)
        crash = _v2(client, "crashy", [13.0, 0.0, 0.0, 0.0])
        assert crash.status_code == 500
        assert crash.json()["error"] == "model 'crashy' failed while running the request"
        failed = wait_until(lambda: (m := _model(client, "crashy"))["state"] == "FAILED" and m, timeout=5, what="crashy to be FAILED")
        assert failed["reason"] == "worker process exited (code 3)"
        assert server.process.poll() is None  # the server lives on
        assert "crashy" in client.get("/health").json()["failed_models"]
        assert _y(_v2(client, "steady", ok)) == [2.0, 4.0, 6.0, 8.0]  # other models keep serving
        refused = _v2(client, "crashy", ok)
        assert refused.status_code == 503 and "worker process exited (code 3)" in refused.json()["error"]
        # restarted after the first back-off (~1 s), without waiting for a request
        wait_until(lambda: _model(client, "crashy")["state"] == "READY", timeout=15, what="crashy to be READY again")
        (second,) = _workers(server)
        assert second.pid != first.pid and not psutil.pid_exists(first.pid)
        assert _y(_v2(client, "crashy", ok)) == [2.0, 4.0, 6.0, 8.0]
    assert "worker process exited (code 3)" in server.logs()


def test_readiness_is_false_while_a_crashed_worker_is_down(tmp_path: Path, make_server: Any) -> None:
    crashy = tmp_path / "repo" / "crashy" / "1"
    crashy.mkdir(parents=True)
    (crashy / "model.py").write_text(CRASHY)
    server = make_server({"repository": str(tmp_path / "repo"), "models": {"crashy": {"isolation": "process", "preload": True}}})
    with server.client() as client:
        assert client.get("/v2/health/ready").status_code == 200
        assert _v2(client, "crashy", [13.0, 0.0, 0.0, 0.0]).status_code == 500
        wait_until(lambda: _model(client, "crashy")["state"] == "FAILED", timeout=5, what="crashy to be FAILED")
        health = client.get("/health").json()
        assert health["ready"] is False and health["dead_workers"] == ["crashy"]
        assert client.get("/v2/health/ready").status_code == 503
        # ready again once the restarted worker serves (its load takes 1.5 s here)
        wait_until(lambda: client.get("/v2/health/ready").status_code == 200, timeout=15, what="the server to be ready again")
        assert _model(client, "crashy")["state"] == "READY"
