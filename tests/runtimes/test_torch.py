"""TorchScript (``.pt``) and torch.export (``.pt2``) runtimes, directly and on a real server."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import numpy as np
import pytest
import torch

from berth.config import TensorConfig
from berth.runtimes import Placement, backend_for_path, runtime_class
from berth.runtimes.cuda import cuda_device_count, cuda_total_bytes, cuda_used_bytes
from berth.runtimes.torch import TorchExportRuntime, TorchScriptRuntime
from conftest import BerthServer
from models import softmax

# TorchScript is what this runtime serves, deprecated or not
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")

CPU = Placement("cpu")
RTOL, ATOL = 1e-5, 1e-6


# ── models ──────────────────────────────────────────────────────────────────


class Mlp(torch.nn.Module):
    """x [N, 4] → logits [N, 3]."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.hidden = torch.nn.Linear(4, 8)
        self.out = torch.nn.Linear(8, 3)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


class Classifier(Mlp):
    """x [N, 4] → probabilities [N, 3]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)


class TwoOutputs(Mlp):
    """Returns (logits, probs) as a tuple."""

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(x)
        return logits, torch.softmax(logits, dim=-1)


class DictOutputs(Mlp):
    """Returns {"logits", "probs"} as a dict."""

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        logits = self.logits(x)
        return {"logits": logits, "probs": torch.softmax(logits, dim=-1)}


class Embed(torch.nn.Module):
    """ids int64 [N, 5] and weights float32 [N, 5] → pooled float32 [N, 2]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.table = torch.nn.Embedding(10, 2)

    def forward(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return (self.table(ids) * weights.unsqueeze(-1)).sum(dim=1)


def _eager(model: torch.nn.Module, *arrays: np.ndarray) -> Any:
    with torch.no_grad():
        return model(*(torch.from_numpy(a) for a in arrays))


def _spec(name: str, dtype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def _signature_json(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, str]:
    return {"signature.json": json.dumps({"inputs": inputs, "outputs": outputs})}


def _triples(specs: Any) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    return [(s.name, s.dtype, s.shape) for s in specs]


def _load(cls: type, path: Path, **options: Any) -> Any:
    runtime = cls(path, CPU, options)
    runtime.load()
    return runtime


X = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)


# ── TorchScript ─────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def ts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """TorchScript archives, built once for the module."""
    folder = tmp_path_factory.mktemp("torchscript")
    paths = {name: folder / f"{name}.pt" for name in ("signed", "bare", "tuple", "dict", "embed", "embed_bare", "traced")}
    sig = _signature_json([_spec("features", "float32", [-1, 4])], [_spec("scores", "float32", [-1, 3])])
    torch.jit.save(torch.jit.script(Classifier().eval()), str(paths["signed"]), _extra_files=sig)
    torch.jit.save(torch.jit.script(Mlp().eval()), str(paths["bare"]))
    torch.jit.save(torch.jit.script(TwoOutputs().eval()), str(paths["tuple"]))
    torch.jit.save(torch.jit.script(DictOutputs().eval()), str(paths["dict"]))
    embed_sig = _signature_json(
        [_spec("ids", "int64", [-1, 5]), _spec("weights", "float32", [-1, 5])],
        [_spec("pooled", "float32", [-1, 2])],
    )
    torch.jit.save(torch.jit.script(Embed().eval()), str(paths["embed"]), _extra_files=embed_sig)
    torch.jit.save(torch.jit.script(Embed().eval()), str(paths["embed_bare"]))
    traced = torch.jit.trace(Classifier().eval(), (torch.from_numpy(X),))
    torch.jit.save(traced, str(paths["traced"]), _extra_files=sig)
    return paths


def test_torchscript_registered_for_pt_files() -> None:
    assert runtime_class("torchscript") is TorchScriptRuntime
    assert backend_for_path(Path("model.pt")) == "torchscript"
    assert backend_for_path(Path("model.torchscript")) == "torchscript"


@pytest.mark.parametrize("name", ["signed", "traced"])
def test_signature_json_in_the_archive_gives_the_signature(ts: dict[str, Path], name: str) -> None:
    runtime = _load(TorchScriptRuntime, ts[name])
    assert _triples(runtime.signature.inputs) == [("features", np.dtype(np.float32), (-1, 4))]
    assert _triples(runtime.signature.outputs) == [("scores", np.dtype(np.float32), (-1, 3))]
    out = runtime.run({"features": X})
    assert list(out) == ["scores"]
    np.testing.assert_allclose(out["scores"], _eager(Classifier().eval(), X).numpy(), rtol=RTOL, atol=ATOL)


def test_signature_json_with_int64_input(ts: dict[str, Path]) -> None:
    runtime = _load(TorchScriptRuntime, ts["embed"])
    assert _triples(runtime.signature.inputs) == [
        ("ids", np.dtype(np.int64), (-1, 5)),
        ("weights", np.dtype(np.float32), (-1, 5)),
    ]
    feeds = runtime.warmup_inputs(2)
    assert feeds["ids"].dtype == np.int64 and feeds["ids"].shape == (2, 5)
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 10, (7, 5), dtype=np.int64)
    weights = rng.random((7, 5), dtype=np.float32)
    out = runtime.run({"weights": weights, "ids": ids})  # fed by name, not by order
    np.testing.assert_allclose(out["pooled"], _eager(Embed().eval(), ids, weights).numpy(), rtol=RTOL, atol=1e-5)


