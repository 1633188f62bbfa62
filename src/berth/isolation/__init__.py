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
:mod:`.runtime` (the proxy), :mod:`.backoff` (restart delays), and for language models
:mod:`.lm_worker` (the scheduler's side in the child) and :mod:`.lm_runtime` (the
server's: tokenizer and a remote scheduler). pyzmq is imported only
by the proxy and the worker, so a server with no isolated model never loads it.
"""

from __future__ import annotations

from typing import Any

#: backends that can run in a worker process (``lm``: its scheduler and weights there,
#: its tokenizer in the server; see :mod:`.lm_runtime`)
ISOLATABLE_BACKENDS = frozenset({"onnx", "torchscript", "torch_export", "paragon", "python", "lm"})


def __getattr__(name: str) -> Any:
    if name == "ProcessRuntime":
        from .runtime import ProcessRuntime

        return ProcessRuntime
    raise AttributeError(name)


__all__ = ["ISOLATABLE_BACKENDS", "ProcessRuntime"]
