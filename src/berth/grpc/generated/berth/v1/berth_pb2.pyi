from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("name", "datatype", "shape", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    datatype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class InferBatchRequest(_message.Message):
    __slots__ = ("model_id", "visual_frames", "audio_features", "batch_size", "inputs", "version", "timeout_ms")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VISUAL_FRAMES_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FEATURES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    visual_frames: bytes
    audio_features: bytes
    batch_size: int
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    version: str
    timeout_ms: int
    def __init__(self, model_id: _Optional[str] = ..., visual_frames: _Optional[bytes] = ..., audio_features: _Optional[bytes] = ..., batch_size: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., version: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class InferBatchResponse(_message.Message):
    __slots__ = ("outputs", "inference_time_ms", "success", "error", "worker_id", "gpu_id", "device", "tensors", "queue_time_ms", "model_version", "batch_size")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    GPU_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[RawMouthRegion]
    inference_time_ms: float
    success: bool
    error: str
    worker_id: int
    gpu_id: int
    device: str
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    queue_time_ms: float
    model_version: str
    batch_size: int
    def __init__(self, outputs: _Optional[_Iterable[_Union[RawMouthRegion, _Mapping]]] = ..., inference_time_ms: _Optional[float] = ..., success: _Optional[bool] = ..., error: _Optional[str] = ..., worker_id: _Optional[int] = ..., gpu_id: _Optional[int] = ..., device: _Optional[str] = ..., tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., queue_time_ms: _Optional[float] = ..., model_version: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...

class RawMouthRegion(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "version", "state", "loaded", "device", "gpu_id", "memory_mb", "pinned", "backend", "reason", "versions", "usage_count")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    GPU_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    USAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    version: str
    state: str
    loaded: bool
    device: str
    gpu_id: int
    memory_mb: float
    pinned: bool
    backend: str
    reason: str
    versions: _containers.RepeatedScalarFieldContainer[str]
    usage_count: int
    def __init__(self, model_id: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[str] = ..., loaded: _Optional[bool] = ..., device: _Optional[str] = ..., gpu_id: _Optional[int] = ..., memory_mb: _Optional[float] = ..., pinned: _Optional[bool] = ..., backend: _Optional[str] = ..., reason: _Optional[str] = ..., versions: _Optional[_Iterable[str]] = ..., usage_count: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("model_id", "version")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    version: str
    def __init__(self, model_id: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("success", "message", "model", "load_time_ms")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOAD_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    model: ModelInfo
    load_time_ms: float
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., load_time_ms: _Optional[float] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("model_id", "version")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    version: str
    def __init__(self, model_id: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ("success", "message", "model")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    model: ModelInfo
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class GetModelStatsRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ModelStats(_message.Message):
    __slots__ = ("model_id", "version", "state", "usage_count", "last_used_unix", "memory_mb", "avg_inference_ms", "p99_inference_ms", "inference_count", "failures", "loads", "evictions", "device", "pinned", "avg_queue_ms", "avg_batch_size")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    USAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_UNIX_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    AVG_INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    P99_INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    LOADS_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    AVG_QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    AVG_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    version: str
    state: str
    usage_count: int
    last_used_unix: float
    memory_mb: float
    avg_inference_ms: float
    p99_inference_ms: float
    inference_count: int
    failures: int
    loads: int
    evictions: int
    device: str
    pinned: bool
    avg_queue_ms: float
    avg_batch_size: float
    def __init__(self, model_id: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[str] = ..., usage_count: _Optional[int] = ..., last_used_unix: _Optional[float] = ..., memory_mb: _Optional[float] = ..., avg_inference_ms: _Optional[float] = ..., p99_inference_ms: _Optional[float] = ..., inference_count: _Optional[int] = ..., failures: _Optional[int] = ..., loads: _Optional[int] = ..., evictions: _Optional[int] = ..., device: _Optional[str] = ..., pinned: _Optional[bool] = ..., avg_queue_ms: _Optional[float] = ..., avg_batch_size: _Optional[float] = ...) -> None: ...

class DeviceStats(_message.Message):
    __slots__ = ("id", "kind", "models", "memory_mb", "max_memory_mb", "workers")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    models: int
    memory_mb: float
    max_memory_mb: float
    workers: int
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., models: _Optional[int] = ..., memory_mb: _Optional[float] = ..., max_memory_mb: _Optional[float] = ..., workers: _Optional[int] = ...) -> None: ...

class ServerStats(_message.Message):
    __slots__ = ("loaded_models", "max_models", "total_memory_mb", "max_memory_mb", "eviction_policy", "resident_models", "inflight", "uptime_s", "devices")
    LOADED_MODELS_FIELD_NUMBER: _ClassVar[int]
    MAX_MODELS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    EVICTION_POLICY_FIELD_NUMBER: _ClassVar[int]
    RESIDENT_MODELS_FIELD_NUMBER: _ClassVar[int]
    INFLIGHT_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    loaded_models: int
    max_models: int
    total_memory_mb: float
    max_memory_mb: float
    eviction_policy: str
    resident_models: int
    inflight: int
    uptime_s: float
    devices: _containers.RepeatedCompositeFieldContainer[DeviceStats]
    def __init__(self, loaded_models: _Optional[int] = ..., max_models: _Optional[int] = ..., total_memory_mb: _Optional[float] = ..., max_memory_mb: _Optional[float] = ..., eviction_policy: _Optional[str] = ..., resident_models: _Optional[int] = ..., inflight: _Optional[int] = ..., uptime_s: _Optional[float] = ..., devices: _Optional[_Iterable[_Union[DeviceStats, _Mapping]]] = ...) -> None: ...

class GetModelStatsResponse(_message.Message):
    __slots__ = ("models", "server")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelStats]
    server: ServerStats
    def __init__(self, models: _Optional[_Iterable[_Union[ModelStats, _Mapping]]] = ..., server: _Optional[_Union[ServerStats, _Mapping]] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("healthy", "ready", "loaded_models", "uptime_s", "failed_models", "preload_pending", "accelerated", "inflight")
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    LOADED_MODELS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    FAILED_MODELS_FIELD_NUMBER: _ClassVar[int]
    PRELOAD_PENDING_FIELD_NUMBER: _ClassVar[int]
    ACCELERATED_FIELD_NUMBER: _ClassVar[int]
    INFLIGHT_FIELD_NUMBER: _ClassVar[int]
    healthy: bool
    ready: bool
    loaded_models: int
    uptime_s: float
    failed_models: _containers.RepeatedScalarFieldContainer[str]
    preload_pending: _containers.RepeatedScalarFieldContainer[str]
    accelerated: bool
    inflight: int
    def __init__(self, healthy: _Optional[bool] = ..., ready: _Optional[bool] = ..., loaded_models: _Optional[int] = ..., uptime_s: _Optional[float] = ..., failed_models: _Optional[_Iterable[str]] = ..., preload_pending: _Optional[_Iterable[str]] = ..., accelerated: _Optional[bool] = ..., inflight: _Optional[int] = ...) -> None: ...
