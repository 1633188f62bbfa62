"""Small models that tests build on the fly (no torch needed, built in milliseconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def write_linear_softmax(path: Path, *, features: int = 4, classes: int = 3, seed: int = 0, pad_bytes: int = 0) -> np.ndarray:
    """``probs = softmax(x @ W)``; returns W so tests can compute the reference.

    ``pad_bytes`` adds an unused initializer, to make a model whose weights (and so
    memory) are a chosen size.
    """
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((features, classes)).astype(np.float32)
    initializers = [numpy_helper.from_array(weights, "W")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["logits"]), helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)]
    if pad_bytes:
        pad = np.ones(pad_bytes // 4, dtype=np.float32)
        initializers.append(numpy_helper.from_array(pad, "pad"))
        nodes.append(helper.make_node("ReduceSum", ["pad"], ["pad_sum"], keepdims=0))
        nodes.append(helper.make_node("Mul", ["pad_sum", "zero"], ["pad_zero"]))
        nodes.append(helper.make_node("Add", ["logits_raw", "pad_zero"], ["logits"]))
        nodes[0] = helper.make_node("MatMul", ["x", "W"], ["logits_raw"])
        initializers.append(numpy_helper.from_array(np.zeros((), dtype=np.float32), "zero"))
    graph = helper.make_graph(
        nodes,
        "linear_softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return weights


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_PYTHON_MODEL = '''
import threading
import time

import numpy as np

EVENTS = {events!r}
NAME = {name!r}
_lock = threading.Lock()


def _event(*words):
    if EVENTS:
        with _lock, open(EVENTS, "a") as handle:
            handle.write(" ".join([NAME, *map(str, words), repr(time.monotonic())]) + "\\n")


class Model:
    inputs = [("x", "float32", [-1, {features}])]
    outputs = [("y", "float32", [-1, {features}])]
    thread_safe = {thread_safe!r}

    def load(self, model_dir, device):
        _event("load_start")
        time.sleep({load_sleep!r})
        if {fail_load!r}:
            raise RuntimeError("this model is broken on purpose")
        self.scale = np.float32({scale!r})
        self.ballast = np.ones({ballast_bytes!r}, dtype=np.uint8)  # touched pages, so RSS grows
        _event("load_end")

    def predict(self, inputs):
        x = inputs["x"]
        _event("predict_start", x.shape[0])
        time.sleep({predict_sleep!r})
        _event("predict_end", x.shape[0])
        return {{"y": x * self.scale}}

    def unload(self):
        _event("unload")
'''


def write_python_model(
    folder: Path,
    *,
    name: str = "",
    events: Path | None = None,
    features: int = 4,
    scale: float = 2.0,
    load_sleep: float = 0.0,
    predict_sleep: float = 0.0,
    thread_safe: bool = False,
    fail_load: bool = False,
    ballast_bytes: int = 0,
    config: str = "",
) -> Path:
    """A Python-class model (``y = x * scale``) whose load/predict timing is controllable.

    Every load, predict and unload appends a line ``<name> <event> [rows] <monotonic>``
    to ``events``, so tests can see what reached the model and when.
    """
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.py").write_text(
        _PYTHON_MODEL.format(
            events=str(events) if events else "",
            name=name or folder.name,
            features=features,
            scale=scale,
            load_sleep=load_sleep,
            predict_sleep=predict_sleep,
            thread_safe=thread_safe,
            fail_load=fail_load,
            ballast_bytes=ballast_bytes,
        )
    )
    if config:
        (folder / "config.yaml").write_text(config)
    return version / "model.py"


_MOODY_MODEL = '''
import time

import numpy as np


class Model:
    inputs = [("x", "float32", [-1, 4])]
    outputs = [("y", "float32", [-1, 4])]

    def predict(self, inputs):
        x = inputs["x"]
        if x[0, 0] == 1.0:  # slow in CPU time
            end = time.thread_time() + {burn_s!r}
            while time.thread_time() < end:
                pass
        elif x[0, 0] == 2.0:  # slow in wall time only, as a pre-empted thread is
            time.sleep({sleep_s!r})
        elif x[0, 0] == 3.0:
            raise ValueError("this input breaks the model")
        return {{"y": x + np.float32(1)}}
'''


def write_moody_model(folder: Path, *, config: str, burn_s: float = 0.006, sleep_s: float = 0.006) -> None:
    """A Python-class model (``y = x + 1``, x [N, 4]) whose first value of the first row
    picks its mood: 1 burns ``burn_s`` of CPU, 2 sleeps ``sleep_s``, 3 raises."""
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.py").write_text(_MOODY_MODEL.format(burn_s=burn_s, sleep_s=sleep_s))
    (folder / "config.yaml").write_text(config)


def read_events(path: Path) -> list[tuple[str, ...]]:
    """Lines of an events file, split into words (the last word is the time)."""
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line.strip()]


#: seed 003's lip-sync model, shrunk: visual [B, 6, 8, 8] + audio [B, 32, 4, 4] -> [B, 3, 8, 8]
_LIPSYNC_MODEL = '''
import numpy as np


class Model:
    inputs = [("visual", "float32", [-1, 6, 8, 8]), ("audio", "float32", [-1, 32, 4, 4])]
    outputs = [("output", "float32", [-1, 3, 8, 8])]

    def load(self, model_dir, device):
        pass

    def predict(self, inputs):
        visual, audio = inputs["visual"], inputs["audio"]
        gain = audio.reshape(audio.shape[0], -1).mean(axis=1).astype(np.float32)
        return {"output": (visual[:, :3] + visual[:, 3:]) * gain[:, None, None, None]}
'''


def write_lipsync_model(folder: Path, config: str = "") -> None:
    """A Python-class stand-in for seed 003's lip-sync UNet: output = (visual[:, :3] +
    visual[:, 3:]) × the mean of each row's audio features."""
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.py").write_text(_LIPSYNC_MODEL)
    if config:
        (folder / "config.yaml").write_text(config)
