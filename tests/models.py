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
