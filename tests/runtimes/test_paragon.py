"""ParagonRuntime (Paragon JSON networks) and the torch -> Paragon exporter."""

from __future__ import annotations

import base64
import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from berth.runtimes import Placement, backend_for_path, runtime_class
from berth.runtimes.paragon import ParagonRuntime
from berth.runtimes.paragon_export import export_torch_mlp

PLACEMENT = Placement(device_id="cpu")


# ── helpers ─────────────────────────────────────────────────────────────────


def _write(path: Path, doc: Any) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _load(path: Path, **options: Any) -> ParagonRuntime:
    rt = ParagonRuntime(path, PLACEMENT, options)
    rt.load()
    return rt


def _neuron(act: str, bias: float = 0.0, conns: list[tuple[int, int, int, float]] = ()) -> dict[str, Any]:
    return {"b": bias, "a": act, "in": [{"layer": l, "x": x, "y": y, "w": w} for (l, x, y, w) in conns]}


def _input_layer(w: int, h: int) -> dict[str, Any]:
    return {"w": w, "h": h, "n": [[_neuron("linear") for _ in range(w)] for _ in range(h)]}


def _net(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"type": "float32", "layers": list(layers)}


def _reference_forward(net: dict[str, Any], grid: list[list[float]]) -> list[float]:
    """Paragon's forwardCPU, neuron by neuron, straight from the JSON (the test oracle)."""
    acts = {
        "relu": lambda v: v if v > 0 else 0.0,
        "leaky_relu": lambda v: v if v > 0 else 0.01 * v,
        "sigmoid": lambda v: 1 / (1 + math.exp(-v)),
        "tanh": math.tanh,
        "elu": lambda v: v if v >= 0 else math.exp(max(v, -10.0)) - 1,
        "linear": lambda v: v,
        "softmax": lambda v: v,
    }
    layers = net["layers"]
    values = [[[0.0] * L["w"] for _ in range(L["h"])] for L in layers]
    values[0] = [list(map(float, row)) for row in grid]
    for li in range(1, len(layers)):
        for y, row in enumerate(layers[li]["n"]):
            for x, n in enumerate(row):
                s = n["b"] + sum(values[c["layer"]][c["y"]][c["x"]] * c["w"] for c in n["in"])
                values[li][y][x] = acts[n["a"]](s)
    out = [v for row in values[-1] for v in row]
    if layers[-1]["n"][0][0]["a"] == "softmax":
        m = max(out)
        e = [math.exp(v - m) for v in out]
        out = [v / sum(e) for v in e]
    return out


# ── registry ────────────────────────────────────────────────────────────────


def test_registered_backend_and_suffix() -> None:
    assert runtime_class("paragon") is ParagonRuntime
    assert backend_for_path(Path("mnist_model.json")) == "paragon"
    assert ParagonRuntime.backend == "paragon"
    assert ParagonRuntime.platform == "paragon_json"


# ── hand-written networks, references computed by hand ─────────────────────

# one output neuron per activation: (activation, weight on x0, weight on x1, bias)
_TINY = [
    ("relu", 1.5, -0.5, 0.25),
    ("leaky_relu", -2.0, 1.0, -0.5),
    ("sigmoid", 0.75, 0.5, -0.1),
    ("tanh", 0.3, -1.2, 0.05),
    ("elu", 4.0, 3.0, -1.0),
    ("linear", -0.7, 0.2, 0.9),
]
_TINY_INPUTS = [(1.0, -2.0), (0.5, 0.25), (-3.0, 1.0), (0.0, 0.0), (-4.0, -6.0)]


def _tiny_net(specs: list[tuple[str, float, float, float]]) -> dict[str, Any]:
    out = [_neuron(a, b, [(0, 0, 0, w0), (0, 1, 0, w1)]) for (a, w0, w1, b) in specs]
    return _net(_input_layer(2, 1), {"w": len(out), "h": 1, "n": [out]})


def _by_hand(act: str, z: float) -> float:
    if act == "relu":
        return max(z, 0.0)
    if act == "leaky_relu":
        return z if z > 0 else 0.01 * z
    if act == "sigmoid":
        return 1.0 / (1.0 + math.exp(-z))
    if act == "tanh":
        return math.tanh(z)
    if act == "elu":
        return z if z >= 0 else math.exp(max(z, -10.0)) - 1.0
    assert act == "linear"
    return z


