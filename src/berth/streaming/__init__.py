"""Signal sources for server-paced streams (seed 001), and frame pacing.

``emg.mode`` picks the source: ``dummy`` (:class:`DummySource`), ``realtime``
(:class:`SerialSource` on ``emg.port``), ``ninapro`` or ``file``
(:class:`ReplaySource` of ``emg.recording``). One :class:`SignalHub` shares the
source between all open streams.
"""

from __future__ import annotations

from typing import Callable

from ..config import BerthConfig
from .base import Chunk, SignalSource, SourceEnded, SourceError
from .dummy import DummySource
from .hub import SignalHub
from .pacing import FrameClock, Tick
from .realtime import FrameDecoder, SerialSource, encode_samples
from .replay import ReplaySource


def source_factory(config: BerthConfig) -> Callable[[], SignalSource]:
    """A callable that opens the configured source (called on the hub's thread)."""
    emg = config.emg
    if emg.mode == "dummy":
        return lambda: DummySource(emg.channels, emg.fs)
    if emg.mode == "realtime":
        assert emg.port is not None  # checked by the config
        port = emg.port
        return lambda: SerialSource(port, emg.channels, emg.fs, fmt=emg.serial_format, baudrate=emg.baudrate)
    path = config.resolve(emg.recording)
    return lambda: ReplaySource(path, emg.channels, emg.fs, loop=emg.replay_loop)


def make_hub(config: BerthConfig) -> SignalHub:
    emg = config.emg
    return SignalHub(source_factory(config), channels=emg.channels, window=emg.window, timeout_s=emg.source_timeout_s)


__all__ = [
    "Chunk",
    "DummySource",
    "FrameClock",
    "FrameDecoder",
    "ReplaySource",
    "SerialSource",
    "SignalHub",
    "SignalSource",
    "SourceEnded",
    "SourceError",
    "Tick",
    "encode_samples",
    "make_hub",
    "source_factory",
]
