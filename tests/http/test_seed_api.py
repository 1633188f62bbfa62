"""Seed 000's JSON API (Paragon Server) over a small repository, on a real server."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest

from conftest import BerthServer
from http_fixtures import digits_reference, write_digits
from models import softmax, write_linear_softmax

RTOL = 1e-4
ATOL = 1e-6


class Site:
    """One server plus what the tests need to check it."""

    def __init__(self, server: BerthServer, root: Path, conf: Path, cwd: Path, weights: dict[str, np.ndarray]) -> None:
        self.server = server
        self.root = root
        self.conf = conf
        self.cwd = cwd
        self.weights = weights
        self.client = server.client()

    @property
    def sessions(self) -> Path:
        return self.conf / "data" / "sessions"


def _build(root: Path, server_settings: dict[str, Any]) -> Site:
    """Config in ``root/conf`` (with its repository), server started from ``root/cwd``,
    so paths that must be relative to the config file are told apart from the cwd."""
    conf = root / "conf"
    cwd = root / "cwd"
    cwd.mkdir(parents=True)
    weights = {
        "digits": write_digits(conf / "models" / "digits" / "1" / "model.onnx", seed=1),
        "lin": write_linear_softmax(conf / "models" / "lin.onnx", features=6, classes=4, seed=2),
    }
    config = {"repository": "models", "default_model": "digits", "server": server_settings}
    server = BerthServer(config, conf)
    server.workdir = cwd  # the process runs there; berth.yaml stays in conf/
    server.start()
    return Site(server, root, conf, cwd, weights)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = _build(tmp_path_factory.mktemp("seed_api"), {"blast_max_n": 100, "sessions_dir": "data/sessions"})
    yield site
    site.client.close()
    assert site.server.stop() == 0
    assert "Traceback" not in site.server.logs()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A server with tiny limits: 0.01 MB bodies, 4 KB sessions, a 10 KB session store."""
    site = _build(
        tmp_path_factory.mktemp("seed_api_small"),
        {"max_body_mb": 0.01, "session_max_mb": 0.004, "sessions_quota_mb": 0.01},
    )
    yield site
    site.client.close()
    site.server.stop()


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((28, 28), dtype=np.float32)


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ── /health and /config ───────────────────────────────────────────────────────


def test_health(site: Site) -> None:
    first = site.client.get("/health")
    assert first.status_code == 200
    body = first.json()
    assert body["status"] == "ok"
    assert isinstance(body["uptime_s"], (int, float)) and body["uptime_s"] > 0
    assert body["inflight"] == 0  # no inference is running while /health answers
    assert body["gpu"] is False  # CPU only here
    second = site.client.get("/health").json()
    assert second["uptime_s"] >= body["uptime_s"]


def test_config(site: Site) -> None:
    response = site.client.get("/config")
    assert response.status_code == 200
    body = response.json()
    assert body["input"] == [28, 28]
    assert body["classes"] == 10
    assert body["model"] == "digits"
    assert isinstance(body["gpu"], bool)
    path = body["modelPath"]
    assert isinstance(path, str) and path.endswith("model.onnx")
    assert not Path(path).is_absolute() and not path.startswith(("/", "\\"))
    assert str(site.root) not in response.text
    _iso(body["startedAt"])


# ── /infer ────────────────────────────────────────────────────────────────────


