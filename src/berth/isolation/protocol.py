"""The wire format between the server and a model's worker process.

A message is a ZeroMQ multipart message::

    frame 0      msgpack map: {"op" | "ok", "id", ..., "names", "dtypes", "shapes"}
    frame 1..n   the raw bytes of tensor i (C order), exactly prod(shape) * itemsize

Requests carry ``op`` (one of :data:`OPS`) and ``id``; replies carry the request's
``id``, ``ok`` and, when ``ok`` is false, ``error`` (a message) and ``type`` (the
exception's class name). Tensors are described in the header by three parallel lists
(``names``, ``dtypes`` as numpy ``dtype.str`` such as ``"<f4"``, ``shapes``) and come
back as :func:`numpy.frombuffer` views over the received frames: never pickle, never
Python lists. Only numeric and boolean dtypes cross (numpy kinds ``b i u f c``); an
object or string array is refused on both sides, and a frame whose length does not
match its header is refused before any array is made.
"""

from __future__ import annotations

import itertools
import math
from pathlib import PurePath
from typing import Any, Iterable, Mapping, Sequence

import msgpack
import numpy as np

OPS = frozenset({"load", "signature", "run", "info", "memory", "ping", "shutdown", "generate", "abort"})
_KINDS = frozenset("biufc")  # bool, signed, unsigned, float, complex
_MAX_HEADER_BYTES = 16 * 1024 * 1024

_ids = itertools.count(1)


class ProtocolError(ValueError):
    """A message that does not follow this format."""


def next_id() -> int:
    return next(_ids)


def events_endpoint(endpoint: str) -> str:
    """The worker's event (PUSH) socket: ``events`` beside the request socket's file."""
    if not endpoint.startswith("ipc://"):
        raise ValueError("worker endpoints are ipc:// paths")
    return f"ipc://{PurePath(endpoint[len('ipc://'):]).parent / 'events'}"


def wire_dtype(text: Any) -> np.dtype:
    """The dtype named by a header entry, if it is one that may cross the wire."""
    if not isinstance(text, str) or len(text) > 8:
        raise ProtocolError(f"bad dtype {text!r}")
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise ProtocolError(f"bad dtype {text!r}") from None
    if dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ProtocolError(f"dtype {text!r} cannot cross the process boundary (numeric and bool only)")
    return dtype


def _plain(value: Any) -> Any:
    """msgpack's fallback for the few non-msgpack values found in runtime options."""
    if hasattr(value, "model_dump"):  # pydantic config objects (declared inputs/outputs)
        return value.model_dump()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} cannot be sent to a worker process")


def _no_ext(code: int, data: bytes) -> Any:
    raise ProtocolError("msgpack extension types are not part of the protocol")


def pack_header(header: Mapping[str, Any]) -> bytes:
    return msgpack.packb(header, use_bin_type=True, default=_plain)


def unpack_header(frame: Any) -> dict[str, Any]:
    data = _buffer(frame)
    if len(data) > _MAX_HEADER_BYTES:
        raise ProtocolError("header too large")
    try:
        header = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_no_ext)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several types for malformed input
        raise ProtocolError(f"header is not msgpack: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header must be a map")
    return header


def encode(header: Mapping[str, Any], tensors: Mapping[str, np.ndarray] | None = None) -> list[Any]:
    """Frames for ``header`` plus ``tensors`` (zero-copy for contiguous arrays)."""
    head = dict(header)
    frames: list[Any] = []
    if tensors:
        names, dtypes, shapes = [], [], []
        for name, value in tensors.items():
            array = np.asarray(value)
            dtype = wire_dtype(array.dtype.str)
            names.append(str(name))
            dtypes.append(dtype.str)
            shapes.append(list(array.shape))
            if not array.flags.c_contiguous:
                array = np.ascontiguousarray(array)  # (which would make a 0-d array 1-d)
            frames.append(array.reshape(-1).view(np.uint8))  # the bytes, without a copy
        head["names"], head["dtypes"], head["shapes"] = names, dtypes, shapes
    return [pack_header(head), *frames]


#: below this many bytes in all, copying a message is cheaper than zero-copy tracking
ZERO_COPY_MIN_BYTES = 64 * 1024


def zero_copy(frames: Sequence[Any]) -> bool:
    """Whether to send ``frames`` with ``copy=False`` (only worth it for large tensors)."""
    return sum(getattr(f, "nbytes", None) or len(f) for f in frames) >= ZERO_COPY_MIN_BYTES


def _buffer(frame: Any) -> memoryview:
    buffer = getattr(frame, "buffer", frame)  # a zmq.Frame (copy=False) or bytes
    return buffer if isinstance(buffer, memoryview) else memoryview(buffer)


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > 32:
        raise ProtocolError(f"bad shape {value!r}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise ProtocolError(f"bad shape {value!r}")
    return tuple(value)


def decode(frames: Sequence[Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the tensors of a message; arrays are read-only frombuffer views."""
    if not frames:
        raise ProtocolError("empty message")
    header = unpack_header(frames[0])
    names = header.pop("names", [])
    dtypes = header.pop("dtypes", [])
    shapes = header.pop("shapes", [])
    if not (isinstance(names, list) and isinstance(dtypes, list) and isinstance(shapes, list)):
        raise ProtocolError("names, dtypes and shapes must be lists")
    if not (len(names) == len(dtypes) == len(shapes) == len(frames) - 1):
        raise ProtocolError(f"{len(frames) - 1} tensor frame(s) for {len(names)} described tensor(s)")
    tensors: dict[str, np.ndarray] = {}
    for name, dtype_text, shape_value, frame in zip(names, dtypes, shapes, frames[1:]):
        if not isinstance(name, str) or name in tensors:
            raise ProtocolError(f"bad or repeated tensor name {name!r}")
        dtype = wire_dtype(dtype_text)
        shape = _shape(shape_value)
        data = _buffer(frame)
        expected = math.prod(shape) * dtype.itemsize
        if data.nbytes != expected:
            raise ProtocolError(f"tensor '{name}' has {data.nbytes} bytes; {dtype.str} {list(shape)} needs {expected}")
        tensors[name] = np.frombuffer(data, dtype=dtype).reshape(shape)
    return header, tensors


def signature_to_wire(specs: Iterable[Any]) -> list[list[Any]]:
    """TensorSpecs as ``[name, dtype name, shape]`` triples (``-1`` = variable)."""
    return [[spec.name, spec.dtype.name, list(spec.shape)] for spec in specs]


def signature_from_wire(items: Any) -> tuple[Any, ...]:
    from ..runtimes.base import TensorSpec

    if not isinstance(items, list):
        raise ProtocolError("a signature must be a list")
    specs = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and isinstance(item[1], str)):
            raise ProtocolError(f"bad tensor spec {item!r}")
        shape = item[2]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise ProtocolError(f"bad tensor spec {item!r}")
        try:
            dtype = np.dtype(item[1])
        except TypeError:
            raise ProtocolError(f"bad dtype in tensor spec {item!r}") from None
        specs.append(TensorSpec(item[0], dtype, tuple(shape)))
    return tuple(specs)


def error_reply(request_id: Any, exc: BaseException) -> list[Any]:
    """A reply carrying the first line of an error (the worker logs the whole of it)."""
    text = str(exc).strip()
    message = text.splitlines()[0][:500] if text else type(exc).__name__
    return encode({"id": request_id, "ok": False, "error": message, "type": type(exc).__name__})
