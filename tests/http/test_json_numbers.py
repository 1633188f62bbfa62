"""The cheap proof that a JSON body's number arrays hold only numbers.

A wrong True here would let numpy turn ``true``, ``null`` or ``"1.5"`` into numbers
silently, so every way a non-number can hide in an array is listed; a False only costs
speed (the exact path runs), so the common bodies must come out True.
"""

from __future__ import annotations

import orjson
import pytest

from berth.http.json_numbers import _lone_array_is_plain, numbers_only

PLAIN = [
    b'{"input": [1, 2.5, -3e-2, 4E+5]}',
    b'{"input":[1,2.5,-3e-2,4E+5]}',
    b'{"image":[[1,2],[3,4]]}',
    b'{"input": [1, 2, 3], "model": "digits"}',
    b'{"input": [1, 2, 3], "flag": true, "other": null}',
    b'{"image": [[1, 2], [3, 4]]}',
    b'{"input": []}',
    b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],'
    b' "parameters": {"binary_data_output": true}, "outputs": [{"name": "y", "parameters": {"binary_data": false}}]}',
]

HIDING = [
    b'{"input": [1, true, 3]}',
    b'{"input":[1,true,3]}',
    b'{"input":[1,null]}',
    b'{"input":["1.5",2]}',
    b'{"image":[[1,2],[3,false]]}',
    b'{"input":[1,{"a":1}]}',
    b'{"input": [1, false]}',
    b'{"input": [1, null, 3]}',
    b'{"input": [1, "2", 3]}',
    b'{"input": ["1.5", 2]}',
    b'{"image": [["1.5", 2], [3, 4]]}',  # a nested array that starts with a string
    b'{"image": [[1, 2], [3, "4"]]}',
    b'{"image": [[1, 2], [3, [true]]]}',
    b'{"input": [1, {"a": 1}]}',
    b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, false, 3]}],'
    b' "parameters": {"binary_data_output": true}}',
    b'{"inputs": [{"name": "x", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}',
]

# not hiding anything, but worded so that the skeleton over-counts: the exact path runs
OVERCOUNTED = [
    b'{"input": [1, 2], "model": "trusted"}',
    b'{"input": [1, 2], "model": "nullable"}',
    b'{"a\\"b": [1]}',
]


@pytest.mark.parametrize("raw", PLAIN)
def test_plain_bodies_are_proven(raw: bytes) -> None:
    assert numbers_only(raw, orjson.loads(raw))


@pytest.mark.parametrize("raw", HIDING)
def test_a_hidden_non_number_is_never_missed(raw: bytes) -> None:
    assert not numbers_only(raw, orjson.loads(raw))


@pytest.mark.parametrize("raw", OVERCOUNTED)
def test_doubtful_bodies_take_the_exact_path(raw: bytes) -> None:
    assert not numbers_only(raw, orjson.loads(raw))


# the seed API's usual body, decided by byte searches between the array's brackets
LONE_ARRAYS = [
    (b'{"input":[1,2.5,-3e-2,4E+5]}', True),
    (b'{"input": [[1, 2], [3, 4]]}', True),
    (b'{"image":[[1,2],[3,4]]} ', True),
    (b'{"input":[1,true]}', False),
    (b'{"input":[1,false]}', False),
    (b'{"input":[1,null]}', False),
    (b'{"input":[1,"2"]}', False),
    (b'{"input":[1,{}]}', False),  # numpy would refuse it anyway; here it is simply not proven
    (b'{"input":[[1],[2,[true]]]}', False),
    # worded otherwise: not decided here (the general proof runs)
    (b'{ "input": [1]}', False),
    (b'{"in[put":[1]}', False),
    (b'{"input":1}', False),
]


@pytest.mark.parametrize(("raw", "plain"), LONE_ARRAYS)
def test_a_lone_array_is_decided_by_its_bytes(raw: bytes, plain: bool) -> None:
    assert _lone_array_is_plain(raw, orjson.loads(raw)) is plain
