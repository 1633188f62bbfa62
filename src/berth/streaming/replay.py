"""``ninapro`` / ``file`` mode: replay a recorded ``.npz`` at its sampling rate.

The file holds ``signal`` float32 ``[T, channels]`` and optionally ``fs`` (a scalar)
and ``labels`` int ``[T]`` — the layout ``berth demo build`` writes to
``recordings/emg_demo.npz``. It is read with ``allow_pickle=False``. When the
recording runs out the source ends (streams get an error event saying so), unless
``loop`` starts it again from the beginning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Chunk, SignalSource, SourceEnded, SourceError


class ReplaySource(SignalSource):
    def __init__(self, path: Path, channels: int, fs: float, *, loop: bool = False) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                if "signal" not in data:
                    raise SourceError("the recording has no 'signal' array")
                signal = np.asarray(data["signal"])
                file_fs = float(data["fs"]) if "fs" in data else fs
                labels = np.asarray(data["labels"]).astype(np.int64) if "labels" in data else None
        except SourceError:
            raise
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot read the recording '{path.name}': {type(exc).__name__}") from None
        if signal.ndim != 2 or signal.shape[1] != channels:
            raise SourceError(f"the recording is shaped {list(signal.shape)}; expected [samples, {channels}]")
        if len(signal) == 0:
            raise SourceEnded("the recording is empty")
        if labels is not None and labels.shape != (len(signal),):
            labels = None
        super().__init__(channels, file_fs)
        self.name = path.name
        self.signal = np.ascontiguousarray(signal, dtype=np.float32)
        self.labels = labels
        self.loop = loop
        self.position = 0

    @property
    def describe(self) -> str:
        return f"replay of {self.name} ({len(self.signal)} samples at {self.fs:g} Hz{', looped' if self.loop else ''})"

    def read(self, n: int) -> Chunk:
        total = len(self.signal)
        if self.position >= total:
            if not self.loop:
                seconds = total / self.fs
                raise SourceEnded(f"the recording ended after {total} samples ({seconds:.2f} s)")
            self.position = 0
        end = min(total, self.position + n)
        start, self.position = self.position, end
        labels = self.labels[start:end] if self.labels is not None else None
        return Chunk(self.signal[start:end], labels)
