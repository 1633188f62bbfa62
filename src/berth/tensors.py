"""Datatype names and the tensor codec shared by every front end and the client.

The V2 protocol names datatypes ``FP32``, ``INT64`` …; numpy names them ``float32``,
``int64``. One table here maps between them so no front end grows its own, and one
raw-bytes codec (below) reads and writes tensors for gRPC, the HTTP binary extension
and the Python client alike.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InvalidInput, PayloadTooLarge

V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
NUMPY_TO_V2: dict[np.dtype, str] = {dtype: name for name, dtype in V2_TO_NUMPY.items()}
#: the little-endian dtype that raw bytes of each numeric datatype are read with (BOOL
#: and BYTES have their own readers); made once, not per tensor
RAW_NUMERIC: dict[str, np.dtype] = {name: dtype.newbyteorder("<") for name, dtype in V2_TO_NUMPY.items() if name not in ("BOOL", "BYTES")}

_NUMPY_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "int": "int64", "long": "int64"}


def numpy_dtype(name: str) -> np.dtype:
    """A dtype from a numpy name (``float32``), an alias, or a V2 name (``FP32``)."""
    if name.upper() in V2_TO_NUMPY:
        return V2_TO_NUMPY[name.upper()]
    try:
        return np.dtype(_NUMPY_ALIASES.get(name, name))
    except TypeError:
        raise ValueError(f"unknown dtype '{name}'") from None


def datatype_of(dtype: np.dtype) -> str | None:
    """The V2 datatype of a numpy dtype, or None if it has none. Strings and objects
    are BYTES; byte order does not matter (the codec writes little-endian)."""
    if dtype.kind in "OSU":
        return "BYTES"
    return NUMPY_TO_V2.get(dtype if dtype.isnative else dtype.newbyteorder("="))


def v2_datatype(dtype: np.dtype) -> str:
    """:func:`datatype_of`, raising ``ValueError`` for a dtype with no V2 datatype."""
    datatype = datatype_of(np.dtype(dtype))
    if datatype is None:
        raise ValueError(f"dtype {dtype} has no V2 datatype")
    return datatype


_SHORT_SHAPE = 8
_INT_ONLY = frozenset({int})  # exactly int: a boolean is no dimension


def checked_element_count(shape: tuple[int, ...] | list[int], limit: int) -> int:
    """Product of ``shape``, refusing negative dims and products past ``limit``.

    Python ints do not overflow, but a hostile shape like ``[2**40, 2**40]`` must be
    refused before anything allocates, so the product is bounded as it is built. A
    short shape of positive integers (every real one) is checked with a few calls into C
    instead: its product has at most a few hundred bits, and without a zero no partial
    product is bigger than the whole.
    """
    if len(shape) <= _SHORT_SHAPE and set(map(type, shape)) <= _INT_ONLY and (not shape or min(shape) > 0):
        count = math.prod(shape)
    else:
        count = 1
        for dim in shape:
            if type(dim) is not int or dim < 0:  # exactly int: a boolean is no dimension
                raise ValueError(f"shape {list(shape)} must hold non-negative integers")
            count *= dim
            if count > limit:
                break
    if count > limit:
        raise OverflowError(f"shape {list(shape)} has more than {limit} elements")
    return count


# ── raw tensor bytes ─────────────────────────────────────────────────────────
# One codec for every V2 wire form that carries tensors as bytes: gRPC
# ``raw_input_contents`` / ``raw_output_contents``, the HTTP binary extension, and the
# Python client reading the server's answers. Raw bytes are little-endian and
# row-major; BOOL is one byte per element, 0 or 1; BYTES is each element's 4-byte
# little-endian length, then its bytes.
#
# Decoding refuses anything that does not fit exactly, so client and server refuse
# the same data. The functions raise :class:`TensorDataError` whose message starts
# with the caller's ``label`` (``"input 'x'"``); server code re-raises it as its own
# error type, the client lets it through as the ValueError it is.

#: largest number of elements one tensor may hold (bounded before any allocation); the
#: Engine's limit, kept here so that the client can use it without importing the server
MAX_TENSOR_ELEMENTS = 64 * 1024 * 1024

_LENGTH = struct.Struct("<I")


class TensorDataError(ValueError):
    """Tensor bytes that do not fit their datatype and shape."""


def array_from_raw(raw: bytes | memoryview, datatype: str, shape: Sequence[int], count: int, *, label: str) -> np.ndarray:
    """The array that ``raw`` holds for a V2 ``datatype`` and ``shape``.

    ``count`` is the shape's element count, already bounded by the caller
    (:func:`checked_element_count`). Numeric and BOOL arrays are read-only views over
    ``raw`` (no copy); BYTES elements are copied out into an object array.
    """
    if datatype == "BYTES":
        return decode_bytes_elements(raw, count, label=label).reshape(shape)
    dtype = V2_TO_NUMPY.get(datatype)
    if dtype is None:
        raise TensorDataError(f"{label} has datatype '{datatype[:32]}', which numpy cannot hold")
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise TensorDataError(f"{label} has {len(raw)} raw bytes; {datatype} {list(shape)} needs {expected}")
    if datatype == "BOOL":
        return bools_from_raw(raw, count, label=label).reshape(shape)
    return np.frombuffer(raw, dtype=RAW_NUMERIC[datatype], count=count).reshape(shape)


def bools_from_raw(raw: bytes | memoryview, count: int, *, label: str) -> np.ndarray:
    """``count`` BOOL elements, one byte each, as a flat read-only view over ``raw``.

    numpy would take any non-zero byte as True; refusing them keeps a BOOL tensor's
    bytes meaning one thing on every side.
    """
    octets = np.frombuffer(raw, dtype=np.uint8, count=count)
    if count and int(octets.max()) > 1:
        raise TensorDataError(f"{label}: BOOL elements must be bytes 0 or 1")
    return octets.view(np.bool_)


def decode_bytes_elements(raw: bytes | memoryview, count: int, *, label: str) -> np.ndarray:
    """``count`` BYTES elements, each a 4-byte little-endian length then that many
    bytes, as a flat object array of ``bytes``; ``raw`` must hold exactly these."""
    size = len(raw)
    if count * _LENGTH.size > size:  # bounds the allocation below by the data's size
        raise TensorDataError(f"{label} has {size} raw bytes, too few for {count} BYTES elements")
    elements = np.empty(count, dtype=object)
    view = memoryview(raw)
    position = 0
    unpack = _LENGTH.unpack_from
    for index in range(count):
        if position + 4 > size:
            raise TensorDataError(f"{label}: BYTES element {index} has no 4-byte length (the data ends)")
        (length,) = unpack(view, position)
        position += 4
        end = position + length
        if end > size:
            raise TensorDataError(f"{label}: BYTES element {index} claims {length} bytes past the end of its data")
        elements[index] = bytes(view[position:end])
        position = end
    if position != size:
        raise TensorDataError(f"{label} has {size - position} bytes left over after its {count} BYTES elements")
    return elements


def element_bytes(value: Any) -> bytes:
    """One BYTES element: bytes-like values as they are, anything else as UTF-8 text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8")


