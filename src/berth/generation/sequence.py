"""One sequence being generated: its tokens, text, stop handling, timings and events.

Everything here runs on the scheduler's worker thread except :attr:`Sequence.aborted`,
which the event loop sets. Text is produced by decoding the whole output each step
and emitting what is new: byte-level BPE decodes prefix-stably, and a trailing U+FFFD
(an incomplete UTF-8 character) is held back until the next token completes it. Text
that could be the start of a stop string is also held back, so a stop string never
reaches the client, even split across tokens.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from .sampling import SamplingParams

_FINISH_REASONS = frozenset({"stop", "length", "abort", "error"})


@dataclass(slots=True)
class Delta:
    """What one step produced for one sequence (handed to the event loop)."""

    index: int
    text: str
    tokens: int  # completion tokens so far
    finish_reason: str | None = None  # "stop" | "length" | "abort" | "error"
    error: str | None = None


class Sequence:
    __slots__ = (
        "index", "prompt_ids", "params", "output_ids", "emit", "aborted", "finish_reason", "error",
        "generator", "decode", "eos_ids", "max_length", "_decoded", "_emitted",
        "t_submit", "t_admit", "t_first", "t_end", "cached", "steps", "steps_batch_sum", "remote_key",
    )

    def __init__(
        self,
        index: int,
        prompt_ids: list[int],
        params: SamplingParams,
        emit: Callable[[Delta], None],
    ) -> None:
        self.index = index
        self.prompt_ids = prompt_ids
        self.params = params
        self.output_ids: list[int] = []
        self.emit = emit
        self.aborted = False
        self.finish_reason: str | None = None
        self.error: str | None = None
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        self.generator: torch.Generator | None = None if params.greedy else torch.Generator().manual_seed(seed)
        self.decode: Callable[[list[int]], str] = lambda ids: ""
        self.eos_ids: frozenset[int] = frozenset()
        self.max_length = 0  # the model's context length; set by the scheduler
        self._decoded = ""  # the whole output decoded
        self._emitted = 0  # characters of _decoded already emitted
        self.t_submit = time.monotonic()
        self.t_admit = 0.0
        self.t_first = 0.0
        self.t_end = 0.0
        self.cached = 0  # tokens of this sequence in the KV cache (its next position)
        self.steps = 0  # decode steps it took part in
        self.steps_batch_sum = 0  # sum of batch sizes over those steps
        self.remote_key: int | None = None  # its key in a worker process (isolation: process)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def text(self) -> str:
        """The output text as emitted (stop string excluded)."""
        return self._decoded[: self._emitted]

    # ── the worker thread ──────────────────────────────────────────────────
    def append(self, token: int) -> None:
        """Record a sampled token; emit new text; decide whether the sequence is done."""
        now = time.monotonic()
        if not self.output_ids:
            self.t_first = now
        if token in self.eos_ids and not self.params.ignore_eos:
            self._finish("stop", flush=True)
            return
        self.output_ids.append(token)
        decoded = self.decode(self.output_ids)
        if decoded.endswith("\ufffd"):
            decoded = self._decoded  # wait for the rest of the character
        self._decoded = decoded
        stop_at = self._find_stop()
        if stop_at is not None:
            self._decoded = decoded[:stop_at]
            self._finish("stop", flush=True)
            return
        if len(self.output_ids) >= self.params.max_tokens or len(self.prompt_ids) + len(self.output_ids) >= self.max_length:
            self._finish("length", flush=True)
            return
        safe = len(self._decoded) - self._held_back()
        if safe > self._emitted:
            text = self._decoded[self._emitted : safe]
            self._emitted = safe
            self.emit(Delta(self.index, text, len(self.output_ids)))

    def _find_stop(self) -> int | None:
        stops = self.params.stop
        if not stops:
            return None
        longest = max(map(len, stops))
        start = max(0, self._emitted - longest)
        found = [i for i in (self._decoded.find(s, start) for s in stops) if i >= 0]
        return min(found) if found else None

    def _held_back(self) -> int:
        """Characters at the end of the text that could begin a stop string."""
        text = self._decoded
        best = 0
        for stop in self.params.stop:
            for k in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:k]):
                    best = k
                    break
        return best

    def _finish(self, reason: str, *, flush: bool) -> None:
        self.t_end = time.monotonic()
        self.finish_reason = reason
        text = ""
        if flush and len(self._decoded) > self._emitted:
            text = self._decoded[self._emitted :]
            self._emitted = len(self._decoded)
        self.emit(Delta(self.index, text, len(self.output_ids), reason, self.error))

    def fail(self, message: str) -> None:
        if not self.finished:
            self.error = message
            self._finish("error", flush=False)

    def abort(self) -> None:
        if not self.finished:
            self._finish("abort", flush=False)

    # ── the server's mirror of a sequence run in a worker process ─────────
    def apply_remote(self, event: Mapping[str, Any]) -> None:
        """Take over one event of this sequence's twin in a worker process (new token
        ids, emitted text, timings, finish) and emit it as a local step would. The
        worker did the decoding and the stop-string hold-back already."""
        ids = event.get("ids")
        if isinstance(ids, list):
            self.output_ids.extend(t for t in ids if isinstance(t, int))
        text = event.get("text")
        text = text if isinstance(text, str) else ""
        self._decoded += text
        self._emitted = len(self._decoded)
        for name in ("t_admit", "t_first", "t_end"):
            value = event.get(name)
            if isinstance(value, (int, float)) and value > 0:
                setattr(self, name, float(value))
        for name, key in (("steps", "steps"), ("steps_batch_sum", "batch_sum")):
            value = event.get(key)
            if isinstance(value, int):
                setattr(self, name, value)
        finish = event.get("finish")
        if finish in _FINISH_REASONS:
            error = event.get("error")
            self.error = error if isinstance(error, str) else None
            self.finish_reason = finish
            self.t_end = self.t_end or time.monotonic()
        self.emit(Delta(self.index, text, len(self.output_ids), self.finish_reason, self.error))

    # ── metrics ────────────────────────────────────────────────────────────
    def metrics(self) -> dict[str, float | int]:
        end = self.t_end or time.monotonic()
        n = len(self.output_ids)
        decode_s = end - self.t_first if self.t_first else 0.0
        return {
            "queue_ms": round(max(0.0, (self.t_admit or end) - self.t_submit) * 1000.0, 3),
            "ttft_ms": round(((self.t_first or end) - self.t_submit) * 1000.0, 3),
            "total_ms": round((end - self.t_submit) * 1000.0, 3),
            "tokens_per_s": round((n - 1) / decode_s, 2) if n > 1 and decode_s > 0 else 0.0,
            "mean_batch_size": round(self.steps_batch_sum / self.steps, 2) if self.steps else 1.0,
        }