@pytest.mark.parametrize(
    "declared",
    [
        pytest.param(
            ([_spec("x", "float32", [-1, 4])], [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}]),
            id="dicts",
        ),
        pytest.param(
            (
                [TensorConfig(name="x", shape=[-1, 4])],
                [TensorConfig(name="probs", datatype="FP32", shape=[-1, 3])],
            ),
            id="tensor-configs",
        ),
    ],
)
def test_config_declared_signature_wins_over_the_archive(ts: dict[str, Path], declared: tuple[list[Any], list[Any]]) -> None:
    inputs, outputs = declared
    runtime = _load(TorchScriptRuntime, ts["signed"], inputs=inputs, outputs=outputs)
    assert _triples(runtime.signature.inputs) == [("x", np.dtype(np.float32), (-1, 4))]
    assert _triples(runtime.signature.outputs) == [("probs", np.dtype(np.float32), (-1, 3))]
    out = runtime.run({"x": X})
    np.testing.assert_allclose(out["probs"], _eager(Classifier().eval(), X).numpy(), rtol=RTOL, atol=ATOL)


def test_declared_dtype_under_its_v2_alias_is_honoured(ts: dict[str, Path]) -> None:
    runtime = _load(
        TorchScriptRuntime,
        ts["embed"],
        inputs=[{"name": "ids", "datatype": "INT64", "shape": [-1, 5]}, TensorConfig(name="w", datatype="FP32", shape=[-1, 5])],
        outputs=[{"name": "pooled", "shape": [-1, 2]}],
    )
    assert [s.dtype for s in runtime.signature.inputs] == [np.dtype(np.int64), np.dtype(np.float32)]
    assert runtime.signature.outputs[0].dtype == np.dtype(np.float32)


def test_only_inputs_declared_falls_back_to_the_archive(ts: dict[str, Path]) -> None:
    runtime = _load(TorchScriptRuntime, ts["signed"], inputs=[_spec("x", "float32", [-1, 4])])
    assert runtime.signature.inputs[0].name == "features"


def test_fallback_without_a_signature_uses_forward_argument_names(ts: dict[str, Path]) -> None:
    runtime = _load(TorchScriptRuntime, ts["bare"])
    assert [s.name for s in runtime.signature.inputs] == ["x"]
    assert [s.name for s in runtime.signature.outputs] == ["output"]
    assert all(s.dtype == np.float32 and s.shape[0] == -1 for s in (*runtime.signature.inputs, *runtime.signature.outputs))
    out = runtime.run({"x": X})
    np.testing.assert_allclose(out["output"], _eager(Mlp().eval(), X).numpy(), rtol=RTOL, atol=ATOL)
    # the fallback signature admits an ordinary (batch, features) input
    spec = runtime.signature.inputs[0]
    assert len(spec.shape) == X.ndim and spec.static_tail is None


