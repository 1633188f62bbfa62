"""Repeated binary V2 headers, and JSON requests that differ only in one input's
numbers, reuse their checked plan; the tensors are read every time."""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson
import pytest

from berth.errors import InvalidInput
from berth.http.v2 import protocol
from berth.http.v2.lazy_json import LazyArray, skeleton
from berth.http.v2.protocol import parse_infer_request


def _binary_request(x: np.ndarray, *, request_id: str | None = None) -> tuple[bytes, int]:
    header: dict[str, object] = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "parameters": {"binary_data_size": x.nbytes}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    if request_id is not None:
        header["id"] = request_id
    head = orjson.dumps(header)
    return head + x.astype("<f4").tobytes(), len(head)


def test_a_repeated_header_reads_each_body_afresh() -> None:
    protocol._plans.clear()
    first, second = np.arange(6, dtype=np.float32).reshape(2, 3), np.full((2, 3), 7.5, dtype=np.float32)
    body, length = _binary_request(first)
    np.testing.assert_array_equal(parse_infer_request(body, length).inputs["x"], first)
    assert len(protocol._plans) == 1
    body, length = _binary_request(second)  # the same header: a cached plan
    request = parse_infer_request(body, length)
    np.testing.assert_array_equal(request.inputs["x"], second)
    assert request.outputs is not None and [(o.name, o.binary) for o in request.outputs] == [("y", True)]
    assert len(protocol._plans) == 1


def test_a_cached_plan_still_checks_the_binary_section() -> None:
    protocol._plans.clear()
    body, length = _binary_request(np.ones((2, 3), dtype=np.float32))
    parse_infer_request(body, length)
    assert len(protocol._plans) == 1
    with pytest.raises(InvalidInput, match="binary section has only"):
        parse_infer_request(body[:-4], length)
    with pytest.raises(InvalidInput, match="add up to"):
        parse_infer_request(body + b"\0\0\0\0", length)


def test_a_refused_request_leaves_no_plan() -> None:
    protocol._plans.clear()
    body, length = _binary_request(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(InvalidInput):
        parse_infer_request(body[:-4], length)
    assert not protocol._plans


def test_json_data_requests_are_not_cached() -> None:
    protocol._plans.clear()
    head = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]})
    np.testing.assert_array_equal(parse_infer_request(head, len(head)).inputs["x"], [[1.0, 2.0]])
    assert not protocol._plans


def test_the_cache_is_bounded() -> None:
    protocol._plans.clear()
    x = np.ones((1, 3), dtype=np.float32)
    for index in range(protocol._PLAN_CACHE_SIZE + 50):  # ids make every header distinct
        body, length = _binary_request(x, request_id=f"r{index}")
        assert parse_infer_request(body, length).id == f"r{index}"
    assert 0 < len(protocol._plans) <= protocol._PLAN_CACHE_SIZE


# ── JSON requests ───────────────────────────────────────────────────────────
def _json_body(data: str, *, datatype: str = "FP32", shape: str = "[1, 4]", extra: str = "") -> bytes:
    return (
        '{"inputs": [{"name": "x", "datatype": "%s", "shape": %s, "data": [%s]}], '
        '"outputs": [{"name": "y", "parameters": {"binary_data": false}}]%s}' % (datatype, shape, data, extra)
    ).encode()


def _outcome(body: bytes) -> tuple[str, object]:
    try:
        request = parse_infer_request(body, None)
    except InvalidInput as exc:
        return "error", exc.message
    array = request.inputs["x"]
    return "ok", (array.dtype.str, array.shape, array.tolist(), request.id, [(o.name, o.binary) for o in request.outputs or []])


