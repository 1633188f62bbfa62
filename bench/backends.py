"""Seed 001's backend table: PyTorch vs onnxruntime vs the accelerated backend on the
demo EMG model, at batch 1 and 32.

Each server row is ``POST /benchmark`` (sequential ``engine.infer`` calls inside the
server: queue, batcher, runtime). The ceiling is the same model run by its runtime
directly in this process (a TorchScript module, an onnxruntime session; the better
of one intra-op thread and the default), the same number of iterations, same windows; the ratio column is ceiling time / server time.
The accelerated backend is TensorRT (onnxruntime's TensorRT provider, or the
``TENSORRT_ENGINE`` model) when present, else onnxruntime's fastest provider; the
``backend`` column says what actually ran.

    python bench/backends.py [--iterations 2000]
"""

from __future__ import annotations

import argparse
import os
import time

import httpx
import numpy as np

from _common import DEMO_DIR, table
from stream import DemoServer

BATCHES = (1, 32)


def raw_runner(key: str, threads: int | None):  # type: ignore[no-untyped-def]
    """A callable running the model's file directly with its framework (``threads``
    intra-op threads; None = the framework's default)."""
    if key == "pytorch":
        import torch

        torch.set_num_threads(threads or (os.cpu_count() or 1))
        module = torch.jit.load(str(DEMO_DIR / "models" / "emg_torch" / "1" / "model.pt")).eval()

        def run_torch(x: np.ndarray) -> object:
            with torch.inference_mode():
                return module(torch.from_numpy(x)).numpy()

        return run_torch
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(DEMO_DIR / "models" / "emg" / "1" / "model.onnx"), sess_options=options,
                                   providers=ort.get_available_providers())
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def ceiling(key: str, x: np.ndarray, iterations: int) -> dict[str, float]:
    """The better of one thread and the default thread count (on a busy two-core
    machine, two intra-op threads can be ten times slower than one)."""
    runs = [raw_stats(raw_runner(key, threads), x, iterations) for threads in (1, None)]
    return min(runs, key=lambda r: r["mean"])


def raw_stats(run, x: np.ndarray, iterations: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    for _ in range(20):
        run(x)
    times = np.empty(iterations)
    started = time.perf_counter()
    for i in range(iterations):
        t0 = time.perf_counter()
        run(x)
        times[i] = time.perf_counter() - t0
    wall = time.perf_counter() - started
    times *= 1000.0
    return {"mean": float(times.mean()), "p99": float(np.percentile(times, 99)), "qps": iterations * len(x) / wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    server = DemoServer()
    rows = []
    try:
        for batch in BATCHES:
            result = httpx.post(f"{server.url}/benchmark", json={"num_iterations": args.iterations, "batch_size": batch}, timeout=None).json()
            windows = np.random.default_rng(0).standard_normal((batch, 200, 16)).astype(np.float32)
            for key in ("pytorch", "onnxruntime", "accelerated"):
                row = result[key]
                best = ceiling(key, windows, args.iterations)
                rows.append([
                    key, row["backend"], batch,
                    f"{row['mean_latency_ms']:.3f} ms", f"{row['median_latency_ms']:.3f} ms", f"{row['p99_latency_ms']:.3f} ms",
                    f"{row['throughput_qps']:,.0f}", f"{best['mean']:.3f} ms", f"{best['qps']:,.0f}",
                    f"{best['mean'] / row['mean_latency_ms']:.2f}",
                ])
    finally:
        server.stop()
    print(f"{args.iterations} sequential iterations per row; throughput in windows per second")
    print(table(
        ["Backend", "ran on", "batch", "Mean Latency", "Median", "P99 Latency", "Throughput", "raw mean", "raw throughput", "ratio"],
        rows,
    ))


if __name__ == "__main__":
    main()
