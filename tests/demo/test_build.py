"""`berth demo build`: layout, accuracy, exported models agree, idempotence, atomicity.

The demo is built once per module into a temporary folder (about 20-40 s on two cores);
every other test reads that build. The module timeout covers the build, which runs in
the first test's setup.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from berth.demo import BUILD_INFO, DEMO_VERSION, DemoBuildError, build
from berth.demo.emg_signal import GESTURES, SyntheticEmg
from berth.demo.layout import LIPSYNC_TENANTS
from berth.demo.staging import check_replaceable, staged_dir

pytestmark = pytest.mark.timeout(600)

MODELS = ("digits", "digits_torch", "digits_paragon", "emg", "emg_torch", *LIPSYNC_TENANTS)
MODEL_FILES = {
    "digits": "model.onnx",
    "digits_torch": "model.pt",
    "digits_paragon": "model.json",
    "emg": "model.onnx",
    "emg_torch": "model.pt",
    **{t: "model.onnx" for t in LIPSYNC_TENANTS},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], float]:
    out = tmp_path_factory.mktemp("demo-build") / "demo"
    lines: list[str] = []
    start = time.perf_counter()
    info = build(out, log=lines.append)
    return out, info, time.perf_counter() - start


@pytest.fixture(scope="module")
def root(built: tuple[Path, dict[str, Any], float]) -> Path:
    return built[0]


@pytest.fixture(scope="module")
def info(built: tuple[Path, dict[str, Any], float]) -> dict[str, Any]:
    return built[1]


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _digits_batch(n: int = 5) -> np.ndarray:
    from berth.demo.digits import load_images

    images, _ = load_images()
    return images[:n].astype(np.float32)


# ── layout and metadata ─────────────────────────────────────────────────────


def test_layout(root: Path, info: dict[str, Any]) -> None:
    assert (root / BUILD_INFO).is_file()
    assert (root / "berth.yaml").is_file()
    assert (root / "recordings" / "emg_demo.npz").is_file()
    expected = set(MODELS)
    assert {p.name for p in (root / "models").iterdir()} == expected
    for name in expected:
        assert (root / "models" / name / "config.yaml").is_file()
        files = sorted(p.name for p in (root / "models" / name / "1").iterdir())
        assert files == [MODEL_FILES[name]], f"{name}: {files} (ONNX must be self-contained)"
    # BUILD_INFO lists exactly what is on disk
    on_disk = {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}
    on_disk.pop(BUILD_INFO)
    assert info["files"] == on_disk
    # no temp folders left beside the output
    assert [p.name for p in root.parent.iterdir()] == [root.name]


def test_build_info(root: Path, info: dict[str, Any], built: tuple[Path, dict[str, Any], float]) -> None:
    assert info == json.loads((root / BUILD_INFO).read_text())
    assert info["demo_version"] == DEMO_VERSION
    assert info["accuracy"]["digits"] > 0.95
    assert info["digits"]["test_accuracy"] > 0.95
    assert info["accuracy"]["emg"] > 0.90
    assert info["lipsync"]["ms_per_frame_median"] > 0
    assert info["timings_s"]["total"] > 0
    assert info["paragon"] == "exported"
    for name, model in info["models"].items():
        assert (root / model["path"]).stat().st_size == model["bytes"]
        # every export is checked against torch (None would mean it went unverified)
        assert model["max_abs_diff_vs_torch"] is not None and model["max_abs_diff_vs_torch"] < 1e-4, name


def test_model_configs(root: Path, info: dict[str, Any]) -> None:
    for name in info["models"]:
        cfg = yaml.safe_load((root / "models" / name / "config.yaml").read_text())
        suffix = MODEL_FILES[name].split(".")[1]
        assert cfg["backend"] == {"onnx": "onnx", "pt": "torchscript", "json": "paragon"}[suffix]
        unet = name in LIPSYNC_TENANTS
        assert cfg["max_batch_size"] == (8 if unet else 32)
        assert cfg["max_queue_delay_ms"] == (2 if unet else 0)
        assert isinstance(cfg["memory_estimate_mb"], int) and cfg["memory_estimate_mb"] > 0
        assert isinstance(cfg["description"], str) and "\n" not in cfg["description"]
        if name.startswith("digits"):
            assert cfg["labels"] == [str(i) for i in range(10)]
        if name.startswith("emg"):
            assert cfg["labels"] == ["rest", "fist", "open", "wrist_flex", "wrist_ext", "pinch", "point"]


def test_server_config_forces_eviction(root: Path) -> None:
    cfg = yaml.safe_load((root / "berth.yaml").read_text())
    assert cfg["server"] == {"host": "127.0.0.1", "http_port": 8080, "grpc_port": 50051}
    assert cfg["repository"] == "models"
    assert cfg["default_model"] == "digits"
    assert cfg["models"] == {"digits": {"preload": True, "pinned": True}, "emg": {"preload": True}}
    cap = cfg["capacity"]
    assert cap["eviction_policy"] == "lru" and cap["idle_unload_minutes"] == 30
    n_models = len(list((root / "models").iterdir()))
    assert cap["max_models"] < n_models
    mem = {
        p.parent.name: yaml.safe_load(p.read_text())["memory_estimate_mb"]
        for p in (root / "models").glob("*/config.yaml")
    }
    classifiers = mem["digits"] + mem["emg"]
    tenants = sorted(mem[t] for t in LIPSYNC_TENANTS)
    for mb_per_gb in (1000, 1024):
        budget = cap["max_memory_gb"] * mb_per_gb
        assert classifiers + tenants[-1] + tenants[-2] <= budget  # two tenants fit
        assert classifiers + sum(tenants) > budget  # three do not


def test_server_loads_the_repository(root: Path) -> None:
    """The server's own config and repository code accept every file (unknown keys are errors)."""
    from berth import config as config_mod
    from berth import repository as repository_mod

    config = config_mod.load_config(root / "berth.yaml", environ={})
    assert config.default_model == "digits"
    repo = repository_mod.Repository(config)
    specs = repo.scan()
    assert repo.problems == {}
    assert set(specs) == {p.name for p in (root / "models").iterdir()}
    for name, spec in specs.items():
        assert spec.versions["1"] == (root / "models" / name / "1" / MODEL_FILES[name]).resolve()
        assert spec.settings.max_batch_size == (8 if name in LIPSYNC_TENANTS else 32)


