"""Where every demo file goes, and the YAML the server reads from them.

The server's repository loader expects ``models/<name>/config.yaml`` next to
``models/<name>/<version>/model.<ext>``, and ``berth serve`` reads ``berth.yaml`` at the
top. Both are validated with unknown keys forbidden, so only the documented keys are
written. Keeping every path and every config key in this one module means the model
builders only produce weights, and a change to the on-disk contract is made once.

YAML is written as text (values JSON-encoded, which is valid YAML) rather than with
``yaml.safe_dump`` so that the explanatory comments survive; :func:`write_yaml_text`
re-reads each file and checks it parses to what was meant.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: bump when anything about the produced files changes; a cached build with another
#: version is rebuilt
DEMO_VERSION = "2"  # 2: the tiny LMs under llm/

BUILD_INFO = "BUILD_INFO.json"
SERVER_CONFIG = "berth.yaml"
MODELS_DIR = "models"
RECORDINGS_DIR = "recordings"
#: the language models (OpenAI API) live in their own repository with their own
#: berth.yaml: ``berth serve --config llm/berth.yaml``
LLM_DIR = "llm"
EMG_RECORDING = f"{RECORDINGS_DIR}/emg_demo.npz"

DIGIT_LABELS: tuple[str, ...] = tuple(str(i) for i in range(10))
LIPSYNC_TENANTS: tuple[str, ...] = ("sanders", "bob", "jane")

#: server capacity: the count limit alone already forces eviction when all 8 demo
#: models are used (see :func:`server_config_text`)
MAX_MODELS = 4


@dataclass
class ModelEntry:
    """One model directory: the ``config.yaml`` keys plus the file's suffix."""

    name: str
    backend: str  # onnx | torchscript | paragon
    suffix: str  # ".onnx", ".pt", ".json"
    max_batch_size: int
    max_queue_delay_ms: int
    memory_estimate_mb: int
    description: str
    labels: list[str] | None = None

    @property
    def relpath(self) -> str:
        """Path of the model file relative to the demo root (version 1)."""
        return f"{MODELS_DIR}/{self.name}/1/model{self.suffix}"

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "backend": self.backend,
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_ms": self.max_queue_delay_ms,
            "memory_estimate_mb": self.memory_estimate_mb,
            "description": self.description,
        }
        if self.labels is not None:
            cfg["labels"] = list(self.labels)
        return cfg


def model_file(root: Path, name: str, suffix: str) -> Path:
    """Path of ``models/<name>/1/model<suffix>`` under ``root``, parents created."""
    path = root / MODELS_DIR / name / "1" / f"model{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _yaml_value(value: Any) -> str:
    # JSON is a subset of YAML 1.2 flow syntax; it quotes "0".."9" so they stay strings
    return json.dumps(value, ensure_ascii=False)


