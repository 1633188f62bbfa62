"""The worker process: one model's runtime, answering the server one request at a time.

    python -m berth.isolation.worker --endpoint ipc:///tmp/berth-worker-XXXX/socket [--watch-stdin]

The server (:class:`~berth.isolation.runtime.ProcessRuntime`) makes the folder (0700,
its own), starts this process and connects; the worker binds a REP socket there and
serves the ops of :mod:`.protocol` in order: ``load`` builds the real runtime class by
backend name, ``run`` runs one batch, ``shutdown`` unloads and exits. A language model
also takes ``generate`` and ``abort`` and streams what it generates on a PUSH socket
beside the REP one (:mod:`.lm_worker`). The worker ends
itself when the server goes away: on end-of-file on stdin (``--watch-stdin``; the
server holds the pipe's other end, so even a killed server closes it) and when the
server's socket disconnects. SIGINT is ignored so a Ctrl-C on the terminal lets the
server shut its workers down in order. Logs go to stderr, which is the server's.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import stat
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil
import zmq
from zmq.utils.monitor import recv_monitor_message

from . import ISOLATABLE_BACKENDS
from .lm_worker import WorkerGeneration
from .protocol import OPS, ProtocolError, decode, encode, error_reply, events_endpoint, signature_to_wire, zero_copy

log = logging.getLogger("berth.isolation.worker")


class Worker:
    def __init__(self, send_event: Callable[[bytes], None] | None = None) -> None:
        self.runtime: Any = None
        self.process = psutil.Process()
        self.running = True
        self.generation: WorkerGeneration | None = None
        self._send_event = send_event

    def handle(self, header: dict[str, Any], tensors: dict[str, np.ndarray]) -> list[Any]:
        op = header.get("op")
        request_id = header.get("id")
        if op not in OPS:
            raise ProtocolError(f"unknown op {op!r}")
        handler = getattr(self, f"op_{op}")
        reply, outputs = handler(header, tensors)
        return encode({"id": request_id, "ok": True, **reply}, outputs)

    def _loaded(self) -> Any:
        if self.runtime is None:
            raise RuntimeError("no model is loaded in this worker")
        return self.runtime

    def op_load(self, header: dict[str, Any], _tensors: Any) -> tuple[dict[str, Any], None]:
        from ..runtimes import runtime_class
        from ..runtimes.base import Placement

        if self.runtime is not None:
            raise RuntimeError("this worker already holds a model")
        backend = str(header["backend"])
        if backend not in ISOLATABLE_BACKENDS:
            raise ValueError(f"backend '{backend}' cannot run in a worker process")
        placement = Placement(str(header["device_id"]), str(header["framework_device"]))
        options = header.get("options") or {}
        if not isinstance(options, dict):
            raise ProtocolError("options must be a map")
        runtime = runtime_class(backend)(Path(str(header["path"])), placement, options)
        runtime.load()
        self.runtime = runtime
        scheduler = getattr(runtime, "scheduler", None)
        if scheduler is not None and self._send_event is not None:
            self.generation = WorkerGeneration(scheduler, self._send_event)
        log.info("loaded %s model %s on %s", backend, Path(str(header["path"])).name, placement.framework_device)
        return {}, None

    def op_signature(self, _header: Any, _tensors: Any) -> tuple[dict[str, Any], None]:
        signature = self._loaded().signature
        return {"inputs": signature_to_wire(signature.inputs), "outputs": signature_to_wire(signature.outputs)}, None

    def op_run(self, _header: Any, tensors: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        outputs = self._loaded().run(tensors)
        return {}, {name: np.asarray(value) for name, value in outputs.items()}

    def op_info(self, _header: Any, _tensors: Any) -> tuple[dict[str, Any], None]:
        info = self._loaded().info()
        return {"backend": info.backend, "platform": info.platform, "accelerated": bool(info.accelerated), "details": info.details}, None

    def op_memory(self, _header: Any, _tensors: Any) -> tuple[dict[str, Any], None]:
        device = self.runtime.device_memory_bytes() if self.runtime is not None else None
        return {"rss": int(self.process.memory_info().rss), "device": device}, None

    def _generation(self) -> WorkerGeneration:
        if self.generation is None:
            raise RuntimeError("this worker's model does not generate")
        return self.generation

    def op_generate(self, header: dict[str, Any], _tensors: Any) -> tuple[dict[str, Any], None]:
        self._generation().generate(header.get("sequences"))
        return {}, None

    def op_abort(self, header: dict[str, Any], _tensors: Any) -> tuple[dict[str, Any], None]:
        self._generation().abort(header.get("keys"))
        return {}, None

    def op_ping(self, _header: Any, _tensors: Any) -> tuple[dict[str, Any], None]:
        return {"pid": os.getpid()}, None

    def op_shutdown(self, _header: Any, _tensors: Any) -> tuple[dict[str, Any], None]:
        self.running = False
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            runtime.unload()  # a scheduler's unfinished sequences end with an error event
        return {}, None


def _check_endpoint(endpoint: str) -> Path:
    """The socket's path; its folder must be private to this user (made by the server)."""
    if not endpoint.startswith("ipc://"):
        raise SystemExit("the worker listens on ipc:// endpoints only")
    path = Path(endpoint[len("ipc://"):])
    folder = path.parent
    info = folder.stat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise SystemExit(f"refusing to listen in {folder}: it must be a folder private to this user (0700)")
    return path


