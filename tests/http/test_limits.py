"""Limits at their defaults: headers, rows per request, tensor elements, JSON depth, body."""

from __future__ import annotations

from typing import Iterator

import psutil
import pytest

from berth.config import ServerConfig
from conftest import BerthServer
from http_fixtures import start_linear_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    running = start_linear_server(tmp_path_factory.mktemp("limits"))
    yield running
    running.stop()


def test_headers_over_the_default_limit_get_431(server: BerthServer) -> None:
    limit = int(ServerConfig().max_header_kb * 1024)
    with server.client() as client:
        ok = client.post("/infer", json={"input": [1, 2, 3, 4]}, headers={"X-Filler": "a" * (limit // 2)})
        assert ok.status_code == 200
        response = client.post("/infer", json={"input": [1, 2, 3, 4]}, headers={"X-Filler": "a" * limit})
        assert response.status_code == 431
        assert "limit" in response.json()["error"]


def test_rows_over_the_default_limit_get_413(server: BerthServer) -> None:
    rows = ServerConfig().max_request_rows
    with server.client() as client:
        assert client.post("/infer-batch", json={"batch": [[0.1] * 4] * rows}).status_code == 200
        response = client.post("/infer-batch", json={"batch": [[0.1] * 4] * (rows + 1)})
        assert response.status_code == 413 and "max_request_rows" in response.json()["error"]


def test_json_nesting_past_the_parser_limit_is_400(server: BerthServer) -> None:
    with server.client() as client:
        deep = b'{"input": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        response = client.post("/infer", content=deep, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert "JSON" in response.json()["error"]


def test_bodies_over_the_default_limit_get_413_and_memory_stays_flat(server: BerthServer) -> None:
    limit = int(ServerConfig().max_body_mb * 1024 * 1024)
    process = psutil.Process(server.process.pid)
    with server.client() as client:
        before = process.memory_info().rss
        for _ in range(5):
            response = client.post("/infer", content=b"0" * (limit + 1), headers={"Content-Type": "application/json"})
            assert response.status_code == 413
        grown = process.memory_info().rss - before
    assert grown < 32 * 1024 * 1024, f"server grew {grown / 2**20:.0f} MB answering refused bodies"
