"""berth driven by the stock ``tritonclient.http.InferenceServerClient``: health,
metadata, model configuration, inference (binary and JSON, output subsets, versions),
the repository extension and the statistics extension."""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np
import pytest

from conftest import BerthServer
from models import softmax
from test_v2_protocol import build_repository, kinds_arrays

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

RTOL = 1e-5
ATOL = 1e-6


class Site:
    def __init__(self, server: BerthServer, weights: dict[str, np.ndarray]) -> None:
        self.server = server
        self.weights = weights
        self.client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}", concurrency=4)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("v2_tritonclient")
    weights = build_repository(root / "models")
    server = BerthServer({"repository": "models", "models": {"lin": {"preload": True}}}, root).start()
    site = Site(server, weights)
    yield site
    site.client.close()
    server.stop()


def _input(name: str, array: np.ndarray, datatype: str, binary: bool = True) -> "httpclient.InferInput":
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def test_server_health_and_metadata(site: Site) -> None:
    assert site.client.is_server_live()
    assert site.client.is_server_ready()
    meta = site.client.get_server_metadata()
    assert meta["name"] == "berth"
    assert "binary_tensor_data" in meta["extensions"] and "model_repository" in meta["extensions"]


def test_model_metadata_and_config(site: Site) -> None:
    meta = site.client.get_model_metadata("lin")
    assert meta["name"] == "lin" and meta["platform"] == "onnx_onnxv1" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}]
    config = site.client.get_model_config("lin")
    assert config["name"] == "lin" and config["platform"] == "onnx_onnxv1" and config["backend"] == "onnx"
    assert config["max_batch_size"] == 16  # the model's configured batch limit
    # with max_batch_size > 0 the batch dimension is implied: dims leave it out
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [("x", "TYPE_FP32", [4])]
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["output"]] == [("probs", "TYPE_FP32", [3])]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    versioned = site.client.get_model_metadata("ver", model_version="1")
    assert versioned["versions"] == ["1", "2"]
    assert site.client.get_model_config("ver", model_version="1")["version_policy"] == {"specific": {"versions": [1, 2]}}


def test_model_ready(site: Site) -> None:
    assert site.client.is_model_ready("lin")
    assert site.client.is_model_ready("lin", model_version="1")
    assert not site.client.is_model_ready("nosuch")


def test_infer_binary_by_default(site: Site) -> None:
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    result = site.client.infer("lin", [_input("x", x, "FP32")], request_id="r1")
    response = result.get_response()
    assert response["model_name"] == "lin" and response["model_version"] == "1" and response["id"] == "r1"
    # no outputs named → tritonclient asks for binary_data_output, so outputs come back binary
    assert "binary_data_size" in response["outputs"][0]["parameters"]
    np.testing.assert_allclose(result.as_numpy("probs"), softmax(x @ site.weights["lin"]), rtol=RTOL, atol=ATOL)


def test_infer_json(site: Site) -> None:
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    outputs = [httpclient.InferRequestedOutput("probs", binary_data=False)]
    result = site.client.infer("lin", [_input("x", x, "FP32", binary=False)], outputs=outputs)
    output = result.get_response()["outputs"][0]
    assert "data" in output and output["shape"] == [2, 3]
    np.testing.assert_allclose(result.as_numpy("probs"), softmax(x @ site.weights["lin"]), rtol=RTOL, atol=ATOL)