def test_tiny_network_every_activation(tmp_path: Path) -> None:
    rt = _load(_write(tmp_path / "tiny.json", _tiny_net(_TINY)))
    x = np.array([[list(p)] for p in _TINY_INPUTS], np.float32)  # [B, H=1, W=2]
    got = rt.run({"input": x})["output"]
    assert got.dtype == np.float32 and got.shape == (len(_TINY_INPUTS), len(_TINY))
    for b, (x0, x1) in enumerate(_TINY_INPUTS):
        for j, (act, w0, w1, bias) in enumerate(_TINY):
            want = _by_hand(act, bias + w0 * x0 + w1 * x1)
            assert got[b, j] == pytest.approx(want, abs=1e-6), (act, x0, x1)
    # the elu clamp is visible: z = -1 + 4*-4 + 3*-6 = -35 -> exp(-10) - 1
    assert got[4, 4] == pytest.approx(math.exp(-10) - 1, abs=1e-7)


@pytest.mark.parametrize("spec", _TINY, ids=[s[0] for s in _TINY])
def test_tiny_network_single_activation(tmp_path: Path, spec: tuple[str, float, float, float]) -> None:
    act, w0, w1, bias = spec
    other = (act, w1, w0, -bias)  # a second neuron with the same activation
    rt = _load(_write(tmp_path / f"{act}.json", _tiny_net([spec, other])))
    x = np.array(_TINY_INPUTS, np.float32)  # flat [B, H*W] form
    got = rt.run({"input": x})["output"]
    for b, (x0, x1) in enumerate(_TINY_INPUTS):
        assert got[b, 0] == pytest.approx(_by_hand(act, bias + w0 * x0 + w1 * x1), abs=1e-6)
        assert got[b, 1] == pytest.approx(_by_hand(act, -bias + w1 * x0 + w0 * x1), abs=1e-6)


def test_softmax_output_layer(tmp_path: Path) -> None:
    specs = [("softmax", 1.0, 0.0, 0.5), ("softmax", 0.0, 1.0, -0.5), ("softmax", 2.0, -1.0, 0.0)]
    rt = _load(_write(tmp_path / "sm.json", _tiny_net(specs)))
    x0, x1 = 0.3, -1.1
    got = rt.run({"input": np.array([[[x0, x1]]], np.float32)})["output"][0]
    z = [0.5 + x0, -0.5 + x1, 2 * x0 - x1]
    e = [math.exp(v) for v in z]
    assert got.tolist() == pytest.approx([v / sum(e) for v in e], abs=1e-6)
    assert rt.info().details["softmax_output"] is True


def test_softmax_is_decided_by_output_neuron_0_0_only(tmp_path: Path) -> None:
    # Paragon checks Neurons[0][0].Activation; 'softmax' elsewhere is identity per neuron
    specs = [("linear", 1.0, 0.0, 0.0), ("softmax", 0.0, 1.0, 0.0)]
    rt = _load(_write(tmp_path / "nosm.json", _tiny_net(specs)))
    got = rt.run({"input": np.array([[2.0, 3.0]], np.float32)})["output"][0]
    assert got.tolist() == pytest.approx([2.0, 3.0])


def test_output_grid_is_flattened_row_major(tmp_path: Path) -> None:
    # output layer 2 wide, 2 high: neuron (x, y) = bias 10*y + x + weight (x+1) on input x0
    rows = [[_neuron("linear", 10 * y + x, [(0, 0, 0, x + 1)]) for x in range(2)] for y in range(2)]
    net = _net(_input_layer(2, 1), {"w": 2, "h": 2, "n": rows})
    rt = _load(_write(tmp_path / "grid.json", net))
    got = rt.run({"input": np.array([[[1.0, 0.0]]], np.float32)})["output"][0]
    assert got.tolist() == pytest.approx([0 + 1, 1 + 2, 10 + 1, 11 + 2])
    assert rt.signature.outputs[0].shape == (-1, 4)


