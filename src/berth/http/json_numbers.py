"""Proving cheaply that a JSON body's number arrays hold nothing but numbers.

``numpy.asarray(data, dtype=float32)`` is the fastest way from a parsed JSON array to a
tensor, but it converts silently: ``true`` becomes 1, ``null`` becomes NaN and the
string ``"1.5"`` becomes 1.5. Checking every element in Python costs more than the
conversion itself, so the request handlers ask one question of the raw bytes instead.

Deleting every byte a JSON number or array can be made of (digits, sign, point,
exponent, brackets, commas, whitespace) leaves the body's *skeleton*: its braces,
colons, quotes, key and string text, and what remains of the literals (``tru``,
``fals``, ``null`` — the ``e`` goes with the exponent bytes). The parsed document is
then walked, counting the quotes, booleans and nulls it accounts for, everywhere
except inside arrays whose first element is not an object: those are skipped whole,
without looking at their elements. When the skeleton holds no more than the walk
found, no skipped array can hide a string, a boolean, a null or an object at any
depth, so each holds only numbers and arrays of numbers. Every way of being wrong —
a key that contains ``tru``, an escaped quote — makes the skeleton count higher than
the walk, which only sends the request down the slow, exact path.

The seed API's usual body, a single key holding the array, is decided first by a few
byte searches between the array's brackets (:func:`_lone_array_is_plain`), without the
skeleton or the walk.
"""

from __future__ import annotations

from typing import Any

_NUMBER_BYTES = b"0123456789+-.eE[], \t\r\n"


def numbers_only(raw: bytes, document: Any) -> bool:
    """True when every array in ``document`` (parsed from ``raw``) whose first element
    is not an object holds only numbers and arrays of numbers, at every depth."""
    if type(document) is dict and len(document) == 1 and _lone_array_is_plain(raw, document):
        return True
    rest = raw.translate(None, _NUMBER_BYTES)
    counts = [0, 0, 0]  # quotes, booleans, nulls the walk accounts for
    _walk(document, counts)
    return (
        rest.count(b'"') == counts[0]
        and rest.count(b"tru") + rest.count(b"fals") == counts[1]
        and rest.count(b"null") == counts[2]
    )


def _lone_array_is_plain(raw: bytes, document: dict[str, Any]) -> bool:
    """The seed API's usual body, ``{"input": [...]}``: one key whose value is an array.

    When ``raw`` is written exactly as ``{"key":[`` (or ``{"key": [``), the array's
    text, then ``]}``, the bytes between its outer brackets are the whole array, and
    five byte searches (no copy, no walk) over them decide: with no quote (a string),
    no ``t``, ``f`` or ``n`` (true, false, null) and no brace (an object) there, it
    holds only numbers and arrays of numbers. Any other wording returns False and the
    general proof decides."""
    ((key, value),) = document.items()
    if type(value) is not list or (value and type(value[0]) is dict):
        return False  # not an array, or an array of objects (V2's inputs): the general proof walks it
    start = raw.find(b"[")
    end = raw.rfind(b"]")
    if start < 0 or end < start or raw[end + 1 :].strip() != b"}":
        return False
    head = raw[:start]
    framed = b'{"' + key.encode() + b'":'
    if head != framed and head != framed + b" ":
        return False
    find = raw.find
    return (
        find(b'"', start, end) < 0 and find(b"t", start, end) < 0 and find(b"f", start, end) < 0
        and find(b"n", start, end) < 0 and find(b"{", start, end) < 0
    )  # fmt: skip


def _walk(value: Any, counts: list[int]) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            counts[0] += 2 * len(item)  # every key is a string
            stack.extend(item.values())
        elif isinstance(item, list):
            if item and isinstance(item[0], dict):
                stack.extend(item)  # an array of objects (V2's inputs and outputs)
            # any other array is skipped: whatever it holds must not show in the skeleton
        elif isinstance(item, str):
            counts[0] += 2
        elif isinstance(item, bool):
            counts[1] += 1
        elif item is None:
            counts[2] += 1
