"""The V2 gRPC service, driven by the stock ``tritonclient.grpc`` client."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any, Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from grpc_fixtures import (
    RunningServer,
    lipsync_batch,
    lipsync_reference,
    start_grpc_server,
    write_complex_model,
    write_fixed_model,
    write_repository,
)
from models import write_python_model

from berth.grpc.generated import grpc_service_pb2 as pb
from berth.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from berth.grpc.generated import model_config_pb2 as mc

#: every model of the server below, batching or not
MODELS = ("double", "lipsync", "typed", "strings", "fixed", "complex")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("grpc_v2")
    models = write_repository(root / "models")
    write_fixed_model(models / "fixed")
    write_complex_model(models / "complex")
    running = start_grpc_server(root / "server", models=models)
    yield running
    running.berth.stop()


@pytest.fixture
def client(server: RunningServer) -> Iterator[tc.InferenceServerClient]:
    triton = tc.InferenceServerClient(server.grpc_address)
    yield triton
    triton.close()


def _input(name: str, array: np.ndarray, datatype: str) -> tc.InferInput:
    tensor = tc.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def test_health_and_server_metadata(client: tc.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "berth"
    assert set(metadata["extensions"]) == {"model_repository", "statistics", "model_configuration"}


def test_model_metadata_and_ready(client: tc.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("lipsync", as_json=True)
    assert metadata["name"] == "lipsync"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "python"
    assert metadata["inputs"] == [
        {"name": "visual", "datatype": "FP32", "shape": ["-1", "6", "8", "8"]},
        {"name": "audio", "datatype": "FP32", "shape": ["-1", "32", "4", "4"]},
    ]
    assert metadata["outputs"] == [{"name": "output", "datatype": "FP32", "shape": ["-1", "3", "8", "8"]}]
    assert client.is_model_ready("lipsync")  # metadata loaded it
    assert client.is_model_ready("lipsync", "1")
    assert not client.is_model_ready("lipsync", "7")
    assert not client.is_model_ready("no-such-model")


def test_model_config(client: tc.InferenceServerClient) -> None:
    config = client.get_model_config("lipsync", as_json=True)["config"]
    assert config["name"] == "lipsync"
    assert config["backend"] == "python"
    assert int(config["max_batch_size"]) > 0
    # Triton's convention: with batching, dims leave out the batch dimension
    assert config["input"] == [
        {"name": "visual", "data_type": "TYPE_FP32", "dims": ["6", "8", "8"]},
        {"name": "audio", "data_type": "TYPE_FP32", "dims": ["32", "4", "4"]},
    ]
    assert config["output"] == [{"name": "output", "data_type": "TYPE_FP32", "dims": ["3", "8", "8"]}]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == "20000"
    assert config["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 256  # server.queue_size
    assert config["instance_group"][0]["kind"] == "KIND_CPU"


def test_model_config_without_batching(client: tc.InferenceServerClient) -> None:
    config = client.get_model_config("fixed", as_json=True)["config"]
    assert "max_batch_size" not in config  # 0: the dims below are the whole shape
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": ["2", "3"]}]
    assert "dynamic_batching" not in config


def test_infer_raw_contents(client: tc.InferenceServerClient) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    result = client.infer("double", [_input("x", x, "FP32")], request_id="req-1")
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)
    response = result.get_response(as_json=True)
    assert response["id"] == "req-1"
    assert response["model_name"] == "double"
    assert response["model_version"] == "1"
    assert response["outputs"] == [{"name": "y", "datatype": "FP32", "shape": ["3", "4"]}]
    assert len(result.get_response().raw_output_contents) == 1


def test_infer_two_inputs(client: tc.InferenceServerClient) -> None:
    visual, audio = lipsync_batch(4)
    result = client.infer("lipsync", [_input("visual", visual, "FP32"), _input("audio", audio, "FP32")])
    np.testing.assert_allclose(result.as_numpy("output"), lipsync_reference(visual, audio), rtol=1e-6)


def test_infer_typed_datatypes_and_requested_outputs(client: tc.InferenceServerClient) -> None:
    i = np.array([[1, -2, 3], [2**30, 0, -(2**31)]], dtype=np.int32)
    b = np.array([[True, False], [False, False]])
    result = client.infer(
        "typed", [_input("i", i, "INT32"), _input("b", b, "BOOL")], outputs=[tc.InferRequestedOutput("nb")]
    )
    response = result.get_response(as_json=True)
    assert [o["name"] for o in response["outputs"]] == ["nb"]
    np.testing.assert_array_equal(result.as_numpy("nb"), ~b)
    full = client.infer("typed", [_input("i", i, "INT32"), _input("b", b, "BOOL")])
    np.testing.assert_array_equal(full.as_numpy("i2"), i * 2)


def test_infer_bytes_tensor(client: tc.InferenceServerClient) -> None:
    s = np.array([b"ab", b"", b"x\x00y"], dtype=np.object_)
    result = client.infer("strings", [_input("s", s, "BYTES")])
    assert list(result.as_numpy("upper")) == [b"AB", b"", b"X\x00Y"]


def test_infer_typed_contents(server: RunningServer) -> None:
    """Inputs in ``contents`` (not raw) are read too; outputs still come back raw."""
    request = pb.ModelInferRequest(model_name="typed")
    request.inputs.add(name="i", datatype="INT32", shape=[1, 3]).contents.int_contents.extend([4, 5, -6])
    request.inputs.add(name="b", datatype="BOOL", shape=[1, 2]).contents.bool_contents.extend([True, False])
    with server.channel() as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    by_name = dict(zip((o.name for o in response.outputs), response.raw_output_contents))
    np.testing.assert_array_equal(np.frombuffer(by_name["i2"], dtype="<i4"), [8, 10, -12])
    np.testing.assert_array_equal(np.frombuffer(by_name["nb"], dtype=np.bool_), [False, True])


def test_stream_infer_in_order_and_survives_errors(client: tc.InferenceServerClient) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        sent = []
        for index in range(8):
            x = np.full((1, 4), float(index), dtype=np.float32)
            if index == 3:  # a bad request mid-stream: wrong item shape
                x = np.zeros((1, 5), dtype=np.float32)
            client.async_stream_infer("double", [_input("x", x, "FP32")], request_id=f"r{index}")
            sent.append(x)
        received = [answers.get(timeout=30) for _ in sent]
    finally:
        client.stop_stream()
    for index, (result, error) in enumerate(received):
        if index == 3:
            assert result is None
            assert "must have shape" in error.message()
            continue
        assert error is None, error
        assert result.get_response().id == f"r{index}"  # answered in order
        np.testing.assert_array_equal(result.as_numpy("y"), sent[index] * 2)
        assert result.get_response(as_json=True)["parameters"]["triton_final_response"]["bool_param"] is True


def test_statistics(client: tc.InferenceServerClient) -> None:
    x = np.ones((2, 4), dtype=np.float32)
    before = client.get_inference_statistics("double", as_json=True)["model_stats"]
    client.infer("double", [_input("x", x, "FP32")])
    client.infer("double", [_input("x", x, "FP32")])
    stats = client.get_inference_statistics("double", as_json=True)["model_stats"]
    assert [s["name"] for s in stats] == ["double"]
    # as in Triton (and over HTTP): inferences are batch items, durations count requests
    assert int(stats[0]["inference_count"]) == int(before[0].get("inference_count", 0)) + 4
    requests = int(stats[0]["inference_stats"]["success"]["count"])
    assert requests == int(before[0].get("inference_stats", {}).get("success", {}).get("count", 0)) + 2
    assert int(stats[0]["inference_stats"]["compute_infer"]["ns"]) > 0
    assert int(stats[0]["last_inference"]) > 0
    everything = client.get_inference_statistics(as_json=True)["model_stats"]
    assert {"double", "lipsync", "spare"} <= {s["name"] for s in everything}


def test_repository_index_load_unload(client: tc.InferenceServerClient) -> None:
    def state(name: str) -> str:
        rows = [m for m in client.get_model_repository_index(as_json=True)["models"] if m["name"] == name]
        return str(rows[0]["state"])

    names = {m["name"] for m in client.get_model_repository_index(as_json=True)["models"]}
    assert {"double", "lipsync", "typed", "strings", "spare"} <= names
    assert state("spare") == "UNAVAILABLE"
    client.load_model("spare")
    assert state("spare") == "READY"
    assert client.is_model_ready("spare")
    ready = {m["name"] for m in client.get_model_repository_index(as_json=True)["models"] if m.get("state") == "READY"}
    assert "spare" in ready
    client.unload_model("spare")
    assert state("spare") == "UNAVAILABLE"
    assert not client.is_model_ready("spare")


def test_load_refuses_config_override(client: tc.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.load_model("spare", config='{"max_batch_size": 4}')
    assert raised.value.status() == "StatusCode.UNIMPLEMENTED"


def test_shared_memory_trace_and_log_rpcs(client: tc.InferenceServerClient) -> None:
    assert client.get_system_shared_memory_status(as_json=True) == {}
    assert client.get_cuda_shared_memory_status(as_json=True) == {}
    client.unregister_system_shared_memory()  # nothing registered: nothing to do
    with pytest.raises(InferenceServerException) as raised:
        client.register_system_shared_memory("region", "/key", 64)
    assert raised.value.status() == "StatusCode.UNIMPLEMENTED"
    with pytest.raises(InferenceServerException) as raised:
        client.get_trace_settings()
    assert raised.value.status() == "StatusCode.UNIMPLEMENTED"
    with pytest.raises(InferenceServerException) as raised:
        client.get_log_settings()
    assert raised.value.status() == "StatusCode.UNIMPLEMENTED"


def test_grpc_health_service(server: RunningServer) -> None:
    with server.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService", "berth.v1.InferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as raised:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


# ── one source of truth: the gRPC documents are the HTTP API's ───────────────
def _enum_defaults() -> frozenset[str]:
    """The zero value of every enum in the protos, which MessageToDict leaves out."""
    enums = []
    messages = []
    for file in (mc.DESCRIPTOR, pb.DESCRIPTOR):
        enums.extend(file.enum_types_by_name.values())
        messages.extend(file.message_types_by_name.values())
    while messages:
        message = messages.pop()
        enums.extend(message.enum_types)
        messages.extend(message.nested_types)
    return frozenset(enum.values_by_number[0].name for enum in enums)


_ENUM_DEFAULTS = _enum_defaults()


def _is_default(value: Any) -> bool:
    return value in (False, 0, "", [], {}) or (isinstance(value, str) and value in _ENUM_DEFAULTS)


def _proto_view(document: Any) -> Any:
    """A document as the protobuf JSON mapping writes it, from either side: 64-bit
    integers (strings in that mapping) as ints, and default values, which the mapping
    leaves out, left out. Applied to both sides, so only real differences remain."""
    if isinstance(document, dict):
        kept = {key: _proto_view(value) for key, value in document.items()}
        return {key: value for key, value in kept.items() if not _is_default(value)}
    if isinstance(document, list):
        return [_proto_view(value) for value in document]
    if isinstance(document, str) and document.lstrip("-").isdigit():
        return int(document)
    return document


def _grpc_view(message: Message) -> Any:
    return _proto_view(json_format.MessageToDict(message, preserving_proto_field_name=True))


def _last_inference(view: Any) -> list[int]:
    """Takes ``last_inference`` out of a statistics view: each reading derives the
    wall-clock time afresh, so two readings may differ by a millisecond's rounding."""
    return [stats.pop("last_inference", 0) for stats in view.get("model_stats", [])]