def test_input_grid_is_row_major_y_then_x(tmp_path: Path) -> None:
    # input 3 wide, 2 high; one neuron reading (x=2, y=1) and one reading (x=1, y=0)
    out = [_neuron("linear", 0.0, [(0, 2, 1, 1.0)]), _neuron("linear", 0.0, [(0, 1, 0, 1.0)])]
    rt = _load(_write(tmp_path / "in.json", _net(_input_layer(3, 2), {"w": 2, "h": 1, "n": [out]})))
    grid = np.array([[[0, 1, 2], [3, 4, 5]]], np.float32)  # [B, H, W]
    assert rt.run({"input": grid})["output"][0].tolist() == [5.0, 1.0]
    assert rt.run({"input": grid.reshape(1, 6)})["output"][0].tolist() == [5.0, 1.0]


def test_skip_connections_and_repeated_connections_add_up(tmp_path: Path) -> None:
    hidden = {"w": 1, "h": 1, "n": [[_neuron("relu", 0.0, [(0, 0, 0, 1.0)])]]}
    out = _neuron("linear", 0.25, [(1, 0, 0, 2.0), (0, 1, 0, 3.0), (0, 1, 0, 0.5)])
    rt = _load(_write(tmp_path / "skip.json", _net(_input_layer(2, 1), hidden, {"w": 1, "h": 1, "n": [[out]]})))
    got = rt.run({"input": np.array([[1.5, 2.0], [-1.0, 1.0]], np.float32)})["output"][:, 0]
    assert got.tolist() == pytest.approx([0.25 + 2 * 1.5 + 3.5 * 2.0, 0.25 + 0.0 + 3.5 * 1.0])


def test_neuron_without_inputs_outputs_its_activated_bias(tmp_path: Path) -> None:
    out = [_neuron("sigmoid", 0.0), _neuron("relu", -3.0)]
    rt = _load(_write(tmp_path / "noin.json", _net(_input_layer(2, 1), {"w": 2, "h": 1, "n": [out]})))
    got = rt.run({"input": np.zeros((3, 1, 2), np.float32)})["output"]
    assert got.tolist() == [[0.5, 0.0]] * 3


def test_tanh_paragon_v3_option(tmp_path: Path) -> None:
    net = _net(_input_layer(1, 1), {"w": 1, "h": 1, "n": [[_neuron("tanh", 0.0, [(0, 0, 0, 1.0)])]]})
    path = _write(tmp_path / "tanh.json", net)
    z = [-2.0, -0.5, -0.1, 0.1, 0.3, 1.0, 1.5]
    x = np.array(z, np.float32).reshape(-1, 1, 1)
    # v3 Tanh32: clip at |x| > 1, identity below 0.25, else sign * (1 - 2 / (1 + 2|x|))
    v3 = [-1.0, -1.0 + 2 / 2.0, -0.1, 0.1, 1 - 2 / 1.6, 1 - 2 / 3.0, 1.0]
    assert _load(path, tanh="paragon_v3").run({"input": x})["output"][:, 0].tolist() == pytest.approx(v3, abs=1e-6)
    exact = [math.tanh(v) for v in z]
    assert _load(path).run({"input": x})["output"][:, 0].tolist() == pytest.approx(exact, abs=1e-6)


# ── sparse (local, conv-like) connectivity and the gather path ──────────────


def _local_net(seed: int = 0) -> dict[str, Any]:
    """Paragon-style: 12x12 input, 12x12 layer with 3x3 local connections, then dense + skip."""
    rng = np.random.default_rng(seed)
    side = 12
    local_rows = []
    for y in range(side):
        row = []
        for x in range(side):
            conns = [
                (0, x + dx, y + dy, float(rng.normal()))
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
                if 0 <= x + dx < side and 0 <= y + dy < side
            ]
            row.append(_neuron("tanh", float(rng.normal()) * 0.1, conns))
        local_rows.append(row)
    dense = []
    for j in range(5):
        conns = [(1, x, y, float(rng.normal()) * 0.1) for y in range(side) for x in range(side)]
        conns += [(0, j, j, 0.5)]  # a skip connection to the input
        dense.append(_neuron("sigmoid", float(rng.normal()), conns))
    out = [_neuron("softmax", 0.0, [(2, i, 0, float(rng.normal())) for i in range(5)]) for _ in range(3)]
    return _net(
        _input_layer(side, side),
        {"w": side, "h": side, "n": local_rows},
        {"w": 5, "h": 1, "n": [dense]},
        {"w": 3, "h": 1, "n": [out]},
    )


