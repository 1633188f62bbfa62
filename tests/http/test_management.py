"""Model management over HTTP against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models import write_linear_softmax, write_python_model

X = {"input": [1.0, 2.0, 3.0, 4.0]}


def test_load_unload_pin_describe_and_stats(tmp_path: Path, make_server: Any) -> None:
    repo = tmp_path / "repo"
    write_linear_softmax(repo / "alpha.onnx")
    write_python_model(repo / "beta")
    server = make_server({"repository": str(repo), "capacity": {"max_models": 1}})
    with server.client() as client:
        loaded = client.post("/models/alpha/load").json()
        assert loaded["state"] == "READY" and loaded["memory_measured"] is True
        assert client.get("/models/alpha").json()["state"] == "READY"

        pinned = client.post("/models/alpha/pin", json={"pinned": True}).json()
        assert pinned["pinned"] is True
        # alpha is pinned and the server holds one model: beta cannot come in
        refused = client.post("/models/beta/load")
        assert refused.status_code == 503 and "pinned" in refused.json()["error"]

        assert client.post("/models/alpha/pin", json={"pinned": False}).json()["pinned"] is False
        assert client.post("/models/beta/load").json()["state"] == "READY"
        assert client.get("/models/alpha").json()["state"] == "UNLOADED"  # evicted for beta

        unloaded = client.post("/models/beta/unload").json()
        assert unloaded["state"] == "UNLOADED"
        assert client.post("/infer", json={**X, "model": "beta"}).status_code == 200  # loads again on demand

        stats = client.get("/stats", params={"model": "beta"}).json()
        assert [m["name"] for m in stats["models"]] == ["beta"]
        assert stats["models"][0]["stats"]["loads"] == 2
        assert stats["server"]["max_models"] == 1


def test_management_refuses_bad_requests(tmp_path: Path, make_server: Any) -> None:
    repo = tmp_path / "repo"
    write_linear_softmax(repo / "alpha.onnx")
    server = make_server({"repository": str(repo)})
    with server.client() as client:
        for response in (client.post("/models/nope/load"), client.get("/models/nope"), client.post("/models/bad%20name/load")):
            assert response.status_code == 404, response.text
            assert "unknown model" in response.json()["error"]
        traversal = client.post("/models/..%2Fetc/load")  # decoded to /models/../etc/load: no such route
        assert traversal.status_code == 404 and traversal.json()["error"]
        bad_pin = client.post("/models/alpha/pin", json={"pinned": "yes"})
        assert bad_pin.status_code == 400 and "pinned" in bad_pin.json()["error"]
        bad_version = client.post("/models/alpha/load", params={"version": "x"})
        assert bad_version.status_code == 400
        missing_version = client.post("/models/alpha/load", params={"version": "9"})
        assert missing_version.status_code == 404 and "no version '9'" in missing_version.json()["error"]
        assert client.get("/stats", params={"model": "nope"}).status_code == 404


def test_readiness_turns_false_when_a_model_worker_dies(tmp_path: Path, make_server: Any) -> None:
    flag = tmp_path / "worker-died"
    model = write_python_model(tmp_path / "repo" / "watched")
    # the model reports itself unhealthy once the flag file exists, as a model whose
    # helper process or thread died would
    model.write_text(
        model.read_text().replace(
            "    def unload(self):",
            f"    def healthy(self):\n        import os\n        return not os.path.exists({str(flag)!r})\n\n    def unload(self):",
        )
    )
    server = make_server({"repository": str(tmp_path / "repo"), "models": {"watched": {"preload": True}}})
    with server.client() as client:
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/health").json()["ready"] is True
        flag.touch()
        assert client.get("/v2/health/ready").status_code == 503
        health = client.get("/health").json()
        assert health["ready"] is False and health["dead_workers"] == ["watched"]
        assert client.get("/v2/health/live").status_code == 200  # alive, just not ready


def test_metadata_lookups_are_not_uses_of_the_model(tmp_path: Path, make_server: Any) -> None:
    write_linear_softmax(tmp_path / "repo" / "alpha.onnx")
    server = make_server({"repository": str(tmp_path / "repo"), "default_model": "alpha"})
    with server.client() as client:
        assert client.post("/infer", json=X).status_code == 200
        before = client.get("/models/alpha").json()["stats"]
        for path in ("/v2/models/alpha", "/v2/models/alpha/config", "/config"):
            assert client.get(path).status_code == 200
        after = client.get("/models/alpha").json()["stats"]
    assert after["usage_count"] == before["usage_count"] == 1
    assert after["hits"] == before["hits"] and after["last_used"] == pytest.approx(before["last_used"], abs=0.05)
