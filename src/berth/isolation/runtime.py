"""``ProcessRuntime``: the server-side proxy of a model that runs in a worker process.

It is a :class:`~berth.runtimes.base.Runtime` like any other, so the Registry, the
batcher and every front end use it unchanged:

- ``load()`` makes a private folder (``mkdtemp``: 0700), starts
  ``python -m berth.isolation.worker`` with the server's own interpreter (its stdout
  and stderr are the server's, so its log lines land in the server log), connects a
  DEALER socket to the worker's ``ipc://`` socket there, sends ``load`` and reads the
  signature and info back. A worker that dies or does not answer during load fails
  the load like any runtime error.
- ``run()`` sends one batch and waits for its answer, ``isolation_run_timeout_s``
  (model option, default 120 s) at most. One lock covers each request and its reply,
  so calls from several device worker threads are safe; the worker runs one batch at
  a time anyway. Replies carry the request id, and one that does not match (never
  expected) is skipped. A worker that does not answer in time is killed: its state is
  unknown, and the crash path below restarts it clean.
- A watcher thread waits on the process. If it exits while serving, ``healthy()``
  turns False at once, calls in flight and later fail with
  ``worker process exited (code N)``, and the callback given to :meth:`watch` (the
  Registry's) is told, which marks the model FAILED and restarts it with back-off.
- ``unload()`` sends ``shutdown``, waits ``_GRACE_S`` for the process to exit, kills
  it otherwise, and removes the folder. The process's exit returns all of its memory.
- Memory: :meth:`measured_memory_bytes` is the worker's own RSS after warm-up (asked
  over the socket), which the Registry books instead of the server's RSS delta. On a
  CUDA device it is ``None`` and :meth:`device_memory_bytes` reads device-wide memory
  in use, so the Registry's before/after delta (taken under its per-device lock)
  charges everything the worker put on the GPU, its CUDA context included.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..runtimes import runtime_class
from ..runtimes.base import Batch, Placement, Runtime, RuntimeInfo, Signature
from ..runtimes.cuda import cuda_used_bytes
from . import ISOLATABLE_BACKENDS
from .protocol import ProtocolError, decode, encode, next_id, signature_from_wire, zero_copy

log = logging.getLogger("berth.isolation")

_GRACE_S = 5.0  # how long an unloading worker may take to exit before it is killed
_POLL_S = 0.05  # how often a waiting call looks whether the worker has died
_RUN_TIMEOUT_S = 120.0
_LOAD_TIMEOUT_S = 600.0
_MAX_IPC_PATH = 100  # sockaddr_un holds ~107 bytes

_context_lock = threading.Lock()
_context: Any = None


def zmq_context() -> Any:
    """The process's one ZeroMQ context, made on first use (shared by every proxy)."""
    global _context
    import zmq

    with _context_lock:
        if _context is None:
            _context = zmq.Context()
        return _context


class WorkerExited(RuntimeError):
    """The worker process is gone (crashed, killed, or stopped)."""


class WorkerError(RuntimeError):
    """The worker answered with an error (the model raised); the worker lives on."""


def _private_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="berth-worker-"))
    if len(str(folder / "socket")) > _MAX_IPC_PATH:  # a long TMPDIR; /tmp is short
        shutil.rmtree(folder, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix="berth-worker-", dir="/tmp"))
    return folder