def test_local_connectivity_dense_and_gather_paths_match_reference(tmp_path: Path) -> None:
    net = _local_net()
    path = _write(tmp_path / "local.json", net)
    x = np.random.default_rng(1).normal(size=(6, 12, 12)).astype(np.float32)
    want = np.array([_reference_forward(net, grid.tolist()) for grid in x])

    dense = _load(path)
    gather = _load(path, max_dense_elements=0)
    assert dense.info().details["layer_modes"] == ["dense", "dense", "dense"]
    assert gather.info().details["layer_modes"][0] == "gather(k=9)"
    for rt in (dense, gather):
        got = rt.run({"input": x})["output"]
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


# ── torch export round trip ─────────────────────────────────────────────────


def _torch_mlp_case() -> tuple[Any, tuple[int, int]]:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(12, 9),
        nn.ReLU(),
        nn.Linear(9, 7),
        nn.Tanh(),
        nn.Linear(7, 6),
        nn.LeakyReLU(),
        nn.Linear(6, 5, bias=False),
        nn.Sigmoid(),
        nn.Linear(5, 5),
        nn.ELU(),
        nn.Linear(5, 4),
        nn.Softmax(dim=1),
    ).eval()
    return model, (3, 4)


@pytest.mark.parametrize("encoding", ["base64", "object", "json"])
def test_exported_torch_mlp_matches_torch(tmp_path: Path, encoding: str) -> None:
    torch = pytest.importorskip("torch")
    model, (h, w) = _torch_mlp_case()
    path = tmp_path / "mlp.json"
    export_torch_mlp(model, (h, w), path, model_name="toy", state_encoding=encoding)

    doc = json.loads(path.read_text())
    assert set(doc) == {"model", "state"} and doc["model"] == "toy"
    assert isinstance(doc["state"], dict if encoding == "object" else str)

    rt = _load(path)
    x = torch.randn(16, h, w)
    with torch.no_grad():
        want = model(x).numpy()
    got = rt.run({"input": x.numpy()})["output"]
    assert got.dtype == np.float32 and got.shape == (16, 4)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(rt.run({"input": x.numpy().reshape(16, h * w)})["output"], want, atol=1e-5)
    assert rt.info().details["model"] == "toy"


