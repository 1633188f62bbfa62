"""Triton's stock ``perf_analyzer`` against a real berth server, unchanged.

perf_analyzer reads the model's metadata and configuration (HTTP ``/v2/models/{m}``
and ``/config``, gRPC ``ModelMetadata``/``ModelConfig``), sends inferences with the
formats it is told to, and reads the statistics extension before and after every
measurement window, refusing answers it does not expect. Each case runs it for two
concurrency levels over a few short windows and checks that it exits 0, reports a
throughput above zero for each level, printed no error, and that every response held
the expected outputs: the input is zeros, so ``softmax(0 @ W)`` is exactly 1/3 in each
of the three classes, which perf_analyzer checks itself (``validation_data``).

The binary comes from ``make perf-analyzer`` (tools/install_perf_analyzer.sh) into
var/tools/perf_analyzer/; ``$PERF_ANALYZER`` names another one. Without it these tests
are skipped.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from conftest import ROOT, BerthServer, free_port, missing_tool
from models import write_linear_softmax

PERF_ANALYZER = Path(os.environ.get("PERF_ANALYZER") or ROOT / "var" / "tools" / "perf_analyzer" / "perf_analyzer")
if not PERF_ANALYZER.is_file():
    missing_tool(f"perf_analyzer is not installed at {PERF_ANALYZER}: run `make perf-analyzer` (it needs Debian's libb64-0d)")

MODEL = "lin"
#: a run may not take longer than this (each case needs about 4 s)
RUN_TIMEOUT_S = 90


class Site:
    def __init__(self, server: BerthServer, grpc_port: int, data: Path) -> None:
        self.server = server
        self.grpc_port = grpc_port
        self.data = data


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("perf_analyzer")
    write_linear_softmax(root / "models" / MODEL / "1" / "model.onnx", features=4, classes=3, seed=5)
    (root / "models" / MODEL / "config.yaml").write_text("max_batch_size: 8\n")  # dynamic batching, no added delay
    third = float(np.float32(1) / np.float32(3))
    data = root / "data.json"
    data.write_text(json.dumps({"data": [{"x": [0.0] * 4}], "validation_data": [{"probs": [third] * 3}]}))
    grpc_port = free_port()
    config = {"server": {"grpc_port": grpc_port}, "repository": "models", "models": {MODEL: {"preload": True}}}
    server = BerthServer(config, root).start()
    yield Site(server, grpc_port, data)
    server.stop()


def _failures(server: BerthServer) -> int:
    with server.client() as client:
        response = client.get(f"/v2/models/{MODEL}/stats")
    assert response.status_code == 200, response.text
    return sum(stat["inference_stats"]["fail"]["count"] for stat in response.json()["model_stats"])


# (id, protocol, extra flags, batch size)
CASES = [
    ("http-binary", "http", ["--input-tensor-format=binary", "--output-tensor-format=binary"], 1),
    ("http-json", "http", ["--input-tensor-format=json", "--output-tensor-format=json"], 1),
    ("http-json-in-binary-out-batch4", "http", ["--input-tensor-format=json", "--output-tensor-format=binary"], 4),
    ("http-binary-in-json-out-batch4", "http", ["--input-tensor-format=binary", "--output-tensor-format=json"], 4),
    ("grpc", "grpc", [], 1),
    ("grpc-streaming-batch4", "grpc", ["--streaming"], 4),
]


@pytest.mark.parametrize(("protocol", "flags", "batch"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_perf_analyzer(site: Site, tmp_path: Path, protocol: str, flags: list[str], batch: int) -> None:
    port = site.server.port if protocol == "http" else site.grpc_port
    report = tmp_path / "report.csv"
    command = [
        str(PERF_ANALYZER),
        "-m", MODEL,
        "-i", protocol,
        "-u", f"127.0.0.1:{port}",
        "--input-data", str(site.data),
        "-b", str(batch),
        "--concurrency-range", "1:2",
        "--measurement-interval", "500",
        "--max-trials", "3",
        # a smoke test, not a measurement: any three windows count as stable
        "--stability-percentage", "1000",
        "-f", str(report),
        *flags,
    ]  # fmt: skip
    failures_before = _failures(site.server)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"perf_analyzer ran past {RUN_TIMEOUT_S}s: {' '.join(command)}\n{exc.stdout}\n{exc.stderr}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"perf_analyzer exited {result.returncode}:\n{output}\nserver log:\n{site.server.logs()[-4000:]}"
    assert "error" not in output.lower(), output

    with report.open() as handle:
        rows = list(csv.DictReader(handle))
    # one row per level, ordered by throughput (not by concurrency)
    assert sorted(int(row["Concurrency"]) for row in rows) == [1, 2], output
    for row in rows:
        assert float(row["Inferences/Second"]) > 0, output
        assert 0 < float(row["p50 latency"]) <= float(row["p99 latency"]), output

    server_section = output.split("Server:", 1)[-1]
    assert "Successful request count" in server_section, output  # it read berth's statistics
    assert _failures(site.server) == failures_before
    log = site.server.logs()
    assert "Traceback" not in log and " ERROR " not in log, log[-4000:]
