"""A V2 JSON request read with simdjson, its tensors' ``data`` straight into numpy.

The plain way from a V2 JSON body to a tensor is ``orjson.loads`` (one Python float per
element) then ``numpy.asarray`` (back out of them), plus a proof that the arrays hold
only numbers (:mod:`berth.http.json_numbers`): three passes, two of them over hundreds
of Python objects. simdjson parses the body once into its own tape, and an input's
``data`` array can be copied off that tape as doubles in one call (``as_buffer``), which
also refuses anything that is not a number. So :func:`parse_request` turns the request
object into Python values as usual except each input's ``data``, which stays a lazy
simdjson ``Array`` for :func:`float_tensor` to read.

It only ever takes the easy cases and hands everything else back (``None``), so that
the plain parse decides, with its own error messages:

- anything simdjson refuses (bad JSON, bad UTF-8, too deep, an integer past 64 bits):
  the plain parser then says what is wrong, in the words it always has;
- a repeated key in the request object or an input object (simdjson's lookup would
  find the first, JSON parsers in Python keep the last);
- a ``[`` anywhere but where the request's own arrays start: a nested or ragged
  ``data`` array, or a bracket inside a string. Each array of the document has exactly
  one ``[`` in the raw bytes, so when their count equals the number of arrays the
  converted parts hold plus one per lazy ``data``, every lazy array is flat. The count
  takes one byte search per bracket, not a pass in Python.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simdjson

from ...errors import InvalidInput

__all__ = ["LazyArray", "float_tensor", "parse_lazily"]

LazyArray = simdjson.Array
_Object = simdjson.Object


def parse_lazily(raw: bytes) -> dict[str, Any] | None:
    """The request object with each input's ``data`` left as a :data:`LazyArray`,
    or None when the plain parse should decide (see the module's notes)."""
    try:
        root = simdjson.Parser().parse(raw)  # a parser per request: its arrays point into it
    except (ValueError, RuntimeError):  # UnicodeDecodeError is a ValueError
        return None
    if type(root) is not _Object:
        return None
    document = _object(root, "inputs")
    if document is None:
        return None
    inputs = document.get("inputs")
    if type(inputs) is not LazyArray:
        return None  # no inputs array: nothing to read lazily
    items: list[Any] = []
    lazy = 0
    for item in inputs:
        if type(item) is _Object:
            converted = _object(item, "data")
            if converted is None:
                return None
            lazy += type(converted.get("data")) is LazyArray
            items.append(converted)
        else:
            items.append(item.as_list() if type(item) is LazyArray else item)
    document["inputs"] = items
    if not lazy or not _brackets(raw, _arrays_in(document) + lazy):
        return None
    return document


def _object(obj: simdjson.Object, lazy_key: str | None) -> dict[str, Any] | None:
    """A simdjson object as a dict, its ``lazy_key`` array left lazy; None on a repeated key."""
    keys = list(obj.keys())
    if len(set(keys)) != len(keys):
        return None
    converted: dict[str, Any] = {}
    for key in keys:
        value = obj[key]
        if key == lazy_key and type(value) is LazyArray:
            converted[key] = value
        elif type(value) is _Object:
            converted[key] = value.as_dict()
        elif type(value) is LazyArray:
            converted[key] = value.as_list()
        else:
            converted[key] = value
    return converted


def _arrays_in(value: dict[str, Any]) -> int:
    """How many JSON arrays the converted document holds (lazy arrays not counted).
    Only containers are visited: a shape's numbers cost a type check each."""
    count = 0
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if type(item) is list:
            count += 1
            children = item
        else:
            children = item.values()
        for child in children:
            if type(child) is list or type(child) is dict:
                stack.append(child)
    return count


def _brackets(raw: bytes, expected: int) -> bool:
    """Whether ``raw`` holds exactly ``expected`` opening brackets."""
    found = 0
    at = raw.find(b"[")
    while at >= 0:
        found += 1
        if found > expected:
            return False
        at = raw.find(b"[", at + 1)
    return found == expected


def float_tensor(name: str, datatype: str, dtype: np.dtype, count: int, data: simdjson.Array) -> np.ndarray | None:
    """A flat lazy ``data`` array of ``count`` numbers as ``dtype`` (a float type), or
    None when it holds something else (the checked path then says what)."""
    if len(data) != count:
        return None
    try:
        values = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError):  # a string, boolean, null or object among the numbers
        return None
    if dtype == values.dtype:
        return values
    # JSON numbers are finite doubles, so only the cast can make one infinite
    with np.errstate(over="raise"):
        try:
            return values.astype(dtype)
        except FloatingPointError:
            raise InvalidInput(f"input '{name}' holds a value out of range for {datatype}") from None
