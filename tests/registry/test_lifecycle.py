"""Registry lifecycle over a real server: single flight, leases, capped loads, failures."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from models import read_events, write_linear_softmax, write_python_model

X = {"input": [1.0, 2.0, 3.0, 4.0]}


def _models(client: httpx.Client) -> dict[str, dict[str, Any]]:
    response = client.get("/models")
    assert response.status_code == 200
    return {m["name"]: m for m in response.json()["models"]}


def _infer(server: Any, model: str, timeout: float = 30.0) -> httpx.Response:
    with server.client(timeout=timeout) as client:
        return client.post("/infer", json={**X, "model": model})


def test_twenty_concurrent_first_requests_share_one_load(tmp_path: Path, make_server: Any) -> None:
    events = tmp_path / "events.log"
    write_python_model(tmp_path / "repo" / "slow", events=events, load_sleep=0.5)
    server = make_server({"repository": str(tmp_path / "repo")})
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: _infer(server, "slow"), range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert all(r.json()["probs"] for r in responses)
    loads = [e for e in read_events(events) if e[1] == "load_start"]
    assert len(loads) == 1
    with server.client() as client:
        stats = _models(client)["slow"]["stats"]
    assert stats["loads"] == 1
    assert stats["misses"] == 20 and stats["hits"] == 0
    assert stats["usage_count"] == 20


def test_leased_model_is_not_evicted_until_its_request_finishes(tmp_path: Path, make_server: Any) -> None:
    events = tmp_path / "events.log"
    write_python_model(tmp_path / "repo" / "busy", events=events, predict_sleep=1.0)
    write_python_model(tmp_path / "repo" / "other", events=events)
    server = make_server({"repository": str(tmp_path / "repo"), "capacity": {"max_models": 1}, "models": {"busy": {"preload": True}}})
    done: dict[str, float] = {}

    def call(model: str) -> None:
        response = _infer(server, model)
        assert response.status_code == 200, response.text
        done[model] = time.monotonic()

    first = threading.Thread(target=call, args=("busy",))
    first.start()
    time.sleep(0.3)  # busy is now mid-predict, holding a lease
    call("other")
    first.join()
    log = read_events(events)
    busy_end = max(float(e[-1]) for e in log if e[:2] == ("busy", "predict_end"))  # the request's, after warm-up
    busy_unload = next(float(e[-1]) for e in log if e[:2] == ("busy", "unload"))
    other_load = next(float(e[-1]) for e in log if e[:2] == ("other", "load_start"))
    assert busy_end <= busy_unload <= other_load
    assert done["busy"] <= done["other"]
    with server.client() as client:
        models = _models(client)
    assert models["busy"]["state"] == "UNLOADED"
    assert models["busy"]["stats"]["evictions"] == 1
    assert "to make room for 'other'" in models["busy"]["stats"]["recent_evictions"][0]["reason"]


def _load_windows(events: Path) -> list[tuple[float, float]]:
    starts: dict[str, float] = {}
    windows = []
    for event in read_events(events):
        if event[1] == "load_start":
            starts[event[0]] = float(event[-1])
        elif event[1] == "load_end":
            windows.append((starts[event[0]], float(event[-1])))
    return sorted(windows)


def _overlaps(windows: list[tuple[float, float]]) -> bool:
    return any(b[0] < a[1] for a, b in zip(windows, windows[1:]))


def test_load_concurrency_is_capped(tmp_path: Path, make_server: Any) -> None:
    for cap, expect_overlap in ((1, False), (3, True)):
        events = tmp_path / f"events{cap}.log"
        repo = tmp_path / f"repo{cap}"
        for name in ("m1", "m2", "m3"):
            write_python_model(repo / name, events=events, load_sleep=0.4)
        server = make_server({"repository": str(repo), "capacity": {"max_concurrent_loads": cap}})
        with ThreadPoolExecutor(3) as pool:
            assert all(r.status_code == 200 for r in pool.map(lambda m: _infer(server, m), ["m1", "m2", "m3"]))
        windows = _load_windows(events)
        assert len(windows) == 3
        assert _overlaps(windows) is expect_overlap, (cap, windows)


def test_failed_model_is_isolated_and_reports_its_reason(tmp_path: Path, make_server: Any) -> None:
    repo = tmp_path / "repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    write_python_model(repo / "fails", fail_load=True)
    write_linear_softmax(repo / "good.onnx")
    server = make_server({"repository": str(repo)})
    with server.client() as client:
        for name in ("broken", "fails"):
            response = client.post("/infer", json={**X, "model": name})
            assert response.status_code == 503
            message = response.json()["error"]
            assert f"model '{name}' failed to load" in message
            assert str(tmp_path) not in message and "Traceback" not in message
        assert "broken on purpose" in client.post("/infer", json={**X, "model": "fails"}).json()["error"]
        assert client.post("/infer", json={**X, "model": "good"}).status_code == 200
        models = _models(client)
        assert models["broken"]["state"] == "FAILED" and models["broken"]["reason"]
        assert str(tmp_path) not in models["broken"]["reason"]
        assert models["fails"]["state"] == "FAILED"
        assert models["good"]["state"] == "READY"
        health = client.get("/health").json()
        assert set(health["failed_models"]) == {"broken", "fails"}


def test_model_too_big_for_capacity_is_refused_at_once(tmp_path: Path, make_server: Any) -> None:
    repo = tmp_path / "repo"
    write_python_model(repo / "huge", config="memory_estimate_mb: 5000\n")
    write_python_model(repo / "small")
    server = make_server({"repository": str(repo), "capacity": {"max_memory_gb": 1}})
    with server.client() as client:
        started = time.monotonic()
        response = client.post("/infer", json={**X, "model": "huge"})
        assert time.monotonic() - started < 2.0
        assert response.status_code == 503
        assert "needs 5000.0 MB" in response.json()["error"]
        assert client.post("/infer", json={**X, "model": "small"}).status_code == 200
        assert _models(client)["huge"]["state"] == "UNLOADED"


def test_pinned_models_block_with_a_clear_error_when_nothing_else_fits(tmp_path: Path, make_server: Any) -> None:
    repo = tmp_path / "repo"
    write_python_model(repo / "keeper")
    write_python_model(repo / "visitor")
    server = make_server({"repository": str(repo), "capacity": {"max_models": 1}, "models": {"keeper": {"preload": True, "pinned": True}}})
    with server.client() as client:
        models = _models(client)
        assert models["keeper"]["state"] == "READY" and models["keeper"]["pinned"]
        response = client.post("/infer", json={**X, "model": "visitor"})
        assert response.status_code == 503
        assert "pinned" in response.json()["error"]
        assert _models(client)["keeper"]["state"] == "READY"


def test_warmup_runs_before_serving_and_memory_is_measured(tmp_path: Path, make_server: Any) -> None:
    events = tmp_path / "events.log"
    repo = tmp_path / "repo"
    write_python_model(repo / "warm", events=events, ballast_bytes=48 * 1024 * 1024, config="memory_estimate_mb: 1\n")
    write_linear_softmax(repo / "padded.onnx", pad_bytes=16 * 1024 * 1024)
    server = make_server({"repository": str(repo), "capacity": {"max_memory_gb": 4}})
    with server.client() as client:
        assert client.post("/infer", json={**X, "model": "warm"}).status_code == 200
        assert client.post("/infer", json={**X, "model": "padded"}).status_code == 200
        models = _models(client)
    kinds = [e[1] for e in read_events(events)]
    # load, then two warm-up runs (the second is timed), then the request's predict
    assert kinds[:6] == ["load_start", "load_end"] + ["predict_start", "predict_end"] * 2
    assert kinds.count("predict_start") == 3
    warm = models["warm"]
    assert warm["memory_measured"] is True
    assert warm["memory_mb"] >= 40  # measured (RSS delta), not the 1 MB estimate
    assert models["padded"]["memory_mb"] >= 16
    assert warm["stats"]["time_to_ready_ms"] > 0
