"""The raw tensor codec in berth.tensors, which gRPC, the HTTP binary extension and
the Python client share: round trips for every datatype, and each refusal."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from berth import tensors
from berth.client import _grpc_codec as client_codec
from berth.tensors import (
    MAX_TENSOR_ELEMENTS,
    V2_TO_NUMPY,
    TensorDataError,
    array_from_raw,
    array_to_raw,
    bools_from_raw,
    datatype_of,
    decode_bytes_elements,
    element_bytes,
    encode_bytes_elements,
    little_endian,
    v2_datatype,
)

LABEL = "input 'x'"

NUMERIC = {
    "UINT8": [0, 255],
    "UINT16": [0, 65535],
    "UINT32": [0, 2**32 - 1],
    "UINT64": [0, 2**64 - 1],
    "INT8": [-128, 127],
    "INT16": [-(2**15), 2**15 - 1],
    "INT32": [-(2**31), 2**31 - 1],
    "INT64": [-(2**63), 2**63 - 1],
    "FP16": [-1.5, 65504.0],
    "FP32": [-1.5, 3.25],
    "FP64": [-1.5, 1e300],
}


def _length(n: int) -> bytes:
    return struct.pack("<I", n)


# ── round trips ──────────────────────────────────────────────────────────────
@pytest.mark.parametrize("datatype", sorted(NUMERIC))
def test_numeric_round_trip_is_a_little_endian_view(datatype: str) -> None:
    low, high = NUMERIC[datatype]
    array = np.array([[low, high, 0], [high, 0, low]], dtype=V2_TO_NUMPY[datatype])
    raw = array_to_raw(datatype, array)
    assert raw == array.astype(array.dtype.newbyteorder("<")).tobytes()
    back = array_from_raw(raw, datatype, (2, 3), array.size, label=LABEL)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == array.dtype and back.shape == (2, 3)
    assert back.base is not None and not back.flags.writeable  # a view over ``raw``: no copy


def test_bool_round_trip() -> None:
    array = np.array([[True, False], [False, True]])
    raw = array_to_raw("BOOL", array)
    assert raw == b"\x01\x00\x00\x01"
    back = array_from_raw(raw, "BOOL", (2, 2), 4, label=LABEL)
    assert back.dtype == np.bool_ and back.tolist() == array.tolist()
    assert not back.flags.writeable


def test_bytes_round_trip() -> None:
    array = np.array([[b"a", b""], ["é".encode(), b"\x00\xff"]], dtype=object)
    raw = array_to_raw("BYTES", array)
    assert raw == _length(1) + b"a" + _length(0) + _length(2) + "é".encode() + _length(2) + b"\x00\xff"
    back = array_from_raw(raw, "BYTES", (2, 2), 4, label=LABEL)
    assert back.dtype == object and back.shape == (2, 2) and back.tolist() == array.tolist()


def test_bytes_elements_of_every_kind_encode_as_bytes() -> None:
    assert element_bytes(b"ab") == b"ab"
    assert element_bytes(bytearray(b"ab")) == b"ab"
    assert element_bytes(memoryview(b"ab")) == b"ab"
    assert element_bytes("é") == "é".encode()
    assert element_bytes(7) == b"7"
    strings = np.array(["a", "bc"])  # numpy unicode and bytes arrays are BYTES too
    assert encode_bytes_elements(strings) == encode_bytes_elements(np.array([b"a", b"bc"]))
    assert decode_bytes_elements(encode_bytes_elements(strings), 2, label=LABEL).tolist() == [b"a", b"bc"]


def test_empty_tensors_round_trip() -> None:
    assert array_from_raw(b"", "FP32", (0, 4), 0, label=LABEL).shape == (0, 4)
    assert array_from_raw(b"", "BOOL", (0,), 0, label=LABEL).shape == (0,)
    assert array_from_raw(b"", "BYTES", (2, 0), 0, label=LABEL).shape == (2, 0)
    assert array_to_raw("BYTES", np.empty(0, dtype=object)) == b""


def test_memoryview_input_is_read_in_place() -> None:
    body = bytearray(b"head" + np.array([1.0, 2.0], dtype="<f4").tobytes())
    array = array_from_raw(memoryview(body)[4:], "FP32", [2], 2, label=LABEL)
    assert array.tolist() == [1.0, 2.0]
    body[4:8] = np.array([9.0], dtype="<f4").tobytes()
    assert array[0] == 9.0  # shares the body's memory


def test_big_endian_and_strided_arrays_are_written_little_endian_row_major() -> None:
    big = np.array([[1, 2], [3, 4]], dtype=">i4")
    assert array_to_raw("INT32", big) == np.array([1, 2, 3, 4], dtype="<i4").tobytes()
    assert array_to_raw("INT32", big.T) == np.array([1, 3, 2, 4], dtype="<i4").tobytes()
    native = np.arange(4, dtype="<f8")
    assert little_endian(native) is native  # already right: no copy


# ── refusals ─────────────────────────────────────────────────────────────────
def test_refuses_a_size_that_does_not_fit_the_shape() -> None:
    with pytest.raises(TensorDataError, match=r"^input 'x' has 12 raw bytes; FP32 \[1, 4\] needs 16$"):
        array_from_raw(b"\0" * 12, "FP32", [1, 4], 4, label=LABEL)
    with pytest.raises(TensorDataError, match="needs 16"):
        array_from_raw(b"\0" * 20, "FP32", [1, 4], 4, label=LABEL)


def test_refuses_a_datatype_numpy_cannot_hold() -> None:
    with pytest.raises(TensorDataError, match="'BF16', which numpy cannot hold"):
        array_from_raw(b"\0\0", "BF16", [1], 1, label=LABEL)


@pytest.mark.parametrize("octet", [2, 7, 255])
def test_refuses_bool_bytes_other_than_0_or_1(octet: int) -> None:
    with pytest.raises(TensorDataError, match=r"^input 'x': BOOL elements must be bytes 0 or 1$"):
        array_from_raw(bytes([0, 1, octet]), "BOOL", [3], 3, label=LABEL)
    with pytest.raises(TensorDataError, match="0 or 1"):
        bools_from_raw(bytes([octet]), 1, label=LABEL)


@pytest.mark.parametrize(
    ("raw", "count", "message"),
    [
        (_length(0), 1000, r"^input 'x' has 4 raw bytes, too few for 1000 BYTES elements$"),
        (_length(2) + b"ab" + b"\0\0", 2, r"^input 'x': BYTES element 1 has no 4-byte length \(the data ends\)$"),
        (_length(99) + b"abcd", 1, r"^input 'x': BYTES element 0 claims 99 bytes past the end of its data$"),
        (_length(1) + b"ab", 1, r"^input 'x' has 1 bytes left over after its 1 BYTES elements$"),
        (_length(0) * 3, 2, r"left over"),
    ],
    ids=["too few for the count", "length cut off", "length past the end", "bytes left over", "an element left over"],
)
def test_refuses_bytes_data_that_does_not_hold_exactly_its_elements(raw: bytes, count: int, message: str) -> None:
    with pytest.raises(TensorDataError, match=message):
        decode_bytes_elements(raw, count, label=LABEL)
    with pytest.raises(TensorDataError, match=message):
        array_from_raw(raw, "BYTES", [count], count, label=LABEL)


def test_element_counts_are_bounded_while_multiplied() -> None:
    with pytest.raises(OverflowError):
        tensors.checked_element_count([2**40, 2**40], MAX_TENSOR_ELEMENTS)
    assert tensors.checked_element_count([1, 28, 28], MAX_TENSOR_ELEMENTS) == 784
    assert tensors.checked_element_count([], MAX_TENSOR_ELEMENTS) == 1
    # the long way (a zero, or more dims than the short way takes) answers alike
    assert tensors.checked_element_count([3] * 9, MAX_TENSOR_ELEMENTS) == 3**9
    assert tensors.checked_element_count([0, 2**70], MAX_TENSOR_ELEMENTS) == 0
    with pytest.raises(OverflowError):  # bounded as it is built: past the limit before the zero
        tensors.checked_element_count([2**70, 0], MAX_TENSOR_ELEMENTS)
    with pytest.raises(OverflowError):
        tensors.checked_element_count([2**20] * 9, MAX_TENSOR_ELEMENTS)


@pytest.mark.parametrize("shape", [[True, 4], [1, False], [-1, 4], [1.0, 4], ["2", 4], [None]])
def test_a_dimension_must_be_a_non_negative_int(shape: list[object]) -> None:
    # a JSON true is an int to Python: it must not pass for a dimension of 1
    with pytest.raises(ValueError, match="non-negative integers"):
        tensors.checked_element_count(shape, MAX_TENSOR_ELEMENTS)  # type: ignore[arg-type]


# ── the client refuses what the server refuses ───────────────────────────────
def test_client_round_trips_through_the_shared_codec() -> None:
    array = np.array([[1.5, -2.0]], dtype=np.float32)
    datatype, sent = client_codec.as_tensor("x", array)
    back = client_codec.from_raw("y", datatype, [1, 2], client_codec.to_raw(datatype, sent))
    np.testing.assert_array_equal(back, array)
    words = np.array(["a", "é"])
    datatype, sent = client_codec.as_tensor("w", words)
    assert client_codec.from_raw("w", datatype, [2], client_codec.to_raw(datatype, sent)).tolist() == [b"a", "é".encode()]


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        ("BOOL", [2], b"\x00\x02", "output 'y': BOOL elements must be bytes 0 or 1"),
        ("BYTES", [1], _length(1) + b"ab", "output 'y' has 1 bytes left over"),
        ("BYTES", [1], _length(9) + b"ab", "past the end"),
        ("BYTES", [2], _length(1) + b"a", "too few for 2 BYTES elements"),
        ("FP32", [2**40, 2**40], b"", f"has more than {MAX_TENSOR_ELEMENTS} elements"),
        ("FP32", [MAX_TENSOR_ELEMENTS + 1], b"", f"has more than {MAX_TENSOR_ELEMENTS} elements"),
        ("FP32", [-1, -4], b"\0" * 16, "non-negative"),
        ("FP32", [2], b"\0" * 4, "has 4 raw bytes; FP32 [2] needs 8"),
        ("BF16", [1], b"\0\0", "numpy cannot hold"),
    ],
    ids=["bool not 0/1", "bytes left over", "bytes past the end", "bytes too few", "count overflows int64", "count over the limit",
         "negative dims", "size mismatch", "unknown datatype"],
)
def test_client_refuses_what_the_server_refuses(datatype: str, shape: list[int], raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        client_codec.from_raw("y", datatype, shape, raw)


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        (np.dtype(np.float32), "FP32"),
        (np.dtype(">f4"), "FP32"),  # byte order does not change the datatype
        (np.dtype(">i8"), "INT64"),
        (np.dtype(np.bool_), "BOOL"),
        (np.dtype("S5"), "BYTES"),
        (np.dtype("U3"), "BYTES"),
        (np.dtype(object), "BYTES"),
        (np.dtype(np.complex64), None),
    ],
)
def test_one_numpy_to_v2_mapping(dtype: np.dtype, datatype: str | None) -> None:
    assert datatype_of(dtype) == datatype
    if datatype is None:
        with pytest.raises(ValueError, match="no V2 datatype"):
            v2_datatype(dtype)
    else:
        assert v2_datatype(dtype) == datatype
