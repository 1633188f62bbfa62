"""The other signal sources behind a live server: file replay and a serial port (a pty
playing recorded frames), and how their ends reach the client as error events."""

from __future__ import annotations

import os
import threading
import time
import tty
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest

from berth.demo.emg_signal import SyntheticEmg
from berth.streaming import encode_samples
from conftest import BerthServer
from stream_fixtures import emg_server, sse_events, stream


def test_file_replay_feeds_the_recording_and_ends_with_an_error_event(tmp_path: Path, demo_dir: Path) -> None:
    signal, labels = SyntheticEmg(seed=9, cycle=True, rest_s=(0.2, 0.3), gesture_s=(0.4, 0.5)).record(2.0)
    np.savez(tmp_path / "short.npz", signal=signal, fs=np.int64(2000), labels=labels)
    engine_file = demo_dir / "models" / "emg" / "1" / "model.onnx"
    server = emg_server(tmp_path / "server", demo_dir, {"mode": "ninapro", "recording": str(tmp_path / "short.npz")},
                        env={"TENSORRT_ENGINE": str(engine_file)})
    try:
        health = httpx.get(f"{server.url}/health").json()
        assert health["emg_mode"] == "ninapro"
        # the TENSORRT_ENGINE file is the accelerated backend's model; onnxruntime runs it here
        accelerated = httpx.post(f"{server.url}/infer/tensorrt", json={"batch": 1}).json()
        assert accelerated["model"] == "emg_tensorrt" and accelerated["backend"] == "onnxruntime"
        started = time.monotonic()
        events = stream(server.url, {"duration_seconds": 10, "fps": 30})
        ended = time.monotonic() - started
        frames, final = events[:-1], events[-1]
        assert final["error"] == "the recording ended after 4000 samples (2.00 s)"
        assert {"timestamp", "frame"} <= final.keys() and final["frame"] == frames[-1]["frame"]
        assert 1.5 <= ended <= 3.5 and 40 <= len(frames) <= 62
        # the windows are the recording's: the classifier mostly names the recorded gesture
        agree = np.mean([e["prediction"] == e["truth"] for e in frames])
        assert agree >= 0.6, f"predictions match the recording's labels for {agree:.0%} of frames"
        assert len({e["truth"] for e in frames}) >= 3
        # the next stream opens the recording afresh
        again = stream(server.url, {"duration_seconds": 0.3, "fps": 10})
        assert again[-1]["status"] == "completed"
    finally:
        server.stop()


class _Device:
    """A pretend amplifier: plays synthetic EMG into a pty's master side at 2000 Hz."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._play, daemon=True)
        self.thread.start()

    def _play(self) -> None:
        generator = SyntheticEmg(seed=4)
        started = time.monotonic()
        sent = 0
        while not self.stop.wait(0.01):
            due = int((time.monotonic() - started) * 2000) - sent
            data = encode_samples(generator.read(due)[0])
            sent += due
            try:
                os.write(self.master, data)
            except BlockingIOError:
                pass  # nobody reads yet: a real device's samples are lost the same way

    def unplug(self) -> None:
        self.stop.set()
        self.thread.join()
        os.close(self.master)

    def close(self) -> None:
        if not self.stop.is_set():
            self.unplug()
        os.close(self.slave)


@pytest.fixture
def device() -> Iterator[_Device]:
    pretend = _Device()
    yield pretend
    pretend.close()


def test_serial_port_source_streams_and_reports_an_unplugged_device(tmp_path: Path, demo_dir: Path, device: _Device) -> None:
    server: BerthServer = emg_server(tmp_path / "server", demo_dir, {"source_timeout_s": 3.0}, env={"EMG_MODE": "realtime", "EMG_PORT": device.port})
    try:
        assert httpx.get(f"{server.url}/health").json()["emg_mode"] == "realtime"
        frames = []
        final = None
        with httpx.stream("POST", f"{server.url}/infer/stream", json={"fps": 20}, timeout=30) as response:
            assert response.status_code == 200, response.read()
            for kind, event in sse_events(response.iter_lines()):
                if kind != "event":
                    continue
                if "prediction" in event:
                    frames.append(event)
                    if len(frames) == 10:
                        unplugged = time.monotonic()
                        device.unplug()
                else:
                    final = event
                    break
        assert final is not None and "closed" in final["error"], final
        assert time.monotonic() - unplugged < 2.0
        assert all(e["truth"] is None and e["shape"] == [1, 7] for e in frames)  # a live port has no labels
        stats = httpx.get(f"{server.url}/infer/stream/stats").json()
        assert stats["active_streams"] == 0 and stats["emg_mode"] == "realtime"
    finally:
        server.stop()
