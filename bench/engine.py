"""In-process Engine throughput on the digits model against raw onnxruntime.

Ceilings measured in the same run, same session options:
  * raw ``session.run`` at batch 1, called back to back (the per-call floor), and
  * raw ``session.run`` at batch 32 (what batching can reach at best).
The Engine is driven from one asyncio loop: at concurrency 1 (one request at a time,
so added µs per call = engine - raw), and at concurrency 64 (64 coroutines in a loop;
the dynamic batcher forms the batches).

A third ceiling, at concurrency 64: a featureless batcher, the least any asyncio
batcher can do (a list, one ``call_soon`` per turn, the rows joined, one
``session.run``, one future per request; no holds, validation, deadlines, statistics or
result object). Engine / featureless is what berth's bookkeeping costs at full load.

Goals (issue 3): at concurrency 1 at most 25 µs added per call; at concurrency 64 at
least 3x raw batch-1 items/s.

    python bench/engine.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import time
from typing import Awaitable, Callable

import numpy as np
import onnxruntime as ort

from _common import digits_model, table

from berth.config import load_config
from berth.engine import Engine


def raw_session(path: str, threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def time_raw(session: ort.InferenceSession, batch: int, seconds: float) -> tuple[float, float]:
    """(seconds per call, items per second)"""
    x = np.random.default_rng(0).random((batch, 28, 28), dtype=np.float32)
    feeds = {"input": x}
    for _ in range(200):
        session.run(None, feeds)
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(100):
            session.run(None, feeds)
        calls += 100
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - started
    return elapsed / calls, calls * batch / elapsed


async def drive(call: Callable[[], Awaitable[object]], concurrency: int, seconds: float) -> tuple[float, list[int]]:
    """``concurrency`` coroutines awaiting ``call()`` back to back for ``seconds``:
    (elapsed seconds, calls made by each)."""
    counts = [0] * concurrency
    deadline = time.perf_counter() + seconds

    async def caller(index: int) -> None:
        while time.perf_counter() < deadline:
            await call()
            counts[index] += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return time.perf_counter() - started, counts


async def time_engine(engine: Engine, concurrency: int, seconds: float) -> tuple[float, float, float]:
    """(seconds per call for one caller, items per second, mean batch size)"""
    feeds = {"input": np.random.default_rng(0).random((1, 28, 28), dtype=np.float32)}
    call = functools.partial(engine.infer, "digits", feeds)  # a C call: no frame of the benchmark's per request
    for _ in range(200):
        await call()
    entry = engine.registry.entries[("digits", "1")]
    batches_before, rows_before = entry.stats.batches, entry.stats.batch_rows
    elapsed, counts = await drive(call, concurrency, seconds)
    batches = entry.stats.batches - batches_before
    rows = entry.stats.batch_rows - rows_before
    return elapsed / max(1, counts[0]), sum(counts) / elapsed, rows / max(1, batches)


class FeaturelessBatcher:
    """Batches what arrives in one turn of the loop and runs it inline: the ceiling."""

    def __init__(self, session: ort.InferenceSession, max_batch: int) -> None:
        self.session = session
        self.max_batch = max_batch
        self.queue: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self.scheduled = False
        self.loop = asyncio.get_running_loop()

    def infer(self, x: np.ndarray) -> asyncio.Future[np.ndarray]:
        future = self.loop.create_future()
        self.queue.append((x, future))
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.dispatch)
        return future

    def dispatch(self) -> None:
        self.scheduled = False
        while self.queue:
            batch = self.queue[: self.max_batch]
            del self.queue[: self.max_batch]
            rows = [x for x, _ in batch]
            x = np.frombuffer(bytearray().join(rows), np.float32).reshape((len(rows),) + rows[0].shape[1:])
            (probs,) = self.session.run(None, {"input": x})
            for (_, future), row in zip(batch, probs):
                future.set_result(row)


async def time_featureless(session: ort.InferenceSession, concurrency: int, seconds: float, max_batch: int) -> float:
    """Items per second through :class:`FeaturelessBatcher` from ``concurrency`` callers."""
    batcher = FeaturelessBatcher(session, max_batch)
    call = functools.partial(batcher.infer, np.random.default_rng(0).random((1, 28, 28), dtype=np.float32))
    for _ in range(200):
        await call()
    elapsed, counts = await drive(call, concurrency, seconds)
    return sum(counts) / elapsed


async def run_engine(path: str, seconds: float, threads: int | None, max_batch: int, inline_max_us: float | None) -> dict[str, tuple[float, float, float]]:
    model: dict[str, object] = {"model_path": path, "preload": True, "max_batch_size": max_batch}
    if inline_max_us is not None:
        model["options"] = {"inline_max_us": inline_max_us}
    config = load_config(overrides={"models": {"digits": model}, "onnx": {"intra_op_threads": threads}})
    engine = Engine(config)
    await engine.start()
    try:
        return {f"c{c}": await time_engine(engine, c, seconds) for c in (1, 64)}
    finally:
        await engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--model", help="an ONNX file with input 'input' [N,28,28] (default: the demo digits model)")
    parser.add_argument("--inline-max-us", type=float, default=None, help="the model's inline_max_us (default: the server's, 150; 0 = always on worker threads)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    path = args.model or str(digits_model())
    session = raw_session(path, args.threads)
    raw1_s, raw1_ips = time_raw(session, 1, args.seconds)
    raw32_s, raw32_ips = time_raw(session, 32, args.seconds)
    featureless_ips = asyncio.run(time_featureless(session, 64, args.seconds, args.max_batch))
    del session
    results = asyncio.run(run_engine(path, args.seconds, args.threads, args.max_batch, args.inline_max_us))
    eng1_s, eng1_ips, _ = results["c1"]
    _, eng64_ips, eng64_batch = results["c64"]
    added_us = (eng1_s - raw1_s) * 1e6
    rows = [
        ["raw session.run, batch 1", f"{raw1_s * 1e6:.1f}", f"{raw1_ips:,.0f}", "1.00x", ""],
        ["raw session.run, batch 32", f"{raw32_s * 1e6:.1f}", f"{raw32_ips:,.0f}", f"{raw32_ips / raw1_ips:.2f}x", "ceiling"],
        ["engine, concurrency 1", f"{eng1_s * 1e6:.1f}", f"{eng1_ips:,.0f}", f"{eng1_ips / raw1_ips:.2f}x", f"+{added_us:.1f} us/call (goal <= 25)"],
        ["featureless batcher, concurrency 64", "", f"{featureless_ips:,.0f}", f"{featureless_ips / raw1_ips:.2f}x", "ceiling for any asyncio batcher"],
        ["engine, concurrency 64", "", f"{eng64_ips:,.0f}", f"{eng64_ips / raw1_ips:.2f}x",
         f"mean batch {eng64_batch:.1f} (goal >= 3x); {eng64_ips / featureless_ips:.2f}x featureless"],
    ]  # fmt: skip
    print(table(["path", "us/call", "items/s", "vs raw batch 1", "note"], rows))


if __name__ == "__main__":
    import uvloop

    uvloop.install()
    main()
