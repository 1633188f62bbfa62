"""The ceiling for bench/http_classic.py: a bare ASGI endpoint doing the same work.

POST /infer takes seed 000's ``{"input": [784 numbers]}``, parses it with orjson, runs
the digits model with onnxruntime inline (no queue, no batching, no registry) and
answers with the top class and probabilities. Nothing else: no routing framework,
no validation beyond what the parse needs. Served by the same uvicorn settings as berth.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

_options = ort.SessionOptions()
_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
_options.inter_op_num_threads = 1
_options.intra_op_num_threads = int(os.environ.get("BARE_THREADS", "1"))
_session = ort.InferenceSession(os.environ["BARE_MODEL"], sess_options=_options, providers=["CPUExecutionProvider"])
_input = _session.get_inputs()[0].name
_HEADERS = [(b"content-type", b"application/json")]


async def _read(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = await _read(receive)
    values = np.asarray(orjson.loads(body)["input"], dtype=np.float32).reshape(1, 28, 28)
    probs = _session.run(None, {_input: values})[0][0]
    top = int(probs.argmax())
    payload = orjson.dumps({"top_index": top, "top_score": float(probs[top]), "probs": probs}, option=orjson.OPT_SERIALIZE_NUMPY)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": payload})
