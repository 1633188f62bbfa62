"""V2 and Triton documents about models: metadata, model configuration, repository
index entries and statistics, built from the Registry's view of a model.

These are plain dicts in the field names Triton's HTTP endpoints use (snake_case, as
``model_config.proto`` and ``grpc_service.proto`` spell them, enum values by name).
They are the one source of these documents: the gRPC servicer
(:mod:`berth.grpc.v2_service`) turns the very same dicts into protobuf messages with
``json_format.ParseDict``, so every field here must exist in those protos.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ...registry import ModelEntry, ModelState
from ...runtimes.base import Signature, TensorSpec
from ...tensors import datatype_of

if TYPE_CHECKING:
    from ...engine import Engine

#: what ``GET /v2`` lists: the Triton extensions this front end implements
EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "model_configuration"]

#: berth lifecycle state → Triton repository-index state
INDEX_STATES = {
    ModelState.READY: "READY",
    ModelState.LOADING: "LOADING",
    ModelState.UNLOADING: "UNLOADING",
    ModelState.UNLOADED: "UNAVAILABLE",
    ModelState.FAILED: "UNAVAILABLE",
}


def _datatype(spec: TensorSpec) -> str:
    return datatype_of(spec.dtype) or spec.dtype.name.upper()


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": _datatype(spec), "shape": list(spec.shape)}


def model_metadata(entry: ModelEntry, signature: Signature) -> dict[str, Any]:
    return {
        "name": entry.name,
        "versions": sorted(entry.spec.versions, key=int),
        "platform": entry.info.get("platform") or entry.spec.backend,
        "inputs": [_tensor(s) for s in signature.inputs],
        "outputs": [_tensor(s) for s in signature.outputs],
    }


def batches(signature: Signature) -> bool:
    """Whether every tensor has a variable leading (batch) dimension — what Triton
    calls a model with ``max_batch_size > 0``."""
    return all(s.shape and s.shape[0] < 0 for s in (*signature.inputs, *signature.outputs))


def _triton_type(spec: TensorSpec) -> str:
    """Triton's DataType name; TYPE_INVALID for a dtype with no V2 datatype (complex
    numbers), which Triton's enum has no member for."""
    datatype = datatype_of(spec.dtype)
    if datatype is None:
        return "TYPE_INVALID"
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def model_config(entry: ModelEntry, signature: Signature) -> dict[str, Any]:
    """Triton's model configuration (``model_config.proto`` as JSON).

    With ``max_batch_size > 0`` the batch dimension is implied: ``dims`` leave it out,
    while the metadata's ``shape`` keeps it as -1 (perf_analyzer and tritonclient
    rely on exactly this). A model whose tensors do not all batch gets
    ``max_batch_size: 0`` and full shapes. The instance count is how many batches of
    the model berth runs at once, which is what Triton's instance count amounts to.
    """
    batched = batches(signature)
    batcher = entry.batcher
    settings = entry.spec.settings
    max_batch = batcher.max_batch_size if batcher is not None else (settings.max_batch_size or 1)
    concurrency = batcher.max_concurrency if batcher is not None else (settings.max_concurrency or 1)
    device = entry.device
    gpu = device is not None and device.kind == "cuda"

    def dims(spec: TensorSpec) -> list[int]:
        return list(spec.shape[1:] if batched else spec.shape)

    config: dict[str, Any] = {
        "name": entry.name,
        "platform": entry.info.get("platform") or entry.spec.backend,
        "backend": entry.spec.backend,
        "version_policy": {"specific": {"versions": sorted(int(v) for v in entry.spec.versions)}},
        "max_batch_size": max(1, max_batch) if batched else 0,
        "input": [
            {
                "name": s.name,
                "data_type": _triton_type(s),
                "format": "FORMAT_NONE",
                "dims": dims(s),
                "is_shape_tensor": False,
                "allow_ragged_batch": False,
                "optional": False,
            }
            for s in signature.inputs
        ],
        "output": [
            {"name": s.name, "data_type": _triton_type(s), "dims": dims(s), "label_filename": "", "is_shape_tensor": False}
            for s in signature.outputs
        ],
        "instance_group": [
            {
                "name": f"{entry.name}_0",
                "kind": "KIND_GPU" if gpu else "KIND_CPU",
                "count": concurrency,
                "gpus": [device.cuda_ordinal] if gpu and device is not None else [],
            }
        ],
        "default_model_filename": entry.spec.versions[entry.version].name,
        "parameters": {},
        "model_transaction_policy": {"decoupled": False},
    }
    if batched and max_batch > 1:
        config["dynamic_batching"] = {
            "preferred_batch_size": [],
            "max_queue_delay_microseconds": int(round((settings.max_queue_delay_ms or 0.0) * 1000)),
            "preserve_ordering": False,
        }
        if batcher is not None:
            # left out, Triton's max_queue_size means "unbounded"; berth's queue refuses
            # requests past its size, and a client sizing its load should know that
            config["dynamic_batching"]["default_queue_policy"] = {"max_queue_size": batcher.queue_size}
    return config


