"""Bad requests on both services: each gets the right status code and a clean message."""

from __future__ import annotations

import textwrap
import threading
from typing import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

from grpc_fixtures import MAX_MESSAGE_MB, RunningServer, berth_stub, start_grpc_server, write_repository
from models import write_python_model

from berth.grpc.generated import grpc_service_pb2 as pb
from berth.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from berth.grpc.generated.berth.v1 import berth_pb2

INVALID = grpc.StatusCode.INVALID_ARGUMENT

_CRASH = '''
class Model:
    inputs = [("x", "float32", [-1, 4])]
    outputs = [("y", "float32", [-1, 4])]

    def predict(self, inputs):
        if inputs["x"].any():
            raise RuntimeError("secret detail in /srv/private/model.py")
        return {"y": inputs["x"]}
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("grpc_errors")
    models = write_repository(root / "models")
    write_python_model(models / "broken", fail_load=True)
    write_python_model(models / "slow", predict_sleep=0.5, config="max_concurrency: 1\n")
    crash = models / "crash" / "1"
    crash.mkdir(parents=True)
    (crash / "model.py").write_text(textwrap.dedent(_CRASH))
    running = start_grpc_server(root / "server", models=models)
    yield running
    running.berth.stop()


@pytest.fixture
def stub(server: RunningServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with server.channel() as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture
def client(server: RunningServer) -> Iterator[tc.InferenceServerClient]:
    triton = tc.InferenceServerClient(server.grpc_address)
    yield triton
    triton.close()


def _request(model: str = "double", shape: tuple[int, ...] = (1, 4), datatype: str = "FP32", raw: bytes | None = None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype=datatype, shape=shape)
    request.raw_input_contents.append(np.zeros(shape, np.float32).tobytes() if raw is None else raw)
    return request


def _code(call: grpc.UnaryUnaryMultiCallable, request: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=30)
    return raised.value.code(), raised.value.details() or ""


def _clean(message: str, server: RunningServer) -> None:
    assert message
    assert "Traceback" not in message
    assert str(server.berth.workdir) not in message
    assert "/srv/private" not in message


def test_v2_bad_input_matrix(stub: pb_grpc.GRPCInferenceServiceStub, server: RunningServer) -> None:
    two_raw = _request()
    two_raw.raw_input_contents.append(b"\0" * 16)
    mixed = _request()
    mixed.inputs[0].contents.fp32_contents.extend([0.0] * 4)
    no_data = pb.ModelInferRequest(model_name="double")
    no_data.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    short_contents = pb.ModelInferRequest(model_name="double")
    short_contents.inputs.add(name="x", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1.0, 2.0])
    wrong_field = pb.ModelInferRequest(model_name="double")
    wrong_field.inputs.add(name="x", datatype="FP32", shape=[1, 4]).contents.int64_contents.extend([1, 2, 3, 4])
    int8_out_of_range = pb.ModelInferRequest(model_name="double")
    int8_out_of_range.inputs.add(name="x", datatype="INT8", shape=[1, 4]).contents.int_contents.extend([1, 2, 3, 300])
    duplicate = _request()
    duplicate.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    duplicate.raw_input_contents.append(b"\0" * 16)
    unknown_output = _request()
    unknown_output.outputs.add(name="nope")
    cases: dict[str, pb.ModelInferRequest] = {
        "wrong dtype (BYTES for FP32)": _request(datatype="BYTES", raw=b"\x01\0\0\0a" * 4),
        "unknown datatype": _request(datatype="FP8"),
        "BF16 has no numpy dtype": _request(datatype="BF16", raw=b"\0" * 8),
        "wrong item shape": _request(shape=(1, 5)),
        "wrong rank": _request(shape=(4,)),
        "raw size mismatch": _request(raw=b"\0" * 12),
        "raw count mismatch": two_raw,
        "raw and contents mixed": mixed,
        "no data": no_data,
        "contents too short": short_contents,
        "contents field for another datatype": wrong_field,
        "INT8 value out of range": int8_out_of_range,
        "duplicate input": duplicate,
        "negative dim": _request(shape=(-1, 4), raw=b""),
        "empty batch": _request(shape=(0, 4), raw=b""),
        "unknown requested output": unknown_output,
        "bad BYTES framing": _request(model="strings", shape=(1,), datatype="BYTES", raw=b"\x09\0\0\0abc"),
    }
    for what, request in cases.items():
        code, message = _code(stub.ModelInfer, request)
        assert code == INVALID, (what, code, message)
        _clean(message, server)
    # too large, as over HTTP (413 there): RESOURCE_EXHAUSTED, before anything is allocated
    code, message = _code(stub.ModelInfer, _request(shape=(2**20, 2**20), raw=b""))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "more than" in message, message


def test_v2_not_found(client: tc.InferenceServerClient, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    x = tc.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.zeros((1, 4), np.float32))
    for model, version in (("ghost", ""), ("double", "9")):
        with pytest.raises(InferenceServerException) as raised:
            client.infer(model, [x], model_version=version)
        assert raised.value.status() == "StatusCode.NOT_FOUND", raised.value.message()
    for call, request in (
        (stub.ModelMetadata, pb.ModelMetadataRequest(name="ghost")),
        (stub.ModelConfig, pb.ModelConfigRequest(name="ghost")),
        (stub.ModelStatistics, pb.ModelStatisticsRequest(name="ghost")),
        (stub.ModelStatistics, pb.ModelStatisticsRequest(name="double", version="9")),
        (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="ghost")),
        (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name="ghost")),
        (stub.SystemSharedMemoryStatus, pb.SystemSharedMemoryStatusRequest(name="region")),
    ):
        assert _code(call, request)[0] == grpc.StatusCode.NOT_FOUND, request
    assert _code(stub.ModelInfer, _request(model="../etc/passwd"))[0] == grpc.StatusCode.NOT_FOUND
    assert _code(stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest())[0] == INVALID


def test_message_over_the_limit_is_resource_exhausted(client: tc.InferenceServerClient, server: RunningServer) -> None:
    rows = MAX_MESSAGE_MB * 1024 * 1024 // 16 + 1024  # a little over the limit at 16 bytes per row
    x = tc.InferInput("x", [rows, 4], "FP32")
    x.set_data_from_numpy(np.zeros((rows, 4), np.float32))
    with pytest.raises(InferenceServerException) as raised:
        client.infer("double", [x])
    assert raised.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    with server.channel() as channel:
        big = berth_pb2.InferBatchRequest(model_id="double")
        big.inputs.add(name="x", shape=[rows, 4], data=bytes(rows * 16))
        assert _code(berth_stub(channel).InferBatch, big)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    # the server is still fine afterwards
    small = tc.InferInput("x", [1, 4], "FP32")
    small.set_data_from_numpy(np.ones((1, 4), np.float32))
    np.testing.assert_array_equal(client.infer("double", [small]).as_numpy("y"), [[2, 2, 2, 2]])


def test_failed_load_is_unavailable(stub: pb_grpc.GRPCInferenceServiceStub, server: RunningServer) -> None:
    code, message = _code(stub.ModelInfer, _request(model="broken"))
    assert code == grpc.StatusCode.UNAVAILABLE
    _clean(message, server)
    index = stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10)
    (broken,) = [m for m in index.models if m.name == "broken"]
    assert broken.state == "UNAVAILABLE" and broken.reason


def test_model_crash_is_internal_with_a_fixed_message(stub: pb_grpc.GRPCInferenceServiceStub, server: RunningServer) -> None:
    request = _request(model="crash", raw=np.ones((1, 4), np.float32).tobytes())
    code, message = _code(stub.ModelInfer, request)
    assert code == grpc.StatusCode.INTERNAL
    _clean(message, server)
    assert "secret" not in message


def test_server_deadline_is_deadline_exceeded(client: tc.InferenceServerClient) -> None:
    """Triton's ``timeout`` parameter (microseconds) bounds queue + run on the server."""
    x = tc.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    client.infer("slow", [x])  # loaded, so the deadline below covers only queue + run
    blocker = threading.Thread(target=client.infer, args=("slow", [x]))
    blocker.start()
    try:
        with pytest.raises(InferenceServerException) as raised:
            client.infer("slow", [x], timeout=100_000)
        assert raised.value.status() == "StatusCode.DEADLINE_EXCEEDED", raised.value.message()
    finally:
        blocker.join(30)


def test_stream_errors_are_in_band(server: RunningServer, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    good = _request(raw=np.ones((1, 4), np.float32).tobytes())
    good.id = "good"
    requests = [good, _request(model="ghost"), _request(raw=b"\0"), good]
    answers = list(stub.ModelStreamInfer(iter(requests), timeout=30))
    assert [a.error_message == "" for a in answers] == [True, False, False, True]
    assert "unknown model 'ghost'" in answers[1].error_message
    assert answers[0].infer_response.id == "good" and answers[3].infer_response.id == "good"
    for answer in answers:
        _clean(answer.error_message or "x", server)


def test_berth_v1_bad_input_matrix(server: RunningServer) -> None:
    def named(model: str = "double", shape: tuple[int, ...] = (1, 4), datatype: str = "FP32", data: bytes | None = None) -> berth_pb2.InferBatchRequest:
        request = berth_pb2.InferBatchRequest(model_id=model)
        request.inputs.add(name="x", datatype=datatype, shape=shape, data=bytes(16) if data is None else data)
        return request

    cases = {
        "wrong dtype": named(datatype="BYTES", data=b"\x01\0\0\0a" * 4),
        "unknown datatype": named(datatype="complex256"),
        "wrong shape": named(shape=(1, 5), data=bytes(20)),
        "raw size mismatch": named(data=bytes(12)),
    }
    with server.channel() as channel:
        stub = berth_stub(channel)
        for what, request in cases.items():
            code, message = _code(stub.InferBatch, request)
            assert code == INVALID, (what, code, message)
            _clean(message, server)
        assert _code(stub.InferBatch, named(shape=(2**31, 2**31), data=b""))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _code(stub.InferBatch, named(model="ghost"))[0] == grpc.StatusCode.NOT_FOUND
        assert _code(stub.InferBatch, named(model="broken"))[0] == grpc.StatusCode.UNAVAILABLE
        assert _code(stub.InferBatch, named(model="crash", data=np.ones((1, 4), np.float32).tobytes()))[0] == grpc.StatusCode.INTERNAL


def test_huge_model_name_is_clipped(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    code, message = _code(stub.ModelInfer, _request(model="m" * 100_000))
    assert code == grpc.StatusCode.NOT_FOUND
    assert len(message) <= 1024
