"""The worker's side of generation: a language model's scheduler in the worker process.

With ``isolation: process`` an ``lm`` model's :class:`~berth.generation.BatchScheduler`
runs here, next to the weights, and the server keeps only the tokenizer and a
:class:`~.lm_runtime.RemoteScheduler` (seed 002's HTTP front and executor split).

Requests arrive on the worker's REP socket (``generate``, ``abort``); what the
sequences produce goes back on a separate PUSH socket (``events``, next to the REP
socket in the same private folder), one msgpack event per :class:`~berth.generation.
sequence.Delta`::

    {"seq": key, "ids": [new token ids], "text": str, "finish": reason | None,
     "error": str | None, "t_admit", "t_first", "t_end": monotonic seconds,
     "steps": int, "batch_sum": int, "stats": {...}}   # stats on first and last events

``time.monotonic`` is the system-wide monotonic clock on Linux, so the server can use
the worker's timings next to its own. The scheduler's counters ride on each sequence's
first and last event (the moments its running and waiting counts change), so the
server answers ``/metrics`` without a round trip.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from ..generation import SamplingParams, Sequence
from ..generation.sequence import Delta
from .protocol import ProtocolError, pack_header

_MAX_SEQUENCES_PER_CALL = 1024


def sampling_from_wire(value: Any) -> SamplingParams:
    """SamplingParams from their msgpack map, every field type-checked."""
    if not isinstance(value, dict):
        raise ProtocolError("params must be a map")
    max_tokens = value.get("max_tokens")
    seed = value.get("seed")
    stop = value.get("stop", [])
    numbers = (value.get("temperature", 1.0), value.get("top_p", 1.0))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ProtocolError("params.max_tokens must be a positive integer")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ProtocolError("params.seed must be an integer or nil")
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        raise ProtocolError("params.temperature and params.top_p must be numbers")
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ProtocolError("params.stop must be a list of strings")
    return SamplingParams(
        max_tokens, float(numbers[0]), float(numbers[1]), seed, tuple(stop), bool(value.get("ignore_eos", False)),
    )


def sampling_to_wire(params: SamplingParams) -> dict[str, Any]:
    return {
        "max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p,
        "seed": params.seed, "stop": list(params.stop), "ignore_eos": params.ignore_eos,
    }


class WorkerGeneration:
    """Sequences of one worker's language model, keyed by the server's sequence keys."""

    def __init__(self, scheduler: Any, send_event: Callable[[bytes], None]) -> None:
        self.scheduler = scheduler
        self._send_event = send_event
        self._sequences: dict[int, Sequence] = {}
        self._sent_ids: dict[int, int] = {}  # token ids of each sequence already sent
        self._lock = threading.Lock()  # the decode thread and the request loop both emit

    def generate(self, items: Any) -> None:
        """Queue the sequences of one request (all or none; QueueFull passes through)."""
        if not isinstance(items, list) or not 0 < len(items) <= _MAX_SEQUENCES_PER_CALL:
            raise ProtocolError(f"sequences must be a list of 1 to {_MAX_SEQUENCES_PER_CALL} items")
        sequences = []
        for item in items:
            if not isinstance(item, dict):
                raise ProtocolError("each sequence must be a map")
            key, index, prompt = item.get("key"), item.get("index"), item.get("prompt_ids")
            if not isinstance(key, int) or not isinstance(index, int) or key in self._sequences:
                raise ProtocolError(f"bad or repeated sequence key {key!r}")
            if not isinstance(prompt, list) or not prompt or not all(isinstance(t, int) and t >= 0 for t in prompt):
                raise ProtocolError("prompt_ids must be a non-empty list of token ids")
            seq = Sequence(index, prompt, sampling_from_wire(item.get("params")), _ignore)
            seq.emit = self._emitter(key, seq)
            sequences.append((key, seq))
        with self._lock:
            for key, seq in sequences:
                self._sequences[key] = seq
                self._sent_ids[key] = 0
        try:
            self.scheduler.submit([seq for _, seq in sequences])
        except BaseException:
            with self._lock:
                for key, _ in sequences:
                    self._sequences.pop(key, None)
                    self._sent_ids.pop(key, None)
            raise

    def abort(self, keys: Any) -> None:
        if not isinstance(keys, list) or not all(isinstance(k, int) for k in keys):
            raise ProtocolError("keys must be a list of sequence keys")
        with self._lock:
            found = [self._sequences[k] for k in keys if k in self._sequences]
        self.scheduler.abort(found)

    def _emitter(self, key: int, seq: Sequence) -> Callable[[Delta], None]:
        def emit(delta: Delta) -> None:
            with self._lock:
                sent = self._sent_ids.get(key)
                if sent is None:
                    return  # already finished and forgotten
                ids = seq.output_ids[sent:]
                event: dict[str, Any] = {
                    "seq": key, "ids": ids, "text": delta.text, "finish": delta.finish_reason, "error": delta.error,
                    "t_admit": seq.t_admit, "t_first": seq.t_first, "t_end": seq.t_end,
                    "steps": seq.steps, "batch_sum": seq.steps_batch_sum,
                }
                if sent == 0 or delta.finish_reason is not None:
                    event["stats"] = self.scheduler.stats()
                self._sent_ids[key] = sent + len(ids)
                if delta.finish_reason is not None:
                    del self._sequences[key]
                    del self._sent_ids[key]
                self._send_event(pack_header(event))

        return emit


def _ignore(_delta: Delta) -> None:
    """A sequence's emit until its real one is set (nothing is emitted before submit)."""
