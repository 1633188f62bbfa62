"""PythonRuntime: a model written as a Python class, directly and on a real server."""

from __future__ import annotations

import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from berth.config import TensorConfig
from berth.runtimes import Placement, backend_for_path, runtime_class
from berth.runtimes.python import PythonRuntime
from models import read_events, write_python_model

CPU = Placement("cpu")


def _write(folder: Path, source: str, name: str = "model.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def _load(path: Path, placement: Placement = CPU, **options: Any) -> PythonRuntime:
    runtime = PythonRuntime(path, placement, options)
    runtime.load()
    return runtime


def _triples(specs: Any) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    return [(s.name, s.dtype, s.shape) for s in specs]


_AFFINE = """
import numpy as np

class Model:
    inputs = [("x", "float32", [-1, 3]), ("ids", "int64", [-1, 2])]
    outputs = [("y", "float32", [-1, 3]), ("total", "int64", [-1])]

    def load(self, model_dir, device):
        self.model_dir = model_dir
        self.device = device
        self.offset = np.float32(float((model_dir / "offset.txt").read_text()))

    def predict(self, inputs):
        return {"y": inputs["x"] * 2 + self.offset, "total": inputs["ids"].sum(axis=1), "ignored": 0}
"""

_OTHER_CLASS = """
import numpy as np

class Model:  # not the one the options name
    pass

class Doubler:
    def predict(self, inputs):
        return {"y": inputs["x"] * 2}
"""

# a counter under a lock sees how many predict calls overlap
_COUNTING = """
import threading
import time

import numpy as np

class Model:
    inputs = [("x", "float32", [-1, 1])]
    outputs = [("active", "int64", [-1])]
    thread_safe = {thread_safe}

    def __init__(self):
        self._lock = threading.Lock()
        self._active = 0

    def predict(self, inputs):
        with self._lock:
            self._active += 1
            seen = self._active
        time.sleep(0.05)
        with self._lock:
            seen = max(seen, self._active)
            self._active -= 1
        return {{"active": np.full(len(inputs["x"]), seen, dtype=np.int64)}}
"""


def test_registered_for_py_files() -> None:
    assert runtime_class("python") is PythonRuntime
    assert backend_for_path(Path("model.py")) == "python"


def test_class_attributes_give_the_signature_and_predict_runs(tmp_path: Path) -> None:
    path = _write(tmp_path / "1", _AFFINE)
    (tmp_path / "1" / "offset.txt").write_text("0.5")
    runtime = _load(path)
    assert _triples(runtime.signature.inputs) == [("x", np.dtype(np.float32), (-1, 3)), ("ids", np.dtype(np.int64), (-1, 2))]
    assert _triples(runtime.signature.outputs) == [("y", np.dtype(np.float32), (-1, 3)), ("total", np.dtype(np.int64), (-1,))]
    assert runtime._instance.model_dir == tmp_path / "1"  # load() got the model's folder
    assert runtime._instance.device == "cpu"
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    ids = np.array([[1, 2], [30, 40]], dtype=np.int64)
    out = runtime.run({"x": x, "ids": ids})
    assert list(out) == ["y", "total"]  # only declared outputs, in declared order
    np.testing.assert_allclose(out["y"], x * 2 + 0.5)
    np.testing.assert_array_equal(out["total"], [3, 70])
    info = runtime.info()
    assert (info.backend, info.platform, info.accelerated) == ("python", "python", False)


def test_load_gets_the_framework_device(tmp_path: Path) -> None:
    path = _write(tmp_path / "1", _AFFINE)
    (tmp_path / "1" / "offset.txt").write_text("0")
    runtime = _load(path, Placement("gpu0", "cpu"))
    assert runtime._instance.device == "cpu"


def test_class_name_option_picks_the_class(tmp_path: Path) -> None:
    path = _write(tmp_path, _OTHER_CLASS)
    declared = {"inputs": [("x", "float32", [-1, 2])], "outputs": [("y", "float32", [-1, 2])]}
    runtime = _load(path, class_name="Doubler", **declared)
    np.testing.assert_array_equal(runtime.run({"x": np.ones((1, 2), np.float32)})["y"], [[2.0, 2.0]])
    # without the option, ``Model`` is looked for (and has no predict here)
    with pytest.raises(ValueError, match="class Model with a predict method"):
        _load(path, **declared)
    with pytest.raises(ValueError, match="class Absent"):
        _load(path, class_name="Absent", **declared)


@pytest.mark.parametrize(
    "inputs, outputs",
    [
        pytest.param([{"name": "x", "dtype": "float32", "shape": [-1, 2]}], [{"name": "y", "datatype": "FP64", "shape": [-1, 2]}], id="dicts"),
        pytest.param([TensorConfig(name="x", shape=[-1, 2])], [TensorConfig(name="y", datatype="FP64", shape=[-1, 2])], id="tensor-configs"),
        pytest.param([("x", "float32", [-1, 2])], [("y", "float64", [-1, 2])], id="tuples"),
    ],
)
def test_declared_signature_via_options(tmp_path: Path, inputs: list[Any], outputs: list[Any]) -> None:
    path = _write(tmp_path, _OTHER_CLASS)
    runtime = _load(path, class_name="Doubler", inputs=inputs, outputs=outputs)
    assert _triples(runtime.signature.inputs) == [("x", np.dtype(np.float32), (-1, 2))]
    assert _triples(runtime.signature.outputs) == [("y", np.dtype(np.float64), (-1, 2))]


def test_declared_signature_overrides_class_attributes(tmp_path: Path) -> None:
    path = _write(tmp_path / "1", _AFFINE)
    (tmp_path / "1" / "offset.txt").write_text("0")
    runtime = _load(path, inputs=[("x", "float32", [-1, 3]), ("ids", "int64", [-1, 2])], outputs=[("total", "int64", [-1])])
    assert [s.name for s in runtime.signature.outputs] == ["total"]
    out = runtime.run({"x": np.zeros((1, 3), np.float32), "ids": np.ones((1, 2), np.int64)})
    assert list(out) == ["total"]


def test_missing_predict_is_a_clear_value_error(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        class Model:
            inputs = [("x", "float32", [-1, 1])]
            outputs = [("y", "float32", [-1, 1])]
            predict = None
    """)
    with pytest.raises(ValueError, match="must define class Model with a predict method"):
        _load(path)
    path = _write(tmp_path, "x = 1\n", name="empty.py")
    with pytest.raises(ValueError, match="predict"):
        _load(path)


@pytest.mark.parametrize("missing", ["inputs", "outputs"])
def test_missing_inputs_or_outputs_is_a_value_error(tmp_path: Path, missing: str) -> None:
    attributes = {"inputs": 'inputs = [("x", "float32", [-1, 1])]', "outputs": 'outputs = [("y", "float32", [-1, 1])]'}
    del attributes[missing]
    body = "\n    ".join(attributes.values())
    path = _write(tmp_path, f"class Model:\n    {body}\n    def predict(self, inputs):\n        return {{'y': inputs['x']}}\n")
    with pytest.raises(ValueError, match="must declare inputs and outputs"):
        _load(path)


def test_a_failing_model_file_leaves_no_module_behind(tmp_path: Path) -> None:
    path = _write(tmp_path, "raise RuntimeError('broken on purpose')\n")
    before = set(sys.modules)
    with pytest.raises(RuntimeError, match="broken on purpose"):
        _load(path)
    assert set(sys.modules) == before


def _concurrency(runtime: PythonRuntime, threads: int = 4) -> int:
    start = threading.Barrier(threads)
    seen: list[int] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            start.wait(timeout=10)
            seen.append(int(runtime.run({"x": np.zeros((1, 1), np.float32)})["active"][0]))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    assert not errors, errors[0]
    assert len(seen) == threads
    return max(seen)


def test_thread_unsafe_model_runs_one_predict_at_a_time(tmp_path: Path) -> None:
    runtime = _load(_write(tmp_path, _COUNTING.format(thread_safe=False)))
    assert _concurrency(runtime) == 1


def test_model_without_thread_safe_attribute_is_serialised(tmp_path: Path) -> None:
    source = _COUNTING.format(thread_safe=True).replace("    thread_safe = True\n", "")
    runtime = _load(_write(tmp_path, source))
    assert _concurrency(runtime) == 1


def test_thread_safe_model_runs_predicts_concurrently(tmp_path: Path) -> None:
    runtime = _load(_write(tmp_path, _COUNTING.format(thread_safe=True)))
    assert _concurrency(runtime) > 1


@pytest.mark.parametrize("returned, kind", [("[inputs['x']]", "list"), ("inputs['x']", "ndarray"), ("None", "NoneType")])
def test_predict_returning_a_non_dict_is_a_type_error(tmp_path: Path, returned: str, kind: str) -> None:
    path = _write(tmp_path, f"""
        class Model:
            inputs = [("x", "float32", [-1, 1])]
            outputs = [("y", "float32", [-1, 1])]
            def predict(self, inputs):
                return {returned}
    """)
    runtime = _load(path)
    with pytest.raises(TypeError, match=f"predict must return a dict.*{kind}"):
        runtime.run({"x": np.ones((1, 1), np.float32)})
    # the lock was released: a second call fails the same way rather than hanging
    with pytest.raises(TypeError):
        runtime.run({"x": np.ones((1, 1), np.float32)})


def test_predict_missing_a_declared_output_names_it(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        class Model:
            inputs = [("x", "float32", [-1, 1])]
            outputs = [("y", "float32", [-1, 1]), ("z", "float32", [-1, 1])]
            def predict(self, inputs):
                return {"y": inputs["x"], "w": inputs["x"]}
    """)
    with pytest.raises(ValueError, match=r"no 'z'.*\['w', 'y'\]"):
        _load(path).run({"x": np.ones((1, 1), np.float32)})


def test_unload_calls_the_model_and_drops_it(tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    path = write_python_model(tmp_path / "scaler", events=events, scale=3.0)
    runtime = _load(path)
    np.testing.assert_allclose(runtime.run({"x": np.ones((2, 4), np.float32)})["y"], np.full((2, 4), 3.0))
    runtime.unload()
    assert runtime._instance is None
    assert [e[1] for e in read_events(events)] == ["load_start", "load_end", "predict_start", "predict_end", "unload"]
    runtime.unload()  # a second unload does not call the model again
    assert [e[1] for e in read_events(events)].count("unload") == 1


def test_model_file_may_use_dataclasses_and_postponed_annotations(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        from __future__ import annotations

        import dataclasses

        import numpy as np


        @dataclasses.dataclass
        class Settings:
            scale: float = 4.0


        class Model:
            inputs = [("x", "float32", [-1, 2])]
            outputs = [("y", "float32", [-1, 2])]

            def load(self, model_dir: Path, device: str) -> None:
                self.settings = Settings()

            def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                return {"y": inputs["x"] * self.settings.scale}
    """)
    before = set(sys.modules)
    runtime = _load(path)
    np.testing.assert_allclose(runtime.run({"x": np.ones((1, 2), np.float32)})["y"], [[4.0, 4.0]])
    runtime.unload()
    assert set(sys.modules) == before  # the model's module goes with it


def test_two_loads_of_one_file_are_independent(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        import numpy as np
        CALLS = []
        class Model:
            inputs = [("x", "float32", [-1, 1])]
            outputs = [("n", "int64", [-1])]
            def predict(self, inputs):
                CALLS.append(1)
                return {"n": np.full(len(inputs["x"]), len(CALLS), dtype=np.int64)}
    """)
    first, second = _load(path), _load(path)
    x = np.zeros((1, 1), np.float32)
    assert [int(first.run({"x": x})["n"][0]) for _ in range(3)] == [1, 2, 3]
    assert int(second.run({"x": x})["n"][0]) == 1  # its own module, its own globals


# ── through a real server ───────────────────────────────────────────────────

_CUSTOM_CONFIG = """\
options:
  class_name: Custom
inputs:
  - name: values
    datatype: FP32
    shape: [-1, 3]
outputs:
  - name: scores
    dtype: float32
    shape: [-1, 3]
"""

_CUSTOM = """
import numpy as np

class Custom:
    def predict(self, inputs):
        v = inputs["values"]
        return {"scores": v[:, ::-1] * 10}
"""


def test_server_serves_a_python_class_declared_in_config(tmp_path: Path, make_server: Any) -> None:
    repo = tmp_path / "repo"
    _write(repo / "custom" / "1", _CUSTOM)
    (repo / "custom" / "config.yaml").write_text(_CUSTOM_CONFIG)
    server = make_server({"repository": str(repo), "models": {"custom": {"preload": True}}})
    with server.client() as client:
        response = client.post("/infer-batch", json={"model": "custom", "batch": [[1, 2, 3], [0, 0, 1]]})
        assert response.status_code == 200, response.text
        logits = np.array([[30.0, 20.0, 10.0], [10.0, 0.0, 0.0]])
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(np.array(response.json()["probs"]), e / e.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
        rows = {row["name"]: row for row in client.get("/models").json()["models"]}
    row = rows["custom"]
    assert row["backend"] == "python" and row["platform"] == "python"
    assert row["signature"] == {
        "inputs": [{"name": "values", "dtype": "float32", "shape": [-1, 3]}],
        "outputs": [{"name": "scores", "dtype": "float32", "shape": [-1, 3]}],
    }
    assert row["memory_measured"] is True
    assert server.stop() == 0
    assert "Traceback" not in server.logs()
