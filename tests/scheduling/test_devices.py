"""Placement across declared devices (two CPU stand-ins for GPUs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from models import write_python_model

X = {"input": [1.0, 2.0, 3.0, 4.0]}


def _repo(tmp_path: Path, names: list[str], configs: dict[str, str] | None = None, ballast: dict[str, int] | None = None) -> Path:
    repo = tmp_path / "repo"
    for name in names:
        config = (configs or {}).get(name, "memory_estimate_mb: 10\n")
        write_python_model(repo / name, config=config, ballast_bytes=(ballast or {}).get(name, 0))
    return repo


def _devices(client: httpx.Client) -> dict[str, str | None]:
    return {m["name"]: m["device"] for m in client.get("/models").json()["models"]}


def _use(client: httpx.Client, *models: str) -> None:
    for model in models:
        assert client.post("/infer", json={**X, "model": model}).status_code == 200


TWO_DEVICES = [{"name": "gpu0", "kind": "cpu"}, {"name": "gpu1", "kind": "cpu"}]


def test_round_robin_alternates_devices(tmp_path: Path, make_server: Any) -> None:
    repo = _repo(tmp_path, ["m1", "m2", "m3", "m4"])
    server = make_server({"repository": str(repo), "devices": TWO_DEVICES, "gpus": {"assignment_strategy": "round-robin"}})
    with server.client() as client:
        _use(client, "m1", "m2", "m3", "m4")
        devices = _devices(client)
        server_devices = client.get("/models").json()["server"]["devices"]
    assert [devices[m] for m in ("m1", "m2", "m3", "m4")] == ["gpu0", "gpu1", "gpu0", "gpu1"]
    assert [(d["id"], d["models"]) for d in server_devices] == [("gpu0", 2), ("gpu1", 2)]


def test_preferred_device_wins_and_least_loaded_fills_the_other(tmp_path: Path, make_server: Any) -> None:
    configs = {
        "a": "preferred_gpu: 0\nmemory_estimate_mb: 10\n",
        "b": "preferred_device: gpu0\nmemory_estimate_mb: 10\n",
        "c": "memory_estimate_mb: 10\n",
        "d": "preferred_gpu: 1\nmemory_estimate_mb: 10\n",
    }
    repo = _repo(tmp_path, list(configs), configs)
    server = make_server({"repository": str(repo), "devices": TWO_DEVICES, "gpus": {"assignment_strategy": "least-loaded"}})
    with server.client() as client:
        _use(client, "a", "b", "c", "d")
        assert _devices(client) == {"a": "gpu0", "b": "gpu0", "c": "gpu1", "d": "gpu1"}


def test_most_free_memory_places_on_the_emptier_device(tmp_path: Path, make_server: Any) -> None:
    configs = {"big": "memory_estimate_mb: 250\npreferred_gpu: 0\n", "next": "memory_estimate_mb: 10\n"}
    repo = _repo(tmp_path, ["big", "next"], configs, ballast={"big": 250 * 1024 * 1024})
    devices = [{"name": "gpu0", "kind": "cpu", "memory_mb": 1000}, {"name": "gpu1", "kind": "cpu", "memory_mb": 800}]
    server = make_server({"repository": str(repo), "devices": devices, "gpus": {"assignment_strategy": "most-free-memory"}})
    with server.client() as client:
        _use(client, "big", "next")
        # gpu0 has 1000 - ~250 (measured) free, gpu1 has 800: gpu1 is emptier
        assert _devices(client)["next"] == "gpu1"


def test_per_device_model_limit_evicts_on_that_device_only(tmp_path: Path, make_server: Any) -> None:
    configs = {name: "preferred_gpu: 0\nmemory_estimate_mb: 10\n" for name in ("x", "y")}
    configs["z"] = "preferred_gpu: 1\nmemory_estimate_mb: 10\n"
    repo = _repo(tmp_path, list(configs), configs)
    devices = [{"name": "gpu0", "kind": "cpu", "max_models": 1}, {"name": "gpu1", "kind": "cpu"}]
    server = make_server({"repository": str(repo), "devices": devices})
    with server.client() as client:
        _use(client, "z", "x", "y")
        states = {m["name"]: (m["state"], m["device"]) for m in client.get("/models").json()["models"]}
    assert states == {"x": ("UNLOADED", None), "y": ("READY", "gpu0"), "z": ("READY", "gpu1")}


def test_unknown_preferred_device_is_refused_clearly(tmp_path: Path, make_server: Any) -> None:
    repo = _repo(tmp_path, ["lost"], {"lost": "preferred_device: gpu9\n"})
    server = make_server({"repository": str(repo), "devices": TWO_DEVICES})
    with server.client() as client:
        response = client.post("/infer", json={**X, "model": "lost"})
    assert response.status_code == 503
    assert "prefers a device that does not exist" in response.json()["error"]
