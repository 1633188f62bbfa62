"""Typed server configuration: ``berth.yaml``, then ``BERTH_*`` environment, then flags.

Each layer overrides the one before it. Environment variables name nested keys with a
double underscore: ``BERTH_CAPACITY__MAX_MODELS=3``, ``BERTH_SERVER__HTTP_PORT=9000``.
Values from the environment are parsed as YAML scalars, so ``3``, ``true`` and
``0.5`` arrive typed. The keys of the seed servers (seeds 003 and 004) are accepted as
they wrote them; a few of theirs are aliases of berth's own names, listed on the field.
Aliases are renamed to the field's name in each layer before the layers are merged, so
an environment variable or flag overrides a key whatever spelling the file used (the
seed-003 ``server.port: ":50051"`` becomes ``server.grpc_port``; where one layer gives
both, ``grpc_port`` wins).

The merged mapping is validated once at start by pydantic; a bad key or value raises
:class:`~berth.errors.ConfigError` naming the dotted key and the reason. After that
the one :class:`BerthConfig` object is passed down and never re-read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from .errors import ConfigError

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
ENV_PREFIX = "BERTH_"


def valid_model_name(name: str) -> bool:
    return bool(MODEL_NAME_PATTERN.match(name)) and ".." not in name


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    grpc_port: int = Field(50051, ge=0, le=65535)
    #: seed 003 writes the gRPC listen address as ``port: ":50051"``
    port: str | int | None = None
    max_message_size_mb: float = Field(50, gt=0)
    #: execution slots per device (seed 003 ``worker_count_per_gpu``)
    worker_count_per_gpu: int = Field(2, ge=1, le=256, alias="workers_per_device")
    #: default bounded queue length per model (seed 003)
    queue_size: int = Field(256, ge=1, le=1_000_000)
    insecure: bool = False
    max_body_mb: float = Field(64, gt=0)
    #: all request header lines together (names and values), answered with 431 past it
    max_header_kb: float = Field(32, gt=0)
    #: rows (first dimension) one request may send; larger batches are refused (413)
    max_request_rows: int = Field(4096, ge=1)
    request_timeout_s: float = Field(30.0, gt=0)
    #: batches predicted to run faster than this run on the event loop (see scheduling.batcher)
    inline_max_us: float = Field(150.0, ge=0, le=5000)
    drain_timeout_s: float = Field(20.0, ge=0)
    stats_report_interval_s: float = Field(300.0, ge=0)
    blast_max_n: int = Field(2000, ge=1)
    sessions_dir: str = "data/sessions"
    session_max_mb: float = Field(8, gt=0)
    sessions_quota_mb: float = Field(256, gt=0)

    @model_validator(mode="after")
    def _seed_port(self) -> "ServerConfig":
        if self.port is not None:
            self.grpc_port = parse_listen_port(self.port)
        return self


def parse_listen_port(value: object) -> int:
    """``":50051"``, ``"0.0.0.0:50051"``, ``"50051"`` or ``50051`` → 50051."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"port {value!r} is not of the form ':50051'")
    match = re.fullmatch(r"(?:[\w.\-]*):?(\d{1,5})", str(value).strip())
    if not match or int(match.group(1)) > 65535:
        raise ValueError(f"port '{value}' is not of the form ':50051'")
    return int(match.group(1))


class AuthConfig(_Section):
    """Credentials and exposure. Secrets are never printed (SecretStr)."""

    api_keys: list[SecretStr] = Field(default_factory=list)
    admin_token: SecretStr | None = None
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)
    #: average requests per second allowed to each API key (None = no quota)
    quota_rps: float | None = Field(None, gt=0)
    quota_burst: int = Field(20, ge=1)

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_keys) or self.admin_token is not None


