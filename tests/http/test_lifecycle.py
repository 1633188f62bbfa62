"""Requests in flight across shutdown, client disconnects, deadlines and overload."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest

from conftest import BerthServer
from http_fixtures import calls, start_server, write_slow_model
from waiting import wait_until

SERIAL = {"max_concurrency": 1, "max_batch_size": 1, "preload": True}


def x(marker: float) -> list[float]:
    return [marker, 1.0, 2.0, 3.0]


class Call(threading.Thread):
    """One HTTP request on its own thread and connection; ``.response`` or ``.error``."""

    def __init__(self, url: str, body: dict[str, Any], *, timeout: float = 30.0, path: str = "/infer", start_gate: threading.Barrier | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.timeout, self.path, self.gate = url, body, timeout, path, start_gate
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.elapsed = 0.0

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
                if self.gate is not None:
                    self.gate.wait(10)
                started = time.monotonic()
                try:
                    self.response = client.post(self.path, json=self.body)
                finally:
                    self.elapsed = time.monotonic() - started
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def result(self, timeout: float = 30.0) -> httpx.Response:
        self.join(timeout)
        assert not self.is_alive(), "request did not finish"
        if self.error is not None:
            raise AssertionError(f"request failed: {self.error!r}")
        assert self.response is not None
        return self.response


def start_in_predict(server: BerthServer, log: Path, model: str, marker: float) -> Call:
    """Send a request and return once the model is running it."""
    call = Call(server.url, {"model": model, "input": x(marker)})
    call.start()
    wait_until(lambda: marker in calls(log) or not call.is_alive(), timeout=15, what=f"predict({marker}) to start")
    assert marker in calls(log), f"request ended before reaching the model: {call.response and call.response.text} {call.error!r}"
    return call


# ── graceful shutdown ─────────────────────────────────────────────────────────


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_in_flight_request_then_exits_0(make_server: Any, tmp_path: Path, sig: signal.Signals) -> None:
    log = write_slow_model(tmp_path / "models", "slow", delay=1.0, config=SERIAL)
    server: BerthServer = make_server({"repository": str(tmp_path / "models")})
    call = start_in_predict(server, log, "slow", 1.5)
    assert server.process is not None
    signalled = time.monotonic()
    server.process.send_signal(sig)
    code = server.process.wait(30)
    response = call.result()
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["logits"], np.array(x(1.5)) * 2.0)
    assert code == 0, server.logs()
    assert server.stop() == 0
    # it waited for the request (about 1 s) rather than dropping it
    assert time.monotonic() - signalled >= 0.5
    logs = server.logs()
    assert "Traceback" not in logs
    assert "unloaded (server shutdown)" in logs
    assert calls(log) == [1.5]


# ── a shared server for disconnect and overload ───────────────────────────────


class Shared:
    def __init__(self, server: BerthServer, logs: dict[str, Path]) -> None:
        self.server = server
        self.logs = logs


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    root = tmp_path_factory.mktemp("lifecycle")
    models = root / "models"
    logs = {
        "serial": write_slow_model(models, "serial", delay=0.8, config=SERIAL),
        "tiny_queue": write_slow_model(models, "tiny_queue", delay=0.4, config={**SERIAL, "queue_size": 1}),
        # quick on the warm-up's zeros, slow on real input
        "fickle": write_slow_model(models, "fickle", delay=0.8, warm=0.0, config={"preload": True}),
    }
    server = start_server({"repository": str(models)}, root / "server")
    yield Shared(server, logs)
    code = server.stop()
    assert code == 0, server.logs()


def test_client_disconnect_drops_queued_request(shared: Shared) -> None:
    log = shared.logs["serial"]
    a = start_in_predict(shared.server, log, "serial", 1.0)
    # B queues behind A; its client gives up long before A is done
    with httpx.Client(base_url=shared.server.url, timeout=0.15) as client:
        with pytest.raises(httpx.TimeoutException):
            client.post("/infer", json={"model": "serial", "input": x(2.0)})
    assert a.result().status_code == 200
    # C queues after B would have: once C has run, B can never run any more
    c = Call(shared.server.url, {"model": "serial", "input": x(-3.0)})
    c.start()
    assert c.result().status_code == 200
    assert calls(log) == [1.0, -3.0], "the abandoned request reached the model"


def test_client_disconnect_on_infer_batch_and_blast(shared: Shared) -> None:
    log = shared.logs["serial"]
    before = len(calls(log))
    a = start_in_predict(shared.server, log, "serial", 4.0)
    with httpx.Client(base_url=shared.server.url, timeout=0.15) as client:
        with pytest.raises(httpx.TimeoutException):
            client.post("/infer-batch", json={"model": "serial", "batch": [x(5.0)]})
        with pytest.raises(httpx.TimeoutException):
            client.post("/blast", json={"model": "serial", "n": 3, "input": x(6.0)})
    assert a.result().status_code == 200
    c = Call(shared.server.url, {"model": "serial", "input": x(-7.0)})
    c.start()
    assert c.result().status_code == 200
    assert calls(log)[before:] == [4.0, -7.0]


def test_full_queue_is_503_with_retry_after(shared: Shared) -> None:
    n = 8
    gate = threading.Barrier(n)
    requests = [Call(shared.server.url, {"model": "tiny_queue", "input": x(10.0 + i)}, start_gate=gate) for i in range(n)]
    for request in requests:
        request.start()
    responses = [request.result() for request in requests]
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses
    refused = [r for r in responses if r.status_code == 503]
    assert refused, statuses
    for response in refused:
        retry_after = response.headers.get("retry-after")
        assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1
        body = response.json()
        assert set(body) == {"error", "request_id"}
        assert "queue is full" in body["error"] and "tiny_queue" in body["error"]
    # only admitted requests reached the model
    assert len(calls(shared.logs["tiny_queue"])) == statuses.count(200)
    assert "Traceback" not in shared.server.logs()


def test_server_healthy_after_the_storm(shared: Shared) -> None:
    with shared.server.client() as client:
        health = client.get("/health").json()
        assert health["status"] == "ok"
        assert health["inflight"] == 0
        ok = client.post("/infer", json={"model": "tiny_queue", "input": x(-1.0)})
        assert ok.status_code == 200


def test_slow_request_does_not_block_the_server(shared: Shared) -> None:
    slow = start_in_predict(shared.server, shared.logs["fickle"], "fickle", 1.0)
    started = time.monotonic()
    with shared.server.client(timeout=5) as client:
        assert client.get("/health").status_code == 200
    waited = time.monotonic() - started
    assert slow.result().status_code == 200
    assert waited < 0.4, f"/health waited {waited:.2f}s behind a model run"


# ── deadlines ─────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def deadline_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BerthServer, dict[str, Path]]]:
    root = tmp_path_factory.mktemp("deadline")
    models = root / "models"
    logs = {
        "serial": write_slow_model(models, "serial", delay=0.6, config=SERIAL),
        "long": write_slow_model(models, "long", delay=1.5, config=SERIAL),
        "lasting": write_slow_model(models, "lasting", delay=1.5, config=SERIAL),
    }
    server = start_server({"repository": str(models), "server": {"request_timeout_s": 0.3}}, root / "server")
    yield server, logs
    server.stop()


def test_queued_request_past_its_deadline_is_504_and_never_runs(deadline_server: tuple[BerthServer, dict[str, Path]]) -> None:
    server, logs = deadline_server
    log = logs["serial"]
    a = start_in_predict(server, log, "serial", 1.0)
    b = Call(server.url, {"model": "serial", "input": x(-2.0)})
    b.start()
    response = b.result()
    assert response.status_code == 504, response.text
    body = response.json()
    assert set(body) == {"error", "request_id"} and "deadline" in body["error"]
    assert a.result().status_code == 504  # A ran, but its 0.6 s run outlasted its 0.3 s deadline
    c = Call(server.url, {"model": "serial", "input": x(-3.0)})
    c.start()
    assert c.result().status_code == 200  # a quick request within its deadline still works
    assert calls(log) == [1.0, -3.0], "the expired request reached the model"


def test_deadline_answers_at_the_deadline_not_when_the_model_frees(deadline_server: tuple[BerthServer, dict[str, Path]]) -> None:
    server, logs = deadline_server
    a = start_in_predict(server, logs["long"], "long", 1.0)  # runs 1.5 s
    b = Call(server.url, {"model": "long", "input": x(-2.0)})
    b.start()
    response = b.result()
    a.result()
    assert response.status_code == 504
    # request_timeout_s is 0.3 s: the answer must not wait out A's 1.5 s run
    assert b.elapsed < 1.0, f"504 came after {b.elapsed:.2f}s"


def test_deadline_covers_the_run_and_unload_waits_for_the_batch(deadline_server: tuple[BerthServer, dict[str, Path]]) -> None:
    """A request whose deadline passes while its batch runs is answered at the deadline;
    the model is not unloaded from under the batch, which still uses it."""
    server, logs = deadline_server
    started = time.monotonic()
    a = start_in_predict(server, logs["lasting"], "lasting", 4.0)  # runs 1.5 s; its deadline is 0.3 s
    response = a.result()
    assert response.status_code == 504, response.text
    assert "ran past its deadline" in response.json()["error"]
    assert a.elapsed < 1.0, f"504 came after {a.elapsed:.2f}s, not at the deadline"
    with server.client() as client:
        assert client.post("/models/lasting/unload").status_code == 200
    assert time.monotonic() - started >= 1.4, "the model was unloaded while its batch was still running"
    assert server.process.poll() is None

