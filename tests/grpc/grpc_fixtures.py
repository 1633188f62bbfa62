"""Models, servers and clients shared by the gRPC tests.

(``tests/grpc`` deliberately has no ``__init__.py``: as a package it would be named
``grpc`` and shadow the grpc library itself.)
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import grpc
import numpy as np

from conftest import BerthServer, free_port
from models import write_lipsync_model, write_python_model

from berth.grpc.generated.berth.v1 import berth_pb2, berth_pb2_grpc

#: seed 003's lip-sync model, shrunk: visual [B, 6, 8, 8] + audio [B, 32, 4, 4] -> [B, 3, 8, 8]
VISUAL_ITEM = (6, 8, 8)
AUDIO_ITEM = (32, 4, 4)
OUTPUT_ITEM = (3, 8, 8)
#: the test server's message limit (server.max_message_size_mb)
MAX_MESSAGE_MB = 1


_TYPED = '''
import numpy as np


class Model:
    inputs = [("i", "int32", [-1, 3]), ("b", "bool", [-1, 2])]
    outputs = [("i2", "int32", [-1, 3]), ("nb", "bool", [-1, 2])]

    def predict(self, inputs):
        return {"i2": inputs["i"] * 2, "nb": ~inputs["b"]}
'''

_STRINGS = '''
import numpy as np


class Model:
    inputs = [("s", "BYTES", [-1])]
    outputs = [("upper", "BYTES", [-1])]

    def predict(self, inputs):
        s = inputs["s"]
        values = [v.upper() if isinstance(v, bytes) else b"" for v in s.reshape(-1)]
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return {"upper": out.reshape(s.shape)}
'''

_FIXED = '''
import numpy as np


class Model:
    inputs = [("x", "float32", [2, 3])]
    outputs = [("y", "float32", [2, 3])]

    def predict(self, inputs):
        return {"y": inputs["x"] + np.float32(1)}
'''


_COMPLEX = '''
import numpy as np


class Model:
    inputs = [("x", "float32", [-1, 2])]
    outputs = [("z", "complex64", [-1, 2])]

    def predict(self, inputs):
        return {"z": inputs["x"].astype(np.complex64) * np.complex64(1j)}
'''


def lipsync_reference(visual: np.ndarray, audio: np.ndarray) -> np.ndarray:
    gain = audio.reshape(audio.shape[0], -1).mean(axis=1).astype(np.float32)
    return (visual[:, :3] + visual[:, 3:]) * gain[:, None, None, None]


def _write(folder: Path, source: str, config: str = "") -> None:
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.py").write_text(textwrap.dedent(source))
    if config:
        (folder / "config.yaml").write_text(config)


def write_repository(models: Path) -> Path:
    """double (y = 2x, [N, 4]), lipsync, typed (INT32 + BOOL), strings (BYTES), spare."""
    write_python_model(models / "double")
    write_python_model(models / "spare")
    write_lipsync_model(models / "lipsync", "max_queue_delay_ms: 20\n")
    _write(models / "typed", _TYPED)
    _write(models / "strings", _STRINGS)
    return models


def write_fixed_model(folder: Path) -> None:
    """fixed (y = x + 1, [2, 3]): no batch dimension, so Triton's max_batch_size 0."""
    _write(folder, _FIXED)


def write_complex_model(folder: Path) -> None:
    """complex (z = x * 1j, complex64): an output with no V2 datatype."""
    _write(folder, _COMPLEX)


@dataclass
class RunningServer:
    berth: BerthServer
    grpc_address: str

    def channel(self) -> grpc.Channel:
        limit = 64 * 1024 * 1024  # the client side is generous; the server's limit is under test
        return grpc.insecure_channel(
            self.grpc_address,
            options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)],
        )


def start_grpc_server(workdir: Path, *, server: dict[str, Any] | None = None, models: Path | None = None, **config: Any) -> RunningServer:
    """``berth serve`` with the test repository (or ``models``) and a known gRPC port."""
    workdir.mkdir(parents=True, exist_ok=True)
    repository = models or write_repository(workdir / "models")
    port = free_port()
    settings = {"grpc_port": port, "max_message_size_mb": MAX_MESSAGE_MB, **(server or {})}
    berth = BerthServer({"repository": str(repository), "server": settings, **config}, workdir).start()
    return RunningServer(berth, f"127.0.0.1:{settings['grpc_port']}")


def shared_server(tmp_path_factory: Any, name: str) -> Iterator[RunningServer]:
    """Body of a module-scoped fixture: one server for every test of a module."""
    running = start_grpc_server(tmp_path_factory.mktemp(name))
    try:
        yield running
    finally:
        running.berth.stop()


def berth_stub(channel: grpc.Channel) -> berth_pb2_grpc.InferenceServiceStub:
    return berth_pb2_grpc.InferenceServiceStub(channel)


def seed_request(model: str, visual: np.ndarray, audio: np.ndarray) -> berth_pb2.InferBatchRequest:
    """An InferBatch request in seed 003's form: float32 bytes + batch_size."""
    return berth_pb2.InferBatchRequest(
        model_id=model,
        visual_frames=visual.astype(np.float32).tobytes(),
        audio_features=audio.astype(np.float32).tobytes(),
        batch_size=visual.shape[0],
    )


def lipsync_batch(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    visual = rng.standard_normal((batch, *VISUAL_ITEM)).astype(np.float32)
    audio = rng.standard_normal((batch, *AUDIO_ITEM)).astype(np.float32)
    return visual, audio
