"""KServe V2 with Triton's perf_analyzer: berth against bare endpoints, same run.

Three paths, each at concurrency 1, 8 and 64 with batch 1, on the demo digits model
(``input`` [N, 28, 28] FP32 → ``probs`` [N, 10]):

- HTTP JSON:   ``POST /v2/models/digits/versions/1/infer``, tensors as JSON ``data``
- HTTP binary: the same path with the binary tensor extension (JSON header + raw bytes)
- gRPC:        ``inference.GRPCInferenceService/ModelInfer`` with raw contents

The ceilings are a bare ASGI endpoint (bench/bare_v2_app.py, under the same uvicorn
settings as berth: uvloop + httptools) and a bare ``grpc.aio`` server
(bench/bare_v2_grpc.py, berth's generated stubs, uvloop). Both parse the same bodies
and run the model with onnxruntime inline; berth runs it through its Engine (queue,
dynamic batcher, statistics). Every server is pinned to CPU core 0 with one
onnxruntime thread, perf_analyzer to core 1. All three servers stay up for the whole
run (an idle one costs nothing) and each (path, concurrency) level is measured on the
bare server and on berth back to back, so slow drift of the machine hits both alike.

perf_analyzer runs in its default synchronous mode (one thread per request in
flight; its asynchronous HTTP mode misreports curl results at high concurrency) and
reports the mean of three stable windows of ``--window-ms``. The input is one fixed
image of random values in [0, 1) with three decimals, as in bench/http_classic.py,
given as an ``--input-data`` file (perf_analyzer's own ``random`` data is random bytes,
whose NaNs and infinities have no JSON form). ``--rounds 2`` (the default) measures
bare, berth, then berth, bare and averages, to cancel drift on a busy machine.
``-x 1`` names the version: without it perf_analyzer picks the version whose
statistics grew during the window, and the bare servers answer statistics statically.

Goal (issue 4): berth at least 0.8x the bare endpoint on every path and level.

    make perf-analyzer && python bench/v2.py [--window-ms 1500]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import socket
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
MODEL = "digits"
PERF_ANALYZER = Path(os.environ.get("PERF_ANALYZER") or ROOT / "var" / "tools" / "perf_analyzer" / "perf_analyzer")
#: (label, protocol, perf_analyzer flags)
PATHS = (
    ("HTTP JSON", "http", ["--input-tensor-format=json", "--output-tensor-format=json"]),
    ("HTTP binary", "http", ["--input-tensor-format=binary", "--output-tensor-format=binary"]),
    ("gRPC", "grpc", []),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")
    return subprocess.Popen(["taskset", "-c", "0", *command], env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def wait_http(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def wait_grpc(process: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 90.0) -> None:
    import grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"gRPC :{port}: server exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                grpc.channel_ready_future(channel).result(timeout=1.0)
                return
            except grpc.FutureTimeoutError:
                pass
    raise TimeoutError(f"gRPC :{port}")


#: one perf_analyzer call's limit: at c64 a call now and then takes minutes to settle
#: while the server keeps serving at full rate (seen in the ninth session)
PERF_ANALYZER_TIMEOUT_S = 300


def still_answers(protocol: str, port: int) -> str:
    """Whether the server on ``port`` answers a readiness probe now (HTTP only)."""
    if protocol != "http":
        return "server not probed"
    try:
        status = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5.0).status_code
    except httpx.HTTPError as exc:
        return f"the server did not answer a readiness probe ({type(exc).__name__})"
    return f"the server answered a readiness probe ({status})"


def perf_analyzer(
    protocol: str, port: int, flags: list[str], concurrency: int, window_ms: int, work: Path, stability: int = 50
) -> dict[str, float]:
    """One perf_analyzer run at one concurrency: req/s, p50/p99 in ms, or an error."""
    report = work / "report.csv"
    report.unlink(missing_ok=True)
    command = [
        "taskset", "-c", "1", str(PERF_ANALYZER),
        "-m", MODEL, "-x", "1", "-i", protocol, "-u", f"127.0.0.1:{port}",
        "-b", "1", "--input-data", str(work / "input.json"), "--concurrency-range", str(concurrency),
        "--measurement-interval", str(window_ms), "--max-trials", "6", "--stability-percentage", str(stability),
        "-f", str(report), *flags,
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PERF_ANALYZER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # reported in the table, not a crash of the whole run, with whether the server
        # still answers (a stuck server and a stuck load generator look alike from here)
        return {"error": 1.0, "detail": f"perf_analyzer ran past {PERF_ANALYZER_TIMEOUT_S} s; {still_answers(protocol, port)}"}  # type: ignore[dict-item]
    output = result.stdout + result.stderr
    if result.returncode != 0 or not report.exists():
        if "stable measurement" in output and stability < 200:
            return perf_analyzer(protocol, port, flags, concurrency, window_ms, work, stability=200)
        return {"error": 1.0, "detail": output.strip().splitlines()[-1] if output.strip() else f"exit {result.returncode}"}  # type: ignore[dict-item]
    with report.open() as handle:
        row = next(csv.DictReader(handle))
    return {
        "rps": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1000,
        "p99_ms": float(row["p99 latency"]) / 1000,
        "error": float("error" in output.lower()),
        "unstable": float(stability > 50),
    }


def mean(results: list[dict[str, float]]) -> dict[str, float]:
    """The rounds of one server at one level, averaged (an error in any round wins)."""
    for result in results:
        if "rps" not in result:
            return result
    merged = {key: sum(r[key] for r in results) / len(results) for key in ("rps", "p50_ms", "p99_ms")}
    merged["error"] = max(r["error"] for r in results)
    merged["unstable"] = max(r["unstable"] for r in results)
    return merged


def cell(result: dict[str, float]) -> tuple[str, str]:
    if "rps" not in result:
        return "error", str(result.get("detail", ""))[:100]
    mark = ("*" if result.get("unstable") else "") + ("!" if result.get("error") else "")
    return f"{result['rps']:,.0f}{mark}", f"{result['p50_ms']:.2f} / {result['p99_ms']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window-ms", type=int, default=1500, help="perf_analyzer measurement window (three make a result)")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per server and level, alternating which goes first")
    args = parser.parse_args()
    if not shutil.which("taskset"):
        sys.exit("needs taskset (apt-get install util-linux)")
    if not PERF_ANALYZER.is_file():
        sys.exit(f"needs perf_analyzer at {PERF_ANALYZER}: run `make perf-analyzer` (and apt-get install libb64-0d)")
    model = Path(os.environ["BENCH_MODEL"]) if os.environ.get("BENCH_MODEL") else digits_model()
    work = Path(tempfile.mkdtemp(prefix="berth-bench-v2-"))
    image = np.round(np.random.default_rng(0).random(784), 3).tolist()
    (work / "input.json").write_bytes(orjson.dumps({"data": [{"input": image}]}))
    env = {
        **os.environ, "BARE_MODEL": str(model), "BARE_NAME": MODEL, "BARE_THREADS": "1", "BARE_MAX_BATCH": "32",
        "PYTHONPATH": str(ROOT / "bench"),
    }  # fmt: skip
    bin_dir = Path(sys.executable).parent

    bare_http_port, bare_grpc_port, http_port, grpc_port = (free_port() for _ in range(4))
    config = {
        "server": {"http_port": http_port, "grpc_port": grpc_port, "stats_report_interval_s": 0},
        "onnx": {"intra_op_threads": 1},
        "default_model": MODEL,
        "models": {MODEL: {"model_path": str(model), "preload": True, "max_batch_size": 32}},
    }
    (work / "berth.yaml").write_text(yaml.safe_dump(config))
    servers = []
    try:
        bare_http = start(
            [str(bin_dir / "uvicorn"), "bare_v2_app:app", "--port", str(bare_http_port), "--no-access-log", "--log-level", "warning"],
            env, work / "bare_http.log",
        )  # fmt: skip
        servers.append(bare_http)
        bare_grpc = start([sys.executable, str(ROOT / "bench" / "bare_v2_grpc.py"), "--port", str(bare_grpc_port)], env, work / "bare_grpc.log")
        servers.append(bare_grpc)
        berth = start([str(bin_dir / "berth"), "serve", "--config", str(work / "berth.yaml"), "--log-level", "warning"], env, work / "berth.log")
        servers.append(berth)
        wait_http(bare_http, f"http://127.0.0.1:{bare_http_port}/v2/health/ready", work / "bare_http.log")
        wait_grpc(bare_grpc, bare_grpc_port, work / "bare_grpc.log")
        wait_http(berth, f"http://127.0.0.1:{http_port}/v2/health/ready", work / "berth.log")
        wait_grpc(berth, grpc_port, work / "berth.log")

        rows = []
        for label, protocol, flags in PATHS:
            bare_port, berth_port = (bare_http_port, http_port) if protocol == "http" else (bare_grpc_port, grpc_port)
            for port in (bare_port, berth_port):  # warm-up
                perf_analyzer(protocol, port, flags, 8, 500, work, stability=1000)
            for concurrency in LEVELS:
                bares, mines = [], []
                for round_ in range(args.rounds):
                    order = ((bare_port, bares), (berth_port, mines))
                    for port, results in order if round_ % 2 == 0 else order[::-1]:
                        results.append(perf_analyzer(protocol, port, flags, concurrency, args.window_ms, work))
                bare, mine = mean(bares), mean(mines)
                ratio = f"{mine['rps'] / bare['rps']:.2f}x" if "rps" in mine and "rps" in bare else "-"
                (mine_rps, mine_lat), (bare_rps, bare_lat) = cell(mine), cell(bare)
                rows.append([label, concurrency, mine_rps, bare_rps, ratio, mine_lat, bare_lat])
                print(f"{label:12} c={concurrency:<3} berth {mine_rps:>8} req/s  bare {bare_rps:>8} req/s  {ratio}", file=sys.stderr, flush=True)
        for process, log in ((berth, "berth.log"), (bare_http, "bare_http.log"), (bare_grpc, "bare_grpc.log")):
            if process.poll() is not None:
                print(f"{log}: exited with {process.returncode}", file=sys.stderr)
    finally:
        for process in servers:
            stop(process)
    print(table(
        ["path", "concurrency", "berth req/s", "bare req/s", "berth/bare (goal >= 0.8)", "berth p50/p99 ms", "bare p50/p99 ms"], rows,
    ))  # fmt: skip
    print(f"\nperf_analyzer 2.40.0, sync mode, batch 1, FP32 input [1, 28, 28], {args.rounds} round(s) of 3 x {args.window_ms} ms"
          " windows per cell; server on core 0, perf_analyzer on core 1."
          "\n* = needed a looser stability threshold (200%) to converge; ! = perf_analyzer printed an error.")  # fmt: skip


if __name__ == "__main__":
    main()
