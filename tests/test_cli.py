"""``berth serve -model PATH -addr :PORT -maxgpu N``: the seed-000 command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import free_port, wait_until_ready
from models import softmax, write_linear_softmax


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env["PYTHONUNBUFFERED"] = "1"
    # keep any future gRPC listener off shared ports
    env["BERTH_SERVER__GRPC_PORT"] = str(free_port())
    return env


def test_seed_000_command_line(tmp_path: Path) -> None:
    weights = write_linear_softmax(tmp_path / "models" / "mnist_model.onnx", features=4, classes=3, seed=3)
    workdir = tmp_path / "run"
    workdir.mkdir()  # no berth.yaml here: flags alone configure the server
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "berth", "serve", "-model", "../models/mnist_model.onnx", "-addr", f":{port}", "-maxgpu", "2"],
            cwd=workdir,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, url, lambda: log.read_text(errors="replace"))
        with httpx.Client(base_url=url, timeout=30) as client:
            config = client.get("/config").json()
            assert config["model"] == "mnist_model"
            assert config["input"] == [4]
            assert config["classes"] == 3
            assert config["modelPath"] == "mnist_model.onnx"  # never the absolute path
            assert str(tmp_path) not in client.get("/config").text

            x = np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32)
            response = client.post("/infer", json={"input": x.tolist()})  # no model named: the default
            assert response.status_code == 200, response.text
            body = response.json()
            expected = softmax((x @ weights)[None, :])[0]
            np.testing.assert_allclose(body["probs"], expected, rtol=1e-5, atol=1e-6)
            assert body["top_index"] == int(expected.argmax())
            assert body["model"] == "mnist_model"

            # -maxgpu 2 is the model's concurrency, reported by /blast as "parallel"
            blast = client.post("/blast", json={"n": 4, "input": x.tolist()}).json()
            assert blast["count"] == 4 and blast["parallel"] == 2
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            pytest.fail("server did not exit within 30 s of SIGTERM")
    assert code == 0, log.read_text(errors="replace")
    assert "Traceback" not in log.read_text(errors="replace")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "berth", *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"berth {' '.join(args)} kept running; it should have refused to start\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_bad_addr_exits_2(tmp_path: Path) -> None:
    result = _run(["serve", "-addr", "8080"], tmp_path)
    assert result.returncode == 2
    assert "-addr" in result.stderr and "Traceback" not in result.stderr


def test_missing_model_file_exits_2(tmp_path: Path) -> None:
    result = _run(["serve", "-model", "nope/missing.onnx", "-addr", f":{free_port()}"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert "-model" in result.stderr and "missing.onnx" in result.stderr
    assert "Traceback" not in result.stderr


def test_model_with_unknown_suffix_exits_2(tmp_path: Path) -> None:
    (tmp_path / "weights.xyz").write_bytes(b"\x00")
    result = _run(["serve", "-model", "weights.xyz", "-addr", f":{free_port()}"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert "-model" in result.stderr and "Traceback" not in result.stderr