def repository_index(entries: list[ModelEntry], ready_only: bool) -> list[dict[str, Any]]:
    """The repository index of ``entries`` (:meth:`Engine.known_entries`), only the
    READY ones when ``ready_only``."""
    items = []
    for entry in entries:
        if ready_only and entry.state is not ModelState.READY:
            continue
        reason = entry.reason or ("unloaded" if entry.state is ModelState.UNLOADED else "")
        items.append({"name": entry.name, "version": entry.version, "state": INDEX_STATES[entry.state], "reason": reason})
    return items


async def model_document(
    engine: Engine, model: str, version: str | None, build: Callable[[ModelEntry, Signature], dict[str, Any]]
) -> dict[str, Any]:
    """``build`` (:func:`model_metadata`, :func:`model_config`) for a model, loading it
    if needed, as Triton has every model it describes loaded. The lease is not a use:
    lookups leave eviction order alone."""
    with await engine.lease(model, version, count_use=False) as lease:
        entry = lease.entry
        assert entry.runtime is not None
        return build(entry, entry.runtime.signature)


def _duration(count: int, total_ms: float) -> dict[str, int]:
    return {"count": int(count), "ns": int(round(total_ms * 1e6))}


def model_statistics(entry: ModelEntry) -> dict[str, Any]:
    """Triton's per-model statistics for one version.

    berth measures each request's queue time and its batch's compute time; it does not
    split input/output copies from the run, so ``compute_input``/``compute_output``
    report the count with zero time, and ``success`` is queue + compute.
    """
    stats = entry.stats
    requests = stats.inference_count
    compute_ms = (stats.mean_inference_ms or 0.0) * requests
    queue_ms = stats.queue_sum_ms
    last_used = stats.last_used
    memory = []
    device = entry.device
    if entry.resident and device is not None:
        gpu = device.kind == "cuda"
        # Triton numbers GPU memory by CUDA device and host memory as id 0
        memory.append({"type": "GPU" if gpu else "CPU", "id": device.cuda_ordinal if gpu else 0, "byte_size": int(entry.memory_bytes)})
    return {
        "name": entry.name,
        "version": entry.version,
        "last_inference": int(last_used * 1000) if last_used is not None else 0,
        "inference_count": stats.batch_rows,
        "execution_count": stats.batches,
        "inference_stats": {
            "success": _duration(requests, queue_ms + compute_ms),
            "fail": _duration(stats.failures, 0.0),
            "queue": _duration(requests, queue_ms),
            "compute_input": _duration(requests, 0.0),
            "compute_infer": _duration(requests, compute_ms),
            "compute_output": _duration(requests, 0.0),
            "cache_hit": _duration(0, 0.0),
            "cache_miss": _duration(0, 0.0),
        },
        "response_stats": {},
        "batch_stats": [],
        "memory_usage": memory,
    }
