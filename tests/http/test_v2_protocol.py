"""The V2 REST protocol on the wire (raw httpx against a real server): datatypes in
JSON and binary, the binary response layout, health and metadata documents, and a
matrix of bad requests that must each get a 4xx with a message."""

from __future__ import annotations

import struct
import textwrap
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import orjson
import pytest

from conftest import BerthServer
from models import softmax, write_linear_softmax

# A Python-class model with one input and one output of each datatype family.
KINDS_MODEL = '''
import numpy as np


class Model:
    inputs = [
        ("f", "float32", [-1, 3]),
        ("i", "int64", [-1, 2]),
        ("b", "bool", [-1, 2]),
        ("s", "object", [-1, 1]),
        ("h", "float16", [-1, 2]),
    ]
    outputs = [
        ("f2", "float32", [-1, 3]),
        ("isum", "int64", [-1, 1]),
        ("bnot", "bool", [-1, 2]),
        ("sup", "object", [-1, 1]),
        ("h2", "float16", [-1, 2]),
    ]

    def load(self, model_dir, device):
        pass

    def predict(self, inputs):
        s = inputs["s"]
        up = np.empty(s.shape, dtype=object)
        for index, value in np.ndenumerate(s):
            up[index] = bytes(value).upper() + b"!"
        return {
            "f2": inputs["f"] * np.float32(2),
            "isum": inputs["i"].sum(axis=1, keepdims=True),
            "bnot": ~inputs["b"],
            "sup": up,
            "h2": inputs["h"] * np.float16(2),
        }
'''

# A model whose tensors do not batch: fixed leading dimension (Triton max_batch_size 0).
FIXED_MODEL = '''
import numpy as np


class Model:
    inputs = [("x", "float32", [2, 3])]
    outputs = [("y", "float32", [2, 3])]

    def load(self, model_dir, device):
        pass

    def predict(self, inputs):
        return {"y": inputs["x"] + np.float32(1)}
'''


def write_class_model(folder: Path, source: str, config: str = "warmup: false\n") -> None:
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "1" / "model.py").write_text(textwrap.dedent(source))
    (folder / "config.yaml").write_text(config)


# A single BOOL input, for raw binary requests of that datatype.
FLAGS_MODEL = '''
class Model:
    inputs = [("b", "bool", [-1, 3])]
    outputs = [("n", "bool", [-1, 3])]

    def load(self, model_dir, device):
        pass

    def predict(self, inputs):
        return {"n": ~inputs["b"]}
'''


def build_repository(repo: Path) -> dict[str, np.ndarray]:
    """lin (ONNX, x[N,4] → probs[N,3]); ver (ONNX, versions 1 and 2 with different
    weights); kinds, fixed and flags (Python classes). Returns the ONNX weights by key."""
    weights = {
        "lin": write_linear_softmax(repo / "lin" / "1" / "model.onnx", seed=3),
        "ver1": write_linear_softmax(repo / "ver" / "1" / "model.onnx", seed=11),
        "ver2": write_linear_softmax(repo / "ver" / "2" / "model.onnx", seed=22),
    }
    (repo / "lin" / "config.yaml").write_text("max_queue_delay_ms: 0.5\nmax_batch_size: 16\n")
    write_class_model(repo / "kinds", KINDS_MODEL)
    write_class_model(repo / "fixed", FIXED_MODEL)
    write_class_model(repo / "flags", FLAGS_MODEL)
    return weights


class Site:
    def __init__(self, server: BerthServer, weights: dict[str, np.ndarray]) -> None:
        self.server = server
        self.weights = weights
        self.client = server.client()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("v2_protocol")
    weights = build_repository(root / "models")
    server = BerthServer({"repository": "models", "models": {"lin": {"preload": True}}}, root).start()
    site = Site(server, weights)
    yield site
    site.client.close()
    server.stop()