class ProcessRuntime(Runtime):
    """Runs a batch runtime (``onnx``, ``torchscript``, ``torch_export``, ``paragon``,
    ``python``) in its own worker process; see the module docstring."""

    backend = "process"
    platform = "process"

    def __init__(self, backend: str, path: Path, placement: Placement, options: Mapping[str, Any] | None = None, *, name: str = "") -> None:
        if backend not in ISOLATABLE_BACKENDS:
            raise ValueError(f"isolation: process is not available for backend '{backend}' (only {', '.join(sorted(ISOLATABLE_BACKENDS))})")
        super().__init__(path, placement, options)
        target = runtime_class(backend)  # imports only the runtime module, not its framework
        self.target_backend = backend
        self.backend = target.backend  # type: ignore[misc]  # reported as the real backend
        self.platform = target.platform  # type: ignore[misc]
        self.name = name or path.stem
        self.run_timeout_s = float(self.options.get("isolation_run_timeout_s", _RUN_TIMEOUT_S))
        self.load_timeout_s = float(self.options.get("isolation_load_timeout_s", _LOAD_TIMEOUT_S))
        self._lock = threading.Lock()  # one request/reply on the socket at a time
        self._socket: Any = None
        self._process: subprocess.Popen[bytes] | None = None
        self._folder: Path | None = None
        self._exited = threading.Event()
        self._exit_reason: str | None = None
        self._stopping = False
        self._crashed = False  # exited without being asked to (not by unload)
        self._callback: Callable[[str], None] | None = None
        self._notified = False
        self._callback_lock = threading.Lock()
        self._signature: Signature | None = None
        self._info: RuntimeInfo | None = None

    # ── lifecycle ──────────────────────────────────────────────────────────
    def load(self) -> None:
        import zmq

        self._folder = _private_dir()
        endpoint = f"ipc://{self._folder / 'socket'}"
        socket = zmq_context().socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RECONNECT_IVL, 10)  # the worker binds a moment after it starts
        socket.connect(endpoint)
        self._socket = socket
        level = logging.getLevelName(logging.getLogger("berth").getEffectiveLevel())
        command = [sys.executable, "-P", "-m", "berth.isolation.worker", "--endpoint", endpoint, "--watch-stdin", "--name", self.name]
        if level in ("DEBUG", "INFO", "WARNING", "ERROR"):
            command += ["--log-level", level]
        try:
            # stdout/stderr are inherited: the worker logs into the server's log
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE, close_fds=True)
            threading.Thread(target=self._watch_process, name=f"berth-worker-{self.name}", daemon=True).start()
            log.info("model '%s': worker process %d started", self.name, self._process.pid)
            self._call(
                {
                    "op": "load",
                    "backend": self.target_backend,
                    "path": str(self.path),
                    "device_id": self.placement.device_id,
                    "framework_device": self.placement.framework_device,
                    "options": dict(self.options),
                },
                timeout=self.load_timeout_s,
            )
            reply, _ = self._call({"op": "signature"})
            self._signature = Signature(signature_from_wire(reply.get("inputs")), signature_from_wire(reply.get("outputs")))
            info, _ = self._call({"op": "info"})
            details = info.get("details") if isinstance(info.get("details"), dict) else {}
            self._info = RuntimeInfo(
                backend=str(info.get("backend", self.backend)),
                platform=str(info.get("platform", self.platform)),
                accelerated=bool(info.get("accelerated", False)),
                details={**details, "isolation": "process", "worker_pid": self._process.pid},
            )
        except BaseException:
            self.unload()
            raise

    def unload(self) -> None:
        """Ask the worker to exit, kill it after a grace period, free the socket and folder."""
        self._stopping = True
        process = self._process
        if process is not None and not self._exited.is_set():
            if self._lock.acquire(timeout=_GRACE_S):
                try:
                    if not self._exited.is_set() and self._socket is not None:
                        self._exchange({"op": "shutdown"}, None, _GRACE_S)
                except Exception as exc:  # noqa: BLE001 - it is killed below if it does not exit
                    log.warning("model '%s': worker did not shut down cleanly: %s", self.name, exc)
                finally:
                    self._lock.release()
            try:
                process.wait(_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("model '%s': worker process %d did not exit in %.0fs; killing it", self.name, process.pid, _GRACE_S)
                process.kill()
                process.wait()
        if process is not None:
            if process.stdin is not None:
                try:
                    process.stdin.close()
                except OSError:
                    pass
            process.wait()
        with self._lock:  # any caller still waiting sees the exit within _POLL_S
            if self._socket is not None:
                self._socket.close(0)
                self._socket = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def watch(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` once, from another thread, if the worker exits
        while it should be serving (not during :meth:`unload`). Called at once if it
        already has."""
        with self._callback_lock:
            self._callback = callback
        self._notify_exit()

    def _watch_process(self) -> None:
        process = self._process
        assert process is not None
        code = process.wait()
        if self._exit_reason is None:
            self._exit_reason = f"worker process exited (code {code})"
        self._exited.set()
        if self._stopping:
            log.info("model '%s': worker process %d exited (code %d)", self.name, process.pid, code)
            return
        self._crashed = True
        log.error("model '%s': %s (pid %d)", self.name, self._exit_reason, process.pid)
        self._notify_exit()

    def _notify_exit(self) -> None:
        with self._callback_lock:
            callback = self._callback
            if callback is None or self._notified or self._stopping or not self._exited.is_set():
                return
            self._notified = True
        callback(self.exit_reason or "worker process exited")

    # ── requests ───────────────────────────────────────────────────────────
    def _call(self, header: dict[str, Any], tensors: Mapping[str, np.ndarray] | None = None, timeout: float | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        with self._lock:
            return self._exchange(header, tensors, self.run_timeout_s if timeout is None else timeout)

    def _exchange(self, header: dict[str, Any], tensors: Mapping[str, np.ndarray] | None, timeout: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """One request and its reply; the caller holds ``_lock``."""
        import zmq

        if self._exited.is_set():
            raise WorkerExited(self.exit_reason or "worker process exited")
        socket = self._socket
        if socket is None:
            raise WorkerExited("worker process stopped")
        request_id = next_id()
        frames = [b"", *encode({**header, "id": request_id}, tensors)]
        socket.send_multipart(frames, copy=not zero_copy(frames))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill(f"worker process did not answer '{header['op']}' within {timeout:g}s; killed")
                raise WorkerExited(self.exit_reason or "worker process killed")
            if socket.poll(int(min(remaining, _POLL_S) * 1000) + 1, zmq.POLLIN):
                frames = socket.recv_multipart(copy=False)
                if len(frames) < 2 or len(frames[0].buffer) != 0:
                    raise ProtocolError("a reply without its envelope")
                reply, outputs = decode(frames[1:])
                if reply.get("id") != request_id:
                    continue  # a late answer to an earlier request
                if not reply.get("ok"):
                    raise WorkerError(str(reply.get("error") or "the worker reported an error"))
                return reply, outputs
            if self._exited.is_set():
                raise WorkerExited(self.exit_reason or "worker process exited")

    def _kill(self, reason: str) -> None:
        if self._exit_reason is None:
            self._exit_reason = reason
        if self._process is not None and self._process.poll() is None:
            self._process.kill()

    def run(self, inputs: Batch) -> dict[str, np.ndarray]:
        _, outputs = self._call({"op": "run"}, inputs)
        return outputs

    def ping(self) -> int:
        """The worker's PID, from the worker."""
        reply, _ = self._call({"op": "ping"}, timeout=_GRACE_S)
        return int(reply["pid"])

    # ── facts ──────────────────────────────────────────────────────────────
    @property
    def signature(self) -> Signature:
        if self._signature is None:
            raise RuntimeError("the worker has not loaded the model")
        return self._signature

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def exit_reason(self) -> str | None:
        return self._exit_reason

    def info(self) -> RuntimeInfo:
        return self._info or RuntimeInfo(backend=self.backend, platform=self.platform, details={"isolation": "process"})

    def healthy(self) -> bool:
        """False once the worker has died on its own (not when unload ended it): a dead
        worker's runtime stays on its FAILED model until a restart replaces it."""
        return self._process is not None and not self._crashed

    def device_memory_bytes(self) -> int | None:
        # device-wide memory in use (None off CUDA): the Registry's delta around load
        # and warm-up is then all the worker holds there, its own CUDA context included
        return cuda_used_bytes(self.placement.framework_device)

    def measured_memory_bytes(self) -> int | None:
        if self.placement.framework_device.startswith("cuda"):
            return None
        reply, _ = self._call({"op": "memory"}, timeout=_GRACE_S * 6)
        return int(reply["rss"])
