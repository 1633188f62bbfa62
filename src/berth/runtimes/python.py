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
        def healthy(self): ...                    # optional: False marks the server not ready

``inputs``/``outputs`` may instead be given in the model's config.yaml. The file runs
as code in the server, so only put trusted files in a repository.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
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
            name, dtype, shape = item["name"], item.get("dtype", item.get("datatype", "float32")), item["shape"]
        else:
            name, dtype, shape = item
        specs.append(TensorSpec(str(name), numpy_dtype(str(dtype)), tuple(int(d) for d in shape)))
    return tuple(specs)


class PythonRuntime(Runtime):
    backend = "python"
    platform = "python"

    _instance: Any = None
    _signature: Signature

    def load(self) -> None:
        module_name = f"berth_user_model_{next(_module_ids)}"
        spec = importlib.util.spec_from_file_location(module_name, self.path)
        if spec is None or spec.loader is None:
            raise ValueError("model.py cannot be imported")
        module = importlib.util.module_from_spec(spec)
        # registered while loaded, as an import would: dataclasses, typing.get_type_hints
        # and pickle look a class's module up in sys.modules
        sys.modules[module_name] = module
        try:
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
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        self._module_name = module_name
        self._lock = nullcontext() if getattr(instance, "thread_safe", False) else threading.Lock()
        self._instance = instance

    @property
    def signature(self) -> Signature:
        return self._signature

    def run(self, inputs: Batch) -> dict[str, np.ndarray]:
        with self._lock:
            result = self._instance.predict(dict(inputs))
        if not isinstance(result, dict):
            raise TypeError(f"predict must return a dict of arrays, not {type(result).__name__}")
        names = [s.name for s in self._signature.outputs]
        missing = [name for name in names if name not in result]
        if missing:
            raise ValueError(f"predict returned no {', '.join(map(repr, missing))}; it returned {sorted(map(str, result))}")
        return {name: np.asarray(result[name]) for name in names}

    def healthy(self) -> bool:
        """A model class may define ``healthy()`` (e.g. to watch a helper process)."""
        check = getattr(self._instance, "healthy", None)
        return bool(check()) if callable(check) else True

    def unload(self) -> None:
        instance, self._instance = self._instance, None
        try:
            if instance is not None and callable(getattr(instance, "unload", None)):
                instance.unload()
        finally:
            sys.modules.pop(getattr(self, "_module_name", ""), None)