# ── helpers ──────────────────────────────────────────────────────────────────
def binary_request(inputs: list[tuple[str, str, list[int], bytes]], **extra: Any) -> tuple[bytes, dict[str, str]]:
    """A V2 request whose inputs all travel in the binary section."""
    document = {
        "inputs": [
            {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": len(raw)}}
            for name, datatype, shape, raw in inputs
        ],
        **extra,
    }
    header = orjson.dumps(document)
    body = header + b"".join(raw for *_, raw in inputs)
    return body, {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}


def serialize_bytes(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def split_binary_response(response: httpx.Response) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The JSON part and each binary output's bytes, following the layout rules."""
    length = int(response.headers["inference-header-content-length"])
    document = orjson.loads(response.content[:length])
    blobs: dict[str, bytes] = {}
    offset = length
    for output in document["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is not None:
            blobs[output["name"]] = response.content[offset : offset + size]
            offset += size
    assert offset == len(response.content), "binary outputs must fill the rest of the body exactly"
    return document, blobs


def deserialize_bytes(raw: bytes) -> list[bytes]:
    values, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        values.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return values


def kinds_arrays(rows: int = 2) -> dict[str, np.ndarray]:
    return {
        "f": np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) / 4,
        "i": np.arange(rows * 2, dtype=np.int64).reshape(rows, 2) * 10**12,
        "b": np.array([[True, False]] * rows),
        "s": np.array([[f"row{r}é".encode()] for r in range(rows)], dtype=object),
        "h": np.linspace(-1, 1, rows * 2).astype(np.float16).reshape(rows, 2),
    }


# ── health and metadata ─────────────────────────────────────────────────────
def test_health_and_server_metadata(site: Site) -> None:
    live = site.client.get("/v2/health/live")
    assert live.status_code == 200 and live.json() == {"live": True}
    ready = site.client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    meta = site.client.get("/v2").json()
    assert meta["name"] == "berth" and meta["version"]
    assert set(meta["extensions"]) == {"binary_tensor_data", "model_repository", "statistics", "model_configuration"}


def test_model_metadata_marks_variable_dims(site: Site) -> None:
    meta = site.client.get("/v2/models/kinds").json()
    assert meta["name"] == "kinds" and meta["versions"] == ["1"] and meta["platform"] == "python"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("f", "FP32", [-1, 3]), ("i", "INT64", [-1, 2]), ("b", "BOOL", [-1, 2]), ("s", "BYTES", [-1, 1]), ("h", "FP16", [-1, 2]),
    ]
    assert [t["datatype"] for t in meta["outputs"]] == ["FP32", "INT64", "BOOL", "BYTES", "FP16"]
    ver = site.client.get("/v2/models/ver/versions/1").json()
    assert ver["versions"] == ["1", "2"] and ver["platform"] == "onnx_onnxv1"


def test_config_of_a_model_that_does_not_batch(site: Site) -> None:
    config = site.client.get("/v2/models/fixed/config").json()
    assert config["max_batch_size"] == 0 and "dynamic_batching" not in config
    assert config["input"] == [
        {"name": "x", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [2, 3],
         "is_shape_tensor": False, "allow_ragged_batch": False, "optional": False}
    ]
    assert site.client.get("/v2/models/kinds/config").json()["input"][3]["data_type"] == "TYPE_STRING"
    fixed = site.client.post("/v2/models/fixed/infer", json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [0] * 6}]})
    assert fixed.status_code == 200 and fixed.json()["outputs"][0]["data"] == [1.0] * 6


