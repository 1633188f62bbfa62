"""A V2 JSON request read with simdjson, its tensors' ``data`` straight into numpy.

The plain way from a V2 JSON body to a tensor is ``orjson.loads`` (one Python float per
element) then ``numpy.asarray`` (back out of them), plus a proof that the arrays hold
only numbers (:mod:`berth.http.json_numbers`): three passes, two of them over hundreds
of Python objects. simdjson parses the body once into its own tape, and an input's
``data`` array can be copied off that tape as doubles (or 64-bit integers) in one call
(``as_buffer``), which also refuses anything that is not a number (or an integer). So :func:`parse_lazily` turns the request
object into Python values as usual except each input's ``data``, which stays a lazy
simdjson ``Array`` for :func:`tape_numbers` to read (``as_buffer`` flattens nested
arrays in row-major order).

It only ever takes the easy cases and hands everything else back (``None``), so that
the plain parse decides, with its own error messages:

- anything simdjson refuses (bad JSON, bad UTF-8, too deep, an integer past 64 bits):
  the plain parser then says what is wrong, in the words it always has;
- a repeated key in the request object or an input object (simdjson's lookup would
  find the first, JSON parsers in Python keep the last);
- a ragged ``data`` array: nested ``data`` is walked level by level (one step per
  sub-array, none per number) and every array at one depth must have the same length;
- a ``[`` anywhere but where the arrays counted start (``inputs``, each array-valued
  field such as a ``shape``, each lazy ``data`` and its sub-arrays): an array nested
  deeper on one side than on the other, an array inside a converted field, or a bracket
  inside a string. Every array has exactly one ``[`` in the raw bytes, so when the raw
  count equals the arrays counted, nothing else holds one: in particular no number of a
  lazy array is an array in disguise. The raw count is one ``bytes.count``, in C.

simdjson's buffers take about eight times the document's size, so only bodies up to
``LAZY_MAX_BYTES`` are read this way (bigger ones take the plain parse, as before). One
parser per thread serves the bodies up to ``SHARED_MAX_BYTES`` while it is free: its
buffers (a couple of megabytes at most) stay allocated and warm. A bigger body, or one
that comes while anything from the shared parser's last document is still alive (an
exception holding a lazy array, say; simdjson refuses to parse again then), gets a
parser of its own, freed with the request.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import simdjson


__all__ = ["LazyArray", "input_data", "parse_lazily", "skeleton", "tape_numbers"]

LazyArray = simdjson.Array
_Object = simdjson.Object
LAZY_MAX_BYTES = 4 * 1024 * 1024
SHARED_MAX_BYTES = 256 * 1024
SKELETON_MAX_BYTES = 4096
_local = threading.local()  # a parser is not safe to share between threads


def parse_root(raw: bytes) -> simdjson.Object | None:
    """The body as a simdjson object, or None (too big, not JSON, not an object)."""
    if len(raw) > LAZY_MAX_BYTES:
        return None
    try:
        parser = _local.parser
    except AttributeError:
        parser = _local.parser = simdjson.Parser(max_capacity=SHARED_MAX_BYTES)
    try:
        root = parser.parse(raw)
    except (ValueError, RuntimeError):  # UnicodeDecodeError is a ValueError
        try:  # too big for the shared parser, or it is busy: a parser of its own says for sure
            root = simdjson.Parser().parse(raw)
        except (ValueError, RuntimeError):
            return None
    return root if type(root) is _Object else None


def parse_lazily(raw: bytes) -> dict[str, Any] | None:
    """The request object with each input's ``data`` left as a :data:`LazyArray`,
    or None when the plain parse should decide (see the module's notes)."""
    root = parse_root(raw)
    if root is None:
        return None
    converted = _object(root, "inputs")
    if converted is None:
        return None
    document, arrays = converted
    inputs = document.get("inputs")
    if type(inputs) is not LazyArray:
        return None  # no inputs array: nothing to read lazily
    items: list[Any] = []
    arrays += 1  # the inputs array itself
    lazy = 0
    for item in inputs:
        if type(item) is not _Object:
            return None  # not an input object: the plain parse says so
        converted = _object(item, "data")
        if converted is None:
            return None
        fields, nested = converted
        data = fields.get("data")
        if type(data) is LazyArray:
            inner = _sub_arrays(data)
            if inner is None:
                return None
            lazy += 1 + inner
        items.append(fields)
        arrays += nested
    document["inputs"] = items
    if not lazy or raw.count(b"[") != arrays + lazy:
        return None
    return document


def _object(obj: simdjson.Object, lazy_key: str) -> tuple[dict[str, Any], int] | None:
    """A simdjson object as a dict with its ``lazy_key`` array left lazy, and how many
    arrays the conversion made at its top level; None on a repeated key."""
    keys = list(obj.keys())
    if len(set(keys)) != len(keys):
        return None
    converted: dict[str, Any] = {}
    arrays = 0
    for key in keys:
        value = obj[key]
        kind = type(value)
        if kind is LazyArray:
            if key == lazy_key:
                converted[key] = value
                continue
            value = value.as_list()
            arrays += 1
        elif kind is _Object:
            value = value.as_dict()
        converted[key] = value
    return converted, arrays


def _sub_arrays(array: simdjson.Array) -> int | None:
    """How many arrays a lazy ``data`` array holds at any depth, when every array at one
    depth has the same length (numbers, or anything but arrays, below the deepest); None
    when it is ragged. Numbers are never visited: only the first element of each level."""
    count = 0
    level = [array]
    while len(level[0]) and type(level[0][0]) is LazyArray:
        width = len(level[0][0])
        deeper = []
        for outer in level:
            for inner in outer:
                if type(inner) is not LazyArray or len(inner) != width:
                    return None
                deeper.append(inner)
        count += len(deeper)
        level = deeper
    return count


def input_data(raw: bytes, inputs: int) -> list[Any] | None:
    """The ``data`` of each of the first ``inputs`` inputs of the request in ``raw``, as
    simdjson left it (a :data:`LazyArray` for an array); None when ``raw`` does not
    parse or has no such inputs. For a body whose skeleton (below) matches one already
    checked, so nothing else in it needs reading."""
    root = parse_root(raw)
    if root is None:
        return None
    try:
        items = root["inputs"]
        return [items[position]["data"] for position in range(inputs)]
    except (KeyError, IndexError, TypeError):
        return None


def skeleton(raw: bytes) -> bytes | None:
    """``raw`` less the contents of its first ``"data":[…]`` array (or, failing that,
    ``"data": […]``, as ``json.dumps`` writes it), when that array is flat and holds no
    string, object or array: what stays the same between requests that differ only in
    one input's numbers. None for any other body.

    Two valid JSON documents whose skeletons are equal differ only in the values inside
    that one array: the bytes cut out hold no quote, brace or bracket, so they are a
    run of scalar values in both, and everything else parses the same. (The array's key
    is ``data``, or a key ending in an escaped ``"data``; either way its values are
    only ever read as an input's data.)"""
    find = raw.find
    start = find(b'"data":[') + 8
    if start < 8:
        start = find(b'"data": [') + 9  # as json.dumps writes it
        if start < 9:
            return None
    end = find(b"]", start)
    if end < 0 or len(raw) - (end - start) > SKELETON_MAX_BYTES:
        return None
    if find(b"[", start, end) >= 0 or find(b'"', start, end) >= 0 or find(b"{", start, end) >= 0:
        return None
    return raw[:start] + raw[end:]


def tape_numbers(data: simdjson.Array, *, integers: bool) -> np.ndarray | None:
    """A lazy ``data`` array's numbers (flat, or nested and rectangular as
    :func:`parse_lazily` checked), flattened in row-major order: float64, or int64 when
    ``integers``; None when it holds anything else (a string, boolean, null or object;
    for integers also a fraction or a value past int64). The caller checks the count,
    the range and the cast as it does for numbers parsed any other way."""
    try:
        if integers:
            return np.frombuffer(data.as_buffer(of_type="i"), dtype=np.int64)
        return np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError):
        return None
