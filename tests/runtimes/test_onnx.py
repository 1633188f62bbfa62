"""OnnxRuntime: signature from the file, numerics, options, threads, and memory on a real server."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from berth.runtimes import Placement, backend_for_path, runtime_class
from berth.runtimes.onnx import OnnxRuntime
from conftest import BerthServer
from models import softmax, write_linear_softmax

CPU = Placement("cpu")
_MB = 1024 * 1024


def write_mixed(path: Path, seed: int = 3) -> np.ndarray:
    """Two inputs of different dtypes and three outputs of different shapes.

    ``x`` float32 [batch, 3] and ``ids`` int64 [batch, 2];
    ``y = x @ W + sum(ids)`` float32 [batch, 5], ``total = sum(ids)`` int64 [batch, 1],
    ``w`` = W float32 [3, 5] (a static output).
    """
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((3, 5)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("ReduceSum", ["ids", "axes"], ["total"], keepdims=1),
        helper.make_node("Cast", ["total"], ["total_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["xw", "total_f"], ["y"]),
        helper.make_node("Identity", ["W"], ["w"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mixed",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 2]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5]),
            helper.make_tensor_value_info("total", TensorProto.INT64, ["batch", 1]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 5]),
        ],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return weights


def mixed_reference(weights: np.ndarray, x: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    total = ids.sum(axis=1, keepdims=True)
    return {"y": x @ weights + total.astype(np.float32), "total": total, "w": weights}


def _loaded(path: Path, placement: Placement = CPU, **options: Any) -> OnnxRuntime:
    runtime = OnnxRuntime(path, placement, options)
    runtime.load()
    return runtime


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("onnx") / "mixed.onnx"
    return path, write_mixed(path)


# ── direct ──────────────────────────────────────────────────────────────────


def test_registered_for_onnx_files() -> None:
    assert runtime_class("onnx") is OnnxRuntime
    assert backend_for_path(Path("model.onnx")) == "onnx"
    assert backend_for_path(Path("MODEL.ONNX")) == "onnx"


def test_signature_read_from_file(mixed: tuple[Path, np.ndarray]) -> None:
    runtime = _loaded(mixed[0])
    sig = runtime.signature
    assert [(s.name, s.dtype, s.shape) for s in sig.inputs] == [
        ("x", np.dtype(np.float32), (-1, 3)),
        ("ids", np.dtype(np.int64), (-1, 2)),
    ]
    assert [(s.name, s.dtype, s.shape) for s in sig.outputs] == [
        ("y", np.dtype(np.float32), (-1, 5)),
        ("total", np.dtype(np.int64), (-1, 1)),
        ("w", np.dtype(np.float32), (3, 5)),
    ]
    assert sig.input("ids") is sig.inputs[1] and sig.input("nope") is None
    assert sig.to_dict()["inputs"][1] == {"name": "ids", "dtype": "int64", "shape": [-1, 2]}
    feeds = runtime.warmup_inputs(4)
    assert feeds["x"].shape == (4, 3) and feeds["x"].dtype == np.float32
    assert feeds["ids"].shape == (4, 2) and feeds["ids"].dtype == np.int64


def test_run_matches_numpy_reference(mixed: tuple[Path, np.ndarray]) -> None:
    path, weights = mixed
    runtime = _loaded(path)
    rng = np.random.default_rng(7)
    for batch in (1, 5, 64):
        x = rng.standard_normal((batch, 3)).astype(np.float32)
        ids = rng.integers(-1000, 1000, (batch, 2), dtype=np.int64)
        out = runtime.run({"x": x, "ids": ids})
        ref = mixed_reference(weights, x, ids)
        assert set(out) == {"y", "total", "w"}
        np.testing.assert_allclose(out["y"], ref["y"], rtol=1e-5, atol=1e-3)
        assert out["total"].dtype == np.int64
        np.testing.assert_array_equal(out["total"], ref["total"])
        np.testing.assert_array_equal(out["w"], weights)


def test_linear_softmax_matches_reference(tmp_path: Path) -> None:
    weights = write_linear_softmax(tmp_path / "lin.onnx", features=6, classes=4, seed=5)
    runtime = _loaded(tmp_path / "lin.onnx")
    x = np.random.default_rng(1).standard_normal((9, 6)).astype(np.float32)
    probs = runtime.run({"x": x})["probs"]
    np.testing.assert_allclose(probs, softmax(x @ weights), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_info_reports_cpu_provider_and_not_accelerated(mixed: tuple[Path, np.ndarray]) -> None:
    runtime = _loaded(mixed[0])
    info = runtime.info()
    assert info.backend == "onnx" and info.platform == "onnx_onnxv1"
    assert info.details["providers"] == ["CPUExecutionProvider"]
    assert info.accelerated is False
    assert runtime.device_memory_bytes() is None  # host memory: the Registry measures RSS


def test_intra_op_threads_option_is_honoured(mixed: tuple[Path, np.ndarray]) -> None:
    path = mixed[0]
    options = _loaded(path, intra_op_threads=3)._session.get_session_options()
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 1


def test_providers_option(mixed: tuple[Path, np.ndarray]) -> None:
    path = mixed[0]
    assert _loaded(path, providers=["CPUExecutionProvider"]).info().details["providers"] == ["CPUExecutionProvider"]
    # one provider written as a plain string (as config.yaml allows) is one provider,
    # not a list of its characters
    runtime = OnnxRuntime(path, CPU, {"providers": "CPUExecutionProvider"})
    assert runtime._providers() == ["CPUExecutionProvider"]
    runtime.load()
    assert runtime.info().details["providers"] == ["CPUExecutionProvider"]
    # with no option, a CPU placement asks for the CPU provider only
    assert OnnxRuntime(path, CPU)._providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize("content", [b"", b"this is not an onnx file", b"\x08\x08\x12\xff\xff\xff\xff"])
def test_corrupt_file_raises_on_load(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    runtime = OnnxRuntime(path, CPU)
    with pytest.raises(Exception, match=r"Load model from .* failed"):  # onnxruntime's own error classes
        runtime.load()
    assert runtime._session is None


def test_truncated_model_raises_on_load(tmp_path: Path, mixed: tuple[Path, np.ndarray]) -> None:
    path = tmp_path / "truncated.onnx"
    path.write_bytes(mixed[0].read_bytes()[:40])
    with pytest.raises(Exception, match=r"INVALID_PROTOBUF .* Load model from .* failed"):
        OnnxRuntime(path, CPU).load()


def test_missing_file_raises_on_load(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"NO_SUCHFILE .* Load model from .*absent\.onnx failed"):
        OnnxRuntime(tmp_path / "absent.onnx", CPU).load()


def test_prepare_runs_and_is_repeatable() -> None:
    OnnxRuntime.prepare("cpu")
    OnnxRuntime.prepare("cpu")


def test_run_from_eight_threads_at_once(mixed: tuple[Path, np.ndarray]) -> None:
    path, weights = mixed
    runtime = _loaded(path)
    start = threading.Barrier(8)
    errors: list[BaseException] = []
    checked = [0] * 8

    def worker(index: int) -> None:
        try:
            rng = np.random.default_rng(100 + index)
            start.wait(timeout=10)
            for _ in range(40):
                batch = int(rng.integers(1, 17))
                x = rng.standard_normal((batch, 3)).astype(np.float32) + index
                ids = np.full((batch, 2), index, dtype=np.int64)
                out = runtime.run({"x": x, "ids": ids})
                ref = mixed_reference(weights, x, ids)
                np.testing.assert_allclose(out["y"], ref["y"], rtol=1e-5, atol=1e-3)
                np.testing.assert_array_equal(out["total"], ref["total"])
                checked[index] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors[0]
    assert checked == [40] * 8


def test_unload_drops_the_session(mixed: tuple[Path, np.ndarray]) -> None:
    runtime = _loaded(mixed[0])
    assert runtime._session is not None
    runtime.unload()
    assert runtime._session is None
    assert runtime.info().details["providers"] == []
    with pytest.raises(RuntimeError, match="is not loaded"):
        runtime.run({"x": np.zeros((1, 3), np.float32), "ids": np.zeros((1, 2), np.int64)})
    runtime.unload()  # a second unload is harmless
    runtime.load()  # and the runtime can load again
    assert runtime.run({"x": np.zeros((1, 3), np.float32), "ids": np.ones((1, 2), np.int64)})["total"].tolist() == [[2]]


# ── through a real server ───────────────────────────────────────────────────


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BerthServer, dict[str, np.ndarray]]]:
    root = tmp_path_factory.mktemp("onnx_server")
    repo = root / "repo"
    weights = {
        "padded": write_linear_softmax(repo / "padded" / "1" / "model.onnx", features=4, classes=3, seed=11, pad_bytes=16 * _MB),
        "small": write_linear_softmax(repo / "small.onnx", features=5, classes=2, seed=12),
    }
    srv = BerthServer({"repository": str(repo), "models": {"padded": {"preload": True}}}, root)
    srv.start()
    yield srv, weights
    assert srv.stop() == 0
    assert "Traceback" not in srv.logs()


def _models(client: Any) -> dict[str, dict[str, Any]]:
    response = client.get("/models")
    assert response.status_code == 200, response.text
    return {row["name"]: row for row in response.json()["models"]}


def test_server_reports_measured_memory_of_at_least_the_weights(server: tuple[BerthServer, dict[str, np.ndarray]]) -> None:
    srv, _ = server
    weights_mb = 16.0
    with srv.client() as client:
        row = _models(client)["padded"]
    assert row["state"] == "READY"
    assert row["memory_measured"] is True
    assert row["memory_mb"] >= weights_mb, row
    assert row["backend"] == "onnx" and row["platform"] == "onnx_onnxv1"
    assert row["providers"] == ["CPUExecutionProvider"]
    assert row["accelerated"] is False
    assert row["signature"] == {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
        "outputs": [{"name": "probs", "dtype": "float32", "shape": [-1, 3]}],
    }


def test_server_serves_onnx_and_measures_a_lazy_load(server: tuple[BerthServer, dict[str, np.ndarray]]) -> None:
    srv, weights = server
    x = np.random.default_rng(4).standard_normal((3, 5)).astype(np.float32)
    with srv.client() as client:
        assert _models(client)["small"]["memory_measured"] is False  # not loaded yet
        response = client.post("/infer-batch", json={"model": "small", "batch": x.tolist()})
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(np.array(response.json()["probs"]), softmax(x @ weights["small"]), rtol=1e-4, atol=1e-6)
        response = client.post("/infer", json={"model": "padded", "input": [1.0, -2.0, 0.5, 3.0]})
        assert response.status_code == 200, response.text
        ref = softmax(np.array([[1.0, -2.0, 0.5, 3.0]], np.float32) @ weights["padded"])[0]
        np.testing.assert_allclose(response.json()["probs"], ref, rtol=1e-4, atol=1e-6)
        assert response.json()["used_gpu"] is False
        row = _models(client)["small"]
    assert row["state"] == "READY" and row["memory_measured"] is True
    assert row["memory_mb"] > 0
