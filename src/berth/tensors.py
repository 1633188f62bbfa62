"""Datatype names and small tensor helpers shared by every front end.

The V2 protocol names datatypes ``FP32``, ``INT64`` …; numpy names them ``float32``,
``int64``. One table here maps between them so no front end grows its own.
"""

from __future__ import annotations

import numpy as np

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

_NUMPY_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "int": "int64", "long": "int64"}


def numpy_dtype(name: str) -> np.dtype:
    """A dtype from a numpy name (``float32``), an alias, or a V2 name (``FP32``)."""
    if name.upper() in V2_TO_NUMPY:
        return V2_TO_NUMPY[name.upper()]
    try:
        return np.dtype(_NUMPY_ALIASES.get(name, name))
    except TypeError:
        raise ValueError(f"unknown dtype '{name}'") from None


def v2_datatype(dtype: np.dtype) -> str:
    try:
        return NUMPY_TO_V2[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"dtype {dtype} has no V2 datatype") from None


def checked_element_count(shape: tuple[int, ...] | list[int], limit: int) -> int:
    """Product of ``shape``, refusing negative dims and products past ``limit``.

    Python ints do not overflow, but a hostile shape like ``[2**40, 2**40]`` must be
    refused before anything allocates, so the product is bounded as it is built.
    """
    count = 1
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise ValueError(f"shape {list(shape)} must hold non-negative integers")
        count *= dim
        if count > limit:
            raise OverflowError(f"shape {list(shape)} has more than {limit} elements")
    return count
