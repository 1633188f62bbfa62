"""``dummy`` mode: endless synthetic EMG with gesture bursts (:class:`SyntheticEmg`)."""

from __future__ import annotations

from ..demo.emg_signal import SyntheticEmg
from .base import Chunk, SignalSource


class DummySource(SignalSource):
    """Synthetic 16-channel, 2000 Hz EMG (any channel count ≥ 4 and rate); ground-truth
    gesture labels come with every sample."""

    def __init__(self, channels: int = 16, fs: float = 2000, *, seed: int = 0) -> None:
        super().__init__(channels, fs)
        self._generator = SyntheticEmg(channels=channels, fs=int(round(fs)), seed=seed)

    @property
    def describe(self) -> str:
        return f"synthetic EMG, {self.channels} channels at {self.fs:g} Hz"

    def read(self, n: int) -> Chunk:
        signal, labels = self._generator.read(n)
        return Chunk(signal, labels)