def test_config_parses_as_triton_model_config_proto(site: Site) -> None:
    json_format = pytest.importorskip("google.protobuf.json_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    for model in ("lin", "kinds", "fixed"):
        message = json_format.ParseDict(site.client.get(f"/v2/models/{model}/config").json(), model_config_pb2.ModelConfig())
        assert message.name == model  # every field name and enum value is Triton's


# ── inference: datatypes ────────────────────────────────────────────────────
def test_every_datatype_in_binary_round_trips(site: Site) -> None:
    arrays = kinds_arrays()
    body, headers = binary_request(
        [
            ("f", "FP32", [2, 3], arrays["f"].tobytes()),
            ("i", "INT64", [2, 2], arrays["i"].tobytes()),
            ("b", "BOOL", [2, 2], arrays["b"].tobytes()),
            ("s", "BYTES", [2, 1], serialize_bytes(list(arrays["s"].reshape(-1)))),
            ("h", "FP16", [2, 2], arrays["h"].tobytes()),
        ],
        id="req-7",
        parameters={"binary_data_output": True},
    )
    response = site.client.post("/v2/models/kinds/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert int(response.headers["content-length"]) == len(response.content)
    document, blobs = split_binary_response(response)
    assert document["model_name"] == "kinds" and document["model_version"] == "1" and document["id"] == "req-7"
    assert [(o["name"], o["datatype"], o["shape"]) for o in document["outputs"]] == [
        ("f2", "FP32", [2, 3]), ("isum", "INT64", [2, 1]), ("bnot", "BOOL", [2, 2]), ("sup", "BYTES", [2, 1]), ("h2", "FP16", [2, 2]),
    ]
    assert all("data" not in o for o in document["outputs"])
    np.testing.assert_array_equal(np.frombuffer(blobs["f2"], "<f4").reshape(2, 3), arrays["f"] * 2)
    np.testing.assert_array_equal(np.frombuffer(blobs["isum"], "<i8"), arrays["i"].sum(axis=1))
    assert blobs["bnot"] == bytes([0, 1, 0, 1])  # one byte per BOOL, 0 or 1
    assert deserialize_bytes(blobs["sup"]) == ["row0é".encode().upper() + b"!", "row1é".encode().upper() + b"!"]
    np.testing.assert_array_equal(np.frombuffer(blobs["h2"], "<f2").reshape(2, 2), arrays["h"] * np.float16(2))


def test_json_data_nested_or_flat_and_json_outputs(site: Site) -> None:
    arrays = kinds_arrays()
    request = {
        "inputs": [
            {"name": "f", "datatype": "FP32", "shape": [2, 3], "data": arrays["f"].tolist()},  # nested
            {"name": "i", "datatype": "INT64", "shape": [2, 2], "data": arrays["i"].reshape(-1).tolist()},  # flat
            {"name": "b", "datatype": "BOOL", "shape": [2, 2], "data": [True, False, True, False]},
            {"name": "s", "datatype": "BYTES", "shape": [2, 1], "data": [["row0é"], ["row1é"]]},
            {"name": "h", "datatype": "FP16", "shape": [2, 2], "parameters": {"binary_data_size": 8}},
        ],
        "outputs": [{"name": "sup"}, {"name": "isum"}, {"name": "bnot"}, {"name": "f2", "parameters": {"binary_data": False}}],
    }
    header = orjson.dumps(request)
    response = site.client.post(
        "/v2/models/kinds/infer", content=header + arrays["h"].tobytes(), headers={"Inference-Header-Content-Length": str(len(header))}
    )
    assert response.status_code == 200, response.text
    assert "inference-header-content-length" not in response.headers
    assert response.headers["content-type"] == "application/json"
    outputs = response.json()["outputs"]
    assert [o["name"] for o in outputs] == ["sup", "isum", "bnot", "f2"]  # the requested subset, in request order
    by_name = {o["name"]: o for o in outputs}
    assert by_name["sup"]["data"] == ["ROW0é!", "ROW1é!"]  # bytes.upper() leaves non-ASCII alone
    assert by_name["isum"]["data"] == [10**12, 5 * 10**12]  # int64 exact, flat row-major
    assert by_name["bnot"]["data"] == [False, True, False, True]
    assert by_name["f2"]["data"] == (arrays["f"] * 2).reshape(-1).tolist() and by_name["f2"]["shape"] == [2, 3]


def test_onnx_model_json_and_binary_outputs_agree(site: Site) -> None:
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    expected = softmax(x @ site.weights["lin"])
    as_json = site.client.post(
        "/v2/models/lin/infer",
        json={"id": "a", "parameters": {"timeout": 5_000_000}, "inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 4], "data": x.tolist()}]},
    )
    assert as_json.status_code == 200
    output = as_json.json()["outputs"][0]
    assert output["name"] == "probs" and output["shape"] == [3, 3] and output["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(output["data"]).reshape(3, 3), expected, rtol=1e-5, atol=1e-6)
    body, headers = binary_request([("x", "FP32", [3, 4], x.tobytes())], outputs=[{"name": "probs", "parameters": {"binary_data": True}}])
    document, blobs = split_binary_response(site.client.post("/v2/models/lin/infer", content=body, headers=headers))
    assert "id" not in document
    assert document["outputs"][0]["parameters"]["binary_data_size"] == 36
    np.testing.assert_allclose(np.frombuffer(blobs["probs"], "<f4").reshape(3, 3), expected, rtol=1e-5, atol=1e-6)


def test_versions_have_their_own_weights(site: Site) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    for version in ("1", "2"):
        response = site.client.post(f"/v2/models/ver/versions/{version}/infer", json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.tolist()}]})
        assert response.status_code == 200 and response.json()["model_version"] == version
        np.testing.assert_allclose(response.json()["outputs"][0]["data"], softmax(x @ site.weights[f"ver{version}"])[0], rtol=1e-5)
    default = site.client.post("/v2/models/ver/infer", json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}]})
    assert default.json()["model_version"] == "2"  # the highest version serves by default


