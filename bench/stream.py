"""Seed 001 SSE streams: N concurrent 30 fps streams on the demo EMG model.

For N = 10, 50, 100 streams (``--levels``), each for ``--seconds``, this reports the
delivered frame rate per stream (its ratio to the 30 fps target is the ceiling
ratio), the interval between frames as the client receives them (p50/p99; 33.3 ms
is perfect), how late the server started frames (its ``late_ms``, p99), the delivery
lag from the server's event ``timestamp`` to the event parsed in the client, the frames it
missed or dropped, and the mean batch size the model ran — the streams' frames meet
in the model's batcher. The server is pinned to CPU core 0 and the client (berth's
own AsyncClient, one process) to core 1 when the machine has two or more cores.

    python bench/stream.py [--seconds 10] [--levels 10,50,100] [--fps 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from _common import DEMO_DIR, ROOT, digits_model, table


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoServer:
    """The demo models behind ``berth serve``, pinned to ``cpus`` when given."""

    def __init__(self, extra: dict[str, Any] | None = None, cpus: set[int] | None = None) -> None:
        digits_model()  # builds the demo if it is missing
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="berth-bench-"))
        config = {
            "server": {"http_port": self.port, "grpc_port": free_port()},
            "repository": str(DEMO_DIR / "models"),
            "models": {"emg": {"preload": True}, "emg_torch": {"preload": True}},
            **(extra or {}),
        }
        (self.workdir / "berth.yaml").write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BERTH_", "EMG_"))}
        self.log = open(self.workdir / "server.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "berth", "serve", "--config", str(self.workdir / "berth.yaml"), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).json().get("ready"):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError("the server did not become ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        self.log.close()


async def one_stream(client: object, seconds: float, fps: float, arrivals: list[float], events: list[dict]) -> dict:
    async for event in client.iter_stream(duration_seconds=seconds, fps=fps, use_tensorrt=True):  # type: ignore[attr-defined]
        if "prediction" in event:
            arrivals.append(time.monotonic())
            event["lag_ms"] = (time.time() - event["timestamp"]) * 1000.0  # server's put → parsed here
            events.append(event)
        else:
            return event
    raise RuntimeError("no final event")


async def level(url: str, n: int, seconds: float, fps: float) -> list[object]:
    from berth.client import AsyncClient

    async with AsyncClient(url, timeout=60, limits=httpx.Limits(max_connections=n + 10)) as client:
        arrivals: list[list[float]] = [[] for _ in range(n)]
        events: list[list[dict]] = [[] for _ in range(n)]
        finals = await asyncio.gather(*(one_stream(client, seconds, fps, arrivals[i], events[i]) for i in range(n)))
    errors = [f for f in finals if "error" in f]
    delivered = np.array([len(e) / seconds for e in events])
    intervals = np.concatenate([np.diff(a) for a in arrivals if len(a) > 1]) * 1000.0
    late = np.array([e["late_ms"] for stream in events for e in stream])
    lag = np.array([e["lag_ms"] for stream in events for e in stream])
    batches = np.array([e["batch_size"] for stream in events for e in stream])
    missed = sum(f.get("missed_frames", 0) for f in finals)
    dropped = sum(f.get("dropped_events", 0) for f in finals)
    return [
        n, f"{delivered.mean():.2f}", f"{delivered.min():.2f}", f"{delivered.mean() / fps:.3f}",
        f"{np.percentile(intervals, 50):.1f}", f"{np.percentile(intervals, 99):.1f}", f"{np.percentile(late, 99):.1f}",
        f"{np.percentile(lag, 50):.1f} / {np.percentile(lag, 99):.1f}",
        missed, dropped, len(errors), f"{batches.mean():.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--levels", default="10,50,100")
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()
    split = (os.cpu_count() or 1) >= 2
    server = DemoServer({"emg": {"max_streams": 256}}, cpus={0} if split else None)
    if split:
        os.sched_setaffinity(0, {1})
    rows = []
    try:
        for n in (int(x) for x in args.levels.split(",")):
            rows.append(asyncio.run(level(server.url, n, args.seconds, args.fps)))
    finally:
        server.stop()
    print(f"{args.fps:g} fps streams for {args.seconds:g} s each; server on core 0, client on core 1" if split else "")
    print(table(
        ["streams", "fps/stream mean", "fps/stream min", "ratio to target", "interval p50 ms", "interval p99 ms",
         "server late p99 ms", "delivery lag p50/p99 ms", "missed", "dropped", "errors", "mean batch"],
        rows,
    ))


if __name__ == "__main__":
    main()