def test_exported_layout_is_marshaljsonmodel(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(6, 2), torch.nn.Softmax(dim=-1))
    path = tmp_path / "layout.json"
    export_torch_mlp(model, (2, 3), path)  # default: Go's []byte -> base64 string
    doc = json.loads(path.read_text())
    state = json.loads(base64.b64decode(doc["state"]))
    assert doc["model"] == "mnist"
    assert list(state) == ["type", "layers"] and state["type"] == "float32"
    inp, out = state["layers"]
    assert (inp["w"], inp["h"], len(inp["n"]), len(inp["n"][0])) == (3, 2, 2, 3)
    assert inp["n"][1][2] == {"b": 0.0, "a": "linear", "in": []}
    assert (out["w"], out["h"]) == (2, 1)
    n1 = out["n"][0][1]
    assert list(n1) == ["b", "a", "in"] and n1["a"] == "softmax"
    assert n1["b"] == pytest.approx(float(model[0].bias[1].detach()))
    # Paragon's fully connected order: y outer, x inner; feature i = (x=i%3, y=i//3)
    assert [(c["layer"], c["x"], c["y"]) for c in n1["in"]] == [(0, i % 3, i // 3) for i in range(6)]
    assert [list(c) for c in n1["in"][:1]] == [["layer", "x", "y", "w"]]
    assert [c["w"] for c in n1["in"]] == pytest.approx(model[0].weight[1].detach().tolist())


def test_digits_classifier_shape(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1)
    ).eval()
    path = tmp_path / "digits.json"
    export_torch_mlp(model, (28, 28), path)
    rt = _load(path)
    sig = rt.signature
    assert sig.inputs[0].name == "input" and sig.inputs[0].shape == (-1, 28, 28)
    assert sig.outputs[0].name == "output" and sig.outputs[0].shape == (-1, 10)
    x = torch.rand(32, 28, 28)
    with torch.no_grad():
        want = model(x).numpy()
    got = rt.run({"input": x.numpy()})["output"]
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    details = rt.info().details
    assert details["layers"] == [[28, 28], [128, 1], [64, 1], [10, 1]]
    assert details["connections"] == 784 * 128 + 128 * 64 + 64 * 10


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda nn: nn.Sequential(nn.Linear(6, 3), nn.LeakyReLU(0.2)), "slope"),
        (lambda nn: nn.Sequential(nn.Linear(6, 3), nn.Softmax(dim=1), nn.Linear(3, 2)), "last step"),
        (lambda nn: nn.Sequential(nn.Linear(6, 3), nn.ReLU(), nn.ReLU()), "two activations"),
        (lambda nn: nn.Sequential(nn.ReLU(), nn.Linear(6, 3)), "before the first"),
        (lambda nn: nn.Sequential(nn.Linear(5, 3)), "expects 5 inputs"),
        (lambda nn: nn.Sequential(nn.Linear(6, 3), nn.GELU()), "unsupported module GELU"),
    ],
)
def test_exporter_refuses_what_paragon_cannot_express(tmp_path: Path, build: Any, match: str) -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=match):
        export_torch_mlp(build(torch.nn), (2, 3), tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


# ── wrapper forms ───────────────────────────────────────────────────────────


def test_bare_and_wrapped_state_forms_load_the_same(tmp_path: Path) -> None:
    net = _tiny_net(_TINY)
    text = json.dumps(net)
    forms = {
        "bare": net,
        "nested": {"model": "mnist", "state": net},
        "string": {"model": "mnist", "state": text},
        # what Go's json.Marshal writes for the []byte from MarshalJSONModel
        "base64": {"model": "mnist", "state": base64.b64encode(text.encode()).decode()},
    }
    x = np.array(_TINY_INPUTS, np.float32)
    outputs = {}
    for name, doc in forms.items():
        rt = _load(_write(tmp_path / f"{name}.json", doc))
        outputs[name] = rt.run({"input": x})["output"]
        assert rt.info().details["model"] == (None if name == "bare" else "mnist")
    for name in forms:
        np.testing.assert_array_equal(outputs[name], outputs["bare"])


# ── malformed files ─────────────────────────────────────────────────────────


def _bad_conn(**fields: Any) -> dict[str, Any]:
    net = _tiny_net(_TINY[:1])
    net["layers"][1]["n"][0][0]["in"][1].update(fields)
    return net


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"model": "m", "state": "{broken"}', "'state' string is not valid JSON"),
        ({"model": "m", "state": "!!not base64!!"}, "neither JSON text nor base64"),
        ([1, 2, 3], "top level must be a JSON object"),
        ({"model": "m"}, "neither 'layers' nor 'state'"),
        (_tiny_net([("swish", 1.0, 1.0, 0.0)]), "unknown activation 'swish'"),
        (_tiny_net([("", 1.0, 1.0, 0.0)]), "unknown activation ''"),
        (_bad_conn(x=5), r"nonexistent neuron \(layer=0, x=5, y=0\)"),
        (_bad_conn(y=-1), "nonexistent neuron"),
        (_bad_conn(layer=9), "nonexistent layer 9"),
        (_bad_conn(layer=1, x=0), "not feed-forward"),
        (_bad_conn(w="0.5"), "weight 'w' must be a finite number"),
        (_bad_conn(x=1.0), "must be integers"),
        ({**_tiny_net(_TINY), "type": "int8"}, "integer"),
        ({**_tiny_net(_TINY), "type": "complex128"}, "unknown network type"),
        (_net(_input_layer(2, 1)), "at least one more layer"),
        (_net(_input_layer(2, 1), {"w": 2, "h": 1, "n": [[_neuron("relu")]]}), r"row 0 must hold w=2"),
        (_net(_input_layer(2, 1), {"w": 1, "h": 2, "n": [[_neuron("relu")]]}), "list of h=2 rows"),
        (_net(_input_layer(2, 1), {"w": 0, "h": 1, "n": [[]]}), "positive integer"),
    ],
)
def test_malformed_files_raise_clear_value_errors(tmp_path: Path, doc: Any, match: str) -> None:
    path = _write(tmp_path / "bad.json", doc)
    with pytest.raises(ValueError, match=match) as info:
        _load(path)
    assert "bad.json" in str(info.value) and str(tmp_path) not in str(info.value)


