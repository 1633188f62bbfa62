"""Orchestrates ``berth demo build``: train, export, verify, describe, publish.

Each model module produces weights and config entries; this module decides the order,
writes ``berth.yaml`` and ``BUILD_INFO.json``, and owns the cache rule: an existing
build with the same :data:`DEMO_VERSION` is returned as is unless ``force``. torch and
the model modules are imported only when a build actually runs, so the cached path is
instant and ``import berth.demo`` stays cheap for the server.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.util
import json
import math
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .layout import (
    BUILD_INFO,
    DEMO_VERSION,
    LIPSYNC_TENANTS,
    ModelEntry,
    choose_capacity,
    write_model_config,
    write_server_config,
)
from .staging import DemoBuildError, check_replaceable, staged_dir

Log = Callable[[str], Any]

DIGITS_SEED = 0
EMG_SEED = 0


def _paragon_exporter_available() -> bool:
    try:
        return importlib.util.find_spec("berth.runtimes.paragon_export") is not None
    except ModuleNotFoundError:
        return False


def cached_build_info(out_dir: Path) -> dict[str, Any] | None:
    """The existing ``BUILD_INFO.json`` if it is a complete build of this demo version.

    A build made while the Paragon exporter did not exist yet counts as stale once the
    exporter appears, so ``digits_paragon`` gets filled in without needing ``force``.
    """
    path = Path(out_dir) / BUILD_INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("demo_version") != DEMO_VERSION:
        return None
    if info.get("paragon") != "exported" and _paragon_exporter_available():
        return None
    return info


def _versions() -> dict[str, str]:
    import numpy
    import onnx
    import onnxruntime
    import sklearn
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
    }


def _finite_or_none(x: float) -> float | None:
    """JSON has no NaN; an unverified export (NaN difference) is recorded as null."""
    return x if math.isfinite(x) else None


def _file_list(root: Path) -> dict[str, int]:
    """Every file under ``root`` (relative POSIX path -> bytes), sorted."""
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def _build_into(root: Path, log: Log) -> dict[str, Any]:
    """Write the whole demo into the (empty, temporary) folder ``root``; return BUILD_INFO."""
    from . import digits, emg, lipsync
    from .exporting import ExportReport
    from .repro import BUILD_THREADS, torch_threads

    start = time.perf_counter()
    timings: dict[str, float] = {}
    entries: list[ModelEntry] = []
    reports: dict[str, ExportReport] = {}

    @contextlib.contextmanager
    def timed(name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - t0, 3)

    with torch_threads(BUILD_THREADS):
        log("digits: training on scikit-learn digits upsampled to 28x28 ...")
        with timed("digits_train"):
            d = digits.train(seed=DIGITS_SEED)
        log(f"digits: held-out accuracy {d.test_accuracy:.4f} ({d.n_test} images), exporting ...")
        with timed("digits_export"):
            d_entries, d_reports = digits.write(d, root, log)
        entries += d_entries
        reports.update(d_reports)

        log("emg: training on synthetic windows ...")
        with timed("emg_train"):
            e = emg.train(seed=EMG_SEED)
        log(f"emg: held-out window accuracy {e.test_accuracy:.4f} ({e.n_test} windows), exporting ...")
        with timed("emg_export"):
            e_entries, e_reports = emg.write(e, root)
        with timed("emg_recording"):
            _, recording = emg.write_recording(root)
        entries += e_entries
        reports.update(e_reports)

        tenants: dict[str, lipsync.TenantResult] = {}
        for name in LIPSYNC_TENANTS:
            with timed(f"lipsync_{name}"):
                t = lipsync.build_tenant(name, root)
            log(
                f"lipsync: {name} exported, {t.timing.median_ms:.1f} ms/frame (best {t.timing.min_ms:.1f}) "
                f"in onnxruntime on {BUILD_THREADS} threads"
            )
            tenants[name] = t
            entries.append(t.entry)
            reports[name] = t.report
        first, second = (tenants[n].report.path for n in LIPSYNC_TENANTS[:2])
        if not lipsync.outputs_differ(first, second):
            raise DemoBuildError("lip-sync tenants have identical weights; seeds are not being applied")

        from . import tinylm

        log("tinylm: training two tiny language models (Llama, GPT-2) ...")
        with timed("tinylm"):
            lms = tinylm.build(root, log)

    for entry in entries:
        write_model_config(root, entry)
    capacity = choose_capacity(entries)
    write_server_config(root, capacity, [e.name for e in entries])

    paragon = "exported" if "digits_paragon" in reports else "skipped: berth.runtimes.paragon_export unavailable"
    timings["total"] = round(time.perf_counter() - start, 3)
    ms = sorted(t.timing.median_ms for t in tenants.values())
    best = min(t.timing.min_ms for t in tenants.values())
    info: dict[str, Any] = {
        "demo_version": DEMO_VERSION,
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "threads": BUILD_THREADS,
        "accuracy": {"digits": round(d.test_accuracy, 4), "emg": round(e.test_accuracy, 4)},
        "digits": {
            "dataset": "sklearn load_digits, 8x8 bilinear-upsampled to 28x28, values in [0,1]",
            "split": "stratified, 20% held out",
            "seed": DIGITS_SEED,
            "n_train": d.n_train,
            "n_test": d.n_test,
            "test_accuracy": round(d.test_accuracy, 4),
            "train_accuracy": round(d.train_accuracy, 4),
        },
        "emg": {
            "data": "berth.demo.emg_signal.SyntheticEmg, 200-sample windows, majority label",
            "train_generator_seed": emg.TRAIN_SEED,
            "test_generator_seed": emg.TEST_SEED,
            "n_train": e.n_train,
            "n_test": e.n_test,
            "test_window_accuracy": round(e.test_accuracy, 4),
            "test_window_accuracy_single_label": round(e.test_accuracy_single_label, 4),
            "train_accuracy": round(e.train_accuracy, 4),
        },
        "lipsync": {
            "tenants": {
                n: {
                    "seed": t.seed,
                    "parameters": t.parameters,
                    "ms_per_frame": round(t.timing.median_ms, 2),
                    "ms_per_frame_best": round(t.timing.min_ms, 2),
                }
                for n, t in tenants.items()
            },
            "ms_per_frame_median": round(ms[len(ms) // 2], 2),
            "ms_per_frame_best": round(best, 2),
            "timing": f"onnxruntime CPU, batch 1, {BUILD_THREADS} intra-op threads, median (and best) of 8 runs",
        },
        "paragon": paragon,
        "models": {
            entry.name: {
                "path": entry.relpath,
                "backend": entry.backend,
                "bytes": reports[entry.name].bytes,
                "memory_estimate_mb": entry.memory_estimate_mb,
                "max_abs_diff_vs_torch": _finite_or_none(reports[entry.name].max_abs_diff),
            }
            for entry in entries
        },
        "capacity": {
            "max_models": capacity.max_models,
            "max_memory_gb": capacity.max_memory_gb,
            "classifiers_mb": capacity.classifiers_mb,
            "tenant_mb": capacity.tenant_mb,
            "all_models_mb": capacity.all_models_mb,
        },
        "recording": recording,
        "llm": {name: vars(result) for name, result in lms.items()},
        "timings_s": timings,
    }
    info["files"] = _file_list(root)  # BUILD_INFO.json itself is not listed
    (root / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def build(out_dir: Path, *, force: bool = False, log: Log = print) -> dict[str, Any]:
    """Build the demo model repository into ``out_dir``; return (and write) BUILD_INFO.

    Idempotent: an existing complete build of the same :data:`DEMO_VERSION` is returned
    without rebuilding unless ``force``. The build happens in a temporary folder beside
    ``out_dir`` that replaces it only once everything has been written and verified.
    Raises :class:`DemoBuildError` if any model misses its accuracy or export checks.
    """
    out_dir = Path(out_dir)
    if not force:
        cached = cached_build_info(out_dir)
        if cached is not None:
            log(f"demo {DEMO_VERSION} already built in {out_dir} (use force=True to rebuild)")
            return cached
    check_replaceable(out_dir, BUILD_INFO)
    log(f"building demo {DEMO_VERSION} into {out_dir} ...")
    with staged_dir(out_dir) as root:
        info = _build_into(root, log)
    log(f"demo built in {info['timings_s']['total']:.1f} s: {len(info['files'])} files in {out_dir}")
    return info


__all__ = ["DemoBuildError", "build", "cached_build_info"]
