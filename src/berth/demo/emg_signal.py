"""A deterministic synthetic surface-EMG source: 16 channels at 2000 Hz, with labels.

The demo needs an EMG stream to train the demo classifier on, to write the replay
recording from, and later to feed a live streaming endpoint without any hardware. All
three use this one generator so that what the classifier learned is what it is served.

The model of the signal is deliberately simple, but shaped like the real thing:

* electrodes sit equally spaced around the forearm (an armband); each of the six
  gestures activates muscles at fixed angles, so it lights up a distinct, fixed
  *spatial pattern* over the channels (von Mises bumps around the ring);
* muscle activity is band-limited noise (20-450 Hz, the sEMG band) whose amplitude
  follows a smooth envelope: a raised-cosine onset/offset and a slow 1-4 Hz wobble;
* rest is low white noise plus a little 50 Hz mains hum.

The patterns are constants of the "subject", independent of ``seed``: a classifier
trained on one seed's stream works on any other seed's stream. ``seed`` only changes
the gesture schedule, durations, amplitudes and noise. ``cycle=True`` visits the
gestures in order (fist, open, ...) instead of at random, for a short recording that
shows every gesture.

``read(n)`` is chunk-invariant: reading 100 then 300 samples yields exactly the same
samples as reading 400 at once, so a streaming server may pull any block size. Only
numpy is used, so the server can import this without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: gesture names by class index; class 0 is rest
GESTURES: tuple[str, ...] = ("rest", "fist", "open", "wrist_flex", "wrist_ext", "pinch", "point")

#: per gesture: (angle in degrees around the forearm, concentration kappa, gain) lobes,
#: plus a uniform floor. Chosen so every pair differs in where the energy sits.
_GESTURE_LOBES: dict[int, tuple[float, tuple[tuple[float, float, float], ...]]] = {
    1: (0.45, ((180.0, 2.0, 0.55),)),  # fist: everything co-contracts, flexors most
    2: (0.0, ((0.0, 6.0, 1.0),)),  # open: finger extensors
    3: (0.0, ((120.0, 4.0, 1.0),)),  # wrist_flex
    4: (0.0, ((240.0, 4.0, 1.0),)),  # wrist_ext
    5: (0.0, ((60.0, 8.0, 0.9), (180.0, 8.0, 0.7))),  # pinch: two narrow groups
    6: (0.0, ((300.0, 8.0, 1.0), (120.0, 3.0, 0.35))),  # point: narrow + weak broad
}


def gesture_patterns(channels: int) -> np.ndarray:
    """Return the fixed spatial activation pattern, float64 ``[len(GESTURES), channels]``.

    Row 0 (rest) is all zeros; each other row peaks at 1.0 so gesture amplitude is set
    by the schedule, not by the pattern.
    """
    angles = np.arange(channels) * (2.0 * math.pi / channels)
    patterns = np.zeros((len(GESTURES), channels))
    for gesture, (floor, lobes) in _GESTURE_LOBES.items():
        row = np.full(channels, floor)
        for centre_deg, kappa, gain in lobes:
            row += gain * np.exp(kappa * (np.cos(angles - math.radians(centre_deg)) - 1.0))
        patterns[gesture] = row / row.max()
    return patterns


def _bandpass_fir(fs: float, low_hz: float = 20.0, high_hz: float = 450.0, taps: int = 31) -> np.ndarray:
    """Windowed-sinc band-pass, scaled so filtered unit white noise has unit variance.

    Short on purpose (cheap per sample); the 20 Hz edge is soft, which is fine for
    giving the noise an EMG-like spectrum.
    """
    n = np.arange(taps) - (taps - 1) / 2.0

    def lowpass(cut: float) -> np.ndarray:
        return 2.0 * cut / fs * np.sinc(2.0 * cut / fs * n)

    h = (lowpass(high_hz) - lowpass(low_hz)) * np.hamming(taps)
    return h / np.sqrt(np.sum(h * h))


@dataclass
class _Segment:
    """One stretch of the schedule: a gesture (or rest) held for ``length`` samples."""

    label: int
    length: int
    level: float  # peak amplitude of the muscle noise
    wobble_hz: float
    wobble_phase: float
    ramp: int  # samples of raised-cosine onset and offset
    pos: int = 0


class SyntheticEmg:
    """Endless labelled synthetic EMG; see the module docstring for the signal model.

    >>> src = SyntheticEmg(seed=1)
    >>> x, y = src.read(2000)          # one second: float32 [2000, 16], int64 [2000]
    """

    def __init__(
        self,
        channels: int = 16,
        fs: int = 2000,
        seed: int = 0,
        *,
        rest_s: tuple[float, float] = (0.3, 1.0),
        gesture_s: tuple[float, float] = (0.5, 1.5),
        rest_noise: float = 0.01,
        hum: float = 0.004,
        level: tuple[float, float] = (0.25, 0.6),
        cycle: bool = False,
    ) -> None:
        if channels < 4:
            raise ValueError("need at least 4 channels for distinct gesture patterns")
        self.channels = channels
        self.fs = fs
        self.seed = seed
        self.rest_s = rest_s
        self.gesture_s = gesture_s
        self.rest_noise = rest_noise
        self.hum = hum
        self.level = level
        self.cycle = cycle
        self.patterns = gesture_patterns(channels).astype(np.float64)
        self._fir = _bandpass_fir(fs)
        self._hum_phase = np.arange(channels) * (2.0 * math.pi / channels)
        self.reset()

    @property
    def labels(self) -> tuple[str, ...]:
        return GESTURES

    @property
    def samples_emitted(self) -> int:
        """How many samples ``read`` has returned since construction or ``reset``."""
        return self._t

    def reset(self) -> None:
        """Restart the stream from the beginning (same seed => same samples)."""
        # two independent streams so the schedule does not depend on how many noise
        # samples were drawn, i.e. on how the caller chunks its reads
        root = np.random.SeedSequence(self.seed)
        plan_seq, noise_seq = root.spawn(2)
        self._plan_rng = np.random.default_rng(plan_seq)
        self._noise_rng = np.random.default_rng(noise_seq)
        self._t = 0
        self._fir_tail = np.zeros((len(self._fir) - 1, self.channels))
        self._next_is_rest = True
        self._next_in_cycle = 1
        self._segment = self._new_segment()

    def _new_segment(self) -> _Segment:
        rng = self._plan_rng
        if self._next_is_rest:
            label = 0
            seconds = rng.uniform(*self.rest_s)
        else:
            label = int(rng.integers(1, len(GESTURES)))
            if self.cycle:
                label = self._next_in_cycle
                self._next_in_cycle = label % (len(GESTURES) - 1) + 1
            seconds = rng.uniform(*self.gesture_s)
        self._next_is_rest = not self._next_is_rest
        return _Segment(
            label=label,
            length=max(1, int(round(seconds * self.fs))),
            level=float(rng.uniform(*self.level)),
            wobble_hz=float(rng.uniform(1.0, 4.0)),
            wobble_phase=float(rng.uniform(0.0, 2.0 * math.pi)),
            ramp=int(0.06 * self.fs),
        )

    def _labels_and_envelope(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Advance the schedule by ``n`` samples: label and muscle envelope per sample."""
        labels = np.empty(n, dtype=np.int64)
        envelope = np.empty(n, dtype=np.float64)
        done = 0
        while done < n:
            seg = self._segment
            take = min(n - done, seg.length - seg.pos)
            idx = np.arange(seg.pos, seg.pos + take, dtype=np.float64)
            labels[done : done + take] = seg.label
            if seg.label == 0:
                envelope[done : done + take] = 0.0
            else:
                ramp = max(1, min(seg.ramp, seg.length // 2))
                edge = np.minimum(np.minimum(idx, seg.length - 1 - idx) / ramp, 1.0)
                shape = 0.5 - 0.5 * np.cos(math.pi * edge)
                wobble = 1.0 + 0.3 * np.sin(2.0 * math.pi * seg.wobble_hz * idx / self.fs + seg.wobble_phase)
                envelope[done : done + take] = seg.level * shape * wobble
            seg.pos += take
            done += take
            if seg.pos >= seg.length:
                self._segment = self._new_segment()
        return labels, envelope

    def read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the next ``n`` samples: signal float32 ``[n, channels]``, labels int64 ``[n]``."""
        if n < 0:
            raise ValueError("n must be >= 0")
        c = self.channels
        if n == 0:
            return np.zeros((0, c), dtype=np.float32), np.zeros(0, dtype=np.int64)
        labels, envelope = self._labels_and_envelope(n)
        # one draw per call, row-major [n, 2c]: sample-by-sample order, so chunking
        # the reads does not change the numbers
        noise = self._noise_rng.standard_normal((n, 2 * c))
        baseline, raw = noise[:, :c], noise[:, c:]

        # band-limit the muscle noise, carrying the filter's history across calls
        padded = np.concatenate([self._fir_tail, raw], axis=0)
        muscle = np.empty_like(raw)
        for ch in range(c):
            muscle[:, ch] = np.convolve(padded[:, ch], self._fir, mode="valid")
        self._fir_tail = padded[-(len(self._fir) - 1) :]

        t = (self._t + np.arange(n)) / self.fs
        hum = self.hum * np.sin(2.0 * math.pi * 50.0 * t[:, None] + self._hum_phase[None, :])
        spatial = self.patterns[labels]  # [n, c]
        signal = self.rest_noise * baseline + hum + envelope[:, None] * spatial * muscle
        self._t += n
        return signal.astype(np.float32), labels

    def record(self, seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """Convenience: read ``seconds`` worth of samples from the current position."""
        return self.read(int(round(seconds * self.fs)))


__all__ = ["GESTURES", "SyntheticEmg", "gesture_patterns"]
