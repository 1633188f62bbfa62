"""The V2 inference request and response on the wire: JSON and the binary extension.

A request body is a JSON object, optionally followed by a binary section: with an
``Inference-Header-Content-Length: N`` header the first N bytes are the JSON and the
rest holds the tensors whose input carries ``parameters.binary_data_size``, back to
back in the order those inputs appear in the JSON (little-endian, row-major; BOOL one
byte per element; BYTES a 4-byte little-endian length before each element).

JSON ``data`` arrays of numeric inputs are read by :mod:`.lazy_json` (simdjson, straight
into numpy) when the body is plain enough for it; every other body takes orjson and the
checks below. Binary tensors go through the raw codec in :mod:`berth.tensors` (shared
with gRPC and the client) and become ``numpy.frombuffer`` views over the request body,
never built through Python lists. Every size is checked before anything is allocated:
a shape's element count is bounded while it is multiplied out, JSON ``data`` must hold
exactly that many values, and the binary sizes must add up to the binary section
exactly.

Nothing here knows the Engine; :mod:`.routes` calls these functions around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import orjson

from ...engine import Prediction
from ...errors import InternalError, InvalidInput
from ...tensors import (
    NUMPY_TO_V2,
    RAW_NUMERIC,
    V2_TO_NUMPY,
    datatype_of,
    declared_array,
    declared_dtype,
    declared_element_count,
    encode_bytes_elements,
    little_endian,
)
from ..json_numbers import numbers_only
from .lazy_json import LazyArray, input_data, parse_lazily, skeleton, tape_numbers

__all__ = [
    "InferRequest",
    "RequestedOutput",
    "encode_infer_response",
    "parse_header_length",
    "parse_infer_request",
    "raw_input",
]

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
#: datatypes that have no JSON form backends agree on: binary only
_BINARY_ONLY = frozenset({"FP16", "BF16"})
_DATATYPES = ", ".join([*V2_TO_NUMPY, "BF16"])
_MAX_NAME = 256


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool | None  # None: the request-level default decides


@dataclass(slots=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None  # None: every output
    binary_output: bool  # request-level ``binary_data_output``
    timeout_us: int | None  # Triton's ``timeout`` parameter, in microseconds


# ── the request ──────────────────────────────────────────────────────────────
def parse_header_length(value: bytes | None) -> int | None:
    """``Inference-Header-Content-Length`` as an int (None when the header is absent)."""
    if value is None:
        return None
    if value.isdigit() and len(value) <= 18:
        return int(value)
    text = value.strip()
    if not text.isdigit() or len(text) > 18:
        raise InvalidInput("Inference-Header-Content-Length must be a non-negative integer")
    return int(text)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a call per field, on every JSON request
class _InputSpec:
    """One input as the request's JSON describes it, checked, apart from its data (which
    :func:`_arrays` is given next to the plan). Never changed once made (cached plans
    share them)."""

    name: str
    datatype: str
    dtype: np.dtype
    shape: list[int]
    count: int
    size: int | None  # its binary_data_size, or None for JSON ``data``
    #: the little-endian dtype its binary bytes are read with directly, when it is a
    #: numeric input whose binary_data_size fits its shape (else the checked reader)
    raw_dtype: np.dtype | None = None


@dataclass(slots=True)  # not frozen, as _InputSpec
class _Plan:
    """Everything a request's JSON part says, checked, apart from the tensors' bytes.
    Never changed once made."""

    request_id: str | None
    inputs: tuple[_InputSpec, ...]
    outputs: list[RequestedOutput] | None
    binary_output: bool
    timeout_us: int | None

    @property
    def binary_only(self) -> bool:
        return all(spec.size is not None for spec in self.inputs)


#: Plans of binary requests by their JSON part. Clients (tritonclient, perf_analyzer)
#: send the same small header with every request of a kind, and checking it again
#: costs more than the tensors' own reading. Bounded in count and key size.
_plans: dict[bytes, _Plan] = {}
_PLAN_CACHE_SIZE = 256
_PLAN_HEADER_MAX = 4096


#: Plans of JSON requests by their skeleton (:func:`.lazy_json.skeleton`: the body less
#: one input's numbers). A client sends the same request around new numbers, and
#: converting and checking that part again costs more than reading the numbers. Bounded
#: in count and key size like :data:`_plans`; the plans hold no data of any request.
_json_plans: dict[bytes, _Plan] = {}


def parse_infer_request(body: bytes, header_length: int | None) -> InferRequest:
    """An :class:`InferRequest` from a body with an optional binary section."""
    key = None
    if header_length is None:
        json_part = body
        binary = memoryview(b"")
        key = skeleton(body)
        if key is not None:
            plan = _json_plans.get(key)
            if plan is not None:
                datas = input_data(body, len(plan.inputs))
                if datas is not None:  # else the body does not parse: the full path says why
                    return _request(plan, datas, binary, _not_asked)
    else:
        if header_length > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length is {header_length} but the body has only {len(body)} bytes"
            )
        json_part, binary = body[:header_length], memoryview(body)[header_length:]
        plan = _plans.get(json_part) if header_length <= _PLAN_HEADER_MAX else None
        if plan is not None:
            return _request(plan, (), binary, _no_json_data)
    if not len(json_part):
        raise InvalidInput("the request has no JSON part; send an inference request object")
    lazy = parse_lazily(json_part)
    if lazy is not None:  # its data arrays stay on simdjson's tape for _json_tensor
        plan = _plan(lazy, header_length is not None)
        request = _request(plan, _datas(lazy), binary, _not_asked)
        if key is not None and not any(spec.size is not None for spec in plan.inputs):
            if len(_json_plans) >= _PLAN_CACHE_SIZE:
                _json_plans.clear()
            _json_plans[key] = plan  # only after the whole request checked out
        return request
    try:
        document = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the inference request is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(document, dict):
        raise InvalidInput("the inference request must be a JSON object")
    plan = _plan(document, header_length is not None)

    proven: list[bool] = []

    def plain() -> bool:
        """Every ``data`` array holds only numbers, so numpy may convert them directly
        (asked only when an input comes as JSON data, and answered once)."""
        if not proven:
            proven.append(numbers_only(json_part, document))
        return proven[0]

    request = _request(plan, _datas(document), binary, plain)
    if header_length is not None and header_length <= _PLAN_HEADER_MAX and plan.binary_only:
        if len(_plans) >= _PLAN_CACHE_SIZE:
            _plans.clear()
        _plans[json_part] = plan  # only after the whole request checked out
    return request


def _no_json_data() -> bool:
    raise AssertionError("a cached plan has binary inputs only: no JSON data to prove")


def _not_asked() -> bool:
    """The proof for a lazily parsed request: its data arrays are read from simdjson's
    tape, and any that is converted to Python values takes the checked path."""
    return False


def _plan(document: dict[str, Any], has_binary_header: bool) -> _Plan:
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    parameters = _parameters(document.get("parameters"), "the request")
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InvalidInput("parameter 'binary_data_output' must be true or false")
    timeout_us = parameters.get("timeout")
    if timeout_us is not None and (not isinstance(timeout_us, int) or isinstance(timeout_us, bool) or timeout_us <= 0):
        raise InvalidInput("parameter 'timeout' must be a positive integer (microseconds)")
    inputs = _input_specs(document.get("inputs"), has_binary_header)
    return _Plan(request_id, inputs, _requested_outputs(document.get("outputs")), binary_output, timeout_us)


def _datas(document: dict[str, Any]) -> list[Any]:
    """Each input's JSON ``data`` (None for a binary one), of a document :func:`_plan`
    has checked."""
    return [item.get("data") for item in document["inputs"]]


def _request(plan: _Plan, datas: Sequence[Any], binary: memoryview, plain: Callable[[], bool]) -> InferRequest:
    arrays = _arrays(plan.inputs, datas, binary, plain)
    return InferRequest(plan.request_id, arrays, plan.outputs, plan.binary_output, plan.timeout_us)


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"'parameters' of {where} must be an object")
    return value


def _input_specs(value: Any, has_binary_header: bool) -> tuple[_InputSpec, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("'inputs' must be a non-empty array of input tensors")
    specs: list[_InputSpec] = []
    names: set[str] = set()
    for position, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidInput(f"inputs[{position}] must be an object with name, datatype, shape and data")
        name = item.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME:
            raise InvalidInput(f"inputs[{position}] needs a 'name' string of 1 to {_MAX_NAME} characters")
        if name in names:
            raise InvalidInput(f"input '{name}' is given more than once")
        names.add(name)
        datatype = item.get("datatype")
        if not isinstance(datatype, str):
            raise InvalidInput(f"input '{name}' needs a 'datatype' string ({_DATATYPES})")
        shape = item.get("shape")
        if not isinstance(shape, list):
            raise InvalidInput(f"input '{name}' needs a 'shape' array")
        count = declared_element_count(name, shape)
        parameters = item.get("parameters")
        size = None if parameters is None else _parameters(parameters, f"input '{name}'").get("binary_data_size")
        dtype = declared_dtype(name, datatype)
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInput(f"input '{name}': binary_data_size must be a non-negative integer")
            if "data" in item:
                raise InvalidInput(f"input '{name}' has both 'data' and binary_data_size; send one")
            if not has_binary_header:
                raise InvalidInput(
                    f"input '{name}' has binary_data_size but the request has no Inference-Header-Content-Length header"
                )
            raw_dtype = RAW_NUMERIC.get(datatype)
            direct = raw_dtype if raw_dtype is not None and size == count * raw_dtype.itemsize else None
            specs.append(_InputSpec(name, datatype, dtype, shape, count, size, direct))
        else:
            if "data" not in item:
                raise InvalidInput(f"input '{name}' has neither 'data' nor a binary_data_size parameter")
            specs.append(_InputSpec(name, datatype, dtype, shape, count, None))
    return tuple(specs)


def _arrays(specs: tuple[_InputSpec, ...], datas: Sequence[Any], binary: memoryview, plain: Callable[[], bool]) -> dict[str, np.ndarray]:
    """The inputs' tensors: binary ones from their slices of the binary section, which
    must hold exactly what the sizes add up to, and JSON ones from their ``datas`` entry
    (read only for JSON inputs)."""
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for position, spec in enumerate(specs):
        name, size = spec.name, spec.size
        if size is not None:
            if offset + size > len(binary):
                raise InvalidInput(
                    f"input '{name}' needs {size} binary bytes at offset {offset}, "
                    f"but the binary section has only {len(binary)} bytes"
                )
            raw_dtype = spec.raw_dtype
            if raw_dtype is not None:
                arrays[name] = np.frombuffer(binary, dtype=raw_dtype, count=spec.count, offset=offset).reshape(spec.shape)
            else:
                arrays[name] = declared_array(name, binary[offset : offset + size], spec.datatype, spec.shape, spec.count)
            offset += size
        else:
            arrays[name] = _json_tensor(name, spec.datatype, spec.dtype, spec.shape, spec.count, datas[position], plain())
    if offset != len(binary):
        raise InvalidInput(
            f"the binary section holds {len(binary)} bytes but the inputs' binary_data_size values add up to {offset}"
        )
    return arrays


def _json_tensor(name: str, datatype: str, dtype: np.dtype, shape: list[int], count: int, data: Any, plain: bool) -> np.ndarray:
    if datatype in _BINARY_ONLY:
        raise InvalidInput(f"input '{name}': {datatype} has no JSON form; send it as binary data (binary_data_size)")
    if type(data) is LazyArray:
        numbers = tape_numbers(data, integers=dtype.kind in "iu") if dtype.kind in "fiu" else None
        if numbers is not None:  # numbers only, of the input's kind: no booleans to look for
            return _checked_cast(name, datatype, dtype, shape, count, numbers, None, False)
        data = data.as_list()  # not plain numbers of that kind: the checked path decides
        plain = False
    if not isinstance(data, list):
        raise InvalidInput(f"input '{name}': 'data' must be an array")
    if datatype == "BYTES":
        return _json_strings(name, data, count).reshape(shape)
    if plain and dtype.kind == "f":
        # only numbers inside: numpy's direct conversion cannot let anything through
        # (integer types still take the checked path, which refuses fractions). JSON
        # numbers are finite doubles (orjson refuses the rest), so only the cast can
        # make one infinite, and then it raises: no pass over the array afterwards
        try:
            with np.errstate(over="raise"):
                direct = np.asarray(data, dtype=dtype)
        except (ValueError, TypeError, OverflowError, FloatingPointError):
            pass  # ragged, holding an object, or out of range: the checked path says which
        else:
            if direct.size == count:
                return direct.reshape(shape)
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise InvalidInput(f"input '{name}': 'data' must be a rectangular array of values (nested or flat)") from None
    return _checked_cast(name, datatype, dtype, shape, count, array, data, not plain)


def _checked_cast(
    name: str, datatype: str, dtype: np.dtype, shape: list[int], count: int, array: np.ndarray, data: Any, maybe_booleans: bool
) -> np.ndarray:
    """``array`` (the input's values as numpy read them) as ``dtype`` and ``shape``,
    refusing a wrong count, values of the wrong kind and values out of range."""
    if array.size != count:
        raise InvalidInput(f"input '{name}' has {array.size} values; shape {shape} needs {count}")
    if count:
        _check_kind(name, datatype, dtype, array, data, maybe_booleans)
    # parsed JSON numbers are finite, so only the cast can make one infinite: it raises
    try:
        with np.errstate(over="raise"):
            converted = array.astype(dtype, copy=False)
    except FloatingPointError:
        raise InvalidInput(f"input '{name}' holds a value out of range for {datatype}") from None
    return converted.reshape(shape)


def _check_kind(name: str, datatype: str, dtype: np.dtype, array: np.ndarray, data: Any, maybe_booleans: bool) -> None:
    """Refuse JSON values numpy would silently convert: strings, booleans as numbers,
    numbers as booleans, fractions as integers, integers out of range."""
    kind = array.dtype.kind
    if dtype.kind == "b":
        if kind != "b":
            raise InvalidInput(f"input '{name}': BOOL data must hold only true/false")
        return
    if kind == "b" or (maybe_booleans and kind in "iuf" and _holds_boolean(data)):
        raise InvalidInput(f"input '{name}': {datatype} data must hold only numbers; found a boolean")
    if kind not in "iuf":
        raise InvalidInput(f"input '{name}': {datatype} data must hold only numbers that fit {datatype}")
    if dtype.kind in "iu":
        if kind == "f":
            raise InvalidInput(f"input '{name}': {datatype} data must hold only integers; found a fractional number")
        info = np.iinfo(dtype)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise InvalidInput(f"input '{name}' holds an integer out of range for {datatype}")


def _holds_boolean(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bool):
            return True
    return False


def _json_strings(name: str, data: list[Any], count: int) -> np.ndarray:
    flat: list[bytes] = []
    stack: list[Any] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            flat.append(item.encode("utf-8"))
            if len(flat) > count:
                break
        else:
            raise InvalidInput(f"input '{name}': BYTES data must hold only strings")
    if len(flat) != count:
        found = f"more than {count}" if len(flat) > count else str(len(flat))
        raise InvalidInput(f"input '{name}' has {found} values; its shape needs {count}")
    elements = np.empty(count, dtype=object)
    elements[:] = flat
    return elements


def _requested_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be an array of requested outputs")
    requested: list[RequestedOutput] = []
    seen: set[str] = set()
    for position, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME:
            raise InvalidInput(f"outputs[{position}] must be an object with a 'name' string of 1 to {_MAX_NAME} characters")
        if name in seen:
            raise InvalidInput(f"output '{name}' is requested more than once")
        seen.add(name)
        parameters = _parameters(item.get("parameters"), f"output '{name}'")
        if parameters.get("classification"):
            raise InvalidInput(f"output '{name}': the classification extension is not supported")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidInput(f"output '{name}': binary_data must be true or false")
        requested.append(RequestedOutput(name, binary))
    return requested


def raw_input(body: bytes, name: str, dtype: np.dtype, item_shape: tuple[int, ...] | None) -> np.ndarray:
    """The single input of a raw binary request (``Inference-Header-Content-Length: 0``):
    the whole body is one item of the model's only input, batch 1."""
    if dtype.kind == "O" or item_shape is None:
        raise InvalidInput(
            "a raw binary request (Inference-Header-Content-Length: 0) needs a single input with a fixed item shape "
            "and a fixed-size datatype; send a JSON inference request instead"
        )
    count = int(np.prod(item_shape, dtype=np.int64))
    if len(body) != count * dtype.itemsize:
        raise InvalidInput(
            f"a raw binary request for input '{name}' needs {count * dtype.itemsize} bytes ({count} x {dtype.name}); got {len(body)}"
        )
    datatype = datatype_of(dtype)
    if datatype is None:
        raise InvalidInput(f"input '{name}' has dtype {dtype.name}, which has no V2 datatype to send raw")
    return declared_array(name, body, datatype, (1, *item_shape), count)


# ── the response ─────────────────────────────────────────────────────────────
def encode_infer_response(prediction: Prediction, request: InferRequest) -> tuple[bytes, int | None]:
    """The response body and, when it has a binary section, the JSON part's length."""
    outputs = prediction.outputs
    default_binary = request.binary_output
    if request.outputs is None:
        selected = [(name, default_binary) for name in outputs]
    else:
        selected = [(o.name, default_binary if o.binary is None else o.binary) for o in request.outputs]
    described: list[dict[str, Any]] = []
    blobs: list[Any] = []
    for name, binary in selected:
        array = outputs.get(name)
        if array is None:
            unknown = [o for o, _ in selected if o not in outputs]
            raise InvalidInput(
                f"model '{prediction.model}' has no output named {', '.join(map(repr, unknown))}; outputs are {list(outputs)}"
            )
        datatype = NUMPY_TO_V2.get(array.dtype) or datatype_of(array.dtype)  # the common dtypes in one lookup
        if datatype is None:
            raise InternalError(f"model '{prediction.model}' output '{name}' has a dtype with no V2 datatype")
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": array.shape}  # orjson writes a tuple as an array
        if binary:
            # numeric blobs stay arrays: bytes.join reads them through the buffer protocol, no copy
            blob = encode_bytes_elements(array) if datatype == "BYTES" else little_endian(array)
            tensor["parameters"] = {"binary_data_size": len(blob) if isinstance(blob, bytes) else blob.nbytes}
            blobs.append(blob)
        elif datatype in _BINARY_ONLY:
            raise InvalidInput(f"output '{name}' is {datatype}, which has no JSON form; request it with binary_data: true")
        elif datatype == "BYTES":
            tensor["data"] = _json_strings_out(name, array)
        else:
            tensor["data"] = np.ascontiguousarray(array).reshape(-1)
        described.append(tensor)
    document: dict[str, Any] = {"model_name": prediction.model, "model_version": prediction.version}
    if request.id is not None:
        document["id"] = request.id
    document["outputs"] = described
    header = orjson.dumps(document, option=_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _json_strings_out(name: str, array: np.ndarray) -> list[str]:
    values = []
    for value in array.reshape(-1).tolist():
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"output '{name}' holds bytes that are not UTF-8; request it with binary_data: true") from None
        values.append(value if isinstance(value, str) else str(value))
    return values
