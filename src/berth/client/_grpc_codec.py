"""numpy arrays ↔ the raw tensor bytes of berth's gRPC messages (client side).

The codec is the one in :mod:`berth.tensors` that the server uses, so the client
refuses the same data the server does (a BOOL byte other than 0 or 1, BYTES data
left over, a shape past the element limit) with a ValueError. Numeric outputs are
``numpy.frombuffer`` views over the received bytes (no copy; read-only). Only numpy
and :mod:`berth.tensors` are needed here, not the server's modules.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..tensors import (
    MAX_TENSOR_ELEMENTS,
    V2_TO_NUMPY,
    array_from_raw,
    array_to_raw,
    checked_element_count,
    datatype_of,
)

__all__ = ["V2_TO_NUMPY", "as_tensor", "from_raw", "to_raw"]  # V2_TO_NUMPY: read by _grpc_common


def as_tensor(name: str, value: Any) -> tuple[str, np.ndarray]:
    """The V2 datatype and the array to send for one input."""
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    datatype = datatype_of(array.dtype)
    if datatype is None:
        raise ValueError(f"input '{name}' has dtype {array.dtype}, which has no V2 datatype")
    return datatype, array


#: the raw little-endian, row-major bytes of an array for its V2 datatype
to_raw = array_to_raw


def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    """The array an output's raw bytes hold; sizes are checked against its shape.

    Raises ValueError (:class:`berth.tensors.TensorDataError` for bytes that do not fit).
    """
    dims = tuple(int(d) for d in shape)
    return array_from_raw(raw, datatype, dims, _element_count(name, dims), label=f"output '{name}'")


def _element_count(name: str, dims: tuple[int, ...]) -> int:
    try:
        return checked_element_count(dims, MAX_TENSOR_ELEMENTS)
    except OverflowError:  # an ArithmeticError: the client's callers expect ValueError for bad data
        raise ValueError(f"output '{name}' shape {list(dims[:8])} has more than {MAX_TENSOR_ELEMENTS} elements") from None
    except ValueError:
        raise ValueError(f"output '{name}' shape {list(dims[:8])} must hold non-negative sizes") from None