def test_infer_flat_input(site: Site) -> None:
    image = _image(1)
    response = site.client.post("/infer", json={"input": image.ravel().tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = digits_reference(site.weights["digits"], image[None])[0]
    np.testing.assert_allclose(body["probs"], expected, rtol=RTOL, atol=ATOL)
    assert len(body["probs"]) == 10
    assert body["top_index"] == int(expected.argmax())
    assert body["top_score"] == pytest.approx(float(expected.max()), rel=RTOL)
    assert body["used_gpu"] is False
    assert body["latency_ms"] > 0
    assert 0 <= body["queued_ms"] <= body["latency_ms"]
    assert body["inflight"] == 0  # read once this request's run is over, and nothing else runs
    _iso(body["when"])


def test_infer_image_matches_flat(site: Site) -> None:
    image = _image(2)
    by_image = site.client.post("/infer", json={"image": image.tolist()})
    by_flat = site.client.post("/infer", json={"input": image.ravel().tolist()})
    assert by_image.status_code == 200, by_image.text
    expected = digits_reference(site.weights["digits"], image[None])[0]
    np.testing.assert_allclose(by_image.json()["probs"], expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(by_image.json()["probs"], by_flat.json()["probs"], rtol=1e-6)


def test_infer_model_field_picks_another_model(site: Site) -> None:
    x = np.array([0.3, -0.2, 1.5, 0.0, -1.0, 0.7], dtype=np.float32)
    response = site.client.post("/infer", json={"model": "lin", "input": x.tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = softmax((x.astype(np.float64) @ site.weights["lin"])[None])[0]
    np.testing.assert_allclose(body["probs"], expected, rtol=RTOL, atol=ATOL)
    assert len(body["probs"]) == 4
    assert body["top_index"] == int(expected.argmax())
    # and the default model is still the digits one
    default = site.client.post("/infer", json={"input": [0.0] * 784}).json()
    assert len(default["probs"]) == 10


# ── /infer-batch ──────────────────────────────────────────────────────────────


@pytest.mark.parametrize("field", ["batch", "images"])
def test_infer_batch(site: Site, field: str) -> None:
    images = np.stack([_image(10 + i) for i in range(5)])
    payload = images.reshape(5, -1).tolist() if field == "batch" else images.tolist()
    response = site.client.post("/infer-batch", json={field: payload})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = digits_reference(site.weights["digits"], images)
    assert body["n"] == 5
    np.testing.assert_allclose(body["probs"], expected, rtol=RTOL, atol=ATOL)
    assert body["top_indices"] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(body["top_scores"], expected.max(axis=1), rtol=RTOL)
    assert body["used_gpu"] is False
    assert body["latency_ms"] > 0


def test_infer_batch_other_model(site: Site) -> None:
    x = np.random.default_rng(5).standard_normal((3, 6)).astype(np.float32)
    body = site.client.post("/infer-batch", json={"model": "lin", "batch": x.tolist()}).json()
    np.testing.assert_allclose(body["probs"], softmax(x.astype(np.float64) @ site.weights["lin"]), rtol=RTOL, atol=ATOL)
    assert body["n"] == 3


# ── /blast ────────────────────────────────────────────────────────────────────


def test_blast(site: Site) -> None:
    image = _image(3)
    response = site.client.post("/blast", json={"n": 50, "input": image.ravel().tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 50
    assert len(body["results"]) == 50
    assert body["total_ms"] > 0
    assert isinstance(body["parallel"], int) and body["parallel"] >= 1
    expected = digits_reference(site.weights["digits"], image[None])[0]
    for result in body["results"]:
        assert result["top_index"] == int(expected.argmax())
        np.testing.assert_allclose(result["probs"], expected, rtol=RTOL, atol=ATOL)
        assert {"top_score", "used_gpu", "latency_ms", "queued_ms", "inflight", "when"} <= set(result)


def test_blast_without_input_uses_zeros(site: Site) -> None:
    body = site.client.post("/blast", json={"n": 3}).json()
    expected = digits_reference(site.weights["digits"], np.zeros((1, 28, 28)))[0]
    assert body["count"] == 3
    np.testing.assert_allclose(body["results"][0]["probs"], expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("n", "status"), [(101, 413), (10**9, 413), (0, 400), (-1, 400), ("5", 400), (2.5, 400), (True, 400)])
def test_blast_n_limits(site: Site, n: Any, status: int) -> None:
    response = site.client.post("/blast", json={"n": n})
    assert response.status_code == status, response.text
    assert "'n'" in response.json()["error"]


def test_blast_past_a_full_queue_is_overloaded_and_withdraws_its_requests(tmp_path: Path) -> None:
    site = _build(tmp_path, {"blast_max_n": 100, "queue_size": 10})
    try:
        assert site.client.post("/infer", json={"model": "lin", "input": [0.5] * 6}).status_code == 200  # loaded
        ran = site.client.get("/models/lin").json()["stats"]["inference_count"]
        response = site.client.post("/blast", json={"n": 60, "model": "lin", "input": [0.5] * 6})
        assert response.status_code == 503, response.text
        assert "queue is full" in response.json()["error"] and response.headers["retry-after"]
        assert site.client.post("/blast", json={"n": 5, "model": "lin", "input": [0.5] * 6}).status_code == 200
        # the requests queued before the refusal were withdrawn: none ran, none holds the model
        described = site.client.get("/models/lin").json()
        assert described["stats"]["inference_count"] == ran + 5
        assert described["inflight"] == 0
    finally:
        site.server.stop()


# ── /save-session ─────────────────────────────────────────────────────────────


def _session(model: Any = "digits", results: int = 2) -> dict[str, Any]:
    return {
        "id": "sess_2025-10-08T12-00-00Z",
        "started_at": "2025-10-08T12:00:00.000Z",
        "model": model,
        "gpu": False,
        "input": [28, 28],
        "results": [{"req_id": i, "mode": "client", "top_index": 7, "probs": [0.1] * 10} for i in range(results)],
        "stopped_at": "2025-10-08T12:01:00.000Z",
    }


def _all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_save_session(site: Site) -> None:
    raw = json.dumps(_session()).encode()
    response = site.client.post("/save-session", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["saved"] is True
    assert body["bytes"] == len(raw)
    assert body["model"] == "digits"
    _iso(body["created"])
    name = Path(body["path"]).name
    assert body["path"].startswith("data/sessions/")  # shown relative, as the seed does
    saved = site.sessions / name
    assert saved.is_file(), sorted(site.conf.rglob("*"))
    assert saved.read_bytes() == raw
    assert not (site.cwd / "data").exists()  # relative to the config file, not the cwd
    assert str(site.root) not in response.text


@pytest.mark.parametrize("model", ["../../etc/passwd", "/etc/passwd", "..", "a/../../b", "x" * 500, "con\x00trol", "", 7, None])
def test_save_session_name_is_server_generated(site: Site, model: Any) -> None:
    before = _all_files(site.root)
    response = site.client.post("/save-session", json=_session(model))
    assert response.status_code == 200, response.text
    created = _all_files(site.root) - before
    session_files = [p for p in created if p.parent == site.sessions]
    assert len(session_files) == 1, created
    assert created == set(session_files)  # nothing anywhere else
    name = session_files[0].name
    assert name.endswith(".json") and "/" not in name and ".." not in name and len(name) < 120
    assert Path(response.json()["path"]).name == name


def test_save_session_names_are_unique(site: Site) -> None:
    paths = {site.client.post("/save-session", json=_session()).json()["path"] for _ in range(5)}
    assert len(paths) == 5


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b"[1, 2]", b"42"])
def test_save_session_bad_body(site: Site, body: bytes) -> None:
    before = _all_files(site.root)
    response = site.client.post("/save-session", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    assert _all_files(site.root) == before


def test_save_session_over_session_max_mb(small: Site) -> None:
    raw = json.dumps(_session(results=40)).encode()
    assert len(raw) > 0.004 * 1024 * 1024
    response = small.client.post("/save-session", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert "limit" in response.json()["error"]
    assert not small.sessions.exists() or not any(small.sessions.iterdir())


def test_save_session_over_quota(small: Site) -> None:
    raw = json.dumps(_session(results=24)).encode()
    assert 2500 < len(raw) < 0.004 * 1024 * 1024  # 3 fit in the 10 KB store, a 4th does not
    # concurrent saves must not overshoot the quota between the check and the write
    gate = threading.Barrier(8)

    def save() -> int:
        with httpx.Client(base_url=small.server.url, timeout=30) as client:
            gate.wait(10)
            return client.post("/save-session", content=raw, headers={"content-type": "application/json"}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(lambda _: save(), range(8)))
    assert statuses == [200] * 3 + [413] * 5, statuses
    response = small.client.post("/save-session", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert "full" in response.json()["error"] or "quota" in response.json()["error"]
    assert len(list(small.sessions.glob("*.json"))) == 3
    assert sum(p.stat().st_size for p in small.sessions.glob("*.json")) <= 0.01 * 1024 * 1024


def test_no_temp_files_remain(site: Site, small: Site) -> None:
    for store in (site.sessions, small.sessions):
        assert store.is_dir()
        leftovers = [p.name for p in store.iterdir() if p.suffix != ".json" or p.name.startswith(".")]
        assert leftovers == []


# ── bad input never gives a 500 ───────────────────────────────────────────────

FLAT = [0.5] * 784

BAD_REQUESTS = [
    # (path, body bytes, status, words the message must contain)
    ("/infer", {"input": [0.5] * 783}, 400, ["784", "783"]),
    ("/infer", {"input": [0.5] * 785}, 400, ["784"]),
    ("/infer", {"image": [[0.5] * 28] * 27}, 400, ["784"]),
    ("/infer", {"image": [[0.5] * 28] * 27 + [[0.5] * 27]}, 400, ["rectangular"]),
    ("/infer", {"input": [[0.5] * 392, [0.5] * 391]}, 400, ["rectangular"]),
    ("/infer", {"input": ["0.5"] * 784}, 400, ["numbers", "string"]),
    ("/infer", {"input": FLAT[:-1] + ["x"]}, 400, ["numbers", "string"]),
    ("/infer", {"input": [True] * 784}, 400, ["numbers", "boolean"]),
    ("/infer", {"input": FLAT[:-1] + [False]}, 400, ["numbers", "boolean"]),
    ("/infer", {"input": [1] * 783 + [True]}, 400, ["numbers", "boolean"]),
    ("/infer", {"input": FLAT[:-1] + ["1e3"]}, 400, ["numbers", "string"]),
    ("/infer", {"image": [["0.5"] * 28] + [[0.5] * 28] * 27}, 400, ["numbers", "string"]),
    ("/infer", {"image": [[0.5] * 28] * 27 + [[0.5] * 27 + [True]]}, 400, ["numbers", "boolean"]),
    ("/infer", {"input": FLAT[:-1] + [None]}, 400, ["null"]),
    ("/infer", {"input": FLAT[:-1] + [{}]}, 400, ["numbers", "object"]),
    ("/infer", {"input": FLAT[:-1] + [[]]}, 400, ["input"]),
    ("/infer", {"input": FLAT[:-1] + [1e39]}, 400, ["finite"]),
    ("/infer", {"input": []}, 400, ["input"]),
    ("/infer", {"input": 5}, 400, ["input"]),
    ("/infer", {"input": "0.5"}, 400, ["input"]),
    ("/infer", {"input": {"a": 1}}, 400, ["input"]),
    ("/infer", {}, 400, ["input", "image"]),
    ("/infer", {"inputs": FLAT}, 400, ["input", "image"]),
    ("/infer", {"image": FLAT}, 400, ["2-D"]),
    ("/infer", {"image": [[[0.5] * 28] * 28]}, 400, ["2-D"]),
    ("/infer", {"model": "no-such-model", "input": FLAT}, 404, ["no-such-model"]),
    ("/infer", {"model": "../../etc/passwd", "input": FLAT}, 404, ["unknown model"]),
    ("/infer", {"model": 5, "input": FLAT}, 400, ["model"]),
    ("/infer", {"model": "lin", "input": FLAT}, 400, ["6"]),
    ("/infer", b"{not json", 400, ["JSON"]),
    ("/infer", b"[1, 2, 3]", 400, ["object"]),
    ("/infer", b"null", 400, ["object"]),
    ("/infer", b"", 400, ["empty"]),
    ("/infer", b"\xff\xfe\x00", 400, ["JSON"]),
    ("/infer", b'{"input": [NaN]}', 400, ["JSON"]),
    ("/infer", b'{"input": [1e999]}', 400, ["JSON"]),
    ("/infer-batch", {"batch": FLAT}, 400, ["batch"]),
    ("/infer-batch", {"batch": [FLAT, FLAT[:-1]]}, 400, ["rectangular"]),
    ("/infer-batch", {"batch": [FLAT, ["a"] * 784]}, 400, ["string"]),
    ("/infer-batch", {"images": [[0.5] * 28] * 28}, 400, ["images"]),
    ("/infer-batch", {"batch": [[0.5] * 10] * 2}, 400, ["784"]),
    ("/infer-batch", {}, 400, ["batch", "images"]),
    ("/infer-batch", {"batch": []}, 400, ["batch"]),
    ("/blast", {"n": 2, "input": [0.5] * 3}, 400, ["784"]),
    ("/blast", {"n": 2, "input": ["a"]}, 400, ["string"]),
    ("/blast", {"n": 2, "model": "nope"}, 404, ["nope"]),
]


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD_REQUESTS, ids=[f"{i}:{r[0]}" for i, r in enumerate(BAD_REQUESTS)])
def test_bad_requests(site: Site, path: str, body: Any, status: int, words: list[str]) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = site.client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error", "request_id"}
    for word in words:
        assert word in error["error"], error["error"]
    assert "Traceback" not in error["error"] and str(site.root) not in error["error"]
    assert response.headers["x-request-id"] == error["request_id"]


def test_server_still_healthy_after_bad_requests(site: Site) -> None:
    assert site.client.get("/health").json()["status"] == "ok"
    assert "Traceback" not in site.server.logs()
    assert " 500" not in site.server.logs() and "unhandled error" not in site.server.logs()


@pytest.mark.parametrize(("method", "path"), [("GET", "/infer"), ("PUT", "/infer"), ("GET", "/infer-batch"), ("DELETE", "/blast"), ("GET", "/save-session"), ("POST", "/health"), ("POST", "/config")])
def test_wrong_method_is_405(site: Site, method: str, path: str) -> None:
    response = site.client.request(method, path)
    assert response.status_code == 405
    body = response.json()
    assert set(body) == {"error", "request_id"} and method in body["error"]
    assert "allow" in response.headers


def test_unknown_path_is_404_json(site: Site) -> None:
    response = site.client.get("/no/such/endpoint")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "request_id"}


def test_oversized_body_is_413(small: Site) -> None:
    big = json.dumps({"input": [0.123456789] * 2000}).encode()
    assert len(big) > 0.01 * 1024 * 1024
    response = small.client.post("/infer", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert set(response.json()) == {"error", "request_id"}
    # and without a Content-Length (chunked), the limit holds while reading
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    response = small.client.post("/infer", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    # a body under the limit still works on that server
    ok = small.client.post("/infer", json={"input": [0.5] * 784})
    assert ok.status_code == 200, ok.text


# ── request ids ───────────────────────────────────────────────────────────────


def test_request_id_is_echoed(site: Site) -> None:
    rid = "client-req-0042"
    ok = site.client.post("/infer", json={"input": FLAT}, headers={"X-Request-Id": rid})
    assert ok.status_code == 200
    assert ok.headers["x-request-id"] == rid
    bad = site.client.post("/infer", json={"input": [1]}, headers={"X-Request-Id": rid})
    assert bad.status_code == 400
    assert bad.headers["x-request-id"] == rid and bad.json()["request_id"] == rid
    missing = site.client.post("/infer", json={"model": "nope", "input": [1]}, headers={"X-Request-Id": rid})
    assert missing.status_code == 404 and missing.json()["request_id"] == rid


def test_request_id_generated_when_absent_or_unsafe(site: Site) -> None:
    first = site.client.post("/infer", json={"input": [1]}).json()["request_id"]
    second = site.client.post("/infer", json={"input": [1]}).json()["request_id"]
    assert first and second and first != second
    hostile = site.client.post("/infer", json={"input": [1]}, headers={"X-Request-Id": "<script>" + "a" * 100}).json()
    assert "<" not in hostile["request_id"] and len(hostile["request_id"]) <= 64


def test_keepalive_connection_survives_errors(site: Site) -> None:
    with httpx.Client(base_url=site.server.url, timeout=10) as client:
        for _ in range(3):
            assert client.post("/infer", content=b"{", headers={"content-type": "application/json"}).status_code == 400
            assert client.post("/infer", json={"input": FLAT}).status_code == 200
