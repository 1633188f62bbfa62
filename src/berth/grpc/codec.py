"""Tensors between protobuf messages and numpy arrays.

Raw contents (``raw_input_contents`` / ``raw_output_contents``, berth.v1 ``Tensor.data``)
go through the raw codec in :mod:`berth.tensors`, which the HTTP binary extension
and the client share: arrays are ``numpy.frombuffer`` views over the received bytes,
never built through Python lists. Every size is checked before anything is
allocated: a shape's element count is bounded while it is multiplied out, and the
bytes must be exactly what the shape and datatype need (the codec's refusals are
re-raised here as :class:`InvalidInput`).

The typed ``contents`` of the V2 protocol are protobuf repeated fields, so they are
read as the sequences they are; the field must match the datatype and hold exactly
the shape's element count, and narrow integer types are range-checked.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InternalError, InvalidInput
from ..tensors import (
    array_to_raw,
    datatype_of,
    declared_array,
    declared_dtype,
    declared_element_count,
)

#: the ``InferTensorContents`` field that carries each datatype
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    """An array over ``raw`` (no copy for numeric types; the array is read-only)."""
    declared_dtype(name, datatype)
    # a protobuf repeated field is slow to iterate (0.55 µs for three dims); a slice
    # copies it out in C (0.23 µs), once, for both the count and the reshape
    dims = shape[:]
    return declared_array(name, raw, datatype, dims, declared_element_count(name, dims))


def from_contents(name: str, datatype: str, shape: Sequence[int], contents: object) -> np.ndarray:
    """An array from a V2 ``InferTensorContents`` message."""
    dtype = declared_dtype(name, datatype)
    count = declared_element_count(name, shape)
    dims = tuple(shape)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"input '{name}': {datatype} has no typed contents field; send it in raw_input_contents")
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInput(f"input '{name}' has {len(values)} values in contents.{field}; {datatype} {list(dims)} needs {count}")
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(dims)
    if dtype.kind in "iu" and dtype.itemsize < 4 and count:
        wide = np.fromiter(values, dtype=np.int64, count=count)
        info = np.iinfo(dtype)
        if int(wide.min()) < info.min or int(wide.max()) > info.max:
            raise InvalidInput(f"input '{name}' holds a value out of range for {datatype}")
        return wide.astype(dtype).reshape(dims)
    return np.fromiter(values, dtype=dtype, count=count).reshape(dims)


def output_datatype(name: str, array: np.ndarray) -> str:
    datatype = datatype_of(array.dtype)
    if datatype is None:
        raise InternalError(f"output '{name}' has dtype {array.dtype} with no V2 datatype")
    return datatype


#: the raw little-endian, row-major bytes of an array for its V2 datatype
to_raw = array_to_raw
