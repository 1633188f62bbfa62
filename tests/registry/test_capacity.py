"""Capacity and eviction over a real server: LRU vs LFU, idle unload, reports, load."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from models import write_linear_softmax, write_python_model
from waiting import wait_until

X = {"input": [1.0, 2.0, 3.0, 4.0]}


def _states(client: httpx.Client) -> dict[str, str]:
    return {m["name"]: m["state"] for m in client.get("/models").json()["models"]}


def _repo(tmp_path: Path, names: list[str]) -> Path:
    repo = tmp_path / "repo"
    for seed, name in enumerate(names):
        write_linear_softmax(repo / name / "1" / "model.onnx", seed=seed)
    return repo


def _use(client: httpx.Client, *models: str) -> None:
    for model in models:
        response = client.post("/infer", json={**X, "model": model})
        assert response.status_code == 200, response.text


def test_lru_and_lfu_choose_different_victims(tmp_path: Path, make_server: Any) -> None:
    repo = _repo(tmp_path, ["a", "b", "c"])
    # a: 1 use, then b: 3 uses, then a once more -> a is most recent, b most frequent
    pattern = ["a", "b", "b", "b", "a"]
    expected_victim = {"lru": "b", "lfu": "a"}
    for policy, victim in expected_victim.items():
        server = make_server({"repository": str(repo), "capacity": {"max_models": 2, "eviction_policy": policy}})
        with server.client() as client:
            _use(client, *pattern)
            _use(client, "c")
            states = _states(client)
            assert states[victim] == "UNLOADED", (policy, states)
            assert states["c"] == "READY"
            survivor = ({"a", "b"} - {victim}).pop()
            assert states[survivor] == "READY"
            stats = client.get("/models").json()
            victim_row = next(m for m in stats["models"] if m["name"] == victim)
            assert f"evicted ({policy})" in victim_row["stats"]["recent_evictions"][0]["reason"]
            assert stats["server"]["eviction_policy"] == policy
        server.stop()


def test_memory_budget_evicts_by_measured_size(tmp_path: Path, make_server: Any) -> None:
    repo = tmp_path / "repo"
    for name in ("p", "q", "r"):
        write_python_model(repo / name, ballast_bytes=40 * 1024 * 1024, config="memory_estimate_mb: 40\n")
    # ~40 MB each, measured: room for two models in 100 MB, not three
    server = make_server({"repository": str(repo), "capacity": {"max_memory_gb": 100 / 1024, "max_models": 10}})
    with server.client() as client:
        _use(client, "p", "q", "r")
        body = client.get("/models").json()
        states = {m["name"]: m["state"] for m in body["models"]}
        assert states == {"p": "UNLOADED", "q": "READY", "r": "READY"}
        assert all(m["memory_mb"] >= 38 for m in body["models"] if m["state"] == "READY")
        assert body["server"]["memory_mb"] <= body["server"]["max_memory_mb"]


def test_measured_size_over_the_estimate_evicts_just_enough_after_load(tmp_path: Path, make_server: Any) -> None:
    repo = tmp_path / "repo"
    for name in ("older", "newer"):  # honest: ~25 MB each, estimated so
        write_python_model(repo / name, ballast_bytes=25 * 1024 * 1024, config="memory_estimate_mb: 25\n")
    # the estimate says 1 MB; the model really holds ~60 MB: 25 + 25 + 60 is over 100 MB,
    # and evicting the least recently used one (older) is enough
    write_python_model(repo / "liar", ballast_bytes=60 * 1024 * 1024, config="memory_estimate_mb: 1\n")
    server = make_server({"repository": str(repo), "capacity": {"max_memory_gb": 100 / 1024, "max_models": 10}})
    with server.client() as client:
        _use(client, "older", "newer", "liar")
        time.sleep(0.5)
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert models["liar"]["state"] == "READY"
    assert models["older"]["state"] == "UNLOADED"
    assert "measured larger than estimated" in models["older"]["stats"]["recent_evictions"][0]["reason"]
    assert models["newer"]["state"] == "READY", "evicted more than the overshoot needed"


def test_idle_models_are_unloaded(tmp_path: Path, make_server: Any) -> None:
    repo = _repo(tmp_path, ["sleepy", "keeper"])
    server = make_server(
        {
            "repository": str(repo),
            "capacity": {"idle_unload_minutes": 0.01},  # 0.6 s
            "models": {"keeper": {"preload": True, "pinned": True}},
        }
    )
    with server.client() as client:
        _use(client, "sleepy")
        assert _states(client)["sleepy"] == "READY"
        wait_until(lambda: _states(client)["sleepy"] == "UNLOADED", timeout=5, interval=0.1, what="sleepy to be unloaded as idle")
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert models["sleepy"]["state"] == "UNLOADED"
        assert "idle" in models["sleepy"]["stats"]["recent_evictions"][0]["reason"]
        assert models["keeper"]["state"] == "READY"  # pinned models never idle out
        _use(client, "sleepy")  # and it comes back on demand
        assert _states(client)["sleepy"] == "READY"
    assert "unloading" in server.logs()


def test_periodic_stats_report_in_the_log(tmp_path: Path, make_server: Any) -> None:
    repo = _repo(tmp_path, ["digits"])
    server = make_server({"repository": str(repo), "server": {"stats_report_interval_s": 0.3}})
    with server.client() as client:
        _use(client, "digits", "digits")
    time.sleep(0.8)
    logs = server.logs()
    assert "stats: 1/64 models loaded" in logs
    assert "digits v1 [READY] usage=2" in logs and "avg_inference=" in logs


def test_per_model_stats_fields(tmp_path: Path, make_server: Any) -> None:
    repo = _repo(tmp_path, ["m"])
    server = make_server({"repository": str(repo)})
    with server.client() as client:
        _use(client, "m", "m", "m")
        row = client.get("/models").json()["models"][0]
    stats = row["stats"]
    assert stats["usage_count"] == 3 and stats["loads"] == 1
    assert stats["misses"] == 1 and stats["hits"] == 2
    assert stats["last_used"] > time.time() - 60
    assert stats["mean_inference_ms"] > 0 and stats["p99_inference_ms"] >= stats["mean_inference_ms"] * 0.5
    assert stats["time_to_ready_ms"] > 0 and stats["evictions"] == 0
    assert row["memory_mb"] > 0 and row["memory_measured"] is True
    assert row["signature"]["inputs"][0] == {"name": "x", "dtype": "float32", "shape": [-1, 4]}


def test_eviction_under_concurrent_load_loses_no_request(tmp_path: Path, make_server: Any) -> None:
    tenants = ["sanders", "bob", "jane"]
    repo = _repo(tmp_path, tenants)
    server = make_server({"repository": str(repo), "capacity": {"max_models": 2}})
    rng = random.Random(7)
    plan = [rng.choice(tenants) for _ in range(150)]

    def call(model: str) -> tuple[str, int]:
        with server.client() as client:
            return model, client.post("/infer", json={**X, "model": model}).status_code

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, plan))
    assert all(status == 200 for _, status in results), [r for r in results if r[1] != 200][:5]
    with server.client() as client:
        body = client.get("/models").json()
    assert sum(m["stats"]["evictions"] for m in body["models"]) >= 1
    assert body["server"]["resident_models"] <= 2
    assert sum(m["stats"]["usage_count"] for m in body["models"]) == 150