# ── the models ──────────────────────────────────────────────────────────────


def _io(session: ort.InferenceSession) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    return (
        {i.name: list(i.shape) for i in session.get_inputs()},
        {o.name: list(o.shape) for o in session.get_outputs()},
    )


def test_digits_onnx(root: Path) -> None:
    session = _session(root / "models/digits/1/model.onnx")
    assert _io(session) == ({"input": ["batch", 28, 28]}, {"probs": ["batch", 10]})
    for n in (1, 3):
        probs = session.run(["probs"], {"input": _digits_batch(n)})[0]
        assert probs.shape == (n, 10) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    from berth.demo.digits import load_images

    images, labels = load_images()
    pred = session.run(["probs"], {"input": images})[0].argmax(axis=1)
    assert (pred == labels).mean() > 0.97  # mostly training data, must be high


def test_emg_onnx(root: Path) -> None:
    session = _session(root / "models/emg/1/model.onnx")
    assert _io(session) == ({"emg": ["batch", 200, 16]}, {"logits": ["batch", 7]})
    for n in (1, 4):
        x = np.random.default_rng(n).standard_normal((n, 200, 16)).astype(np.float32) * 0.1
        assert session.run(["logits"], {"emg": x})[0].shape == (n, 7)


def test_lipsync_tenants(root: Path) -> None:
    outputs = []
    rng = np.random.default_rng(0)
    feeds = {
        "visual": rng.random((2, 6, 320, 320), dtype=np.float32),
        "audio": rng.standard_normal((2, 32, 16, 16)).astype(np.float32),
    }
    for tenant in LIPSYNC_TENANTS:
        session = _session(root / "models" / tenant / "1" / "model.onnx")
        assert _io(session) == (
            {"visual": ["batch", 6, 320, 320], "audio": ["batch", 32, 16, 16]},
            {"output": ["batch", 3, 320, 320]},
        )
        out = session.run(["output"], feeds)[0]
        assert out.shape == (2, 3, 320, 320) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0  # sigmoid
        outputs.append(out)
    # different seeds => different weights => different outputs
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert np.abs(outputs[i] - outputs[j]).max() > 1e-3


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_matches_onnx(root: Path) -> None:
    import torch

    model = torch.jit.load(str(root / "models/digits_torch/1/model.pt"))
    x = _digits_batch(7)
    with torch.no_grad():
        ts = model(torch.from_numpy(x)).numpy()
    onnx_probs = _session(root / "models/digits/1/model.onnx").run(["probs"], {"input": x})[0]
    np.testing.assert_allclose(ts, onnx_probs, rtol=0, atol=1e-5)

    emg_ts = torch.jit.load(str(root / "models/emg_torch/1/model.pt"))
    w = SyntheticEmg(seed=9).read(600)[0].reshape(3, 200, 16)
    with torch.no_grad():
        ts_logits = emg_ts(torch.from_numpy(w)).numpy()
    onnx_logits = _session(root / "models/emg/1/model.onnx").run(["logits"], {"emg": w})[0]
    np.testing.assert_allclose(ts_logits, onnx_logits, rtol=0, atol=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_berth_runtimes_load_every_model(root: Path) -> None:
    """Each file loads in the server's own runtime with the documented signature.

    TorchScript carries no shapes; the build embeds a ``signature.json`` so the server's
    warm-up feeds a correctly shaped input instead of guessing.
    """
    from berth import runtimes

    expected = {
        "digits": ({"input": (-1, 28, 28)}, {"probs": (-1, 10)}),
        "emg": ({"emg": (-1, 200, 16)}, {"logits": (-1, 7)}),
        "sanders": ({"visual": (-1, 6, 320, 320), "audio": (-1, 32, 16, 16)}, {"output": (-1, 3, 320, 320)}),
    }
    expected["digits_torch"] = expected["digits"]
    expected["emg_torch"] = expected["emg"]
    for name, (inputs, outputs) in expected.items():
        cfg = yaml.safe_load((root / "models" / name / "config.yaml").read_text())
        path = root / "models" / name / "1" / MODEL_FILES[name]
        runtime = runtimes.runtime_class(cfg["backend"])(path, runtimes.Placement("cpu:0"))
        runtime.load()
        try:
            sig = runtime.signature
            assert {s.name: s.shape for s in sig.inputs} == inputs, name
            assert {s.name: s.shape for s in sig.outputs} == outputs, name
            result = runtime.run(runtime.warmup_inputs(2))
            assert {k: v.shape for k, v in result.items()} == {k: (2, *v[1:]) for k, v in outputs.items()}
        finally:
            runtime.unload()


def test_paragon_matches_onnx(root: Path) -> None:
    from berth.runtimes.base import Placement
    from berth.runtimes.paragon import ParagonRuntime

    runtime = ParagonRuntime(root / "models/digits_paragon/1/model.json", Placement("cpu:0"))
    runtime.load()
    try:
        x = _digits_batch(6)
        got = runtime.run({"input": x})["output"]
    finally:
        runtime.unload()
    expected = _session(root / "models/digits/1/model.onnx").run(["probs"], {"input": x})[0]
    np.testing.assert_allclose(np.asarray(got).reshape(expected.shape), expected, rtol=0, atol=1e-4)


def test_recording_replays_through_emg_model(root: Path) -> None:
    with np.load(root / "recordings/emg_demo.npz") as data:
        signal, fs, labels = data["signal"], int(data["fs"]), data["labels"]
    assert fs == 2000
    assert signal.dtype == np.float32 and signal.ndim == 2 and signal.shape[1] == 16
    assert 9.5 <= signal.shape[0] / fs <= 10.5
    assert labels.dtype == np.int64 and labels.shape == (signal.shape[0],)
    assert set(np.unique(labels)) == set(range(len(GESTURES)))  # every gesture appears

    starts = np.arange(0, len(signal) - 200 + 1, 100)
    windows = signal[starts[:, None] + np.arange(200)]
    pred = _session(root / "models/emg/1/model.onnx").run(["logits"], {"emg": windows})[0].argmax(axis=1)
    truth = np.array([np.bincount(labels[s : s + 200], minlength=7).argmax() for s in starts])
    assert (pred == truth).mean() > 0.85
    assert len(set(pred.tolist())) >= 5  # predictions change over time


# ── idempotence and atomicity ───────────────────────────────────────────────


def test_second_build_is_cached(root: Path, info: dict[str, Any], built: tuple[Path, dict[str, Any], float]) -> None:
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    start = time.perf_counter()
    again = build(root, log=lambda _msg: None)
    elapsed = time.perf_counter() - start
    assert again == info
    assert elapsed < 1.0, f"cached build took {elapsed:.2f}s (first build took {built[2]:.1f}s)"
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == mtimes


def test_stale_version_is_not_cached(tmp_path: Path) -> None:
    from berth.demo.builder import cached_build_info

    out = tmp_path / "demo"
    out.mkdir()
    (out / BUILD_INFO).write_text(json.dumps({"demo_version": DEMO_VERSION + "-old", "paragon": "exported"}))
    assert cached_build_info(out) is None
    (out / BUILD_INFO).write_text("{not json")
    assert cached_build_info(out) is None


def test_failed_build_leaves_target_untouched(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / BUILD_INFO).write_text("{}")
    with pytest.raises(RuntimeError, match="boom"):
        with staged_dir(out) as stage:
            (stage / "half.onnx").write_bytes(b"partial")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    assert [p.name for p in out.iterdir()] == [BUILD_INFO]

    with staged_dir(out) as stage:
        (stage / BUILD_INFO).write_text('{"new": 1}')
    assert json.loads((out / BUILD_INFO).read_text()) == {"new": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_refuses_to_replace_unrelated_folder(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DemoBuildError):
        check_replaceable(tmp_path, BUILD_INFO)
    with pytest.raises(DemoBuildError):
        build(tmp_path, force=True, log=lambda _msg: None)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


# ── the EMG generator ───────────────────────────────────────────────────────


def test_emg_generator_is_deterministic_and_chunk_invariant() -> None:
    whole_x, whole_y = SyntheticEmg(channels=16, fs=2000, seed=5).read(9000)
    src = SyntheticEmg(channels=16, fs=2000, seed=5)
    parts = [src.read(n) for n in (1, 0, 333, 4000, 4666)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole_x)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole_y)
    assert src.samples_emitted == 9000
    assert whole_x.dtype == np.float32 and whole_x.shape == (9000, 16)
    assert whole_y.dtype == np.int64
    other_x, _ = SyntheticEmg(seed=6).read(9000)
    assert not np.array_equal(other_x, whole_x)
    src.reset()
    np.testing.assert_array_equal(src.read(9000)[0], whole_x)


def test_emg_generator_has_rest_and_bursts() -> None:
    x, y = SyntheticEmg(seed=7).read(2000 * 120)
    assert 0 in y and len(set(y.tolist())) == len(GESTURES)
    rest_rms = np.sqrt(np.mean(x[y == 0] ** 2))
    active_rms = np.sqrt(np.mean(x[y != 0] ** 2))
    assert active_rms > 5 * rest_rms
    # bursts last 0.5-1.5 s
    changes = np.flatnonzero(np.diff(y)) + 1
    bounds = np.concatenate([[0], changes, [len(y)]])
    for a, b in zip(bounds[:-1], bounds[1:]):
        if y[a] != 0 and a > 0 and b < len(y):
            assert 0.5 * 2000 - 1 <= b - a <= 1.5 * 2000 + 1