def test_documents_match_the_http_api(server: RunningServer, client: tc.InferenceServerClient) -> None:
    """ModelMetadata, ModelConfig, ModelStatistics and RepositoryIndex answer with
    exactly what ``GET /v2/models/{m}[/config|/stats]`` and ``POST /v2/repository/index``
    answer, so the two front ends cannot drift apart."""
    client.infer("double", [_input("x", np.ones((2, 4), dtype=np.float32), "FP32")])  # statistics with times
    with server.channel() as channel, server.berth.client() as http:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for model in MODELS:
            metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=30)
            assert _grpc_view(metadata) == _proto_view(http.get(f"/v2/models/{model}").json())
            config = stub.ModelConfig(pb.ModelConfigRequest(name=model), timeout=30)
            assert _grpc_view(config)["config"] == _proto_view(http.get(f"/v2/models/{model}/config").json())

        for name, version, path in _STATISTICS:
            grpc_stats = _grpc_view(stub.ModelStatistics(pb.ModelStatisticsRequest(name=name, version=version), timeout=30))
            http_stats = _proto_view(http.get(path).json())
            grpc_clock, http_clock = _last_inference(grpc_stats), _last_inference(http_stats)
            assert grpc_stats == http_stats
            assert len(grpc_clock) == len(http_clock) and all(abs(a - b) <= 1 for a, b in zip(grpc_clock, http_clock))
        double = _grpc_view(stub.ModelStatistics(pb.ModelStatisticsRequest(name="double"), timeout=30))["model_stats"][0]
        assert double["inference_count"] >= 2 and double["memory_usage"]  # the comparison had values to compare

        for ready in (False, True):
            index = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=ready), timeout=30)
            http_index = http.post("/v2/repository/index", json={"ready": ready}).json()
            assert _grpc_view(index).get("models", []) == _proto_view(http_index)