class GpusConfig(_Section):
    enabled: bool = True
    #: how many CUDA devices to use at most (None = all discovered)
    count: int | None = Field(None, ge=0)
    memory_gb_per_gpu: float | None = Field(None, gt=0)
    assignment_strategy: Literal["preferred", "round-robin", "least-loaded", "most-free-memory"] = "least-loaded"


class CapacityConfig(_Section):
    max_models: int = Field(64, ge=1)
    max_memory_gb: float = Field(8.0, gt=0)
    eviction_policy: Literal["lru", "lfu"] = "lru"
    #: seed 004 ``idle_unload_minutes``; seed 003 wrote ``idle_timeout_minutes``. 0 = never.
    idle_unload_minutes: float = Field(0, ge=0, alias="idle_timeout_minutes")
    max_concurrent_loads: int = Field(1, ge=1, le=64)
    #: how long a request may wait for a leased model to free capacity
    capacity_wait_s: float = Field(10.0, ge=0)


class DeviceConfig(_Section):
    """A device declared in config. ``kind: cpu`` devices can stand in for GPUs in tests."""

    name: str
    kind: Literal["cpu", "cuda"] = "cpu"
    index: int = Field(0, ge=0)
    max_models: int | None = Field(None, ge=1)
    memory_mb: float | None = Field(None, gt=0)
    workers: int | None = Field(None, ge=1, le=256)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not valid_model_name(value):
            raise ValueError(f"device name '{value}' must match {MODEL_NAME_PATTERN.pattern}")
        return value


class OnnxConfig(_Section):
    #: seed 003 names the onnxruntime shared library; the Python wheel brings its own
    library_path: str | None = None
    intra_op_threads: int | None = Field(None, ge=1, le=256)
    providers: list[str] | None = None


class TorchConfig(_Section):
    #: torch's intra-op threads in the server process, for every torch and lm model
    #: there (torch has one pool per process). None: every CPU this process may run on
    #: but one, which stays free for the event loop. An ``isolation: process`` model
    #: may set its own with ``options.torch_threads``.
    intra_op_threads: int | None = Field(None, ge=1, le=256)


class TensorConfig(_Section):
    """A declared input or output, for runtimes whose files do not carry a signature."""

    name: str
    dtype: str = Field("float32", alias="datatype")
    shape: list[int]


