"""The one place models leave torch: ONNX and TorchScript export, each verified.

torch 2.13's ``torch.onnx.export`` uses the torch.export-based exporter (it needs
onnxscript) and, unless told ``external_data=False``, writes the weights to a side
file that a repository copy can easily lose. Every demo ONNX file must instead be a
single self-contained file whose first axis is a dynamic dimension named ``batch``, so
the server's dynamic batcher can stack requests. Rather than trust the exporter, each
file is re-opened in onnxruntime and compared with the torch output, at the example
batch size and at batch 1; a mismatch stops the build (:class:`DemoBuildError`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from .repro import BUILD_THREADS
from .staging import DemoBuildError

BATCH_DIM = "batch"
ONNX_ATOL = 1e-4
TORCHSCRIPT_ATOL = 1e-5
#: loggers of the exporter stack that report routine work at INFO
_CHATTY_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


@dataclass(frozen=True)
class ExportReport:
    """What an export produced: file, size, worst deviation from torch, time taken."""

    path: Path
    bytes: int
    max_abs_diff: float
    seconds: float


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence exporter chatter that says nothing about our models.

    (``torchvision is not installed`` registration notes, deprecation notices for
    torch.jit, pytree FutureWarnings, and the optimizer passes' INFO lines that appear
    when the caller configured logging at INFO, as ``berth`` does.) Errors still
    propagate.
    """
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING if logger.name != "torch.onnx" else logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def ort_session(path: Path, threads: int = BUILD_THREADS) -> ort.InferenceSession:
    """An onnxruntime CPU session with a fixed thread count (comparable timings)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _torch_outputs(model: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().numpy() for o in outs]


def _batch_variants(inputs: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The example batch and its first item alone: checks the batch axis is dynamic."""
    return [dict(inputs), {k: v[:1] for k, v in inputs.items()}]


def _check_onnx_file(path: Path, input_names: Sequence[str], output_names: Sequence[str]) -> None:
    """Self-contained, names as documented, first axis of every input/output ``batch``."""
    model = onnx.load(str(path), load_external_data=False)
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise DemoBuildError(f"{path.name}: initializer {init.name} is stored externally")
    leftovers = [p.name for p in path.parent.iterdir() if p != path]
    if leftovers:
        raise DemoBuildError(f"{path.name}: exporter left side files {leftovers}")
    onnx.checker.check_model(model)
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != list(input_names) or got_out != list(output_names):
        raise DemoBuildError(f"{path.name}: tensors {got_in} -> {got_out}, wanted {input_names} -> {output_names}")
    for value in list(model.graph.input) + list(model.graph.output):
        first = value.type.tensor_type.shape.dim[0]
        if first.dim_param != BATCH_DIM:
            raise DemoBuildError(f"{path.name}: first axis of {value.name} is {first!r}, not '{BATCH_DIM}'")