def test_infer_every_datatype_and_output_subset(site: Site) -> None:
    arrays = kinds_arrays(3)
    datatypes = {"f": "FP32", "i": "INT64", "b": "BOOL", "s": "BYTES", "h": "FP16"}
    inputs = [_input(name, arrays[name], datatypes[name], binary=(name in ("h", "s"))) for name in datatypes]
    outputs = [httpclient.InferRequestedOutput("sup"), httpclient.InferRequestedOutput("bnot", binary_data=False), httpclient.InferRequestedOutput("h2")]
    result = site.client.infer("kinds", inputs, outputs=outputs)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["sup", "bnot", "h2"]
    assert result.as_numpy("f2") is None  # not requested, not sent
    assert result.as_numpy("sup").reshape(-1).tolist() == [v.upper() + b"!" for v in arrays["s"].reshape(-1)]
    np.testing.assert_array_equal(result.as_numpy("bnot"), ~arrays["b"])
    np.testing.assert_array_equal(result.as_numpy("h2"), arrays["h"] * np.float16(2))
    everything = site.client.infer("kinds", [_input(name, arrays[name], datatypes[name]) for name in datatypes])
    np.testing.assert_array_equal(everything.as_numpy("isum"), arrays["i"].sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(everything.as_numpy("f2"), arrays["f"] * 2)


def test_unknown_output_and_bad_input_raise(site: Site) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as caught:
        site.client.infer("lin", [_input("x", x, "FP32")], outputs=[httpclient.InferRequestedOutput("nope")])
    assert caught.value.status() == "400" and "no output named 'nope'" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        site.client.infer("lin", [_input("x", np.ones((1, 3), dtype=np.float32), "FP32")])
    assert caught.value.status() == "400" and "shape" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        site.client.infer("nosuch", [_input("x", x, "FP32")])
    assert caught.value.status() == "404"
    with pytest.raises(InferenceServerException) as caught:
        site.client.infer("lin", [_input("x", x, "FP32")], model_version="3")
    assert caught.value.status() == "404"


def test_versions_serve_their_own_weights(site: Site) -> None:
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    for version in ("1", "2"):
        result = site.client.infer("ver", [_input("x", x, "FP32")], model_version=version)
        assert result.get_response()["model_version"] == version
        np.testing.assert_allclose(result.as_numpy("probs"), softmax(x @ site.weights[f"ver{version}"]), rtol=RTOL, atol=ATOL)
    assert not np.allclose(softmax(x @ site.weights["ver1"]), softmax(x @ site.weights["ver2"]))
    assert site.client.infer("ver", [_input("x", x, "FP32")]).get_response()["model_version"] == "2"


def test_repository_index_load_and_unload(site: Site) -> None:
    client = site.client
    index = {(m["name"], m.get("version")): m for m in client.get_model_repository_index()}
    assert index[("lin", "1")]["state"] == "READY" and index[("lin", "1")]["reason"] == ""
    assert {"lin", "ver", "kinds", "fixed"} <= {name for name, _ in index}

    client.load_model("fixed")
    assert client.is_model_ready("fixed")
    states = {(m["name"], m["version"]): m["state"] for m in client.get_model_repository_index()}
    assert states[("fixed", "1")] == "READY"

    client.unload_model("fixed")
    assert not client.is_model_ready("fixed")
    unloaded = {(m["name"], m["version"]): m for m in client.get_model_repository_index()}
    assert unloaded[("fixed", "1")]["state"] == "UNAVAILABLE" and unloaded[("fixed", "1")]["reason"] == "unloaded"

    # unloading a model unloads every version of it
    x = np.ones((1, 4), dtype=np.float32)
    client.infer("ver", [_input("x", x, "FP32")], model_version="1")
    client.infer("ver", [_input("x", x, "FP32")], model_version="2")
    client.unload_model("ver")
    assert not client.is_model_ready("ver", model_version="1") and not client.is_model_ready("ver", model_version="2")
    client.load_model("ver")
    assert client.is_model_ready("ver") and client.is_model_ready("ver", model_version="2")

    with pytest.raises(InferenceServerException) as caught:
        client.load_model("nosuch")
    assert caught.value.status() == "404"
    with pytest.raises(InferenceServerException) as caught:
        client.load_model("lin", config='{"max_batch_size": 4}')
    assert caught.value.status() == "400" and "not supported" in caught.value.message()


def test_inference_statistics(site: Site) -> None:
    client = site.client
    before = client.get_inference_statistics("lin")["model_stats"][0]
    started_ms = time.time() * 1000
    x = np.ones((3, 4), dtype=np.float32)
    for _ in range(4):
        client.infer("lin", [_input("x", x, "FP32")])
    stats = client.get_inference_statistics("lin", model_version="1")
    assert [(s["name"], s["version"]) for s in stats["model_stats"]] == [("lin", "1")]
    after = stats["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 12  # batch items
    assert 1 <= after["execution_count"] - before["execution_count"] <= 4
    success = after["inference_stats"]["success"]
    assert success["count"] - before["inference_stats"]["success"]["count"] == 4  # requests
    assert success["ns"] > before["inference_stats"]["success"]["ns"]
    assert after["inference_stats"]["compute_infer"]["ns"] > 0
    assert after["last_inference"] >= started_ms - 1000
    assert set(after["inference_stats"]) >= {"success", "fail", "queue", "compute_input", "compute_infer", "compute_output"}

    everything = client.get_inference_statistics()["model_stats"]
    assert ("lin", "1") in {(s["name"], s["version"]) for s in everything}
    with pytest.raises(InferenceServerException) as caught:
        client.get_inference_statistics("nosuch")
    assert caught.value.status() == "404"


def test_statistics_parse_as_triton_proto(site: Site) -> None:
    json_format = pytest.importorskip("google.protobuf.json_format")
    grpc_service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")
    message = json_format.ParseDict(site.client.get_inference_statistics(), grpc_service_pb2.ModelStatisticsResponse())
    assert any(s.name == "lin" for s in message.model_stats)


def test_async_infer_concurrently(site: Site) -> None:
    """Concurrent requests through tritonclient's connection pool (they may batch)."""
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((1, 4)).astype(np.float32) for _ in range(16)]
    pending = [site.client.async_infer("lin", [_input("x", x, "FP32")]) for x in xs]
    for x, request in zip(xs, pending):
        np.testing.assert_allclose(request.get_result().as_numpy("probs"), softmax(x @ site.weights["lin"]), rtol=RTOL, atol=ATOL)
