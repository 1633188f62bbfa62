"""ProcessRuntime on its own: a real worker process, no server around it."""

from __future__ import annotations

import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest

from berth.isolation.runtime import ProcessRuntime, WorkerError, WorkerExited
from berth.runtimes.base import Placement
from models import softmax, write_linear_softmax, write_python_model
from waiting import wait_until

CPU = Placement("cpu", "cpu")


def test_runs_batches_from_many_threads_and_unload_ends_the_process(tmp_path: Path) -> None:
    weights = write_linear_softmax(tmp_path / "lin.onnx")
    runtime = ProcessRuntime("onnx", tmp_path / "lin.onnx", CPU, name="lin")
    runtime.load()
    try:
        assert runtime.backend == "onnx" and runtime.platform == "onnx_onnxv1"
        assert [(s.name, s.dtype, s.shape) for s in runtime.signature.inputs] == [("x", np.dtype(np.float32), (-1, 4))]
        worker = psutil.Process(runtime.pid)
        assert worker.ppid() == os.getpid() and runtime.ping() == runtime.pid
        assert runtime.info().details["worker_pid"] == runtime.pid
        folder = Path(worker.cmdline()[worker.cmdline().index("--endpoint") + 1].removeprefix("ipc://")).parent
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # the socket lives in a private folder
        rng = np.random.default_rng(1)
        batches = [rng.standard_normal((1 + i % 5, 4)).astype(np.float32) for i in range(60)]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda x: runtime.run({"x": x})["probs"], batches))
        for x, probs in zip(batches, results):
            np.testing.assert_allclose(probs, softmax(x @ weights), rtol=1e-5, atol=1e-6)
        assert runtime.measured_memory_bytes() > 20 * 1024 * 1024  # the worker's own RSS
    finally:
        runtime.unload()
    assert not psutil.pid_exists(worker.pid) or worker.status() == psutil.STATUS_ZOMBIE
    assert not folder.exists()


def test_a_model_error_is_reported_and_the_worker_lives_on(tmp_path: Path) -> None:
    runtime = ProcessRuntime("python", write_python_model(tmp_path / "m"), CPU)
    runtime.load()
    try:
        with pytest.raises(WorkerError, match="'x'"):
            runtime.run({"z": np.ones((1, 4), np.float32)})  # predict reads inputs["x"]: KeyError
        np.testing.assert_array_equal(runtime.run({"x": np.ones((2, 4), np.float32)})["y"], np.full((2, 4), 2.0, np.float32))
        assert runtime.healthy()
    finally:
        runtime.unload()


def test_a_killed_worker_fails_calls_and_tells_the_watcher(tmp_path: Path) -> None:
    runtime = ProcessRuntime("python", write_python_model(tmp_path / "m"), CPU)
    runtime.load()
    told: list[str] = []
    seen = threading.Event()
    runtime.watch(lambda reason: (told.append(reason), seen.set()))
    try:
        os.kill(runtime.pid, 9)
        assert seen.wait(5)
        assert told == ["worker process exited (code -9)"] and not runtime.healthy()
        with pytest.raises(WorkerExited, match="code -9"):
            runtime.run({"x": np.ones((1, 4), np.float32)})
    finally:
        runtime.unload()
    assert told == ["worker process exited (code -9)"]  # told once; unload is no crash


def test_a_worker_that_does_not_answer_in_time_is_killed(tmp_path: Path) -> None:
    path = write_python_model(tmp_path / "m", predict_sleep=1.0)
    runtime = ProcessRuntime("python", path, CPU, {"isolation_run_timeout_s": 2.0})
    runtime.load()
    try:
        runtime.run_timeout_s = 0.3
        started = time.monotonic()
        with pytest.raises(WorkerExited, match="did not answer 'run' within"):
            runtime.run({"x": np.ones((1, 4), np.float32)})
        assert time.monotonic() - started < 0.9
        wait_until(lambda: not runtime.healthy(), timeout=5, what="the unanswering worker to be killed")
    finally:
        runtime.unload()


def _torch_models(folder: Path) -> dict[str, Path]:
    torch = pytest.importorskip("torch")
    from berth.runtimes.paragon_export import export_torch_mlp

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    paths = {"torchscript": folder / "m.pt", "torch_export": folder / "m.pt2", "paragon": folder / "m.json"}
    torch.jit.save(torch.jit.script(mlp), str(paths["torchscript"]))
    program = torch.export.export(mlp, (torch.zeros(2, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(paths["torch_export"]))
    export_torch_mlp(mlp, (1, 4), paths["paragon"])
    return paths


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")
def test_torch_and_paragon_models_give_the_same_answers_in_a_worker(tmp_path: Path) -> None:
    from berth.runtimes import runtime_class

    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    paths = _torch_models(tmp_path)
    isolated = {backend: ProcessRuntime(backend, path, CPU, name=backend) for backend, path in paths.items()}
    try:
        with ThreadPoolExecutor(len(isolated)) as pool:  # the workers start side by side
            list(pool.map(lambda runtime: runtime.load(), isolated.values()))
        for backend, path in paths.items():
            local = runtime_class(backend)(path, CPU, {})
            local.load()
            remote = isolated[backend]
            assert [(s.name, s.dtype) for s in remote.signature.inputs] == [(s.name, s.dtype) for s in local.signature.inputs]
            feeds = {local.signature.inputs[0].name: x}
            expected, got = local.run(feeds), remote.run(feeds)
            assert expected.keys() == got.keys(), backend
            for name in expected:
                np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=backend)
            local.unload()
    finally:
        for runtime in isolated.values():
            runtime.unload()