class ModelConfig(_Section):
    """One entry under ``models:``; every key optional (a repository model needs none)."""

    model_path: str | None = None
    backend: str | None = None
    preload: bool = False
    pinned: bool = False
    memory_estimate_mb: float | None = Field(None, gt=0)
    #: seed 003: -1 = auto. Index into the accelerator devices (or declared devices).
    preferred_gpu: int = -1
    preferred_device: str | None = None
    max_batch_size: int | None = Field(None, ge=1, le=65536)
    max_queue_delay_ms: float | None = Field(None, ge=0, le=60_000)
    #: most batches of this model running at once (seed 000 ``-maxgpu``)
    max_concurrency: int | None = Field(None, ge=1, le=1024)
    queue_size: int | None = Field(None, ge=1, le=1_000_000)
    warmup: bool = True
    #: ``thread``: run in the server process on device worker threads; ``process``: in
    #: its own worker process (berth.isolation), freed by process exit on unload
    isolation: Literal["thread", "process"] = "thread"
    default_version: str | None = None
    description: str | None = None
    labels: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    inputs: list[TensorConfig] | None = None
    outputs: list[TensorConfig] | None = None
    # seed 004 compositing keys, kept for the compositing role
    background_dir: str | None = None
    crop_rects_path: str | None = None
    num_frames: int | None = Field(None, ge=1)

    @field_validator("default_version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # YAML reads ``default_version: 2`` as an int; versions are folder names
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class EmgConfig(_Section):
    """Seed 001's real-time EMG streaming. The seed's plain ``EMG_*`` and
    ``TENSORRT_ENGINE`` environment variables are read by :func:`emg_env_overrides`
    (below ``BERTH_EMG__*`` in precedence); see ``berth.streaming``."""

    #: dummy (synthetic), realtime (serial port), ninapro / file (npz replay)
    mode: Literal["dummy", "realtime", "ninapro", "file"] = "dummy"
    port: str | None = None
    window: int = Field(200, ge=1, le=100_000, alias="win")
    channels: int = Field(16, ge=1, le=1024, alias="ch")
    fs: float = Field(2000, gt=0, le=1_000_000)
    #: serial frame format: ``binary`` (sync 0xA5 0x5A + channels x float32 LE) or ``csv`` lines
    serial_format: Literal["binary", "csv"] = "binary"
    baudrate: int = Field(115200, ge=1)
    #: npz with ``signal`` [T, channels] (and ``fs``) for file replay
    recording: str = "recordings/emg_demo.npz"
    replay_loop: bool = False
    #: seconds a source may stay silent before a stream ends with an error event
    source_timeout_s: float = Field(2.0, gt=0)
    model: str = "emg"
    torch_model: str = "emg_torch"
    #: a model file for the accelerated backend (seed 001 ``TENSORRT_ENGINE``); served as ``emg_tensorrt``
    tensorrt_engine: str | None = None
    max_streams: int = Field(128, ge=1, le=100_000)
    max_fps: float = Field(1000, gt=0)
    max_duration_s: float = Field(86_400, gt=0)
    #: frames a stream may hold for a client that reads slowly before it coalesces them
    send_buffer: int = Field(8, ge=1, le=10_000)
    keepalive_s: float = Field(15.0, gt=0)
    max_batch: int = Field(256, ge=1)
    max_benchmark_iterations: int = Field(20_000, ge=1)

    @model_validator(mode="after")
    def _realtime_port(self) -> "EmgConfig":
        if self.mode == "realtime" and not self.port:
            raise ValueError("emg.mode 'realtime' needs emg.port (EMG_PORT), the serial device")
        return self


#: model name the ``TENSORRT_ENGINE`` file is served under
EMG_ACCELERATED_MODEL = "emg_tensorrt"
_SEED_ENV = {"EMG_MODE": "mode", "EMG_PORT": "port", "EMG_WIN": "win", "EMG_CH": "ch", "EMG_FS": "fs", "TENSORRT_ENGINE": "tensorrt_engine"}


def emg_env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Seed 001's plain ``EMG_*`` / ``TENSORRT_ENGINE`` variables as an ``emg`` layer."""
    section: dict[str, Any] = {}
    for name, key in _SEED_ENV.items():
        raw = environ.get(name)
        if raw is None or not raw.strip():
            continue
        if key in ("mode", "port", "tensorrt_engine"):
            section[key] = str(Path(raw).expanduser().resolve()) if key == "tensorrt_engine" else raw.strip()
        else:
            section[key] = yaml.safe_load(raw)
    return {"emg": section} if section else {}


class BerthConfig(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    gpus: GpusConfig = Field(default_factory=GpusConfig)
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)
    devices: list[DeviceConfig] = Field(default_factory=list)
    onnx: OnnxConfig = Field(default_factory=OnnxConfig)
    torch: TorchConfig = Field(default_factory=TorchConfig)
    emg: EmgConfig = Field(default_factory=EmgConfig)
    repository: str | None = None
    default_model: str | None = None
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    #: folder the relative paths above are resolved against (the config file's folder)
    base_dir: str = "."

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        for name in value:
            if not valid_model_name(name):
                raise ValueError(_bad_model_name(name))
        return value

    @field_validator("devices")
    @classmethod
    def _device_names_unique(cls, value: list[DeviceConfig]) -> list[DeviceConfig]:
        names = [d.name for d in value]
        if len(names) != len(set(names)):
            raise ValueError("device names must be unique")
        return value

    @model_validator(mode="after")
    def _emg_accelerated_model(self) -> "BerthConfig":
        # the seed's TENSORRT_ENGINE file is served like any configured model
        engine = self.emg.tensorrt_engine
        if engine and EMG_ACCELERATED_MODEL not in self.models:
            self.models[EMG_ACCELERATED_MODEL] = ModelConfig(model_path=engine)
        return self

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = Path(self.base_dir) / candidate
        return candidate.resolve()

    @property
    def repository_path(self) -> Path | None:
        return self.resolve(self.repository) if self.repository else None


def _bad_model_name(name: str) -> str:
    return f"model name '{name}' must match {MODEL_NAME_PATTERN.pattern} (and hold no '..')"


_SECTIONS: dict[str, type[BaseModel]] = {
    "server": ServerConfig,
    "gpus": GpusConfig,
    "capacity": CapacityConfig,
    "onnx": OnnxConfig,
    "torch": TorchConfig,
    "emg": EmgConfig,
}


def _alias_table(model: type[BaseModel]) -> dict[str, str]:
    return {f.alias: name for name, f in model.model_fields.items() if f.alias and f.alias != name}


def _canonical_keys(section: Mapping[str, Any], model: type[BaseModel], where: str) -> dict[str, Any]:
    """``section`` with alias spellings renamed to the field names."""
    aliases = _alias_table(model)
    result: dict[str, Any] = {}
    for key, value in section.items():
        name = aliases.get(key, key) if isinstance(key, str) else key
        if name in result and result[name] != value:
            other = next(k for k in section if k != key and aliases.get(k, k) == name)
            raise ConfigError(f"{where}.{key}", f"given twice, as '{other}' and '{key}', with different values")
        result[name] = value
    return result


def normalize_layer(data: Mapping[str, Any]) -> dict[str, Any]:
    """One configuration layer with aliases renamed to berth's field names.

    Layers are merged key by key, so without this a seed spelling in the file
    (``idle_timeout_minutes``) and berth's spelling in a flag (``idle_unload_minutes``)
    would both survive the merge instead of the later one winning.
    """
    result = dict(data)
    for section, model in _SECTIONS.items():
        value = result.get(section)
        if isinstance(value, Mapping):
            value = _canonical_keys(value, model, section)
            if section == "server" and "port" in value:
                port = value.pop("port")
                if port is not None and "grpc_port" not in value:
                    try:
                        value["grpc_port"] = parse_listen_port(port)
                    except ValueError as exc:
                        raise ConfigError("server.port", str(exc)) from None
            result[section] = value
    models = result.get("models")
    if isinstance(models, Mapping):
        entries: dict[Any, Any] = {}
        for name, entry in models.items():
            if not isinstance(name, str) or not valid_model_name(name):
                raise ConfigError(f"models.{name}", _bad_model_name(str(name)))
            if entry is None:  # ``sanders:`` with nothing under it
                entry = {}
            entries[name] = _canonical_keys(entry, ModelConfig, f"models.{name}") if isinstance(entry, Mapping) else entry
        result["models"] = entries
    return result


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``BERTH_A__B=v`` → ``{"a": {"b": v}}``; values parsed as YAML scalars."""
    result: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "BERTH_CONFIG":
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if not parts:
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(".".join(parts), "conflicts with another environment variable")
        node[parts[-1]] = value
    return result


def _format_location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


def _reason(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> BerthConfig:
    """Read ``path`` (YAML), apply environment and flag overrides, validate."""
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("<file>", f"cannot read config file {file}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError("<file>", f"not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("<root>", "the config file must hold a mapping")
        data = normalize_layer(loaded)
        base_dir = file.resolve().parent
    environ = os.environ if environ is None else environ
    data = deep_merge(data, normalize_layer(emg_env_overrides(environ)))
    data = deep_merge(data, normalize_layer(env_overrides(environ)))
    if overrides:
        data = deep_merge(data, normalize_layer(overrides))
    data.setdefault("base_dir", str(base_dir))
    try:
        return BerthConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(_format_location(tuple(first["loc"])), _reason(first)) from None
