"""Repeated binary V2 headers reuse their checked plan; the bytes are read every time."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from berth.errors import InvalidInput
from berth.http.v2 import protocol
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
