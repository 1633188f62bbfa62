"""The default demo model: a handwritten-digit classifier, served three ways.

MNIST cannot be downloaded offline, but scikit-learn ships the 1,797-image UCI digits
set (8x8, values 0..16). Upsampling it bilinearly to 28x28 in [0, 1] gives inputs with
MNIST's shape, so clients, the web page's drawing pad and the docs can treat the model
as an MNIST classifier.

The architecture is fixed to a Flatten + three Linear layers + Softmax MLP because the
Paragon exporter only translates that shape; the same trained weights are written as
ONNX (``digits``), TorchScript (``digits_torch``) and Paragon JSON (``digits_paragon``)
so one request can be compared across three runtimes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from .exporting import ExportReport, export_onnx, save_torchscript
from .layout import DIGIT_LABELS, ModelEntry, model_file
from .repro import TRAIN_THREADS, seed_everything, torch_threads
from .sizing import estimate_memory_mb
from .staging import DemoBuildError

SIDE = 28
MIN_ACCURACY = 0.95
MAX_BATCH = 32
PARAGON_ATOL = 1e-4


def load_images() -> tuple[np.ndarray, np.ndarray]:
    """All bundled digits as float32 ``[N, 28, 28]`` in [0, 1] and int64 labels ``[N]``."""
    data = load_digits()
    small = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N,1,8,8]
    big = F.interpolate(small, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    return big.squeeze(1).clamp_(0.0, 1.0).numpy(), data.target.astype(np.int64)


def make_model() -> nn.Sequential:
    """The exact MLP the Paragon exporter understands; outputs probabilities."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(SIDE * SIDE, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
        nn.Softmax(dim=1),
    )


def _shift(batch: torch.Tensor, gen: torch.Generator, max_px: int = 2) -> torch.Tensor:
    """Light augmentation: translate each image by up to ``max_px`` pixels, zero-filled.

    Drawn digits are rarely centred exactly like the training set; small shifts make
    the MLP less sensitive to that. Done by indexing a padded copy, all at once.
    """
    n = batch.shape[0]
    shifts = torch.randint(-max_px, max_px + 1, (n, 2), generator=gen)
    padded = F.pad(batch, (max_px, max_px, max_px, max_px))
    grid = torch.arange(SIDE)
    rows = grid[None, :] + max_px - shifts[:, :1]  # [n, SIDE]
    cols = grid[None, :] + max_px - shifts[:, 1:]
    return padded[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


@dataclass
class DigitsResult:
    """A trained digits model and how well it does on the held-out 20%."""

    model: nn.Sequential
    test_accuracy: float
    train_accuracy: float
    n_train: int
    n_test: int
    seconds: float
    test_images: np.ndarray  # held-out images, reused to compare runtimes


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def train(seed: int = 0, epochs: int = 60, batch_size: int = 64) -> DigitsResult:
    """Train on a stratified 80% split, single-threaded (see :mod:`.repro` for why)."""
    with torch_threads(TRAIN_THREADS):
        return _train(seed, epochs, batch_size)


def _train(seed: int, epochs: int, batch_size: int) -> DigitsResult:
    """The training loop; the softmax is left out of the loss (logits + cross-entropy)."""
    start = time.perf_counter()
    gen = seed_everything(seed)
    images, labels = load_images()
    x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=0.2, stratify=labels, random_state=seed)
    x_tr_t, y_tr_t = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    x_te_t, y_te_t = torch.from_numpy(x_te), torch.from_numpy(y_te)

    model = make_model()
    logits = model[:-1]  # shares the Linear layers; CE wants logits, not probabilities
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_tr_t), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(logits(_shift(x_tr_t[idx], gen)), y_tr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    return DigitsResult(
        model=model,
        test_accuracy=_accuracy(model, x_te_t, y_te_t),
        train_accuracy=_accuracy(model, x_tr_t, y_tr_t),
        n_train=len(x_tr),
        n_test=len(x_te),
        seconds=time.perf_counter() - start,
        test_images=x_te,
    )


def _export_paragon(result: DigitsResult, root: Path, log: Callable[[str], Any]) -> ExportReport | None:
    """Write ``digits_paragon`` with the Paragon exporter, if that module exists yet.

    The exporter lives in :mod:`berth.runtimes.paragon_export` (imported here, lazily,
    so the rest of the demo builds without it). When the Paragon runtime is importable
    the file is loaded back and compared with the torch probabilities.
    """
    try:
        from berth.runtimes.paragon_export import export_torch_mlp
    except ModuleNotFoundError as exc:
        if exc.name != "berth.runtimes.paragon_export":
            raise  # the exporter exists but is broken: say so, do not skip silently
        log("  digits_paragon skipped: berth.runtimes.paragon_export not available")
        return None
    start = time.perf_counter()
    path = model_file(root, "digits_paragon", ".json")
    export_torch_mlp(result.model, input_hw=(SIDE, SIDE), path=path, model_name="mnist")
    worst = float("nan")
    try:
        from berth.runtimes.base import Placement
        from berth.runtimes.paragon import ParagonRuntime
    except ImportError:
        log("  digits_paragon written; Paragon runtime unavailable, not verified")
    else:
        x = result.test_images[:16]
        runtime = ParagonRuntime(path, Placement("cpu:0"))
        runtime.load()
        try:
            got = np.asarray(runtime.run({"input": x})["output"])
        finally:
            runtime.unload()
        with torch.no_grad():
            expected = result.model(torch.from_numpy(x)).numpy()
        worst = float(np.max(np.abs(got.reshape(expected.shape) - expected)))
        if not worst < PARAGON_ATOL:
            raise DemoBuildError(f"digits_paragon differs from torch by {worst:.3g} (limit {PARAGON_ATOL})")
    return ExportReport(path, path.stat().st_size, worst, time.perf_counter() - start)


def write(
    result: DigitsResult, root: Path, log: Callable[[str], Any] = print
) -> tuple[list[ModelEntry], dict[str, ExportReport]]:
    """Write the three digits variants under ``root/models``; return configs and reports."""
    if result.test_accuracy <= MIN_ACCURACY:
        raise DemoBuildError(f"digits held-out accuracy {result.test_accuracy:.4f} is not above {MIN_ACCURACY}")
    example = {"input": torch.from_numpy(result.test_images[:4].copy())}
    reports = {
        "digits": export_onnx(result.model, example, ["probs"], model_file(root, "digits", ".onnx")),
        "digits_torch": save_torchscript(result.model, example, ["probs"], model_file(root, "digits_torch", ".pt")),
    }
    paragon = _export_paragon(result, root, log)
    if paragon is not None:
        reports["digits_paragon"] = paragon

    def entry(name: str, backend: str, suffix: str, what: str) -> ModelEntry:
        mem = estimate_memory_mb(result.model, example, reports[name].bytes, MAX_BATCH)
        return ModelEntry(
            name=name,
            backend=backend,
            suffix=suffix,
            max_batch_size=MAX_BATCH,
            max_queue_delay_ms=0,
            memory_estimate_mb=mem,
            description=f"Handwritten digit classifier, 28x28 in [0,1] -> 10 probabilities ({what})",
            labels=list(DIGIT_LABELS),
        )

    entries = [
        entry("digits", "onnx", ".onnx", "ONNX"),
        entry("digits_torch", "torchscript", ".pt", "TorchScript, same weights as digits"),
    ]
    if paragon is not None:
        entries.append(entry("digits_paragon", "paragon", ".json", "Paragon JSON, same weights as digits"))
    return entries, reports


__all__ = ["DigitsResult", "load_images", "make_model", "train", "write"]
