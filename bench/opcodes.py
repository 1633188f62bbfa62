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

With ``--wire`` each request goes in as bytes through the server's real HTTP protocol
(a transport that records what is written stands in for the socket): berth's
``HttpProtocol`` as ``berth serve`` configures it, and uvicorn's stock httptools
protocol, X-Forwarded middleware included, as ``uvicorn bare_app:app`` runs the bare
endpoints. That counts what the HTTP layer costs too.

    python bench/opcodes.py [--concurrency 8] [--top 25] [--route infer|v2-binary|v2-json] [--wire]
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
import uvicorn
import uvloop
from uvicorn.server import ServerState

from _common import digits_model, table

_MODEL = digits_model()
os.environ.setdefault("BARE_MODEL", str(_MODEL))
os.environ.setdefault("BARE_THREADS", "1")

import bare_app  # noqa: E402  (reads BARE_MODEL when imported)
import bare_v2_app  # noqa: E402

from berth.config import load_config  # noqa: E402
from berth.engine import Engine  # noqa: E402
from berth.http.app import create_app  # noqa: E402
from berth.http.protocol import HttpProtocol  # noqa: E402

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


class _RecordingTransport(asyncio.Transport):
    """The socket's place in ``--wire`` runs: keeps the status of the last answer."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 0
        self.closing = False

    def write(self, data: Any) -> None:
        if data[:9] == b"HTTP/1.1 ":
            self.status = int(data[9:12])

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _wire_caller(app: Any, berth: bool, path: str, headers: list[tuple[bytes, bytes]], body: bytes, concurrency: int) -> Any:
    """A coroutine function sending one request on each of ``concurrency`` keep-alive
    connections through the server's protocol, and waiting for the answers."""
    if berth:
        config = uvicorn.Config(app, http=HttpProtocol, lifespan="off", interface="asgi3", access_log=False, log_config=None, server_header=False, proxy_headers=False)
    else:
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None)  # uvicorn's defaults, as the bare server runs
    config.load()
    state = ServerState()
    protocol_class = HttpProtocol if berth else config.http_protocol_class
    lines = [f"POST {path} HTTP/1.1".encode(), b"host: 127.0.0.1:8080", b"content-type: application/json"]
    lines += [name + b": " + value for name, value in headers] + [b"content-length: %d" % len(body), b"", b""]
    request = b"\r\n".join(lines) + body
    connections = []

    async def send_all() -> list[int]:
        if not connections:
            for _ in range(concurrency):
                protocol = protocol_class(config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop())
                transport = _RecordingTransport()
                protocol.connection_made(transport)
                connections.append((protocol, transport))
        for protocol, _ in connections:
            protocol.data_received(request)
        while state.tasks:
            await asyncio.sleep(0)
        return [transport.status for _, transport in connections]

    return send_all


_HARNESS = (__file__, "/asyncio/", "/_weakrefset.py")  # the callers' tasks and gather are not the server's


async def count(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], body: bytes, concurrency: int, rounds: int, wire: bool | None = None
) -> tuple[float, OpcodeCounter]:
    """Bytecodes per request; ``wire``: through berth's protocol (True), uvicorn's (False)."""
    if wire is None:

        async def one_round() -> list[int]:
            return list(await asyncio.gather(*(_call(app, path, headers, body) for _ in range(concurrency))))

    else:
        one_round = _wire_caller(app, wire, path, headers, body, concurrency)
    for _ in range(200):  # warm: the batcher learns the model runs inline, caches fill
        statuses = await one_round()
        assert set(statuses) == {200}, statuses
    with OpcodeCounter() as counter:
        for _ in range(rounds):
            await one_round()
    own = sum(n for (filename, _), n in counter.counts.items() if not any(part in filename for part in _HARNESS))
    return own / (rounds * concurrency), counter


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--route", choices=["infer", "v2-binary", "v2-json"], action="append")
    parser.add_argument("--wire", action="store_true", help="send bytes through each server's HTTP protocol")
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
            bare_count, _ = await count(bare, path, headers, body, args.concurrency, args.rounds, False if args.wire else None)
            berth_count, counter = await count(app, path, headers, body, args.concurrency, args.rounds, True if args.wire else None)
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
