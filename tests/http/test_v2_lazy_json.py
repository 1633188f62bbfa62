"""V2 JSON requests read with simdjson: the tensors must come out exactly as the plain
parse makes them, and every body the lazy reader cannot vouch for must go back to the
plain parse (its error messages are tested in test_v2_protocol.py's bad-input matrix)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from berth.errors import InvalidInput
from berth.http.v2.lazy_json import LazyArray, parse_lazily
from berth.http.v2.protocol import parse_infer_request


def _body(data: Any, datatype: str = "FP32", shape: list[int] | None = None, **extra: Any) -> bytes:
    count = len(data) if isinstance(data, list) else 1
    item = {"name": "x", "datatype": datatype, "shape": shape or [1, count], "data": data}
    return orjson.dumps({"inputs": [item], **extra})


def test_flat_float_data_stays_lazy_and_reads_exactly() -> None:
    values = np.random.default_rng(0).random(784).round(3).tolist()
    body = _body(values, shape=[1, 28, 28], outputs=[{"name": "y", "parameters": {"binary_data": False}}], id="r1")
    document = parse_lazily(body)
    assert document is not None
    assert type(document["inputs"][0]["data"]) is LazyArray
    assert document["outputs"] == [{"name": "y", "parameters": {"binary_data": False}}] and document["id"] == "r1"
    request = parse_infer_request(body, None)
    array = request.inputs["x"]
    assert array.dtype == np.float32 and array.shape == (1, 28, 28)
    assert np.array_equal(array, np.asarray(values, dtype=np.float32).reshape(1, 28, 28))
    assert request.id == "r1" and request.outputs is not None and request.outputs[0].binary is False


def test_fp64_and_integers_in_float_data_are_exact() -> None:
    request = parse_infer_request(_body([1, 2.5, -3e-2, 9007199254740993], datatype="FP64"), None)
    assert request.inputs["x"].dtype == np.float64
    assert request.inputs["x"].tolist() == [[1.0, 2.5, -0.03, 9007199254740992.0]]
    # the tensor is a copy: the next request, parsed by the same parser, leaves it alone
    parse_infer_request(_body([7, 8, 9, 10], datatype="FP64"), None)
    assert request.inputs["x"].tolist() == [[1.0, 2.5, -0.03, 9007199254740992.0]]


@pytest.mark.parametrize(
    "body",
    [
        _body([1, [2], 3, 4], shape=[1, 4]),  # mixed nesting, right count at the top
        _body([[1, 2], [3, [4]]], shape=[2, 2]),  # nested deeper on one side
        _body([[1, 2], [3]], shape=[2, 2]),  # ragged
        _body([[[1, 2], [3, 4]], [[5, 6], [7]]], shape=[2, 2, 2]),  # ragged two levels down
        _body([1, [], [2, 3], 4], shape=[1, 4]),  # ragged, right count at the top
        _body([1, 2], id="a[b"),  # a bracket inside a string
        _body([1, 2], parameters={"tags": [1, 2]}),  # an array inside a converted object
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1],"data":[2]}]}',  # repeated key
        b'{"inputs":[],"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}]}',
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}]',  # not JSON
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":["\xff"]}]}',  # not UTF-8
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[123456789012345678901234567890]}]}',
        b'[1, 2]',  # not an object
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"parameters":{"binary_data_size":4}}]}',  # no JSON data
    ],
)
def test_bodies_the_lazy_reader_hands_back(body: bytes) -> None:
    assert parse_lazily(body) is None


def test_nested_rectangular_data_stays_lazy_and_reads_in_row_major_order() -> None:
    image = np.random.default_rng(1).random((1, 28, 28)).round(3)
    body = _body(image.tolist(), shape=[1, 28, 28])
    document = parse_lazily(body)
    assert document is not None and type(document["inputs"][0]["data"]) is LazyArray
    array = parse_infer_request(body, None).inputs["x"]
    assert array.shape == (1, 28, 28) and np.array_equal(array, image.astype(np.float32))
    # nested otherwise than the shape, with the right count: numpy's reading, as before
    assert parse_infer_request(_body([[1, 2], [3, 4]], shape=[1, 4]), None).inputs["x"].tolist() == [[1, 2, 3, 4]]


def test_a_repeated_key_keeps_the_last_as_the_plain_parse_does() -> None:
    body = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}],"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[5,6]}]}'
    assert parse_infer_request(body, None).inputs["x"].tolist() == [[5.0, 6.0]]


def test_mixed_nesting_is_refused_like_any_ragged_array() -> None:
    with pytest.raises(InvalidInput, match="rectangular"):
        parse_infer_request(_body([1, [2], 3, 4], shape=[1, 4]), None)


@pytest.mark.parametrize(
    "data,needle",
    [
        ([1, True, 3], "boolean"),
        ([1, "2", 3], "only numbers"),
        ([1, None, 3], "only numbers"),
        ([1, {"a": 1}, 3], "only numbers"),
        ([1, 2, 1e39], "out of range"),
        ([1, 2], "has 2 values"),
    ],
)
def test_what_float_data_must_not_hold(data: list[Any], needle: str) -> None:
    body = _body(data, shape=[1, 3])
    with pytest.raises(InvalidInput, match=needle):
        parse_infer_request(body, None)


def test_integer_inputs_are_read_lazily_and_booleans_take_the_checked_path() -> None:
    request = parse_infer_request(_body([1, -2, 3], datatype="INT32"), None)
    assert request.inputs["x"].dtype == np.int32 and request.inputs["x"].tolist() == [[1, -2, 3]]
    big = parse_infer_request(_body([2**62, -(2**62)], datatype="INT64"), None)
    assert big.inputs["x"].tolist() == [[2**62, -(2**62)]]
    assert parse_infer_request(_body([2**64 - 1], datatype="UINT64"), None).inputs["x"].tolist() == [[2**64 - 1]]
    with pytest.raises(InvalidInput, match="out of range"):
        parse_infer_request(_body([1, -1], datatype="UINT8"), None)
    assert parse_infer_request(_body([True, False], datatype="BOOL"), None).inputs["x"].tolist() == [[True, False]]
    with pytest.raises(InvalidInput, match="integers"):
        parse_infer_request(_body([1, 2.5], datatype="INT32"), None)
    with pytest.raises(InvalidInput, match="out of range"):
        parse_infer_request(_body([1, 300], datatype="INT8"), None)


def test_json_data_beside_a_binary_input() -> None:
    head = orjson.dumps({
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
            {"name": "b", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}},
        ]
    })  # fmt: skip
    request = parse_infer_request(head + np.array([3, 4], dtype="<f4").tobytes(), len(head))
    assert request.inputs["a"].tolist() == [[1.0, 2.0]] and request.inputs["b"].tolist() == [[3.0, 4.0]]


def test_a_parse_while_the_last_document_is_alive_still_works() -> None:
    kept = parse_lazily(_body([1, 2]))
    assert kept is not None  # its lazy array holds the shared parser's document
    again = parse_lazily(_body([3, 4, 5]))
    assert again is not None and len(again["inputs"][0]["data"]) == 3
    assert np.frombuffer(kept["inputs"][0]["data"].as_buffer(of_type="d")).tolist() == [1.0, 2.0]


def test_bodies_past_the_shared_parser_and_past_the_lazy_limit() -> None:
    from berth.http.v2 import lazy_json

    values = [0.5] * (lazy_json.SHARED_MAX_BYTES // 3)  # about 4 bytes each: past the shared parser
    document = parse_lazily(_body(values))
    assert document is not None and len(document["inputs"][0]["data"]) == len(values)
    huge = _body([0.5] * (lazy_json.LAZY_MAX_BYTES // 3))
    assert len(huge) > lazy_json.LAZY_MAX_BYTES and parse_lazily(huge) is None
    assert parse_infer_request(huge, None).inputs["x"].shape == (1, lazy_json.LAZY_MAX_BYTES // 3)


def _random_request(rng: np.random.Generator) -> bytes:
    """A V2 JSON request of a random form: datatypes, nesting, odd values, odd keys."""
    datatype = str(rng.choice(["FP32", "FP64", "FP32", "INT32", "INT8", "BOOL", "FP16"]))
    rows, cols = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    values: list[Any] = [round(float(v), 3) for v in rng.standard_normal(rows * cols) * 10]
    if datatype.startswith("INT"):
        values = [int(v) for v in values]
    if datatype == "BOOL":
        values = [bool(v > 0) for v in values]
    spoiler = int(rng.integers(0, 12))
    if spoiler == 1:
        values[int(rng.integers(len(values)))] = True
    elif spoiler == 2:
        values[int(rng.integers(len(values)))] = "1.5"
    elif spoiler == 3:
        values[int(rng.integers(len(values)))] = None
    elif spoiler == 4:
        values.append(1.0)
    elif spoiler == 5:
        values[0] = 1e39
    elif spoiler == 8 and datatype.startswith("INT"):
        values[0] = 300 if rng.integers(0, 2) else 2.0  # out of INT8's range; an integral fraction
    data: Any = values
    nesting = int(rng.integers(0, 4))
    if nesting == 1:
        data = [values[r * cols : (r + 1) * cols] for r in range(rows)]
        if spoiler == 6 and rows > 1:
            data[-1] = data[-1][:-1] + [[data[-1][-1]]]  # mixed depth
        if spoiler == 7 and rows > 1:
            data[-1] = data[-1][:-1]  # ragged
    elif nesting == 2:  # each value in an array of its own: deeper than the shape
        data = [[[value] for value in values[r * cols : (r + 1) * cols]] for r in range(rows)]
        if spoiler == 6:
            data[0][0] = data[0][0] + [0.5]  # ragged at the deepest level
    item: dict[str, Any] = {"name": "x", "datatype": datatype, "shape": [rows, cols], "data": data}
    document: dict[str, Any] = {"inputs": [item]}
    if spoiler == 7 and nesting != 1:
        document["id"] = "a[b]"
    if spoiler == 8 and not datatype.startswith("INT"):
        document["parameters"] = {"binary_data_output": True, "tags": [1, 2]}
    if spoiler == 9:
        document["outputs"] = [{"name": "y", "parameters": {"binary_data": False}}]
    body = orjson.dumps(document)
    if spoiler == 10:  # a repeated key: the last one counts
        body = body[:-1] + b',"inputs":' + orjson.dumps([{**item, "data": values[:1], "shape": [1, 1]}]) + b"}"
    if spoiler == 11:
        body = body.replace(b'"x"', b'"\\u0078"')  # an escaped name
    return body


def _outcome(body: bytes) -> tuple[str, Any]:
    try:
        request = parse_infer_request(body, None)
    except InvalidInput as exc:
        return "error", str(exc)
    return "ok", {name: (array.dtype.str, array.shape, array.tolist()) for name, array in request.inputs.items()}


def test_the_lazy_reader_agrees_with_the_plain_parse_on_random_requests() -> None:
    """The same document, padded with whitespace past LAZY_MAX_BYTES so that only the
    plain parse reads it, must give the same tensors or the same error."""
    from berth.http.v2 import lazy_json

    padding = b" " * (lazy_json.LAZY_MAX_BYTES + 1)
    rng = np.random.default_rng(7)
    lazily = 0
    for _ in range(300):
        body = _random_request(rng)
        lazily += parse_lazily(body) is not None
        assert _outcome(body) == _outcome(body + padding), body
    assert lazily >= 80  # the lazy path was really exercised