#: (name, version) of a ModelStatistics request and the HTTP path that asks the same
_STATISTICS = (
    ("", "", "/v2/models/stats"),
    ("double", "", "/v2/models/double/stats"),
    ("double", "1", "/v2/models/double/versions/1/stats"),
    ("fixed", "", "/v2/models/fixed/stats"),
)


def test_a_gpu_is_named_by_its_cuda_number(tmp_path: Path) -> None:
    """Triton's ``gpus`` and memory ``id`` are CUDA device numbers, not the place of
    the device in berth's list. A Python model runs on the CPU wherever it is placed,
    so a declared CUDA device shows this without a GPU."""
    models = tmp_path / "models"
    write_python_model(models / "double", config="preferred_device: gpu-a\n")
    devices = [{"name": "cpu0"}, {"name": "gpu-a", "kind": "cuda", "index": 3}]
    running = start_grpc_server(tmp_path / "server", models=models, devices=devices)
    try:
        with running.channel() as channel, running.berth.client() as http:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            config = _grpc_view(stub.ModelConfig(pb.ModelConfigRequest(name="double"), timeout=30))["config"]
            assert config == _proto_view(http.get("/v2/models/double/config").json())
            assert (config["instance_group"][0]["kind"], config["instance_group"][0]["gpus"]) == ("KIND_GPU", [3])
            stats = _grpc_view(stub.ModelStatistics(pb.ModelStatisticsRequest(name="double"), timeout=30))
            assert stats == _proto_view(http.get("/v2/models/double/stats").json())
            memory = stats["model_stats"][0]["memory_usage"]
            assert [(usage["type"], usage["id"]) for usage in memory] == [("GPU", 3)]
    finally:
        running.berth.stop()


def test_a_tensor_with_no_v2_datatype(server: RunningServer, client: tc.InferenceServerClient) -> None:
    """complex64 has no V2 datatype: the config says TYPE_INVALID (a ModelConfig that
    parses, not an INTERNAL error), and a request whose answer cannot be written in V2
    is a server-side failure that names the output, on both front ends."""
    config = client.get_model_config("complex", as_json=True)["config"]
    assert config["output"][0].get("data_type", "TYPE_INVALID") == "TYPE_INVALID"  # the enum's default: not printed
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    with server.berth.client() as http:
        assert http.get("/v2/models/complex/config").json()["output"][0]["data_type"] == "TYPE_INVALID"
        body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
        response = http.post("/v2/models/complex/infer", json=body)
        assert response.status_code == 500
        assert "output 'z'" in response.json()["error"] and "no V2 datatype" in response.json()["error"]
    with pytest.raises(InferenceServerException) as refused:
        client.infer("complex", [_input("x", np.ones((1, 2), dtype=np.float32), "FP32")])
    assert refused.value.status() == "StatusCode.INTERNAL"
    assert "output 'z'" in refused.value.message() and "no V2 datatype" in refused.value.message()