def test_fallback_names_several_forward_arguments(ts: dict[str, Path]) -> None:
    runtime = _load(TorchScriptRuntime, ts["embed_bare"])
    assert [s.name for s in runtime.signature.inputs] == ["ids", "weights"]


def test_fallback_for_a_tuple_return_names_every_output(ts: dict[str, Path]) -> None:
    runtime = _load(TorchScriptRuntime, ts["tuple"])
    assert [s.name for s in runtime.signature.outputs] == ["output_0", "output_1"]
    out = runtime.run({"x": X})
    logits, probs = _eager(TwoOutputs().eval(), X)
    np.testing.assert_allclose(out["output_0"], logits.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out["output_1"], probs.numpy(), rtol=RTOL, atol=ATOL)


def test_fallback_for_a_dict_return_asks_for_declared_outputs(ts: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="declare the outputs"):
        _load(TorchScriptRuntime, ts["dict"])


def test_tuple_outputs_map_to_declared_names_in_order(ts: dict[str, Path]) -> None:
    runtime = _load(
        TorchScriptRuntime,
        ts["tuple"],
        inputs=[_spec("x", "float32", [-1, 4])],
        outputs=[_spec("logits", "float32", [-1, 3]), _spec("probs", "float32", [-1, 3])],
    )
    out = runtime.run({"x": X})
    logits, probs = _eager(TwoOutputs().eval(), X)
    assert list(out) == ["logits", "probs"]
    np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out["probs"], probs.numpy(), rtol=RTOL, atol=ATOL)


def test_dict_outputs_map_to_declared_names_by_key(ts: dict[str, Path]) -> None:
    # declared in the opposite order to the dict's: names, not positions, decide
    runtime = _load(
        TorchScriptRuntime,
        ts["dict"],
        inputs=[_spec("x", "float32", [-1, 4])],
        outputs=[_spec("probs", "float32", [-1, 3]), _spec("logits", "float32", [-1, 3])],
    )
    out = runtime.run({"x": X})
    ref = _eager(DictOutputs().eval(), X)
    assert list(out) == ["probs", "logits"]
    np.testing.assert_allclose(out["probs"], ref["probs"].numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out["logits"], ref["logits"].numpy(), rtol=RTOL, atol=ATOL)


def test_dict_outputs_with_unknown_declared_names_fail_clearly(ts: dict[str, Path]) -> None:
    runtime = _load(TorchScriptRuntime, ts["dict"], inputs=[_spec("x", "float32", [-1, 4])], outputs=[_spec("scores", "float32", [-1, 3])])
    with pytest.raises(RuntimeError, match=r"returned outputs \['logits', 'probs'\]"):
        runtime.run({"x": X})


def test_more_declared_outputs_than_returned_fail_clearly(ts: dict[str, Path]) -> None:
    runtime = _load(
        TorchScriptRuntime,
        ts["bare"],
        inputs=[_spec("x", "float32", [-1, 4])],
        outputs=[_spec("a", "float32", [-1, 3]), _spec("b", "float32", [-1, 3])],
    )
    with pytest.raises(RuntimeError, match="returned 1 tensors"):
        runtime.run({"x": X})


def test_torchscript_info_unload_and_threads(ts: dict[str, Path]) -> None:
    runtime = _load(TorchScriptRuntime, ts["signed"])
    info = runtime.info()
    assert (info.backend, info.platform, info.accelerated) == ("torchscript", "pytorch_torchscript", False)
    assert info.details == {"device": "cpu"}
    assert runtime.device_memory_bytes() is None
    reference = Classifier().eval()
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            x = np.random.default_rng(seed).standard_normal((seed + 1, 4)).astype(np.float32)
            for _ in range(10):
                np.testing.assert_allclose(runtime.run({"features": x})["scores"], _eager(reference, x).numpy(), rtol=RTOL, atol=ATOL)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors[0]
    runtime.unload()
    assert runtime._module is None


