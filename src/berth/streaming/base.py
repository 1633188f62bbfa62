"""What every signal source is: a blocking reader of float32 samples, one row per sample.

Sources block (serial reads, file loads), so they are only ever called from the
:class:`~berth.streaming.hub.SignalHub`'s producer thread, never on the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


class SourceError(Exception):
    """The source failed or ended; the message is written for the stream's client."""


class SourceEnded(SourceError):
    """The source has no more samples (a recording ran out, a serial port closed)."""


@dataclass(slots=True)
class Chunk:
    """Consecutive samples: ``signal`` float32 ``[n, channels]``, optional ``labels`` int64 ``[n]``."""

    signal: np.ndarray
    labels: np.ndarray | None = None


class SignalSource(ABC):
    #: a paced source delivers samples at the device's rate (serial): the hub reads it
    #: as fast as it answers. An unpaced one (synthetic, a file) can hand out any number
    #: of samples at once, so the hub asks it for as many as the wall clock says are due.
    paced: bool = False
    #: seconds a paced ``read`` may block before it returns what it has
    read_timeout_s: float = 0.1

    def __init__(self, channels: int, fs: float) -> None:
        self.channels = channels
        self.fs = float(fs)

    @property
    def describe(self) -> str:
        return type(self).__name__

    @abstractmethod
    def read(self, n: int) -> Chunk:
        """Up to ``n`` samples (a paced source: whatever arrived, possibly none).

        Raises :class:`SourceEnded` when there will be no more, :class:`SourceError`
        when the source broke.
        """

    def close(self) -> None:  # noqa: B027 - optional
        """Release the device or file."""