def write_yaml_text(path: Path, text: str, expected: dict[str, Any]) -> None:
    """Write hand-formatted YAML and fail if it does not parse back to ``expected``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    parsed = yaml.safe_load(text)
    if parsed != expected:
        raise ValueError(f"{path.name} does not round-trip: wrote {expected!r}, read {parsed!r}")


def write_model_config(root: Path, entry: ModelEntry) -> Path:
    """Write ``models/<name>/config.yaml`` for ``entry``."""
    cfg = entry.config()
    lines = [f"# {entry.name}: written by `berth demo build` (demo version {DEMO_VERSION})"]
    lines += [f"{key}: {_yaml_value(value)}" for key, value in cfg.items()]
    path = root / MODELS_DIR / entry.name / "config.yaml"
    write_yaml_text(path, "\n".join(lines) + "\n", cfg)
    return path


@dataclass(frozen=True)
class Capacity:
    """The ``capacity`` block of ``berth.yaml`` and the arithmetic behind it."""

    max_models: int
    max_memory_gb: float
    classifiers_mb: int  # digits + emg, the preloaded pair
    tenant_mb: int  # the largest lip-sync tenant
    all_models_mb: int


def choose_capacity(entries: list[ModelEntry]) -> Capacity:
    """Pick a memory budget that fits the preloaded classifiers and two tenants, not three.

    So a session that uses all three lip-sync tenants plus the classifiers must evict
    (LRU), whichever limit (count or memory) the registry checks first, while any one
    tenant can always be loaded next to the pinned/preloaded classifiers.
    """
    by_name = {e.name: e for e in entries}
    classifiers = by_name["digits"].memory_estimate_mb + by_name["emg"].memory_estimate_mb
    tenant = max(by_name[t].memory_estimate_mb for t in LIPSYNC_TENANTS)
    # halfway between "two tenants fit" and "three tenants fit", rounded down to 10 MB
    budget_mb = classifiers + 2.5 * tenant
    max_memory_gb = math.floor(budget_mb / 10.0) / 100.0
    # true whether the registry reads a GB as 1000 or 1024 MB
    for mb_per_gb in (1000, 1024):
        if not classifiers + 2 * tenant <= max_memory_gb * mb_per_gb < classifiers + 3 * tenant:
            raise ValueError("could not choose a memory budget that forces tenant eviction")
    return Capacity(
        max_models=MAX_MODELS,
        max_memory_gb=max_memory_gb,
        classifiers_mb=classifiers,
        tenant_mb=tenant,
        all_models_mb=sum(e.memory_estimate_mb for e in entries),
    )


def server_config(capacity: Capacity) -> dict[str, Any]:
    """The parsed form of ``berth.yaml`` (what :func:`server_config_text` must read as)."""
    return {
        "server": {"host": "127.0.0.1", "http_port": 8080, "grpc_port": 50051},
        "repository": "models",
        "default_model": "digits",
        "capacity": {
            "max_models": capacity.max_models,
            "max_memory_gb": capacity.max_memory_gb,
            "eviction_policy": "lru",
            "idle_unload_minutes": 30,
        },
        "models": {
            "digits": {"preload": True, "pinned": True},
            "emg": {"preload": True},
        },
    }


def server_config_text(capacity: Capacity, names: list[str]) -> str:
    """``berth.yaml`` with comments explaining why the limits are what they are."""
    c = capacity
    n_models = len(names)
    listing = ", ".join(names)
    return f"""\
# berth server config for the demo repository, written by `berth demo build`
# (demo version {DEMO_VERSION}). Run: berth serve --config <this file>
server:
  host: 127.0.0.1
  http_port: 8080
  grpc_port: 50051
repository: models          # relative to this file
default_model: digits
capacity:
  # The demo has {n_models} models ({listing}).
  # With at most {c.max_models} resident at once, using them all makes the LRU policy evict
  # (digits + emg + the three lip-sync tenants alone are 5); digits is pinned, never evicted.
  max_models: {c.max_models}
  # Memory estimates (config.yaml memory_estimate_mb, sized for a full batch):
  # digits + emg = {c.classifiers_mb} MB, one lip-sync tenant = {c.tenant_mb} MB, all {n_models} models =
  # {c.all_models_mb} MB. Counted by these estimates, {c.max_memory_gb} GB fits the classifiers plus two
  # tenants but not three, so sanders + bob + jane also evict on memory. Once a model is
  # loaded the server may count its measured warm-up memory instead (smaller: batch 1),
  # in which case max_models above is what forces the eviction.
  max_memory_gb: {c.max_memory_gb}
  eviction_policy: lru
  idle_unload_minutes: 30
models:
  digits:
    preload: true
    pinned: true              # the default model is always resident
  emg:
    preload: true             # ready for the streaming demo without a cold start
"""


def write_server_config(root: Path, capacity: Capacity, names: list[str]) -> Path:
    """Write ``berth.yaml`` for the models ``names``; check it parses to :func:`server_config`."""
    path = root / SERVER_CONFIG
    write_yaml_text(path, server_config_text(capacity, names), server_config(capacity))
    return path


__all__ = [
    "BUILD_INFO",
    "DEMO_VERSION",
    "DIGIT_LABELS",
    "EMG_RECORDING",
    "LIPSYNC_TENANTS",
    "LLM_DIR",
    "MAX_MODELS",
    "MODELS_DIR",
    "SERVER_CONFIG",
    "Capacity",
    "ModelEntry",
    "choose_capacity",
    "model_file",
    "server_config",
    "server_config_text",
    "write_model_config",
    "write_server_config",
]