def encode_bytes_elements(array: np.ndarray) -> bytes:
    """Every element of ``array`` (row-major), each after its 4-byte little-endian length."""
    parts: list[bytes] = []
    pack = _LENGTH.pack
    for value in array.reshape(-1).tolist():  # tolist: Python objects, faster than iterating numpy scalars
        data = element_bytes(value)
        parts.append(pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def little_endian(array: np.ndarray) -> np.ndarray:
    """``array`` as contiguous little-endian row-major data: itself (no copy) when it
    already is, so it can be written through the buffer protocol."""
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array)


def array_to_raw(datatype: str, array: np.ndarray) -> bytes:
    """The raw bytes of ``array`` for its V2 ``datatype`` (what :func:`array_from_raw` reads)."""
    if datatype == "BYTES":
        return encode_bytes_elements(array)
    return little_endian(array).tobytes()


# ── what a request's V2 input declares (server side: answered with berth's errors) ──
_DECLARABLE = ", ".join(V2_TO_NUMPY)


def declared_dtype(name: str, datatype: str) -> np.dtype:
    """The numpy dtype of an input's V2 ``datatype``; InvalidInput (400) otherwise."""
    dtype = V2_TO_NUMPY.get(datatype)
    if dtype is None:
        if datatype == "BF16":
            raise InvalidInput(f"input '{name}': BF16 is not supported (numpy has no such dtype); send FP16 or FP32")
        raise InvalidInput(f"input '{name}' has unknown datatype '{datatype[:32]}' (one of {_DECLARABLE})")
    return dtype


def declared_array(name: str, raw: bytes | memoryview, datatype: str, shape: Sequence[int], count: int) -> np.ndarray:
    """:func:`array_from_raw` for input ``name``, refusing with InvalidInput (400)."""
    try:
        return array_from_raw(raw, datatype, shape, count, label=f"input '{name}'")
    except TensorDataError as exc:
        raise InvalidInput(str(exc)) from None


def declared_element_count(name: str, shape: Sequence[Any]) -> int:
    """The elements an input's shape declares: PayloadTooLarge (413 / RESOURCE_EXHAUSTED)
    past :data:`MAX_TENSOR_ELEMENTS`, InvalidInput for anything but non-negative integers."""
    dims = list(shape)
    try:
        return checked_element_count(dims, MAX_TENSOR_ELEMENTS)
    except OverflowError:
        raise PayloadTooLarge(f"input '{name}' shape {dims[:8]} has more than {MAX_TENSOR_ELEMENTS} elements") from None
    except ValueError:
        raise InvalidInput(f"input '{name}' shape must be an array of non-negative integers") from None