def test_corrupt_torchscript_raises_on_load(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(RuntimeError, match="zip archive"):
        TorchScriptRuntime(path, CPU).load()


# ── torch.export ────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def pt2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("export")
    paths = {name: folder / f"{name}.pt2" for name in ("classifier", "embed", "dict")}
    batch = torch.export.Dim("batch")
    x = torch.from_numpy(X)
    torch.export.save(torch.export.export(Classifier().eval(), (x,), dynamic_shapes={"x": {0: batch}}), str(paths["classifier"]))
    ids = torch.zeros((3, 5), dtype=torch.int64)
    weights = torch.ones((3, 5))
    torch.export.save(
        torch.export.export(Embed().eval(), (ids, weights), dynamic_shapes={"ids": {0: batch}, "weights": {0: batch}}),
        str(paths["embed"]),
    )
    torch.export.save(torch.export.export(DictOutputs().eval(), (x,), dynamic_shapes={"x": {0: batch}}), str(paths["dict"]))
    return paths


def test_export_registered_for_pt2_files() -> None:
    assert runtime_class("torch_export") is TorchExportRuntime
    assert backend_for_path(Path("model.pt2")) == "torch_export"


def test_export_signature_read_from_the_program(pt2: dict[str, Path]) -> None:
    runtime = _load(TorchExportRuntime, pt2["classifier"])
    assert _triples(runtime.signature.inputs) == [("x", np.dtype(np.float32), (-1, 4))]
    assert len(runtime.signature.outputs) == 1
    out_spec = runtime.signature.outputs[0]
    assert (out_spec.dtype, out_spec.shape) == (np.dtype(np.float32), (-1, 3))
    embed = _load(TorchExportRuntime, pt2["embed"])
    assert _triples(embed.signature.inputs) == [
        ("ids", np.dtype(np.int64), (-1, 5)),
        ("weights", np.dtype(np.float32), (-1, 5)),
    ]
    assert [(s.dtype, s.shape) for s in embed.signature.outputs] == [(np.dtype(np.float32), (-1, 2))]
    # parameters and buffers are not inputs
    assert all(s.name not in ("table.weight", "p_table_weight") for s in embed.signature.inputs)


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_export_run_matches_eager_torch(pt2: dict[str, Path], batch: int) -> None:
    runtime = _load(TorchExportRuntime, pt2["classifier"])
    x = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
    out = runtime.run({"x": x})
    name = runtime.signature.outputs[0].name
    assert list(out) == [name]
    np.testing.assert_allclose(out[name], _eager(Classifier().eval(), x).numpy(), rtol=RTOL, atol=ATOL)

    embed = _load(TorchExportRuntime, pt2["embed"])
    rng = np.random.default_rng(batch + 100)
    ids = rng.integers(0, 10, (batch, 5), dtype=np.int64)
    weights = rng.random((batch, 5), dtype=np.float32)
    pooled = embed.run({"ids": ids, "weights": weights})[embed.signature.outputs[0].name]
    np.testing.assert_allclose(pooled, _eager(Embed().eval(), ids, weights).numpy(), rtol=RTOL, atol=1e-5)


def test_export_dict_outputs_are_named_by_their_keys(pt2: dict[str, Path]) -> None:
    runtime = _load(TorchExportRuntime, pt2["dict"])
    assert [(s.name, s.shape) for s in runtime.signature.outputs] == [("logits", (-1, 3)), ("probs", (-1, 3))]
    out = runtime.run({"x": X})
    ref = _eager(DictOutputs().eval(), X)
    np.testing.assert_allclose(out["logits"], ref["logits"].numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out["probs"], ref["probs"].numpy(), rtol=RTOL, atol=ATOL)


def test_export_info_and_unload(pt2: dict[str, Path]) -> None:
    runtime = _load(TorchExportRuntime, pt2["classifier"])
    info = runtime.info()
    assert (info.backend, info.platform, info.accelerated) == ("torch_export", "pytorch_export", False)
    runtime.unload()
    assert runtime._module is None


def test_torch_prepare_runs() -> None:
    TorchScriptRuntime.prepare("cpu")
    TorchExportRuntime.prepare("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA answers")
def test_cuda_facts_without_cuda() -> None:
    assert cuda_device_count() == 0
    assert cuda_total_bytes(0) is None
    assert cuda_used_bytes("cpu") is None
    assert cuda_used_bytes("cuda:0") is None


# ── through a real server ───────────────────────────────────────────────────

_TS_CONFIG = """\
inputs:
  - name: x
    datatype: FP32
    shape: [-1, 4]
outputs:
  - name: logits
    dtype: float32
    shape: [-1, 3]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    root = tmp_path_factory.mktemp("torch_server")
    repo = root / "repo"
    (repo / "mlp_ts" / "1").mkdir(parents=True)
    (repo / "mlp_ts" / "config.yaml").write_text(_TS_CONFIG)
    torch.jit.save(torch.jit.script(Mlp().eval()), str(repo / "mlp_ts" / "1" / "model.pt"))
    torch.jit.save(torch.jit.script(Mlp().eval()), str(repo / "bare_ts.pt"))
    batch = torch.export.Dim("batch")
    program = torch.export.export(Classifier().eval(), (torch.from_numpy(X),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(repo / "clf_export.pt2"))
    srv = BerthServer({"repository": str(repo)}, root)
    srv.start()
    yield srv
    assert srv.stop() == 0
    assert "Traceback" not in srv.logs()


def _models(client: Any) -> dict[str, dict[str, Any]]:
    response = client.get("/models")
    assert response.status_code == 200, response.text
    return {row["name"]: row for row in response.json()["models"]}


def test_server_serves_torchscript_with_a_config_signature(server: BerthServer) -> None:
    item = [0.5, -1.0, 2.0, 0.25]
    logits = _eager(Mlp().eval(), np.array([item], np.float32)).numpy()
    with server.client() as client:
        response = client.post("/infer", json={"model": "mlp_ts", "input": item})
        assert response.status_code == 200, response.text
        body = response.json()
        np.testing.assert_allclose(body["logits"], logits[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(body["probs"], softmax(logits)[0], rtol=1e-4, atol=1e-6)
        assert body["top_index"] == int(logits[0].argmax())
        assert body["used_gpu"] is torch.cuda.is_available()  # placed on the GPU when there is one
        row = _models(client)["mlp_ts"]
    assert row["state"] == "READY"
    assert row["backend"] == "torchscript" and row["platform"] == "pytorch_torchscript"
    assert row["accelerated"] is torch.cuda.is_available()
    assert row["signature"] == {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}],
    }


def test_server_serves_torchscript_without_a_signature(server: BerthServer) -> None:
    item = [1.0, 2.0, 3.0, 4.0]
    logits = _eager(Mlp().eval(), np.array([item], np.float32)).numpy()
    with server.client() as client:
        response = client.post("/infer", json={"model": "bare_ts", "input": item})
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["logits"], logits[0], rtol=1e-4, atol=1e-5)
        assert _models(client)["bare_ts"]["signature"]["inputs"][0]["name"] == "x"


def test_server_serves_torch_export_single_and_batch(server: BerthServer) -> None:
    reference = Classifier().eval()
    item = [0.1, 0.2, -0.3, 0.4]
    batch = np.random.default_rng(9).standard_normal((5, 4)).astype(np.float32)
    with server.client() as client:
        response = client.post("/infer", json={"model": "clf_export", "input": item})
        assert response.status_code == 200, response.text
        body = response.json()
        np.testing.assert_allclose(body["probs"], _eager(reference, np.array([item], np.float32)).numpy()[0], rtol=1e-4, atol=1e-6)
        assert "logits" not in body  # the program already returns probabilities
        assert body["batch_size"] == 1
        response = client.post("/infer-batch", json={"model": "clf_export", "batch": batch.tolist()})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["n"] == 5
        np.testing.assert_allclose(np.array(body["probs"]), _eager(reference, batch).numpy(), rtol=1e-4, atol=1e-6)
        assert body["top_indices"] == _eager(reference, batch).numpy().argmax(axis=1).tolist()
        row = _models(client)["clf_export"]
    assert row["backend"] == "torch_export" and row["platform"] == "pytorch_export"
    assert row["signature"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]
    assert row["signature"]["outputs"][0]["shape"] == [-1, 3]
    assert row["memory_measured"] is True