def test_a_json_request_with_new_numbers_reuses_the_plan() -> None:
    protocol._json_plans.clear()
    first = parse_infer_request(_json_body("1, 2, 3, 4"), None)
    assert len(protocol._json_plans) == 1
    second = parse_infer_request(_json_body("5.5, -6, 7e2, 0"), None)  # the same skeleton
    assert len(protocol._json_plans) == 1
    np.testing.assert_array_equal(first.inputs["x"], [[1, 2, 3, 4]])
    np.testing.assert_array_equal(second.inputs["x"], [[5.5, -6, 700, 0]])
    assert second.inputs["x"].dtype == np.float32 and second.outputs is not None and second.outputs[0].binary is False
    # a cached plan holds no request's data (a lazy array would keep its document alive)
    for plan in protocol._json_plans.values():
        for part in (plan, *plan.inputs):
            assert not any(type(getattr(part, field.name)) is LazyArray for field in dataclasses.fields(part))


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT32", "INT64", "UINT8", "BOOL"])
def test_a_cached_json_plan_answers_as_the_full_path_does(datatype: str) -> None:
    """Every body that shares a skeleton with a primed plan gives the same tensor, or
    the same error, as it does with nothing cached."""
    variants = [
        "1, 2, 3, 4", "0.5, 2, 3, 4", "1, 2, 3", "1, 2, 3, 4, 5", "true, false, true, false", "1, true, 3, 4",
        "null, 2, 3, 4", "1e39, 2, 3, 4", "-1, 2, 300, 4", "9223372036854775807, 1, 2, 3", "1, 2, 3, 4 ",
        "1,2,3,4", "", "1 2 3 4", "1, 2, 3, 4,", "-0, 1e-3, 2E2, 4",
    ]  # fmt: skip
    for data in variants:
        body = _json_body(data, datatype=datatype)
        protocol._json_plans.clear()
        uncached = _outcome(body)
        protocol._json_plans.clear()
        _outcome(_json_body({"BOOL": "true, true, false, true"}.get(datatype, "9, 9, 9, 9"), datatype=datatype))
        assert len(protocol._json_plans) == 1, datatype  # primed: the body below takes the plan
        assert _outcome(body) == uncached, (datatype, data)


def test_only_a_flat_run_of_scalars_is_cut_out() -> None:
    assert skeleton(_json_body("1, 2, 3, 4")) == _json_body("")
    assert skeleton(_json_body("[1, 2], [3, 4]", shape="[2, 2]")) is None  # nested: brackets inside
    assert skeleton(_json_body('"a]", 1, 2, 3')) is None  # a string, and a bracket in it
    assert skeleton(b'{"inputs": []}') is None
    assert skeleton(_json_body("1", extra=', "id": "%s"' % ("x" * 5000))) is None  # a skeleton past the bound
    # a key that ends in an escaped "data" holding an array comes first: it is what is
    # cut out, and the real data stays in the skeleton
    tricky = b'{"x\\"data": [1, 2], ' + _json_body("1, 2, 3, 4")[1:]
    assert skeleton(tricky) == b'{"x\\"data": [], ' + _json_body("1, 2, 3, 4")[1:]


def test_a_json_plan_is_only_for_the_numbers_it_was_made_around() -> None:
    protocol._json_plans.clear()
    parse_infer_request(_json_body("1, 2, 3, 4"), None)
    for body, expected in [
        (_json_body("1, 2, 3, 4", shape="[2, 2]"), [[1, 2], [3, 4]]),  # another shape: another skeleton
        (_json_body("1, 2, 3, 4", extra=', "id": "r1"'), [[1, 2, 3, 4]]),
    ]:
        np.testing.assert_array_equal(parse_infer_request(body, None).inputs["x"], expected)
    assert parse_infer_request(_json_body("1, 2, 3, 4", extra=', "id": "r1"'), None).id == "r1"
    assert len(protocol._json_plans) == 3
    for index in range(protocol._PLAN_CACHE_SIZE + 10):  # ids make every skeleton distinct: bounded
        parse_infer_request(_json_body("1, 2, 3, 4", extra=f', "id": "r{index}"'), None)
    assert 0 < len(protocol._json_plans) <= protocol._PLAN_CACHE_SIZE
