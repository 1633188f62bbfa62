"""Pure pieces of the gRPC front end: tensor codec, device ids, the status table."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from berth.config import BerthConfig
from berth.engine import Engine
from berth.errors import ErrorKind, InternalError, InvalidInput
from berth.grpc import codec
from berth.grpc.common import Devices
from berth.grpc.errors import STATUS


def test_every_error_kind_has_a_status() -> None:
    assert set(STATUS) == set(ErrorKind)
    assert STATUS[ErrorKind.INVALID] == grpc.StatusCode.INVALID_ARGUMENT
    assert STATUS[ErrorKind.TOO_LARGE] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert STATUS[ErrorKind.OVERLOADED] == STATUS[ErrorKind.UNAVAILABLE] == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("datatype", "array"),
    [
        ("FP32", np.arange(6, dtype=np.float32).reshape(2, 3)),
        ("FP16", np.array([[1.5, -2.0]], dtype=np.float16)),
        ("INT8", np.array([-128, 127], dtype=np.int8)),
        ("UINT64", np.array([2**64 - 1], dtype=np.uint64)),
        ("BOOL", np.array([True, False, True])),
        ("BYTES", np.array([b"a", b"", "é".encode()], dtype=object)),
    ],
)
def test_raw_round_trip(datatype: str, array: np.ndarray) -> None:
    raw = codec.to_raw(codec.output_datatype("t", array), array)
    back = codec.from_raw("t", datatype, array.shape, raw)
    assert back.shape == array.shape
    assert list(back.reshape(-1)) == list(array.reshape(-1))


def test_raw_is_little_endian_and_zero_copy() -> None:
    big = np.array([1, 2], dtype=">i4")
    assert codec.to_raw("INT32", big) == np.array([1, 2], dtype="<i4").tobytes()
    raw = np.array([1.0, 2.0], dtype=np.float32).tobytes()
    array = codec.from_raw("t", "FP32", (2,), raw)
    assert array.base is not None and not array.flags.writeable  # a view over the message bytes


def test_bool_bytes_must_be_0_or_1() -> None:
    with pytest.raises(InvalidInput):
        codec.from_raw("t", "BOOL", (2,), b"\x01\x02")


def test_unknown_output_dtype_is_internal() -> None:
    with pytest.raises(InternalError):
        codec.output_datatype("t", np.zeros(2, dtype=np.complex64))


def test_gpu_ids_from_devices() -> None:
    config = BerthConfig.model_validate(
        {"devices": [{"name": "gpu-a", "kind": "cuda", "index": 1}, {"name": "cpu0"}]}
    )
    devices = Devices(Engine(config))
    assert devices.gpu_id("gpu-a") == 1
    assert devices.gpu_id("cpu0") == -1
    assert devices.gpu_id(None) == -1 and devices.gpu_id("nope") == -1
