"""Model builders and server helpers shared by the HTTP tests.

(``tests/http`` deliberately has no ``__init__.py``: as a package it would be named
``http`` and shadow the standard library's ``http``, which httpx imports.)
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from conftest import BerthServer
from models import write_linear_softmax


def write_digits(path: Path, *, seed: int = 0, classes: int = 10) -> np.ndarray:
    """A tiny MNIST-shaped classifier: x [batch, 28, 28] → Flatten → MatMul → Softmax.

    Returns W [784, classes] so that ``probs = softmax(x.reshape(-1, 784) @ W)``.
    """
    rng = np.random.default_rng(seed)
    weights = (rng.standard_normal((784, classes)) * 0.05).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        "digits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 28, 28])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return weights


def digits_reference(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    logits = x.reshape(x.shape[0], -1).astype(np.float64) @ weights.astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


SLOW_MODEL = '''
import os
import time
from pathlib import Path

import numpy as np


class Model:
    inputs = [("x", "float32", [-1, 4])]
    outputs = [("y", "float32", [-1, 4])]

    def load(self, model_dir, device):
        self.log = Path(model_dir) / "calls.log"
        self.delay = {delay!r}
        self.warm = {warm!r}

    def predict(self, inputs):
        x = inputs["x"]
        # every call is recorded (the first value of each row marks the request);
        # warm-up runs zeros, so markers are non-zero in the tests. A positive marker
        # sleeps ``delay``, a negative one is a quick request, and the warm-up's
        # zeros sleep ``warm`` (so the server measures the model as not tiny)
        with open(self.log, "a") as handle:
            handle.write(" ".join(repr(float(v)) for v in x[:, 0]) + "\\n")
        marker = float(x[0, 0])
        if marker > 0.0:
            time.sleep(self.delay)
        elif marker == 0.0 and self.warm:
            time.sleep(self.warm)
        return {{"y": x * 2.0}}
'''


def write_slow_model(models: Path, name: str, *, delay: float, warm: float = 0.01, config: dict[str, Any] | None = None) -> Path:
    """A python model whose predict sleeps ``delay`` s (for a positive marker, the
    request's first value; ``warm`` s for the warm-up's zeros) and appends each
    call's markers to calls.log."""
    import yaml

    folder = models / name
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.py").write_text(textwrap.dedent(SLOW_MODEL.format(delay=delay, warm=warm)))
    if config:
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return version / "calls.log"


def calls(log: Path) -> list[float]:
    """Markers of every predict call that carried real (non-warm-up) input."""
    if not log.exists():
        return []
    markers = [float(v) for line in log.read_text().split("\n") for v in line.split()]
    return [m for m in markers if m != 0.0]


def start_server(config: dict[str, Any], workdir: Path, **kwargs: Any) -> BerthServer:
    workdir.mkdir(parents=True, exist_ok=True)
    return BerthServer(config, workdir, **kwargs).start()


def start_linear_server(root: Path) -> BerthServer:
    """A berth server whose default model ``m`` is the small linear softmax (input [N, 4])."""
    write_linear_softmax(root / "repo" / "m.onnx")
    (root / "work").mkdir()
    return BerthServer({"repository": str(root / "repo"), "default_model": "m"}, root / "work").start()
