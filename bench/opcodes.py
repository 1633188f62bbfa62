"""Python bytecodes per request: berth's app against the bare endpoints, in process.

Timings on a small shared machine move by several percent between runs; the number of
bytecode instructions the interpreter executes for one request does not. This counts
them with ``sys.settrace`` opcode events for the hot HTTP routes (seed-000 ``/infer``,
V2 infer with binary tensors, V2 infer in JSON), driving berth's ASGI app and the
bare ASGI endpoints of bench/http_classic.py and bench/v2.py with the same requests
from ``concurrency`` callers at once, and prints the count per request for each, their
ratio, and where berth's bytecodes go. Only Python code counts: time spent inside C
(orjson, numpy, onnxruntime) does not show here, so this measures berth's own
overhead, not its speed; the timed benchmarks stay the judge.

    python bench/opcodes.py [--concurrency 8] [--top 25] [--route infer|v2-binary|v2-json]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
from typing import Any

import numpy as np
import orjson
import uvloop

from _common import digits_model, table

_MODEL = digits_model()
os.environ.setdefault("BARE_MODEL", str(_MODEL))
os.environ.setdefault("BARE_THREADS", "1")

import bare_app  # noqa: E402  (reads BARE_MODEL when imported)
import bare_v2_app  # noqa: E402

from berth.config import load_config  # noqa: E402
from berth.engine import Engine  # noqa: E402
from berth.http.app import create_app  # noqa: E402

_ITEM = np.random.default_rng(0).random((1, 28, 28), dtype=np.float32)


def _requests() -> dict[str, tuple[str, list[tuple[bytes, bytes]], bytes, Any]]:
    """route -> (path, extra headers, body, bare app)"""
    seed = orjson.dumps({"input": np.round(_ITEM.reshape(-1).astype(np.float64), 3).tolist()})
    head = orjson.dumps({
        "inputs": [{"name": "input", "shape": [1, 28, 28], "datatype": "FP32", "parameters": {"binary_data_size": _ITEM.nbytes}}],
        "outputs": [{"name": "probs", "parameters": {"binary_data": True}}],
    })  # fmt: skip
    v2_json = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 28, 28], "datatype": "FP32", "data": _ITEM.reshape(-1).tolist()}]})
    return {
        "infer": ("/infer", [], seed, bare_app.app),
        "v2-binary": ("/v2/models/digits/infer", [(b"inference-header-content-length", str(len(head)).encode())], head + _ITEM.tobytes(), bare_v2_app.app),
        "v2-json": ("/v2/models/digits/infer", [], v2_json, bare_v2_app.app),
    }


class OpcodeCounter:
    """Counts executed bytecodes per code object while active (this thread only)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def _trace(self, frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            self.counts[(code.co_filename, code.co_qualname)] += 1
        return self._trace

    def __enter__(self) -> "OpcodeCounter":
        sys.settrace(self._trace)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(None)


async def _call(app: Any, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    status = [0]
    delivered = [False]

    async def receive() -> dict[str, Any]:
        if not delivered[0]:
            delivered[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "scheme": "http", "http_version": "1.1", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080),
        "headers": [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"), *headers, (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    await app(scope, receive, send)
    return status[0]


_HARNESS = (__file__, "/asyncio/", "/_weakrefset.py")  # the callers' tasks and gather are not the server's


async def count(app: Any, path: str, headers: list[tuple[bytes, bytes]], body: bytes, concurrency: int, rounds: int) -> tuple[float, OpcodeCounter]:
    for _ in range(200):  # warm: the batcher learns the model runs inline, caches fill
        statuses = await asyncio.gather(*(_call(app, path, headers, body) for _ in range(concurrency)))
        assert set(statuses) == {200}, statuses
    with OpcodeCounter() as counter:
        for _ in range(rounds):
            await asyncio.gather(*(_call(app, path, headers, body) for _ in range(concurrency)))
    own = sum(n for (filename, _), n in counter.counts.items() if not any(part in filename for part in _HARNESS))
    return own / (rounds * concurrency), counter


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--route", choices=["infer", "v2-binary", "v2-json"], action="append")
    args = parser.parse_args()
    config = load_config(overrides={
        "server": {"stats_report_interval_s": 0}, "onnx": {"intra_op_threads": 1}, "default_model": "digits",
        "models": {"digits": {"model_path": str(_MODEL), "preload": True}},
    })  # fmt: skip
    engine = Engine(config)
    await engine.start()
    try:
        app = create_app(engine, manage_engine=False)
        rows, details = [], []
        for route, (path, headers, body, bare) in _requests().items():
            if args.route and route not in args.route:
                continue
            bare_count, _ = await count(bare, path, headers, body, args.concurrency, args.rounds)
            berth_count, counter = await count(app, path, headers, body, args.concurrency, args.rounds)
            rows.append([route, args.concurrency, f"{berth_count:,.0f}", f"{bare_count:,.0f}", f"{berth_count / bare_count:.2f}x"])
            details.append((route, counter))
        print(table(["route", "concurrency", "berth bytecodes/request", "bare bytecodes/request", "berth/bare"], rows))
        for route, counter in details:
            requests = args.rounds * args.concurrency
            print(f"\n{route}: berth's bytecodes per request by function")
            top = [
                [f"{n / requests:.1f}", f"{filename.rpartition('/src/')[2] or filename}:{name}"]
                for (filename, name), n in counter.counts.most_common()
                if not any(part in filename for part in _HARNESS)
            ][: args.top]
            print(table(["per request", "function"], top))
    finally:
        await engine.stop()


if __name__ == "__main__":
    uvloop.run(main())
