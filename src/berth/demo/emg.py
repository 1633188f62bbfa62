"""The EMG gesture classifier and the replay recording, both from :mod:`.emg_signal`.

The streaming demo slides a 100 ms window (200 samples at 2000 Hz, 16 channels) over a
live or replayed EMG stream and classifies each window into one of seven gestures. A
small 1-D conv net over time is enough for the synthetic signal: gestures differ in
*which channels* carry energy, which a few conv layers with ReLU (that learn to
rectify) and a global average (the energy per learned channel mix) pick up.

Training data, held-out data and the recording come from differently seeded
generators, so the held-out accuracy measures generalisation to unseen schedules and
noise, not memorisation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .emg_signal import GESTURES, SyntheticEmg
from .exporting import ExportReport, export_onnx, save_torchscript
from .layout import EMG_RECORDING, ModelEntry, model_file
from .repro import TRAIN_THREADS, seed_everything, torch_threads
from .sizing import estimate_memory_mb
from .staging import DemoBuildError

CHANNELS = 16
FS = 2000
WINDOW = 200
MAX_BATCH = 32
MIN_ACCURACY = 0.90

TRAIN_SEED = 101
TEST_SEED = 202
RECORDING_SEED = 303


class EmgNet(nn.Module):
    """``emg`` float32 ``[batch, 200, 16]`` (time, channel) -> ``logits`` ``[batch, 7]``."""

    def __init__(self, channels: int = CHANNELS, classes: int = len(GESTURES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(channels, 32, kernel_size=9, stride=2, padding=4),
            nn.ReLU(),
            nn.Conv1d(32, 32, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(32, 64, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
        )
        self.head = nn.Linear(64, classes)

    def forward(self, emg: torch.Tensor) -> torch.Tensor:
        x = self.features(emg.transpose(1, 2))  # Conv1d wants [batch, channel, time]
        return self.head(x.mean(dim=2))  # global average over time


def windows(seconds: float, seed: int, hop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a fresh stream into ``[n, 200, 16]`` windows with their labels.

    Returns ``(x, y, single)``: ``y`` is the window's majority gesture (a window that
    straddles a transition is mostly what it mostly contains; the held-out score uses
    the same rule) and ``single`` marks windows that lie entirely inside one segment.
    """
    signal, labels = SyntheticEmg(CHANNELS, FS, seed=seed).record(seconds)
    starts = np.arange(0, len(signal) - WINDOW + 1, hop)
    idx = starts[:, None] + np.arange(WINDOW)[None, :]
    window_labels = labels[idx]  # [n, WINDOW]
    counts = (window_labels[:, :, None] == np.arange(len(GESTURES))).sum(axis=1)
    single = (window_labels == window_labels[:, :1]).all(axis=1)
    return signal[idx], counts.argmax(axis=1).astype(np.int64), single


@dataclass
class EmgResult:
    """A trained EMG model and its held-out window accuracy."""

    model: EmgNet
    test_accuracy: float
    test_accuracy_single_label: float  # windows entirely inside one gesture or rest
    train_accuracy: float
    n_train: int
    n_test: int
    seconds: float
    test_windows: np.ndarray


def train(
    seed: int = 0,
    train_seconds: float = 150.0,
    test_seconds: float = 40.0,
    epochs: int = 6,
    batch_size: int = 128,
) -> EmgResult:
    """Train on one generator seed, score on another, single-threaded (see :mod:`.repro`)."""
    with torch_threads(TRAIN_THREADS):
        return _train(seed, train_seconds, test_seconds, epochs, batch_size)


def _train(seed: int, train_seconds: float, test_seconds: float, epochs: int, batch_size: int) -> EmgResult:
    """The training loop; a fixed epoch count (not a time budget) keeps it deterministic."""
    start = time.perf_counter()
    gen = seed_everything(seed)
    x_tr, y_tr, _ = windows(train_seconds, TRAIN_SEED, hop=50)
    x_te, y_te, single = windows(test_seconds, TEST_SEED, hop=100)

    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    model = EmgNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = epochs * ((len(xt) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred_te = model(torch.from_numpy(x_te)).argmax(dim=1).numpy()
        pred_tr = torch.cat([model(xt[i : i + 1024]).argmax(dim=1) for i in range(0, len(xt), 1024)]).numpy()
    return EmgResult(
        model=model,
        test_accuracy=float((pred_te == y_te).mean()),
        test_accuracy_single_label=float((pred_te[single] == y_te[single]).mean()),
        train_accuracy=float((pred_tr == y_tr).mean()),
        n_train=len(x_tr),
        n_test=len(x_te),
        seconds=time.perf_counter() - start,
        test_windows=x_te,
    )


def write(result: EmgResult, root: Path) -> tuple[list[ModelEntry], dict[str, ExportReport]]:
    """Write ``emg`` (ONNX) and ``emg_torch`` (TorchScript) under ``root/models``."""
    if result.test_accuracy <= MIN_ACCURACY:
        raise DemoBuildError(f"emg held-out window accuracy {result.test_accuracy:.4f} is not above {MIN_ACCURACY}")
    example = {"emg": torch.from_numpy(result.test_windows[:4].copy())}
    reports = {
        "emg": export_onnx(result.model, example, ["logits"], model_file(root, "emg", ".onnx")),
        "emg_torch": save_torchscript(result.model, example, ["logits"], model_file(root, "emg_torch", ".pt")),
    }
    entries = []
    for name, backend, suffix, what in (
        ("emg", "onnx", ".onnx", "ONNX"),
        ("emg_torch", "torchscript", ".pt", "TorchScript, same weights as emg"),
    ):
        entries.append(
            ModelEntry(
                name=name,
                backend=backend,
                suffix=suffix,
                max_batch_size=MAX_BATCH,
                max_queue_delay_ms=0,
                memory_estimate_mb=estimate_memory_mb(result.model, example, reports[name].bytes, MAX_BATCH),
                description=f"EMG gesture classifier, 200x16 window at 2000 Hz -> 7 logits ({what})",
                labels=list(GESTURES),
            )
        )
    return entries, reports


def write_recording(root: Path, seconds: float = 10.0, seed: int = RECORDING_SEED) -> tuple[Path, dict[str, object]]:
    """Write ``recordings/emg_demo.npz`` for file replay: signal, fs, labels.

    ``cycle=True`` with short rests visits all six gestures in order within ten
    seconds, so a replay shows every class; durations stay inside the training range.
    """
    source = SyntheticEmg(CHANNELS, FS, seed=seed, cycle=True, rest_s=(0.3, 0.6), gesture_s=(0.6, 1.0))
    signal, labels = source.record(seconds)
    path = root / EMG_RECORDING
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, signal=signal, fs=np.int64(FS), labels=labels)
    summary: dict[str, object] = {
        "path": EMG_RECORDING,
        "seconds": len(signal) / FS,
        "samples": len(signal),
        "seed": seed,
        "gestures_present": sorted({GESTURES[int(i)] for i in np.unique(labels)}),
    }
    return path, summary


__all__ = ["EmgNet", "EmgResult", "train", "windows", "write", "write_recording"]
