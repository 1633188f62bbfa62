"""The gRPC ceiling for bench/v2.py: a bare ``grpc.aio`` server with ``ModelInfer``.

``inference.GRPCInferenceService`` from berth's generated stubs, with only what
perf_analyzer calls: ``ModelInfer`` turns ``raw_input_contents[0]`` into an array with
``numpy.frombuffer``, runs the model with onnxruntime inline (no queue, no batching,
no registry, no validation) and answers every output in ``raw_output_contents``;
``ModelMetadata``, ``ModelConfig``, ``ModelStatistics`` and the health RPCs are static,
built once from the ONNX session. Same server options and event loop (uvloop when
installed) as berth's gRPC server.

    BARE_MODEL=path/to/model.onnx python bench/bare_v2_grpc.py --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from grpc import aio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from berth.grpc.generated import grpc_service_pb2 as pb  # noqa: E402
from berth.grpc.generated import grpc_service_pb2_grpc as pb_grpc  # noqa: E402
from berth.grpc.generated import model_config_pb2 as mc  # noqa: E402

_options = ort.SessionOptions()
_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
_options.inter_op_num_threads = 1
_options.intra_op_num_threads = int(os.environ.get("BARE_THREADS", "1"))
_session = ort.InferenceSession(os.environ["BARE_MODEL"], sess_options=_options, providers=["CPUExecutionProvider"])
_NAME = os.environ.get("BARE_NAME", "digits")
_MAX_BATCH = int(os.environ.get("BARE_MAX_BATCH", "32"))
_INPUT = _session.get_inputs()[0].name
_OUTPUTS = [o.name for o in _session.get_outputs()]


def _shape(arg: object) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in arg.shape]  # type: ignore[attr-defined]


_METADATA = pb.ModelMetadataResponse(name=_NAME, versions=["1"], platform="onnxruntime_onnx")
_CONFIG = mc.ModelConfig(name=_NAME, platform="onnxruntime_onnx", backend="onnxruntime", max_batch_size=_MAX_BATCH)
for _args, _meta, _config in ((_session.get_inputs(), _METADATA.inputs, _CONFIG.input), (_session.get_outputs(), _METADATA.outputs, _CONFIG.output)):
    for _arg in _args:
        _meta.add(name=_arg.name, datatype="FP32", shape=_shape(_arg))
        _config.add(name=_arg.name, data_type=mc.TYPE_FP32, dims=_shape(_arg)[1:])
_CONFIG.instance_group.add(name=f"{_NAME}_0", kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
_CONFIG_RESPONSE = pb.ModelConfigResponse(config=_CONFIG)
_STATS = pb.ModelStatisticsResponse()
_STATS.model_stats.add(name=_NAME, version="1")


class BareServicer(pb_grpc.GRPCInferenceServiceServicer):
    async def ServerLive(self, request: pb.ServerLiveRequest, context: aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: aio.ServicerContext) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=request.name == _NAME)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="bare", version="0", extensions=["statistics", "model_configuration"])

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: aio.ServicerContext) -> pb.ModelMetadataResponse:
        return _METADATA

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: aio.ServicerContext) -> pb.ModelConfigResponse:
        return _CONFIG_RESPONSE

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: aio.ServicerContext) -> pb.ModelStatisticsResponse:
        return _STATS

    async def ModelInfer(self, request: pb.ModelInferRequest, context: aio.ServicerContext) -> pb.ModelInferResponse:
        tensor = request.inputs[0]
        values = np.frombuffer(request.raw_input_contents[0], dtype=np.float32).reshape(tensor.shape)
        results = _session.run(None, {_INPUT: values})
        response = pb.ModelInferResponse(model_name=_NAME, model_version="1", id=request.id)
        for name, array in zip(_OUTPUTS, results):
            response.outputs.add(name=name, datatype="FP32", shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response


async def serve(port: int) -> None:
    limit = 2**31 - 1
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit), ("grpc.so_reuseport", 0)]
    server = aio.server(options=options)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(BareServicer(), server)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port))
    else:
        uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
