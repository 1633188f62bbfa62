"""The gRPC server inside the berth process: port clashes, draining on SIGTERM, credentials."""

from __future__ import annotations

import queue
import signal
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from conftest import BerthServer, free_port
from grpc_fixtures import berth_stub, start_grpc_server
from models import read_events, write_python_model
from waiting import wait_until

from berth.grpc.generated import grpc_service_pb2 as pb
from berth.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from berth.grpc.generated.berth.v1 import berth_pb2


def _infer_request(model: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.ones((1, 4), np.float32).tobytes())
    return request


def test_taken_grpc_port_fails_startup(tmp_path: Path) -> None:
    """A second server on the same gRPC port must not start (gRPC's SO_REUSEPORT is off)."""
    first = start_grpc_server(tmp_path / "first")
    try:
        port = int(first.grpc_address.rsplit(":", 1)[1])
        (tmp_path / "second").mkdir()
        second = BerthServer({"repository": str(first.berth.workdir / "models"), "server": {"grpc_port": port}}, tmp_path / "second")
        second.start(wait_ready=False)
        assert second.process is not None
        code = second.process.wait(60)
        second.stop()
        assert code != 0
        assert "gRPC server did not start" in second.logs()
        assert "engine started" in second.logs()
        # the first server still answers on its port
        with first.channel() as channel:
            assert pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10).live
    finally:
        first.berth.stop()


def test_sigterm_drains_grpc_calls_then_exits_cleanly(tmp_path: Path) -> None:
    models = tmp_path / "models"
    events = tmp_path / "events.log"
    write_python_model(models / "slow", events=events, predict_sleep=1.0, config="preload: true\n")
    running = start_grpc_server(tmp_path / "server", models=models)
    outcome: dict[str, object] = {}

    def call() -> None:
        with running.channel() as channel:
            try:
                response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(_infer_request("slow"), timeout=30)
                outcome["y"] = np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
            except grpc.RpcError as exc:
                outcome["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    # the call is inside predict now (the Registry's two warm-up runs come first)
    wait_until(lambda: sum(e[1] == "predict_start" for e in read_events(events)) >= 3, what="the call to reach predict")
    assert running.berth.process is not None
    running.berth.process.send_signal(signal.SIGTERM)
    caller.join(30)
    # wait for the exit the first signal causes: a second SIGTERM from stop() while the
    # process is still finishing would hit the restored default handler and kill it
    code = running.berth.process.wait(30)
    assert running.berth.stop() == code
    assert "error" not in outcome, outcome.get("error")
    np.testing.assert_array_equal(outcome["y"], [2, 2, 2, 2])
    assert code == 0, running.berth.logs()
    assert "gRPC server on 127.0.0.1" in running.berth.logs() and "stopped" in running.berth.logs()
    with running.channel() as channel:
        with pytest.raises(grpc.RpcError) as raised:
            pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=2)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_port_from_seed_config_key(tmp_path: Path) -> None:
    """Seed 003 writes the listen address as ``server.port: ":50051"``."""
    models = tmp_path / "models"
    write_python_model(models / "double")
    port = free_port()
    (tmp_path / "server").mkdir()
    berth = BerthServer({"repository": str(models)}, tmp_path / "server")
    # BerthServer writes server.grpc_port; replace it with the seed's spelling
    berth.config_path.write_text(yaml.safe_dump({"repository": str(models), "server": {"http_port": berth.port, "port": f":{port}"}}))
    berth.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert pb_grpc.GRPCInferenceServiceStub(channel).ServerReady(pb.ServerReadyRequest(), timeout=10).ready
    finally:
        berth.stop()


def test_credentials_guard_data_and_management(tmp_path: Path) -> None:
    """``auth.api_keys`` and ``auth.admin_token`` cover gRPC as they cover HTTP."""
    import tritonclient.grpc as tc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from tritonclient.utils import InferenceServerException

    auth = {"api_keys": ["data-key"], "admin_token": "admin-secret"}
    models = tmp_path / "models"
    write_python_model(models / "double")
    running = start_grpc_server(tmp_path / "server", models=models, auth=auth)
    client = tc.InferenceServerClient(running.grpc_address)
    x = tc.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))

    def status(call: object, *args: object, **kwargs: object) -> str:
        try:
            call(*args, **kwargs)  # type: ignore[operator]
        except InferenceServerException as exc:
            return str(exc.status())
        return "OK"

    try:
        assert client.is_server_live() and client.is_server_ready()  # public
        with running.channel() as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert status(client.infer, "double", [x]) == "StatusCode.UNAUTHENTICATED"
        assert status(client.infer, "double", [x], headers={"authorization": "Bearer wrong"}) == "StatusCode.UNAUTHENTICATED"
        assert status(client.infer, "double", [x], headers={"authorization": "Bearer data-key"}) == "OK"
        assert status(client.infer, "double", [x], headers={"x-api-key": "data-key"}) == "OK"
        assert status(client.get_model_metadata, "double") == "StatusCode.UNAUTHENTICATED"
        # management needs the admin token; an API key is not enough
        assert status(client.unload_model, "double", headers={"x-api-key": "data-key"}) == "StatusCode.UNAUTHENTICATED"
        assert status(client.unload_model, "double", headers={"x-admin-token": "admin-secret"}) == "OK"
        assert status(client.load_model, "double", headers={"authorization": "Bearer admin-secret"}) == "OK"
        # streams are checked too: the stream ends with the refusal
        answers: queue.Queue[object] = queue.Queue()
        client.start_stream(callback=lambda result, error: answers.put(error))
        try:
            client.async_stream_infer("double", [x])
        except InferenceServerException:
            pass  # the refusal may already have closed the stream
        refusal = answers.get(timeout=10)
        client.stop_stream()
        assert "UNAUTHENTICATED" in str(refusal) and "API key" in str(refusal)
        with running.channel() as channel:
            stub = berth_stub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.ListModels(berth_pb2.ListModelsRequest(), timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
            listed = stub.ListModels(berth_pb2.ListModelsRequest(), metadata=[("x-api-key", "data-key")], timeout=10)
            assert [m.model_id for m in listed.models] == ["double"]
            assert stub.Health(berth_pb2.HealthRequest(), timeout=10).healthy
    finally:
        client.close()
        running.berth.stop()


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        ("ipv4:127.0.0.1:5000", True),
        ("ipv4:127.8.9.10:5000", True),
        ("ipv6:%5B::1%5D:5000", True),
        ("ipv6:[::1]:5000", True),
        ("unix:/tmp/socket", True),
        ("ipv4:10.0.0.7:5000", False),
        ("ipv6:%5B2001:db8::1%5D:5000", False),
        ("ipv6:%5B::ffff:192.168.0.1%5D:5000", False),
        ("garbage", False),
    ],
)
def test_peer_is_loopback(peer: str, loopback: bool) -> None:
    from berth.grpc.auth import peer_is_loopback

    assert peer_is_loopback(peer) is loopback
