"""The server's side of a language model in a worker process (``isolation: process``).

Seed 002 splits an LLM server into an HTTP front and an executor process. Here the
worker (:mod:`.lm_worker`) holds the weights and the continuous-batching scheduler;
the server holds the tokenizer, so chat templates, token counts and prompt checks
happen before anything crosses the socket, and a :class:`RemoteScheduler` that the
generation front ends use exactly like the in-process one:

- ``submit`` checks the waiting bound here (429 at once, no round trip) and hands the
  sequences to a control thread, which sends ``generate`` to the worker; a refusal or
  a dead worker ends those sequences with an error. The event loop never waits on
  the socket.
- ``abort`` marks the sequences and sends ``abort`` the same way; the worker drops
  them within one decode step.
- An events thread reads the worker's PUSH socket and applies each event to its
  sequence (new token ids, text, timings), which emits the :class:`~berth.generation.
  sequence.Delta` to the waiting request as the in-process scheduler would.
- ``stats``: what this side sees itself (sequences submitted, waiting, running,
  finished, aborted, failed, rejected; prompt and generated tokens), plus the decode
  counters of the worker's scheduler from its latest event (steps, rows, prefills,
  cache size). TTFT, TPS and queue-time histograms are recorded here as sequences
  finish.

A worker that dies fails every unfinished sequence ("worker process exited"), and
the Registry restarts the model as for any isolated model.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any, Mapping

from ..generation.scheduler import QueueFull, SequenceHistograms, tell_failed
from ..generation.sequence import Sequence
from ..runtimes.base import Placement
from ..runtimes.lm import LanguageModel
from .lm_worker import sampling_to_wire
from .protocol import ProtocolError, events_endpoint, unpack_header
from .runtime import ProcessRuntime, WorkerError, WorkerExited, zmq_context

log = logging.getLogger("berth.isolation")

_POLL_MS = 100  # how often the events thread looks whether it should stop
#: counters only the worker's decode loop knows
_WORKER_COUNTERS = ("cache_tokens", "mean_batch_size", "decode_steps", "decode_rows", "prefills")


class RemoteScheduler(SequenceHistograms):
    """A :class:`~berth.generation.BatchScheduler` look-alike whose decode loop runs in
    the worker process; see the module docstring."""

    def __init__(self, runtime: "ProcessLMRuntime", name: str, max_waiting: int, max_running: int) -> None:
        self.runtime = runtime
        self.name = name
        self.max_waiting = max_waiting
        self.max_running = max_running
        self._lock = threading.Lock()
        self._sequences: dict[int, Sequence] = {}
        self._started: set[int] = set()  # keys that have had their first event (admitted)
        self._next_key = 1
        self._stopping = False
        self._worker_stats: dict[str, Any] = {}
        self.counters = {
            "submitted": 0, "finished": 0, "aborted": 0, "failed": 0, "rejected": 0,
            "prompt_tokens": 0, "generated_tokens": 0,
        }
        self._control: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        super().__init__()  # histograms of finished sequences, written by the events thread

    # ── lifecycle ──────────────────────────────────────────────────────────
    def start(self, events_socket: Any) -> None:
        for target, label, args in ((self._send_loop, "ctl", ()), (self._event_loop, "events", (events_socket,))):
            thread = threading.Thread(target=target, args=args, name=f"berth-gen-{label}-{self.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def alive(self) -> bool:
        return not self._stopping and self.runtime.healthy() and all(t.is_alive() for t in self._threads)

    def stop(self, reason: str = "the model was unloaded") -> None:
        with self._lock:
            self._stopping = True
            left = list(self._sequences.values())
            self._sequences.clear()
        self._control.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        tell_failed(left, reason, self.name)

    # ── the event loop's side ─────────────────────────────────────────────
    def submit(self, sequences: list[Sequence]) -> None:
        """Queue ``sequences`` (all or none); raises :class:`QueueFull` when the
        waiting bound would be passed. Never blocks on the worker."""
        with self._lock:
            if self._stopping:
                raise QueueFull(f"model '{self.name}' is shutting down", retry_after_s=1.0)
            waiting = len(self._sequences) - len(self._started)
            if waiting + len(sequences) > self.max_waiting:
                self.counters["rejected"] += len(sequences)
                raise QueueFull(
                    f"model '{self.name}' has {waiting} sequences waiting (limit {self.max_waiting}); retry later",
                    retry_after_s=1.0,
                )
            items = []
            for seq in sequences:
                key = self._next_key
                self._next_key += 1
                self._sequences[key] = seq
                seq.remote_key = key
                items.append({"key": key, "index": seq.index, "prompt_ids": seq.prompt_ids, "params": sampling_to_wire(seq.params)})
            self.counters["submitted"] += len(sequences)
        self._control.put(("generate", items))

    def abort(self, sequences: list[Sequence]) -> None:
        keys = []
        with self._lock:
            for seq in sequences:
                if not seq.finished:
                    seq.aborted = True
                    if seq.remote_key in self._sequences:
                        keys.append(seq.remote_key)
        if keys:
            self._control.put(("abort", keys))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            waiting = len(self._sequences) - len(self._started)
            running = len(self._started)
            counters = dict(self.counters)
            worker = self._worker_stats
            decode = {key: worker.get(key, 0) for key in _WORKER_COUNTERS}
        return {"running": running, "waiting": waiting, "max_running": self.max_running, "max_waiting": self.max_waiting, **decode, **counters}

    # ── the control thread: requests to the worker, in order ──────────────
    def _send_loop(self) -> None:
        while True:
            op = self._control.get()
            if op is None:
                return
            kind, payload = op
            try:
                if kind == "generate":
                    self.runtime._call({"op": "generate", "sequences": payload})
                else:
                    self.runtime._call({"op": "abort", "keys": payload})
            except (WorkerError, WorkerExited, ProtocolError, OSError) as exc:
                if kind == "generate":
                    self._fail_keys([item["key"] for item in payload], f"generation failed: {exc}")
                else:
                    log.warning("model '%s': abort not delivered to the worker: %s", self.name, exc)

    def _fail_keys(self, keys: list[int] | None, reason: str) -> None:
        """Fail the sequences of ``keys`` (None: every one still unfinished)."""
        with self._lock:
            chosen = list(self._sequences) if keys is None else keys
            failed = [self._sequences.pop(k) for k in chosen if k in self._sequences]
            self._started.difference_update(chosen)
            self.counters["failed"] += len(failed)
        tell_failed(failed, reason, self.name)

    # ── the events thread: what the worker's sequences produced ──────────
    def _event_loop(self, socket: Any) -> None:
        import zmq

        while not self._stopping:
            try:
                if not socket.poll(_POLL_MS, zmq.POLLIN):
                    if not self.runtime.healthy():
                        self._fail_keys(None, self.runtime.exit_reason or "worker process exited")
                    continue
                frame = socket.recv(copy=True)
                self._apply(unpack_header(frame))
            except ProtocolError as exc:
                log.error("model '%s': bad event from the worker: %s", self.name, exc)
            except zmq.ZMQError:
                return  # the socket was closed: the runtime is unloading

    def _apply(self, event: dict[str, Any]) -> None:
        key = event.get("seq")
        stats = event.get("stats")
        finish = event.get("finish")
        with self._lock:
            if isinstance(stats, dict):
                self._worker_stats = stats
            seq = self._sequences.get(key) if isinstance(key, int) else None
            if seq is None:
                return  # already failed here (a dead worker, a stop)
            if key not in self._started and finish != "abort":
                self._started.add(key)
                self.counters["prompt_tokens"] += len(seq.prompt_ids)
            ids = event.get("ids")
            self.counters["generated_tokens"] += len(ids) if isinstance(ids, list) else 0
            if finish is not None:
                del self._sequences[key]
                self._started.discard(key)
                outcome = {"abort": "aborted", "error": "failed"}.get(finish, "finished")
                self.counters[outcome] += 1
        seq.apply_remote(event)
        if finish is not None and finish not in ("abort", "error"):
            self.record(seq)


class ProcessLMRuntime(LanguageModel, ProcessRuntime):
    """An ``lm`` model whose weights and scheduler live in a worker process; the
    tokenizer is loaded here as well (see the module docstring)."""

    def __init__(self, path: Path, placement: Placement, options: Mapping[str, Any] | None = None, *, name: str = "") -> None:
        super().__init__("lm", path, placement, options, name=name)
        self.folder = path if path.is_dir() else path.parent
        self._events: Any = None

    def load(self) -> None:
        import zmq

        super().load()
        try:
            self.load_tokenizer(self.folder)
            details = self.info().details
            self.context_length = int(details.get("context_length") or 2048)
            assert self._folder is not None
            socket = zmq_context().socket(zmq.PULL)
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(events_endpoint(f"ipc://{self._folder / 'socket'}"))
            self._events = socket
            scheduler = RemoteScheduler(
                self, self.name, int(self.options.get("max_waiting", 64)), int(self.options.get("max_running", 16)),
            )
            scheduler.start(socket)
            self.scheduler = scheduler
        except BaseException:
            self.unload()
            raise

    def unload(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        super().unload()  # the worker's scheduler fails what it still runs
        if scheduler is not None:
            scheduler.stop()
        if self._events is not None:
            self._events.close(0)
            self._events = None
        self.tokenizer = None
