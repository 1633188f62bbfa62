"""The worker wire format: msgpack headers, raw frames, numpy.frombuffer; never pickle."""

from __future__ import annotations

import inspect
import pickle

import msgpack
import numpy as np
import pytest

from berth.isolation import backoff, protocol, runtime, worker
from berth.isolation.backoff import CrashBackoff
from berth.isolation.protocol import ProtocolError, decode, encode

NUMERIC = [
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    np.float16, np.float32, np.float64, np.complex64, np.complex128,
]


@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
def test_every_numeric_dtype_round_trips_through_raw_frames(dtype: type) -> None:
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    frames = encode({"op": "run", "id": 7}, {"a": values, "scalar": values[0, 0, 0], "empty": values[:0]})
    header = msgpack.unpackb(frames[0], raw=False)  # the header is plain msgpack
    assert header["op"] == "run" and header["names"] == ["a", "scalar", "empty"]
    assert header["dtypes"][0] == np.dtype(dtype).str and header["shapes"] == [[3, 4, 5], [], [0, 4, 5]]
    assert bytes(frames[1]) == values.tobytes()  # tensor i is frame i+1, its raw bytes
    decoded_header, tensors = decode([bytes(f) for f in frames])
    assert decoded_header == {"op": "run", "id": 7}
    for name, expected in (("a", values), ("scalar", np.asarray(values[0, 0, 0])), ("empty", values[:0])):
        got = tensors[name]
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    assert not tensors["a"].flags.writeable  # a frombuffer view over the frame, not a copy


def test_non_contiguous_and_big_endian_arrays_arrive_as_sent() -> None:
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    strided = base[:, ::2]
    swapped = np.arange(5, dtype=">i4")
    _, tensors = decode([bytes(f) for f in encode({"ok": True}, {"s": strided, "b": swapped})])
    np.testing.assert_array_equal(tensors["s"], strided)
    np.testing.assert_array_equal(tensors["b"], swapped)
    assert tensors["b"].dtype == np.dtype(">i4")


def test_objects_strings_and_malformed_messages_are_refused() -> None:
    with pytest.raises(ProtocolError, match="cannot cross"):
        encode({}, {"o": np.array(["a", None], dtype=object)})
    with pytest.raises(ProtocolError, match="cannot cross"):
        encode({}, {"s": np.array(["abc"])})
    good = encode({"op": "run"}, {"x": np.ones(4, np.float32)})
    header = msgpack.unpackb(good[0])
    for dtype_text in ("|O", "O", "|S3", "|V8", "<U2", "f4,f4", 5):
        bad = msgpack.packb({**header, "dtypes": [dtype_text]})
        with pytest.raises(ProtocolError):
            decode([bad, bytes(good[1])])
    with pytest.raises(ProtocolError, match="needs 16"):
        decode([good[0], b"\x00" * 12])  # a frame shorter than its shape says
    with pytest.raises(ProtocolError, match="frame"):
        decode([good[0]])  # the tensor frame is missing
    with pytest.raises(ProtocolError, match="shape"):
        decode([msgpack.packb({**header, "shapes": [[-4]]}), bytes(good[1])])
    with pytest.raises(ProtocolError, match="map"):
        decode([msgpack.packb([1, 2])])
    with pytest.raises(ProtocolError, match="extension"):
        decode([msgpack.packb({"op": msgpack.ExtType(1, b"x")})])
    with pytest.raises(ProtocolError, match="not msgpack"):
        decode([pickle.dumps({"op": "run"})])  # a pickle is not even parsed as one


def test_no_pickle_anywhere_on_the_wire() -> None:
    for module in (protocol, worker, runtime, backoff):
        source = inspect.getsource(module)
        assert "import pickle" not in source
        for call in ("send_pyobj", "recv_pyobj", "send_serialized", "recv_serialized", "pickle."):
            assert call not in source, f"{module.__name__} uses {call}"
    frames = encode({"op": "load", "options": {"threads": 2}}, {"x": np.zeros(2, np.int64)})
    assert not bytes(frames[0]).startswith(b"\x80")  # pickle streams start with PROTO (0x80)


def test_crash_backoff_doubles_to_a_cap_and_resets_after_a_long_run(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(backoff.time, "monotonic", lambda: now[0])
    crashes = CrashBackoff()
    key = ("m", "1")
    assert crashes.retry_after(key, 30.0) == 30.0  # a plain load failure keeps the default
    crashes.loaded(key)
    delays = []
    for _ in range(7):
        delays.append(crashes.crashed(key))
        assert crashes.retry_after(key, 30.0) == delays[-1]
        now[0] += 1
        crashes.loaded(key)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert crashes.retry_after(key, 30.0) == 30.0  # serving again: the default applies to load failures
    now[0] += backoff.RESET_S  # served a long time before the next crash
    assert crashes.crashed(key) == 1.0
    assert crashes.restart_failed(key) == 2.0  # the restart failed too: back off further
    assert crashes.restart_failed(("other", "1")) is None  # not after a crash: not ours


def test_the_isolation_setting_is_thread_or_process() -> None:
    from berth.config import load_config
    from berth.errors import ConfigError

    config = load_config(environ={}, overrides={"models": {"a": {"isolation": "process"}, "b": {}}})
    assert config.models["a"].isolation == "process" and config.models["b"].isolation == "thread"
    with pytest.raises(ConfigError, match=r"models\.a\.isolation"):
        load_config(environ={}, overrides={"models": {"a": {"isolation": "fork"}}})