def test_raw_binary_request_for_a_single_input_model(site: Site) -> None:
    x = np.array([[0.5, -1.0, 2.0, 0.25]], dtype=np.float32)
    response = site.client.post("/v2/models/lin/infer", content=x.tobytes(), headers={"Inference-Header-Content-Length": "0"})
    assert response.status_code == 200, response.text
    document, blobs = split_binary_response(response)
    assert document["outputs"][0]["shape"] == [1, 3]
    np.testing.assert_allclose(np.frombuffer(blobs["probs"], "<f4"), softmax(x @ site.weights["lin"])[0], rtol=1e-5)
    wrong = site.client.post("/v2/models/lin/infer", content=b"\0" * 12, headers={"Inference-Header-Content-Length": "0"})
    assert wrong.status_code == 400 and "16 bytes" in wrong.json()["error"]


def test_raw_binary_request_for_a_bool_input(site: Site) -> None:
    headers = {"Inference-Header-Content-Length": "0"}
    response = site.client.post("/v2/models/flags/infer", content=b"\x01\x00\x01", headers=headers)
    assert response.status_code == 200, response.text
    document, blobs = split_binary_response(response)
    assert document["outputs"][0]["datatype"] == "BOOL" and document["outputs"][0]["shape"] == [1, 3]
    assert blobs["n"] == b"\x00\x01\x00"
    refused = site.client.post("/v2/models/flags/infer", content=b"\x01\x07\x00", headers=headers)
    assert refused.status_code == 400 and "BOOL elements must be bytes 0 or 1" in refused.json()["error"]


def test_model_ready_and_not_ready(site: Site) -> None:
    assert site.client.get("/v2/models/lin/ready").json() == {"name": "lin", "ready": True}
    site.client.post("/v2/repository/models/fixed/unload")
    not_ready = site.client.get("/v2/models/fixed/versions/1/ready")
    assert not_ready.status_code == 503 and not_ready.json()["ready"] is False


# ── bad requests ────────────────────────────────────────────────────────────
def _lin(data: Any = None, **tensor: Any) -> dict[str, Any]:
    item = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0] if data is None else data}
    item.update(tensor)
    return {"inputs": [item]}


