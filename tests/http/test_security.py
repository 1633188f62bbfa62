"""Host/Origin refusal, API keys, the admin token, and a classification for every route."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from berth.config import load_config
from berth.engine import Engine
from berth.http import create_app
from berth.http.security import ADMIN, DATA, PUBLIC, classify
from models import write_linear_softmax

X = {"input": [1.0, 2.0, 3.0, 4.0]}


def _starlette_app(app: Any) -> Any:
    """Walk the middleware chain down to the Starlette app."""
    while not hasattr(app, "routes") or not isinstance(getattr(app, "routes"), list):
        app = app.app
    return app


def test_every_http_route_is_classified(tmp_path: Path) -> None:
    app = create_app(Engine(load_config(overrides={"repository": str(tmp_path)})), manage_engine=False)
    starlette = _starlette_app(app)
    checked = 0
    for route in starlette.routes:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method == "HEAD":
                continue
            assert classify(method, path) in (PUBLIC, DATA, ADMIN), f"{method} {route.path} is not classified"
            checked += 1
    assert checked >= 10


def test_classification_of_key_routes() -> None:
    assert classify("GET", "/health") == PUBLIC
    assert classify("POST", "/infer") == DATA
    assert classify("POST", "/v2/models/m/versions/1/infer") == DATA
    assert classify("POST", "/models/m/load") == ADMIN
    assert classify("POST", "/v2/repository/models/m/unload") == ADMIN
    assert classify("DELETE", "/models/m") is None  # unknown: treated as admin


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_linear_softmax(tmp_path / "repo" / "m.onnx")
    return tmp_path / "repo"


def test_unknown_host_and_cross_origin_writes_are_refused(repo: Path, make_server: Any) -> None:
    server = make_server({"repository": str(repo)})
    with server.client() as client:
        answered = client.post("/infer", json={**X, "model": "m"})
        assert answered.status_code == 200
        assert "server" not in answered.headers  # the server software is not advertised
        rebound = client.post("/infer", json={**X, "model": "m"}, headers={"Host": "evil.example:80"})
        assert rebound.status_code == 421 and "Host" in rebound.json()["error"]
        assert client.get("/health", headers={"Host": "evil.example"}).status_code == 421
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            response = client.request(method, "/models/m/load", headers={"Origin": "http://evil.example"})
            assert response.status_code == 403, method
            assert "cross-origin" in response.json()["error"]
        same_origin = client.post("/infer", json={**X, "model": "m"}, headers={"Origin": server.url})
        assert same_origin.status_code == 200
        # reading is not state-changing: a cross-origin GET is answered (CORS keeps it from the page)
        assert client.get("/health", headers={"Origin": "http://evil.example"}).status_code == 200


def test_management_through_a_proxy_is_judged_by_the_client_it_names(repo: Path, make_server: Any) -> None:
    """With no admin token, management is for loopback clients only; a loopback peer
    that is a proxy (``FORWARDED_ALLOW_IPS``, loopback by default) forwarding a remote
    client's request does not make that client local."""
    server = make_server({"repository": str(repo)})
    with server.client() as client:
        assert client.post("/models/m/load").status_code == 200
        forwarded = client.post("/models/m/load", headers={"X-Forwarded-For": "203.0.113.9"})
        assert forwarded.status_code == 403 and "loopback" in forwarded.json()["error"]
        chained = client.post("/models/m/load", headers={"X-Forwarded-For": "203.0.113.9, 127.0.0.1"})
        assert chained.status_code == 403  # the nearest client the trusted proxies name
        local = client.post("/models/m/load", headers={"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"})
        assert local.status_code == 200
        assert client.post("/infer", json={**X, "model": "m"}, headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200


def test_cors_for_allowed_origins_only(repo: Path, make_server: Any) -> None:
    """A page from an allowed origin can call berth from a browser (preflight answered
    without credentials, responses readable, berth's headers exposed); other origins get
    no CORS headers, so the browser keeps responses from them."""
    allowed = "https://app.example"
    server = make_server({"repository": str(repo), "auth": {"allowed_origins": [allowed], "api_keys": ["k"]}})
    with server.client() as client:
        preflight = client.options(
            "/v2/models/m/infer",
            headers={"Origin": allowed, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, authorization"},
        )
        assert preflight.status_code == 204, preflight.text  # no API key asked of a preflight
        assert preflight.headers["access-control-allow-origin"] == allowed
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"]
        assert "access-control-allow-credentials" not in preflight.headers

        answer = client.post("/infer", json={**X, "model": "m"}, headers={"Origin": allowed, "Authorization": "Bearer k"})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == allowed and answer.headers["vary"] == "Origin"
        assert "x-request-id" in answer.headers["access-control-expose-headers"]
        refused = client.post("/infer", json={**X, "model": "m"}, headers={"Origin": allowed})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == allowed

        other = "https://other.example"
        foreign = client.options("/v2/models/m/infer", headers={"Origin": other, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in foreign.headers
        assert client.post("/infer", json={**X, "model": "m"}, headers={"Origin": other, "Authorization": "Bearer k"}).status_code == 403
        read = client.get("/health", headers={"Origin": other})
        assert read.status_code == 200 and "access-control-allow-origin" not in read.headers
        # a preflight still has to name one of the server's hosts (DNS rebinding)
        rebound = client.options("/infer", headers={"Origin": allowed, "Access-Control-Request-Method": "POST", "Host": "evil.example"})
        assert rebound.status_code == 421


def test_api_key_and_admin_token(repo: Path, make_server: Any) -> None:
    server = make_server({"repository": str(repo), "auth": {"api_keys": ["data-key-1", "data-key-2"], "admin_token": "admin-secret"}})
    with server.client() as client:
        assert client.get("/health").status_code == 200  # public
        missing = client.post("/infer", json={**X, "model": "m"})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert client.post("/infer", json={**X, "model": "m"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/infer", json={**X, "model": "m"}, headers={"Authorization": "Bearer data-key-2"}).status_code == 200
        assert client.post("/infer", json={**X, "model": "m"}, headers={"X-API-Key": "data-key-1"}).status_code == 200
        # a data key does not open management; the admin token does
        assert client.post("/models/m/load", headers={"X-API-Key": "data-key-1"}).status_code == 401
        assert client.post("/models/m/load", headers={"Authorization": "Bearer admin-secret"}).status_code == 200
        assert client.post("/models/m/unload", headers={"X-Admin-Token": "admin-secret"}).status_code == 200
    assert "admin-secret" not in server.logs() and "data-key-1" not in server.logs()


def test_metrics_use_route_templates_and_model_names(repo: Path, make_server: Any) -> None:
    server = make_server({"repository": str(repo)})
    with server.client() as client:
        for _ in range(3):
            assert client.post("/infer", json={**X, "model": "m"}).status_code == 200
        client.get("/models/m")
        client.get("/no/such/path/abc123")
        # the fast lane records its own routes, errors included, under their templates
        assert client.post("/infer", json={"input": "nope", "model": "m"}).status_code == 400
        v2_body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
        assert client.post("/v2/models/m/infer", json=v2_body).status_code == 200
        assert client.post("/v2/models/zzz987/infer", json=v2_body).status_code == 404
        text = client.get("/metrics").text
    assert 'berth_http_requests_total{method="POST",route="/infer",status="200"} 3.0' in text
    assert 'berth_http_requests_total{method="POST",route="/infer",status="400"} 1.0' in text
    assert 'berth_http_requests_total{method="POST",route="/v2/models/{model}/infer",status="200"} 1.0' in text
    assert 'berth_http_requests_total{method="POST",route="/v2/models/{model}/infer",status="404"} 1.0' in text
    assert "zzz987" not in text
    assert 'route="/models/{name}"' in text
    assert "abc123" not in text  # raw paths never become labels
    assert 'berth_model_inferences_total{model="m",version="1"} 4.0' in text  # 3 seed + 1 V2
    assert 'berth_model_loads_total{model="m",version="1"} 1.0' in text
    assert re.search(r'berth_model_memory_bytes\{device="cpu",model="m",version="1"\} [1-9]', text)
    assert "berth_http_request_duration_seconds_bucket" in text
    assert 'berth_ready 1.0' in text



def test_every_grpc_method_is_classified() -> None:
    from grpc_health.v1 import health_pb2

    from berth.grpc import auth
    from berth.grpc.generated import grpc_service_pb2
    from berth.grpc.generated.berth.v1 import berth_pb2

    methods = []
    for module in (grpc_service_pb2, berth_pb2, health_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            methods += [f"/{service.full_name}/{method.name}" for method in service.methods]
    assert len(methods) >= 25
    unclassified = [m for m in methods if m not in auth.METHOD_CLASSES]
    assert not unclassified, f"RPCs with no class: {unclassified}"
    assert set(auth.METHOD_CLASSES.values()) <= {auth.PUBLIC, auth.DATA, auth.ADMIN}


def test_per_key_quota_answers_429_over_http_and_resource_exhausted_over_grpc(repo: Path, make_server: Any) -> None:
    import grpc
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    server = make_server({"repository": str(repo), "auth": {"api_keys": ["k1", "k2"], "quota_rps": 0.5, "quota_burst": 3}})
    with server.client() as client:
        k1 = {"Authorization": "Bearer k1"}
        statuses = [client.post("/infer", json={**X, "model": "m"}, headers=k1).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        over = client.post("/infer", json={**X, "model": "m"}, headers=k1)
        assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
        assert "quota" in over.json()["error"]
        # another key has its own bucket
        assert client.post("/infer", json={**X, "model": "m"}, headers={"X-API-Key": "k2"}).status_code == 200
    grpc_port = server.grpc_port
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        with pytest.raises(InferenceServerException) as refused:
            triton.get_model_metadata("m", headers={"authorization": "Bearer k1"})
        assert refused.value.status() == str(grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert triton.get_model_metadata("m", headers={"authorization": "Bearer k2"}).name == "m"
    finally:
        triton.close()
