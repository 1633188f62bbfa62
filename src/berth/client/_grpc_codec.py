"""numpy arrays ↔ the raw tensor bytes of berth's gRPC messages (client side).

Raw contents are little-endian and row-major; BOOL is one byte per element; BYTES is
each element's 4-byte little-endian length, then its bytes. Numeric outputs are read
with ``numpy.frombuffer`` over the received bytes (no Python lists, no copy: the
arrays are read-only views). Only numpy and :mod:`berth.tensors` are needed here, not
the server's modules.
"""

from __future__ import annotations

import struct
from typing import Any, Sequence

import numpy as np

from ..tensors import NUMPY_TO_V2, V2_TO_NUMPY

_LENGTH = struct.Struct("<I")


def as_tensor(name: str, value: Any) -> tuple[str, np.ndarray]:
    """The V2 datatype and the array to send for one input."""
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    if array.dtype.kind in "OSU":
        return "BYTES", array
    datatype = NUMPY_TO_V2.get(array.dtype.newbyteorder("="))
    if datatype is None:
        raise ValueError(f"input '{name}' has dtype {array.dtype}, which has no V2 datatype")
    return datatype, array


def to_raw(datatype: str, array: np.ndarray) -> bytes:
    if datatype == "BYTES":
        parts: list[bytes] = []
        for element in array.reshape(-1):
            data = bytes(element) if isinstance(element, (bytes, bytearray, memoryview)) else str(element).encode()
            parts += (_LENGTH.pack(len(data)), data)
        return b"".join(parts)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).tobytes()


def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    """The array an output's raw bytes hold; sizes are checked against its shape."""
    dims = tuple(int(d) for d in shape)
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if datatype == "BYTES":
        return _decode_bytes(name, raw, count).reshape(dims)
    dtype = V2_TO_NUMPY.get(datatype)
    if dtype is None:
        raise ValueError(f"output '{name}' has datatype '{datatype}', which numpy cannot hold")
    if len(raw) != count * dtype.itemsize:
        raise ValueError(f"output '{name}' has {len(raw)} raw bytes; {datatype} {list(dims)} needs {count * dtype.itemsize}")
    if datatype == "BOOL":
        return np.frombuffer(raw, dtype=np.uint8, count=count).view(np.bool_).reshape(dims)
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<"), count=count).reshape(dims)


def _decode_bytes(name: str, raw: bytes, count: int) -> np.ndarray:
    elements = np.empty(count, dtype=object)
    view, position = memoryview(raw), 0
    for index in range(count):
        if position + 4 > len(raw):
            raise ValueError(f"output '{name}': BYTES element {index} is missing")
        (length,) = _LENGTH.unpack_from(view, position)
        elements[index] = bytes(view[position + 4 : position + 4 + length])
        position += 4 + length
    return elements