def _watch_stdin() -> None:
    """Exit as soon as the server's end of the stdin pipe closes (the server is gone)."""
    try:
        while os.read(0, 4096):  # the raw fd: a buffered reader's lock would stall exit
            pass
    except OSError:
        pass
    os._exit(0)


def serve(endpoint: str) -> int:
    path = _check_endpoint(endpoint)
    context = zmq.Context()
    socket = context.socket(zmq.REP)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind(endpoint)
    os.chmod(path, 0o600)
    event_socket = context.socket(zmq.PUSH)
    event_socket.setsockopt(zmq.LINGER, 0)
    event_socket.bind(events_endpoint(endpoint))
    os.chmod(events_endpoint(endpoint)[len("ipc://"):], 0o600)
    events_lock = threading.Lock()  # ZeroMQ sockets are not thread-safe

    def send_event(frame: bytes) -> None:
        with events_lock:
            event_socket.send(frame)

    monitor = socket.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    worker = Worker(send_event)
    peers = 0
    log.info("worker %d listening", os.getpid())
    try:
        while worker.running:
            events = dict(poller.poll())
            if monitor in events:
                event = recv_monitor_message(monitor)["event"]
                peers += 1 if event == zmq.EVENT_ACCEPTED else -1
                if event == zmq.EVENT_DISCONNECTED and peers <= 0:
                    log.info("the server's socket went away; exiting")
                    break
            if socket not in events:
                continue
            frames = socket.recv_multipart(copy=False)
            request_id = None
            try:
                header, tensors = decode(frames)
                request_id = header.get("id")
                reply = worker.handle(header, tensors)
            except Exception as exc:  # noqa: BLE001 - every failure goes back as an error reply
                log.error("request %s failed", request_id, exc_info=exc)
                reply = error_reply(request_id, exc)
            socket.send_multipart(reply, copy=not zero_copy(reply))
    finally:
        if worker.runtime is not None:
            try:
                worker.runtime.unload()
            except Exception:  # noqa: BLE001 - exiting anyway; the OS frees the rest
                log.warning("unload at exit failed", exc_info=True)
        socket.disable_monitor()
        monitor.close(0)
        socket.close(0)
        with events_lock:
            event_socket.close(0)
        context.term()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m berth.isolation.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="ipc:// path to bind, inside a 0700 folder")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches end-of-file")
    parser.add_argument("--name", default="", help="the model's name, for log lines")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s berth.worker[{args.name or '-'} pid {os.getpid()}] %(message)s",
    )
    if args.watch_stdin:
        threading.Thread(target=_watch_stdin, name="berth-worker-stdin", daemon=True).start()
    return serve(args.endpoint)


if __name__ == "__main__":
    sys.exit(main())
