"""The HTTP ceiling for bench/v2.py: a bare ASGI endpoint speaking just enough KServe V2.

``POST /v2/models/{m}/infer`` takes the same bodies perf_analyzer sends berth: a V2
JSON request, or a JSON header plus raw tensor bytes (``Inference-Header-Content-Length``,
the binary tensor extension). It parses the JSON with orjson, turns the one input into
an array (``numpy.frombuffer`` over the bytes, or ``numpy.asarray`` over the JSON
``data``), runs the model with onnxruntime inline (no queue, no batching, no registry,
no validation beyond what the parse needs) and answers with every output, binary or
JSON as the request asked.

perf_analyzer also reads the model's metadata, configuration and statistics; those
answers are static, built once from the ONNX session. Served by the same uvicorn
settings as berth (uvloop + httptools), pinned like it.

    BARE_MODEL=path/to/model.onnx [BARE_NAME=digits] [BARE_MAX_BATCH=32] uvicorn bare_v2_app:app
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
_NAME = os.environ.get("BARE_NAME", "digits")
_MAX_BATCH = int(os.environ.get("BARE_MAX_BATCH", "32"))
_INPUT = _session.get_inputs()[0].name
_OUTPUTS = [o.name for o in _session.get_outputs()]


def _shape(arg: Any) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in arg.shape]


def _tensor(arg: Any) -> dict[str, Any]:
    return {"name": arg.name, "datatype": "FP32", "shape": _shape(arg)}


def _config_tensor(arg: Any) -> dict[str, Any]:
    return {"name": arg.name, "data_type": "TYPE_FP32", "dims": _shape(arg)[1:]}


_METADATA = orjson.dumps({
    "name": _NAME, "versions": ["1"], "platform": "onnxruntime_onnx",
    "inputs": [_tensor(i) for i in _session.get_inputs()], "outputs": [_tensor(o) for o in _session.get_outputs()],
})  # fmt: skip
_CONFIG = orjson.dumps({
    "name": _NAME, "platform": "onnxruntime_onnx", "backend": "onnxruntime", "max_batch_size": _MAX_BATCH,
    "input": [_config_tensor(i) for i in _session.get_inputs()], "output": [_config_tensor(o) for o in _session.get_outputs()],
    "instance_group": [{"name": f"{_NAME}_0", "kind": "KIND_CPU", "count": 1}],
})  # fmt: skip
_ZERO = {"count": 0, "ns": 0}
_STATS = orjson.dumps({"model_stats": [{
    "name": _NAME, "version": "1", "last_inference": 0, "inference_count": 0, "execution_count": 0,
    "inference_stats": {k: _ZERO for k in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")},
    "batch_stats": [],
}]})  # fmt: skip
_STATIC = {
    b"/v2": orjson.dumps({"name": "bare", "version": "0", "extensions": ["binary_tensor_data", "statistics", "model_configuration"]}),
    b"/v2/health/live": b"",
    b"/v2/health/ready": b"",
    f"/v2/models/{_NAME}".encode(): _METADATA,
    f"/v2/models/{_NAME}/versions/1".encode(): _METADATA,
    f"/v2/models/{_NAME}/ready".encode(): b"",
    f"/v2/models/{_NAME}/config".encode(): _CONFIG,
    f"/v2/models/{_NAME}/versions/1/config".encode(): _CONFIG,
    f"/v2/models/{_NAME}/stats".encode(): _STATS,
    f"/v2/models/{_NAME}/versions/1/stats".encode(): _STATS,
}
_HEADER_LENGTH = b"inference-header-content-length"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


async def _read(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _answer(send: Any, status: int, body: bytes, header_length: int | None = None) -> None:
    headers = [(b"content-type", b"application/json" if header_length is None else b"application/octet-stream")]
    if header_length is not None:
        headers.append((_HEADER_LENGTH, str(header_length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _infer(body: bytes, header_length: int | None) -> tuple[bytes, int | None]:
    json_part = body if header_length is None else body[:header_length]
    request = orjson.loads(json_part)
    item = request["inputs"][0]
    size = (item.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        values = np.frombuffer(body, dtype=np.float32, count=size // 4, offset=header_length or 0)
    else:
        values = np.asarray(item["data"], dtype=np.float32)
    results = _session.run(None, {_INPUT: values.reshape(item["shape"])})
    default_binary = bool((request.get("parameters") or {}).get("binary_data_output", False))
    wanted = {o["name"]: (o.get("parameters") or {}).get("binary_data", default_binary) for o in request.get("outputs") or []}
    outputs, blobs = [], []
    for name, array in zip(_OUTPUTS, results):
        if wanted and name not in wanted:
            continue
        tensor: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": array.shape}
        if wanted.get(name, default_binary):
            tensor["parameters"] = {"binary_data_size": array.nbytes}
            blobs.append(array.tobytes())
        else:
            tensor["data"] = array.reshape(-1)
        outputs.append(tensor)
    header = orjson.dumps({"model_name": _NAME, "model_version": "1", "id": request.get("id", ""), "outputs": outputs}, option=_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["raw_path"]
    if scope["method"] == "POST" and path.endswith(b"/infer"):
        body = await _read(receive)
        header_length = None
        for key, value in scope["headers"]:
            if key == _HEADER_LENGTH:
                header_length = int(value)
        payload, json_length = _infer(body, header_length)
        await _answer(send, 200, payload, json_length)
        return
    await _read(receive)
    static = _STATIC.get(path)
    if static is None:
        await _answer(send, 404, orjson.dumps({"error": f"bare_v2_app has no {scope['method']} {path.decode(errors='replace')}"}))
    else:
        await _answer(send, 200, static)