JSON_CASES: list[tuple[str, str, Any, int, str]] = [
    ("wrong datatype", "lin", _lin(datatype="BYTES", data=["a", "b", "c", "d"]), 400, "must be FP32"),
    ("unknown datatype", "lin", _lin(datatype="FLOAT"), 400, "unknown datatype"),
    ("bf16", "lin", _lin(datatype="BF16"), 400, "BF16"),
    ("wrong shape", "lin", _lin(shape=[2, 2]), 400, "must have shape"),
    ("data longer than shape", "lin", _lin(data=[1, 2, 3, 4, 5]), 400, "has 5 values"),
    ("ragged data", "lin", _lin(data=[[1, 2], [3]], shape=[2, 2]), 400, "rectangular"),
    ("mixed nesting", "lin", _lin(data=[1, [2], 3, 4]), 400, "rectangular"),
    ("string in numbers", "lin", _lin(data=[1, 2, "3", 4]), 400, "only numbers"),
    ("boolean in numbers", "lin", _lin(data=[1, True, 3, 4]), 400, "boolean"),
    ("numeric string first in nested data", "lin", _lin(data=[["1", 2, 3, 4]]), 400, "only numbers"),
    ("null in numbers", "lin", _lin(data=[1, None, 3, 4]), 400, "only numbers"),
    ("boolean beside a boolean parameter", "lin", {**_lin(data=[[1, 2], [False, 4]], shape=[1, 4]), "parameters": {"binary_data_output": True}}, 400, "boolean"),
    ("name too long", "lin", _lin(name="x" * 300), 400, "1 to 256 characters"),
    ("number out of range", "lin", _lin(data=[1, 2, 3, 1e300]), 400, "out of range"),
    ("negative dim", "lin", _lin(shape=[1, -4]), 400, "non-negative"),
    ("shape not integers", "lin", _lin(shape=[1, 4.0]), 400, "non-negative integers"),
    ("huge shape product", "lin", _lin(shape=[2**31, 2**31, 2**31]), 413, "more than"),
    ("missing input", "kinds", {"inputs": [{"name": "f", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}, 400, "needs input"),
    ("unknown input", "lin", {"inputs": [_lin()["inputs"][0], {"name": "z", "datatype": "FP32", "shape": [1], "data": [1]}]}, 400, "no input named 'z'"),
    ("duplicate input", "lin", {"inputs": [_lin()["inputs"][0], _lin()["inputs"][0]]}, 400, "more than once"),
    ("no inputs", "lin", {"inputs": []}, 400, "non-empty"),
    ("no data", "lin", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4]}]}, 400, "neither 'data'"),
    ("fp16 in JSON", "kinds", {"inputs": [{"name": "h", "datatype": "FP16", "shape": [1, 2], "data": [1.0, 2.0]}]}, 400, "no JSON form"),
    ("int with fraction", "kinds", {"inputs": [{"name": "i", "datatype": "INT64", "shape": [1, 2], "data": [1, 2.5]}]}, 400, "integers"),
    ("int8 out of range", "kinds", {"inputs": [{"name": "i", "datatype": "INT8", "shape": [1, 2], "data": [1, 300]}]}, 400, "out of range"),
    ("bool as numbers", "kinds", {"inputs": [{"name": "b", "datatype": "BOOL", "shape": [1, 2], "data": [1, 0]}]}, 400, "true/false"),
    ("bytes not strings", "kinds", {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1, 1], "data": [5]}]}, 400, "strings"),
    ("unknown requested output", "lin", {**_lin(), "outputs": [{"name": "nope"}]}, 400, "no output named 'nope'"),
    ("classification", "lin", {**_lin(), "outputs": [{"name": "probs", "parameters": {"classification": 2}}]}, 400, "classification"),
    ("id not a string", "lin", {**_lin(), "id": 5}, 400, "'id'"),
    ("inputs not a list", "lin", {"inputs": {"x": 1}}, 400, "'inputs'"),
    ("timeout not an int", "lin", {**_lin(), "parameters": {"timeout": "soon"}}, 400, "timeout"),
    ("unknown model", "nosuch", _lin(), 404, "unknown model"),
]


@pytest.mark.parametrize("label,model,payload,status,needle", JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_bad_json_request(site: Site, label: str, model: str, payload: Any, status: int, needle: str) -> None:
    response = site.client.post(f"/v2/models/{model}/infer", content=orjson.dumps(payload))
    assert response.status_code == status, response.text
    body = response.json()
    assert needle in body["error"], body
    assert body["request_id"] and response.headers["x-request-id"] == body["request_id"]


RAW_CASES: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
    ("not JSON", "/v2/models/lin/infer", b"{nope", {}, 400, "not valid JSON"),
    ("JSON array", "/v2/models/lin/infer", b"[1, 2]", {}, 400, "JSON object"),
    ("deep JSON", "/v2/models/lin/infer", b"[" * 5000 + b"]" * 5000, {}, 400, "not valid JSON"),
    ("garbage bytes", "/v2/models/lin/infer", bytes(range(256)), {}, 400, "not valid JSON"),
    ("empty body", "/v2/models/lin/infer", b"", {}, 400, "no JSON part"),
    ("unknown version", "/v2/models/lin/versions/9/infer", orjson.dumps(_lin()), {}, 404, "no version '9'"),
    ("version not a number", "/v2/models/lin/versions/latest/infer", orjson.dumps(_lin()), {}, 404, "no version"),
    ("bad infer path", "/v2/models/lin/extra/infer", orjson.dumps(_lin()), {}, 404, "no endpoint"),
    ("header longer than body", "/v2/models/lin/infer", orjson.dumps(_lin()), {"Inference-Header-Content-Length": "100000"}, 400, "has only"),
    ("header not numeric", "/v2/models/lin/infer", orjson.dumps(_lin()), {"Inference-Header-Content-Length": "12abc"}, 400, "non-negative integer"),
    ("header negative", "/v2/models/lin/infer", orjson.dumps(_lin()), {"Inference-Header-Content-Length": "-5"}, 400, "non-negative integer"),
]


