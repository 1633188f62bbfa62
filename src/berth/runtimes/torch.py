"""PyTorch: TorchScript archives (``.pt``) and ``torch.export`` programs (``.pt2``).

A TorchScript file does not record shapes or dtypes, so its signature comes from, in
order: the model config's ``inputs``/``outputs``; a ``signature.json`` extra file
saved in the archive (``torch.jit.save(m, path, _extra_files={"signature.json": ...})``);
else the names of ``forward``'s arguments, float32, shape ``[-1, -1]`` (a batch of
vectors of any length; declare the signature for any other rank), and outputs named
``output`` (or ``output_0``, ``output_1`` … for a tuple).
An exported program carries its own signature in its graph, read from there; a
program that returns a dict names its outputs by the dict's keys.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .base import Batch, Runtime, RuntimeInfo, Signature, TensorSpec
from .cuda import cuda_used_bytes


def use_torch_threads(count: Any) -> None:
    """Size torch's intra-op pool (process-wide) to ``count`` when one is given.

    On a small machine torch's default (every core) makes its pool's threads fight the
    event loop and the other processes for the same cores, which costs more than the
    extra threads win: the Registry passes one core fewer than the process may use.
    """
    import torch

    if isinstance(count, int) and count >= 1 and torch.get_num_threads() != count:
        torch.set_num_threads(count)


def _spec_list(declared: Any) -> tuple[TensorSpec, ...]:
    from ..tensors import numpy_dtype

    specs = []
    for item in declared:
        if hasattr(item, "model_dump"):
            item = item.model_dump()
        dtype = item.get("dtype", item.get("datatype", "float32"))
        specs.append(TensorSpec(str(item["name"]), numpy_dtype(str(dtype)), tuple(int(d) for d in item["shape"])))
    return tuple(specs)


def _fallback_outputs(return_type: Any) -> tuple[TensorSpec, ...]:
    """Output specs for a TorchScript ``forward`` with no declared signature."""
    kind = return_type.kind()
    if kind == "DictType":
        raise ValueError(
            "forward returns a dict, whose keys a TorchScript file does not record: declare the outputs "
            "(config.yaml inputs/outputs, or signature.json saved in the archive)"
        )
    if kind == "TupleType":
        count = len(return_type.elements())
        return tuple(TensorSpec(f"output_{i}", np.dtype(np.float32), (-1, -1)) for i in range(count))
    return (TensorSpec("output", np.dtype(np.float32), (-1, -1)),)


def _writable(array: np.ndarray) -> np.ndarray:
    """torch.from_numpy wants a contiguous, writable array; request bodies are read-only views."""
    if array.flags.writeable and array.flags.c_contiguous:
        return array
    return np.array(array, copy=True, order="C")


def _to_numpy(value: Any) -> np.ndarray:
    return value.detach().to("cpu").numpy()


class _TorchRuntime(Runtime):
    _module: Any = None
    _signature: Signature

    @classmethod
    def prepare(cls, framework_device: str) -> None:
        import torch

        with torch.inference_mode():
            # a matmul initialises the math library too (cuBLAS handles and workspace)
            (torch.ones(8, 8, device=framework_device) @ torch.ones(8, 8, device=framework_device)).sum().item()

    @property
    def signature(self) -> Signature:
        return self._signature

    def _declared_signature(self) -> Signature | None:
        inputs, outputs = self.options.get("inputs"), self.options.get("outputs")
        if inputs and outputs:
            return Signature(_spec_list(inputs), _spec_list(outputs))
        return None

    def run(self, inputs: Batch) -> dict[str, np.ndarray]:
        import torch

        device = self.placement.framework_device
        args = [torch.from_numpy(_writable(inputs[spec.name])).to(device) for spec in self._signature.inputs]
        with torch.inference_mode():
            result = self._module(*args)
        names = [spec.name for spec in self._signature.outputs]
        if isinstance(result, dict) and all(name in result for name in names):
            return {name: _to_numpy(result[name]) for name in names}
        if isinstance(result, dict) and all(isinstance(v, torch.Tensor) for v in result.values()):
            raise RuntimeError(f"the model returned outputs {sorted(map(str, result))}; its signature declares {names}")
        leaves = [result] if isinstance(result, torch.Tensor) else torch.utils._pytree.tree_leaves(result)
        if len(leaves) < len(names):
            raise RuntimeError(f"the model returned {len(leaves)} tensors; its signature declares {len(names)} outputs {names}")
        return {name: _to_numpy(value) for name, value in zip(names, leaves)}

    def unload(self) -> None:
        self._module = None
        if self.placement.framework_device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(
            backend=self.backend,
            platform=self.platform,
            accelerated=self.placement.framework_device.startswith("cuda"),
            details={"device": self.placement.framework_device},
        )

    def device_memory_bytes(self) -> int | None:
        return cuda_used_bytes(self.placement.framework_device)


class TorchScriptRuntime(_TorchRuntime):
    backend = "torchscript"
    platform = "pytorch_torchscript"

    def load(self) -> None:
        import torch

        use_torch_threads(self.options.get("torch_threads"))
        extra = {"signature.json": ""}
        module = torch.jit.load(str(self.path), map_location=self.placement.framework_device, _extra_files=extra)
        module.eval()
        self._module = module
        declared = self._declared_signature()
        if declared is not None:
            self._signature = declared
        elif extra["signature.json"]:
            data = json.loads(extra["signature.json"])
            self._signature = Signature(_spec_list(data["inputs"]), _spec_list(data["outputs"]))
        else:
            schema = module.forward.schema
            # [-1, -1] rather than [-1]: a rank-1 guess made every ordinary (batch,
            # features) model fail its warm-up, so it could never load in the server
            inputs = tuple(TensorSpec(a.name, np.dtype(np.float32), (-1, -1)) for a in schema.arguments[1:])  # drop self
            self._signature = Signature(inputs, _fallback_outputs(schema.returns[0].type))


class TorchExportRuntime(_TorchRuntime):
    backend = "torch_export"
    platform = "pytorch_export"

    def load(self) -> None:
        import torch

        use_torch_threads(self.options.get("torch_threads"))
        program = torch.export.load(str(self.path))
        self._module = program.module().to(self.placement.framework_device)
        self._signature = self._declared_signature() or self._program_signature(program)

    @staticmethod
    def _program_signature(program: Any) -> Signature:
        import torch

        from torch.export.graph_signature import OutputKind

        graph_signature = program.graph_signature
        user_inputs = set(graph_signature.user_inputs)
        inputs: list[TensorSpec] = []
        outputs: list[TensorSpec] = []
        for node in program.graph.nodes:
            if node.op == "placeholder" and node.name in user_inputs:
                inputs.append(_meta_spec(node.name, node.meta.get("val")))
            elif node.op == "output":
                results = node.args[0] if isinstance(node.args[0], (tuple, list)) else [node.args[0]]
                # the output node also returns mutated buffers; keep the user's outputs
                kinds = [spec.kind for spec in graph_signature.output_specs]
                if len(kinds) == len(results):
                    results = [item for item, kind in zip(results, kinds) if kind == OutputKind.USER_OUTPUT]
                keys = _dict_output_keys(program, len(results))
                for index, item in enumerate(results):
                    name = keys[index] if keys is not None else (item.name if isinstance(item, torch.fx.Node) else f"output_{index}")
                    value = item.meta.get("val") if isinstance(item, torch.fx.Node) else None
                    outputs.append(_meta_spec(name, value))
        return Signature(tuple(inputs), tuple(outputs))


def _dict_output_keys(program: Any, count: int) -> list[str] | None:
    """The keys of a program whose forward returns a flat dict of tensors, else None.

    The graph names its outputs after the nodes that compute them (``linear``,
    ``softmax``); the keys the model returns are the names its users know.
    """
    try:
        spec = program.module_call_graph[0].signature.out_spec
    except (AttributeError, IndexError):
        return None
    if spec is None or spec.type is not dict:
        return None
    keys = [str(k) for k in spec.context]
    return keys if len(keys) == spec.num_leaves == count else None


def _meta_spec(name: str, value: Any) -> TensorSpec:
    import torch

    if value is None or not hasattr(value, "shape"):
        return TensorSpec(name, np.dtype(np.float32), (-1,))
    dims = tuple(int(d) if isinstance(d, int) else -1 for d in value.shape)
    dtype = torch.empty((), dtype=value.dtype).numpy().dtype
    return TensorSpec(name, dtype, dims)
