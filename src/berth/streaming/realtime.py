"""``realtime`` mode: samples from an EMG amplifier on a serial port (``EMG_PORT``).

Two frame formats (``emg.serial_format``), both little-endian and stateless, so a
reader that starts mid-stream finds its footing:

``binary`` (default)
    one frame per sample: the sync bytes ``0xA5 0x5A``, then ``channels`` IEEE-754
    float32 values, little-endian (2 + 4 × channels bytes; 66 for 16 channels). A
    frame whose sync bytes are missing is skipped byte by byte until they reappear.

``csv``
    one sample per line: ``channels`` decimal numbers separated by commas, ending in
    ``\\n`` (``\\r\\n`` is fine). Blank lines, lines starting with ``#`` and lines
    with the wrong count are skipped (counted in ``malformed``).

:func:`encode_samples` writes either format (tests and device simulators use it).
The port is opened with pyserial, so ``EMG_PORT`` may also be a pyserial URL
(``socket://host:port``, ``rfc2217://…``). A closed or vanished port ends the source.
"""

from __future__ import annotations

import numpy as np

from .base import Chunk, SignalSource, SourceEnded, SourceError

SYNC = b"\xa5\x5a"
#: most bytes kept while looking for the next frame (a device sending garbage cannot grow memory)
_MAX_PENDING = 1 << 20


def encode_samples(signal: np.ndarray, fmt: str = "binary") -> bytes:
    """``signal`` ``[n, channels]`` as frames of the given format."""
    signal = np.asarray(signal, dtype="<f4")
    if fmt == "binary":
        frames = np.empty((len(signal), 2 + 4 * signal.shape[1]), dtype=np.uint8)
        frames[:, 0], frames[:, 1] = SYNC[0], SYNC[1]
        frames[:, 2:] = signal.view(np.uint8).reshape(len(signal), -1)
        return frames.tobytes()
    if fmt == "csv":
        return b"".join((",".join(f"{v:.7g}" for v in row) + "\n").encode() for row in signal)
    raise ValueError(f"unknown frame format '{fmt}'")


class FrameDecoder:
    """Bytes in, ``[n, channels]`` float32 samples out, across arbitrary chunk borders."""

    def __init__(self, channels: int, fmt: str = "binary") -> None:
        if fmt not in ("binary", "csv"):
            raise ValueError(f"unknown frame format '{fmt}'")
        self.channels = channels
        self.fmt = fmt
        self.frame_size = 2 + 4 * channels
        self.pending = bytearray()
        self.malformed = 0

    def feed(self, data: bytes) -> np.ndarray:
        self.pending += data
        rows = self._binary() if self.fmt == "binary" else self._csv()
        if len(self.pending) > _MAX_PENDING:
            self.malformed += 1
            del self.pending[: len(self.pending) - self.frame_size]
        if not rows:
            return np.zeros((0, self.channels), dtype=np.float32)
        return np.concatenate(rows) if len(rows) > 1 else rows[0]

    def _binary(self) -> list[np.ndarray]:
        rows: list[np.ndarray] = []
        size = self.frame_size
        buf = self.pending
        start = 0
        while len(buf) - start >= size:
            count = (len(buf) - start) // size
            # a copy: a view would pin the bytearray, which is trimmed below
            frames = np.frombuffer(bytes(buf[start:start + count * size]), dtype=np.uint8).reshape(count, size)
            good = (frames[:, 0] == SYNC[0]) & (frames[:, 1] == SYNC[1])
            aligned = count if good.all() else int(good.argmin())
            if aligned:
                rows.append(np.ascontiguousarray(frames[:aligned, 2:]).view("<f4").astype(np.float32).reshape(aligned, self.channels))
                start += aligned * size
                continue
            # out of step: skip to the next sync bytes
            self.malformed += 1
            found = buf.find(SYNC, start + 1)
            start = found if found >= 0 else len(buf) - 1
        del buf[:start]
        return rows

    def _csv(self) -> list[np.ndarray]:
        buf = self.pending
        end = buf.rfind(b"\n")
        if end < 0:
            return []
        lines = bytes(buf[: end + 1]).splitlines()
        del buf[: end + 1]
        values: list[list[float]] = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            parts = line.split(b",")
            if len(parts) != self.channels:
                self.malformed += 1
                continue
            try:
                values.append([float(p) for p in parts])
            except ValueError:
                self.malformed += 1
        return [np.asarray(values, dtype=np.float32)] if values else []


class SerialSource(SignalSource):
    paced = True

    def __init__(self, port: str, channels: int, fs: float, *, fmt: str = "binary", baudrate: int = 115200) -> None:
        super().__init__(channels, fs)
        import serial  # pyserial; only this mode needs it

        self.port = port
        self.decoder = FrameDecoder(channels, fmt)
        try:
            self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=self.read_timeout_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SourceError(f"cannot open serial port {port}: {_reason(exc)}") from None
        self._errors = (serial.SerialException, OSError)

    @property
    def describe(self) -> str:
        return f"serial port {self.port} ({self.decoder.fmt} frames, {self.channels} channels at {self.fs:g} Hz)"

    def read(self, n: int) -> Chunk:
        try:
            waiting = self._serial.in_waiting
            data = self._serial.read(min(max(waiting, 1), n * self.decoder.frame_size * 4))
        except self._errors as exc:
            raise SourceEnded(f"serial port {self.port} closed: {_reason(exc)}") from None
        return Chunk(self.decoder.feed(data) if data else np.zeros((0, self.channels), dtype=np.float32))

    def close(self) -> None:
        try:
            self._serial.close()
        except self._errors:
            pass


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