@pytest.mark.parametrize("label,path,body,headers,status,needle", RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_bad_raw_request(site: Site, label: str, path: str, body: bytes, headers: dict[str, str], status: int, needle: str) -> None:
    response = site.client.post(path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]


def _binary_case(
    payload: bytes, sizes: list[int], name: str = "x", datatype: str = "FP32", shape: list[int] | None = None, header: bool = True, **tensor: Any
) -> tuple[bytes, dict[str, str]]:
    document = {
        "inputs": [
            {"name": name, "datatype": datatype, "shape": shape or [1, 4], **tensor, "parameters": {"binary_data_size": size}}
            for size in sizes
        ]
    }
    head = orjson.dumps(document)
    return head + payload, ({"Inference-Header-Content-Length": str(len(head))} if header else {})


BINARY_CASES: list[tuple[str, str, tuple[bytes, dict[str, str]], str]] = [
    ("size short of shape", "lin", _binary_case(b"\0" * 12, [12]), "needs 16"),
    ("sizes exceed body", "lin", _binary_case(b"\0" * 8, [16]), "binary section has only 8"),
    ("bytes left over", "lin", _binary_case(b"\0" * 20, [16]), "add up to 16"),
    ("no header with binary", "lin", _binary_case(b"", [16], header=False), "no Inference-Header-Content-Length"),
    ("negative size", "lin", _binary_case(b"", [-1]), "non-negative"),
    ("size not an int", "lin", _binary_case(b"", ["16"]), "non-negative"),  # type: ignore[list-item]
    ("bool not 0/1", "kinds", _binary_case(b"\x00\x07", [2], "b", "BOOL", [1, 2]), "0 or 1"),
    ("bytes length past end", "kinds", _binary_case(struct.pack("<I", 99) + b"abcd", [8], "s", "BYTES", [1, 1]), "past the end"),
    ("bytes too few for count", "kinds", _binary_case(struct.pack("<I", 0), [4], "s", "BYTES", [1000, 1]), "too few"),
    ("bytes left over after elements", "kinds", _binary_case(struct.pack("<I", 1) + b"ab", [6], "s", "BYTES", [1, 1]), "left over"),
    ("data and binary both", "lin", _binary_case(b"\0" * 16, [16], data=[1, 2, 3, 4]), "both"),
    ("fp16 size odd", "kinds", _binary_case(b"\0" * 3, [3], "h", "FP16", [1, 2]), "needs 4"),
]


@pytest.mark.parametrize("label,model,case,needle", BINARY_CASES, ids=[c[0] for c in BINARY_CASES])
def test_bad_binary_request(site: Site, label: str, model: str, case: tuple[bytes, dict[str, str]], needle: str) -> None:
    body, headers = case
    response = site.client.post(f"/v2/models/{model}/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]


def test_errors_on_other_endpoints(site: Site) -> None:
    client = site.client
    assert client.get("/v2/models/nosuch").status_code == 404
    assert client.get("/v2/models/lin/versions/7").status_code == 404
    assert client.get("/v2/models/nosuch/ready").status_code == 404
    assert client.get("/v2/models/nosuch/config").status_code == 404
    assert client.get("/v2/models/lin/versions/7/stats").status_code == 404
    assert client.get("/v2/models/nosuch/stats").json()["error"] == "unknown model 'nosuch'"
    assert client.post("/v2/repository/models/nosuch/load").status_code == 404
    assert client.post("/v2/repository/models/nosuch/unload").status_code == 404
    assert client.post("/v2/repository/models/lin/load", json={"parameters": {"config": "{}"}}).status_code == 400
    assert client.post("/v2/repository/index", content=b"{bad").status_code == 400
    wrong_method = client.get("/v2/models/lin/infer")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    # the fast lane takes POST .../infer only; other POSTs under /v2/models/ reach the router
    assert client.post("/v2/models/lin/ready").status_code == 405
    assert client.post("/v2/models/lin/infer/extra").status_code == 404


def test_infer_after_bad_requests_still_works(site: Site) -> None:
    """The server and the connection survive the whole matrix above."""
    response = site.client.post("/v2/models/lin/infer", json=_lin())
    assert response.status_code == 200 and len(response.json()["outputs"][0]["data"]) == 3
