"""Process isolation: a model served from its own worker process.

``isolation: process`` on a model runs its runtime in a child process
(``python -m berth.isolation.worker``) and puts a :class:`~.runtime.ProcessRuntime`
proxy in the server in its place. The two speak ZeroMQ over an ``ipc://`` socket in a
private (0700) temporary folder; each message is a msgpack header plus one raw frame
per tensor (:mod:`.protocol`), never pickle. Unloading ends the process, so every byte
the model held goes back to the system; a worker that dies while serving marks its
model FAILED and the Registry restarts it with an exponential back-off
(:mod:`.backoff`) while the server and its other models go on.

Modules: :mod:`.protocol` (the wire format), :mod:`.worker` (the child),
:mod:`.runtime` (the proxy), :mod:`.backoff` (restart delays). pyzmq is imported only
by the proxy and the worker, so a server with no isolated model never loads it.
"""

from __future__ import annotations

from typing import Any

#: backends that can run in a worker process (batch runtimes; not ``lm``, whose
#: continuous-batching scheduler lives in the server process)
ISOLATABLE_BACKENDS = frozenset({"onnx", "torchscript", "torch_export", "paragon", "python"})


def __getattr__(name: str) -> Any:
    if name == "ProcessRuntime":
        from .runtime import ProcessRuntime

        return ProcessRuntime
    raise AttributeError(name)


__all__ = ["ISOLATABLE_BACKENDS", "ProcessRuntime"]
