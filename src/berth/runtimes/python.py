"""A model written as a Python class: the escape hatch for custom pre/post-processing.

The model file (``model.py``) defines a class, ``Model`` unless the config's
``options.class_name`` says otherwise::

    class Model:
        inputs = [("x", "float32", [-1, 4])]      # name, dtype, shape (-1 = any)
        outputs = [("y", "float32", [-1, 4])]
        thread_safe = False                       # True lets batches run concurrently

        def load(self, model_dir, device): ...    # read weights; device is "cpu" / "cuda:0"
        def predict(self, inputs): ...            # dict[str, ndarray] -> dict[str, ndarray]
        def unload(self): ...                     # optional

``inputs``/``outputs`` may instead be given in the model's config.yaml. The file runs
as code in the server, so only put trusted files in a repository.
"""

from __future__ import annotations

import importlib.util
import itertools
import threading
from contextlib import nullcontext
from typing import Any

import numpy as np

from ..tensors import numpy_dtype
from .base import Batch, Runtime, Signature, TensorSpec

_module_ids = itertools.count()


def _specs(declared: Any) -> tuple[TensorSpec, ...]:
    specs = []
    for item in declared:
        if hasattr(item, "model_dump"):
            item = item.model_dump()
        if isinstance(item, dict):
            name, dtype, shape = item["name"], item.get("dtype", "float32"), item["shape"]
        else:
            name, dtype, shape = item
        specs.append(TensorSpec(str(name), numpy_dtype(str(dtype)), tuple(int(d) for d in shape)))
    return tuple(specs)


class PythonRuntime(Runtime):
    backend = "python"
    platform = "python"
    suffixes = (".py",)

    _instance: Any = None
    _signature: Signature

    def load(self) -> None:
        module_name = f"berth_user_model_{next(_module_ids)}"
        spec = importlib.util.spec_from_file_location(module_name, self.path)
        if spec is None or spec.loader is None:
            raise ValueError("model.py cannot be imported")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        class_name = str(self.options.get("class_name", "Model"))
        cls = getattr(module, class_name, None)
        if cls is None or not callable(getattr(cls, "predict", None)):
            raise ValueError(f"model.py must define class {class_name} with a predict method")
        instance = cls()
        if callable(getattr(instance, "load", None)):
            instance.load(self.path.parent, self.placement.framework_device)
        inputs = self.options.get("inputs") or getattr(instance, "inputs", None)
        outputs = self.options.get("outputs") or getattr(instance, "outputs", None)
        if not inputs or not outputs:
            raise ValueError(f"class {class_name} must declare inputs and outputs")
        self._signature = Signature(_specs(inputs), _specs(outputs))
        self._lock = nullcontext() if getattr(instance, "thread_safe", False) else threading.Lock()
        self._instance = instance

    @property
    def signature(self) -> Signature:
        return self._signature

    def run(self, inputs: Batch) -> dict[str, np.ndarray]:
        with self._lock:
            result = self._instance.predict(dict(inputs))
        if not isinstance(result, dict):
            raise TypeError("predict must return a dict of arrays")
        return {name: np.asarray(result[name]) for name in (s.name for s in self._signature.outputs)}

    def unload(self) -> None:
        instance, self._instance = self._instance, None
        if instance is not None and callable(getattr(instance, "unload", None)):
            instance.unload()
