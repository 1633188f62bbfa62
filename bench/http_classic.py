"""Seed-000 ``POST /infer`` over HTTP: berth against a bare ASGI endpoint, same run.

Both servers run under uvicorn (uvloop + httptools) pinned to CPU core 0 with one
onnxruntime thread; the load generator, wrk (Debian package ``wrk``), is pinned to
core 1. Each level runs 1, 8 and 64 connections for ``--seconds`` after a warm-up.
The bare endpoint (bench/bare_app.py) parses, runs the digits model inline and
encodes — the ceiling for any Python server on this machine.

Goal (issue 3): berth at least 0.8x the bare endpoint at every level.

    python bench/http_classic.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import yaml

from _common import ROOT, digits_model, table

LEVELS = (1, 8, 64)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, content=PAYLOAD, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


PAYLOAD = orjson.dumps({"input": np.round(np.random.default_rng(0).random(784), 3).tolist()})


def wrk(url: str, connections: int, seconds: float, script: Path) -> dict[str, float]:
    command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for label, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", output)
        value = float(match.group(1))
        result[key] = value / 1000 if match.group(2) == "us" else value * 1000 if match.group(2) == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    return result


def run_levels(url: str, seconds: float, script: Path) -> dict[int, dict[str, float]]:
    wrk(url, 8, 2, script)  # warm-up
    return {c: wrk(url, c, seconds, script) for c in LEVELS}


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")
    return subprocess.Popen(["taskset", "-c", "0", *command], env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        sys.exit("needs wrk and taskset (apt-get install wrk util-linux)")
    model = Path(os.environ["BENCH_MODEL"]) if os.environ.get("BENCH_MODEL") else digits_model()
    work = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    script = work / "post.lua"
    (work / "body.json").write_bytes(PAYLOAD)
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{work / "body.json"}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
    )
    env = {**os.environ, "BARE_MODEL": str(model), "BARE_THREADS": "1", "PYTHONPATH": str(ROOT / "bench")}
    bin_dir = Path(sys.executable).parent

    port = free_port()
    bare = start([str(bin_dir / "uvicorn"), "bare_app:app", "--port", str(port), "--no-access-log", "--log-level", "warning"], env, work / "bare.log")
    try:
        wait_for(f"http://127.0.0.1:{port}/infer")
        bare_results = run_levels(f"http://127.0.0.1:{port}/infer", args.seconds, script)
    finally:
        stop(bare)

    port = free_port()
    config = {
        "server": {"http_port": port, "stats_report_interval_s": 0},
        "onnx": {"intra_op_threads": 1},
        "default_model": "digits",
        "models": {"digits": {"model_path": str(model), "preload": True}},
    }
    (work / "berth.yaml").write_text(yaml.safe_dump(config))
    berth = start([str(bin_dir / "berth"), "serve", "--config", str(work / "berth.yaml"), "--log-level", "warning"], env, work / "berth.log")
    try:
        wait_for(f"http://127.0.0.1:{port}/infer")
        berth_results = run_levels(f"http://127.0.0.1:{port}/infer", args.seconds, script)
    finally:
        stop(berth)

    rows = []
    for c in LEVELS:
        b, r = bare_results[c], berth_results[c]
        rows.append([
            c, f"{r['rps']:,.0f}", f"{b['rps']:,.0f}", f"{r['rps'] / b['rps']:.2f}x",
            f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}", f"{b['p50_ms']:.2f} / {b['p99_ms']:.2f}", int(r["errors"] + b["errors"]),
        ])
    print(table(["connections", "berth req/s", "bare req/s", "berth/bare (goal >= 0.8)", "berth p50/p99 ms", "bare p50/p99 ms", "non-2xx"], rows))


if __name__ == "__main__":
    main()