def test_unknown_activation_fallback_option(tmp_path: Path) -> None:
    path = _write(tmp_path / "swish.json", _tiny_net([("swish", 1.0, 2.0, 0.5)]))
    rt = _load(path, unknown_activation="linear")  # Paragon's own behaviour: identity
    assert rt.run({"input": np.array([[1.0, -3.0]], np.float32)})["output"].tolist() == [[0.5 + 1.0 - 6.0]]


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.json", _tiny_net(_TINY))
    assert path.stat().st_size > 200
    with pytest.raises(ValueError, match=r"over the 0.0001 MiB limit \(option max_file_mb\)"):
        _load(path, max_file_mb=0.0001)
    _load(path, max_file_mb=1)  # fine under a normal limit


def test_bad_options_raise(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.json", _tiny_net(_TINY))
    for options, match in [({"tanh": "fast"}, "option tanh"), ({"max_file_mb": 0}, "positive")]:
        with pytest.raises(ValueError, match=match):
            _load(path, **options)


# ── signature, run contract, threads ────────────────────────────────────────


def test_signature_shapes(tmp_path: Path) -> None:
    rows = [[_neuron("relu", 0.0, [(0, 0, 0, 1.0)]) for _ in range(5)] for _ in range(2)]
    rt = _load(_write(tmp_path / "sig.json", _net(_input_layer(4, 3), {"w": 5, "h": 2, "n": rows})))
    (inp,), (out,) = rt.signature.inputs, rt.signature.outputs
    assert (inp.name, inp.dtype, inp.shape) == ("input", np.dtype(np.float32), (-1, 3, 4))  # [-1, H, W]
    assert (out.name, out.dtype, out.shape) == ("output", np.dtype(np.float32), (-1, 10))  # [-1, W*H]
    assert rt.warmup_inputs(2)["input"].shape == (2, 3, 4)
    assert rt.run(rt.warmup_inputs(2))["output"].shape == (2, 10)
    assert rt.run({"input": np.zeros((0, 3, 4), np.float32)})["output"].shape == (0, 10)


def test_signature_before_load_and_after_unload(tmp_path: Path) -> None:
    rt = ParagonRuntime(_write(tmp_path / "t.json", _tiny_net(_TINY)), PLACEMENT)
    with pytest.raises(RuntimeError):
        _ = rt.signature
    rt.load()
    rt.unload()
    with pytest.raises(RuntimeError):
        rt.run({"input": np.zeros((1, 2), np.float32)})


@pytest.mark.parametrize(
    ("feeds", "match"),
    [
        ({"input": np.zeros((2, 3), np.float32)}, r"shape \[batch, 1, 2\] or \[batch, 2\]"),
        ({"input": np.zeros((2, 2, 1), np.float32)}, "must have shape"),
        ({"x": np.zeros((2, 2), np.float32)}, "missing input 'input'"),
        ({"input": np.array([["a", "b"]])}, "numeric"),
    ],
)
def test_run_rejects_bad_inputs(tmp_path: Path, feeds: dict[str, np.ndarray], match: str) -> None:
    rt = _load(_write(tmp_path / "t.json", _tiny_net(_TINY)))
    with pytest.raises(ValueError, match=match):
        rt.run(feeds)


def test_run_accepts_float64_and_does_not_mutate_inputs(tmp_path: Path) -> None:
    rt = _load(_write(tmp_path / "t.json", _tiny_net(_TINY)))
    x = np.array(_TINY_INPUTS, np.float64)
    before = x.copy()
    a = rt.run({"input": x})["output"]
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(a, rt.run({"input": x.astype(np.float32)})["output"])


def test_concurrent_runs_agree(tmp_path: Path) -> None:
    net = _local_net(seed=5)
    rt = _load(_write(tmp_path / "local.json", net), max_dense_elements=0)
    rng = np.random.default_rng(2)
    batches = [rng.normal(size=(4, 12, 12)).astype(np.float32) for _ in range(8)]
    expected = [rt.run({"input": b})["output"] for b in batches]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for _ in range(20):
                np.testing.assert_array_equal(rt.run({"input": batches[i]})["output"], expected[i])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