def export_onnx(
    model: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    output_names: Sequence[str],
    path: Path,
    *,
    atol: float = ONNX_ATOL,
) -> ExportReport:
    """Export ``model`` to a single ONNX file at ``path`` and verify it in onnxruntime.

    ``inputs`` maps input names, in ``forward``'s positional order, to example tensors
    whose batch (first axis) is at least 2: torch.export specialises size-1 axes.
    ``path`` must be in a folder of its own (the loader's ``<name>/<version>/``), so
    that a stray side file is detected.
    """
    if any(t.shape[0] < 2 for t in inputs.values()):
        raise ValueError("example inputs need a batch of at least 2 to keep the axis dynamic")
    start = time.perf_counter()
    model = model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim(BATCH_DIM)
    with _quiet_export():
        torch.onnx.export(
            model,
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=list(output_names),
            dynamic_shapes=tuple({0: batch} for _ in inputs),
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    _check_onnx_file(path, list(inputs), output_names)

    session = ort_session(path)
    worst = 0.0
    for feeds in _batch_variants(inputs):
        expected = _torch_outputs(model, list(feeds.values()))
        got = session.run(list(output_names), {k: v.numpy() for k, v in feeds.items()})
        for name, e, g in zip(output_names, expected, got):
            if e.shape != g.shape:
                raise DemoBuildError(f"{path.name}: {name} shape {g.shape} in onnxruntime, {e.shape} in torch")
            worst = max(worst, float(np.max(np.abs(e - g))))
    if not worst < atol:
        raise DemoBuildError(f"{path.name}: onnxruntime differs from torch by {worst:.3g} (limit {atol})")
    return ExportReport(path, path.stat().st_size, worst, time.perf_counter() - start)


def torchscript_signature(
    model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], output_names: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """The ``signature.json`` berth's TorchScript runtime reads from the archive.

    A TorchScript file records no tensor names or shapes; without this the server
    would guess (and warm the model up with a wrongly shaped input). Same names and
    shapes as the ONNX twin, batch axis ``-1``.
    """

    def spec(name: str, tensor: torch.Tensor) -> dict[str, Any]:
        return {
            "name": name,
            "dtype": str(tensor.detach().numpy().dtype),
            "shape": [-1, *(int(d) for d in tensor.shape[1:])],
        }

    outs = _torch_outputs(model, list(inputs.values()))
    return {
        "inputs": [spec(name, tensor) for name, tensor in inputs.items()],
        "outputs": [spec(name, torch.from_numpy(out)) for name, out in zip(output_names, outs)],
    }


def save_torchscript(
    model: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    output_names: Sequence[str],
    path: Path,
    *,
    atol: float = TORCHSCRIPT_ATOL,
) -> ExportReport:
    """Trace ``model`` to TorchScript, ``torch.jit.save`` it with its signature, reload, compare.

    Tracing (not scripting) because the demo models are plain feed-forward graphs; the
    reload check at two batch sizes catches a trace that baked in the batch size.
    """
    start = time.perf_counter()
    model = model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    example = tuple(inputs.values())
    signature = json.dumps(torchscript_signature(model, inputs, output_names))
    with _quiet_export(), torch.no_grad():
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path), _extra_files={"signature.json": signature})
        extra = {"signature.json": ""}
        loaded = torch.jit.load(str(path), map_location="cpu", _extra_files=extra).eval()
    if json.loads(extra["signature.json"] or "null") != json.loads(signature):
        raise DemoBuildError(f"{path.name}: signature.json did not survive the round trip")
    worst = 0.0
    for feeds in _batch_variants(inputs):
        expected = _torch_outputs(model, list(feeds.values()))
        got = _torch_outputs(loaded, list(feeds.values()))
        for e, g in zip(expected, got):
            if e.shape != g.shape:
                raise DemoBuildError(f"{path.name}: TorchScript output {g.shape}, eager {e.shape}")
            worst = max(worst, float(np.max(np.abs(e - g))))
    if not worst < atol:
        raise DemoBuildError(f"{path.name}: TorchScript differs from eager by {worst:.3g} (limit {atol})")
    return ExportReport(path, path.stat().st_size, worst, time.perf_counter() - start)


@dataclass(frozen=True)
class Timing:
    """Milliseconds per ``session.run``: the median, and the best run.

    The best run is the less noisy figure on a shared machine (other processes only
    ever make a run slower); the median is what a client would typically see.
    """

    median_ms: float
    min_ms: float
    runs: int


def time_onnx(path: Path, feeds: Mapping[str, np.ndarray], *, runs: int = 10, warmup: int = 2) -> Timing:
    """Time ``session.run`` on ``BUILD_THREADS`` threads after ``warmup`` untimed runs."""
    session = ort_session(path)
    for _ in range(warmup):
        session.run(None, dict(feeds))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, dict(feeds))
        times.append(time.perf_counter() - t0)
    return Timing(float(np.median(times) * 1000.0), float(np.min(times) * 1000.0), runs)


__all__ = [
    "BATCH_DIM",
    "ExportReport",
    "Timing",
    "export_onnx",
    "ort_session",
    "save_torchscript",
    "time_onnx",
    "torchscript_signature",
]
