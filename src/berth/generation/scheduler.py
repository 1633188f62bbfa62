"""The decode loop: iteration-level (continuous) batching on one worker thread.

Each iteration of the loop:

1. admits waiting sequences into free batch slots (``max_running``), within a prefill
   token budget, and prefills each one alone (batch 1, no padding): its first token is
   sampled at once, so time to first token does not wait for the running batch to
   finish, only for at most one decode step;
2. merges the new caches into the running batch (:class:`.kvcache.BatchCache`);
3. drops finished and aborted sequences (a client that went away leaves within one
   step) and runs one decode step for every sequence still running.

Submission is thread-safe and bounded: past ``max_waiting`` queued sequences,
:class:`QueueFull` is raised (429 at the HTTP edge). Tokens go back to the event loop
through each sequence's ``emit`` callback (``loop.call_soon_threadsafe``); the loop
thread never waits on the model.
"""

from __future__ import annotations

import collections
import inspect
import logging
import threading
import time
from typing import Any, Callable

import torch

from ..errors import ModelNotReady, Overloaded
from ..histogram import Histogram
from .kvcache import BatchCache
from .sampling import sample
from .sequence import Sequence

log = logging.getLogger("berth.generation")


class QueueFull(Overloaded):
    """The model's waiting queue is full (HTTP 429)."""


TOKENS_PER_SECOND = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


def tell_failed(sequences: list[Sequence], reason: str, model: str) -> None:
    """End each of ``sequences`` with an error; a callback that raises is logged, and
    the others are still told (a request must never be left waiting)."""
    for seq in sequences:
        try:
            seq.fail(reason)
        except Exception:  # noqa: BLE001 - one broken callback must not keep the others waiting
            log.exception("could not tell a sequence of model '%s' that it failed", model)


class SequenceHistograms:
    """Time to first token, decode speed and queue time of finished sequences (for
    /metrics); written by one thread, the one that sees sequences finish."""

    def __init__(self) -> None:
        self.ttft = Histogram()
        self.tps = Histogram(TOKENS_PER_SECOND)
        self.queue_time = Histogram()

    def record(self, seq: Sequence) -> None:
        metrics = seq.metrics()
        self.ttft.observe(metrics["ttft_ms"] / 1000.0)
        self.queue_time.observe(metrics["queue_ms"] / 1000.0)
        if metrics["tokens_per_s"]:
            self.tps.observe(float(metrics["tokens_per_s"]))


class BatchScheduler(SequenceHistograms):
    def __init__(
        self,
        name: str,
        model: Any,
        decode: Callable[[list[int]], str],
        eos_ids: frozenset[int],
        max_length: int,
        *,
        device: torch.device,
        max_running: int = 16,
        max_waiting: int = 64,
        prefill_budget: int = 2048,
    ) -> None:
        self.name = name
        self.model = model
        self.decode = decode
        self.eos_ids = eos_ids
        self.max_length = max_length
        self.device = device
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.prefill_budget = prefill_budget
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._running: list[Sequence] = []
        self._batch = BatchCache()
        self._admitting = 0
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        super().__init__()  # histograms of finished sequences, written by the decode thread
        self.counters = {
            "submitted": 0, "finished": 0, "aborted": 0, "failed": 0, "rejected": 0,
            "prompt_tokens": 0, "generated_tokens": 0, "decode_steps": 0, "decode_rows": 0, "prefills": 0,
        }

    # ── lifecycle ──────────────────────────────────────────────────────────
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"berth-gen-{self.name}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """The decode thread is running (it should be, from start() until stop())."""
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def stop(self, reason: str = "the model was unloaded") -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._fail_everything(reason)
        self._batch = BatchCache()

    # ── the event loop's side ─────────────────────────────────────────────
    def submit(self, sequences: list[Sequence]) -> None:
        """Queue ``sequences`` (all or none); raises :class:`QueueFull`."""
        for seq in sequences:
            seq.decode = self.decode
            seq.eos_ids = self.eos_ids
            seq.max_length = self.max_length
        with self._cv:
            if self._stopping:
                raise QueueFull(f"model '{self.name}' is shutting down", retry_after_s=1.0)
            if self._thread is not None and not self._thread.is_alive():
                raise ModelNotReady(f"model '{self.name}' cannot generate: its decode loop stopped")
            if len(self._waiting) + len(sequences) > self.max_waiting:
                self.counters["rejected"] += len(sequences)
                raise QueueFull(
                    f"model '{self.name}' has {len(self._waiting)} sequences waiting (limit {self.max_waiting}); retry later",
                    retry_after_s=1.0,
                )
            self._waiting.extend(sequences)
            self.counters["submitted"] += len(sequences)
            self._cv.notify()

    def abort(self, sequences: list[Sequence]) -> None:
        """Mark sequences aborted; queued ones leave now, running ones at the next step."""
        with self._cv:
            for seq in sequences:
                if seq.finished:
                    continue
                seq.aborted = True
                try:
                    self._waiting.remove(seq)
                except ValueError:
                    continue
                self.counters["aborted"] += 1
                seq.abort()
            self._cv.notify()

    def stats(self) -> dict[str, Any]:
        steps = self.counters["decode_steps"]
        return {
            "running": len(self._running) + self._admitting,
            "waiting": len(self._waiting),
            "max_running": self.max_running,
            "max_waiting": self.max_waiting,
            "cache_tokens": self._batch.length * self._batch.size,
            "mean_batch_size": round(self.counters["decode_rows"] / steps, 2) if steps else 0.0,
            **self.counters,
        }

    # ── the worker thread ──────────────────────────────────────────────────
    def _loop(self) -> None:
        try:
            self._steps()
        finally:
            if not self._stopping:
                # only a bug gets here (each step's own errors fail its batch and the
                # loop goes on): fail everything rather than leave requests hanging
                log.error("the decode loop of model '%s' stopped; failing its sequences", self.name)
                self._fail_everything("generation stopped")

    def _fail_everything(self, reason: str) -> None:
        with self._cv:
            left = list(self._waiting) + self._running
            self._waiting.clear()
            self._running = []
            self._admitting = 0
        tell_failed(left, reason, self.name)

    def _steps(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cv:
                while not self._stopping and not self._waiting and not self._running:
                    self._cv.wait()
                if self._stopping:
                    return
                admitted = self._admit()
            try:
                with torch.inference_mode():
                    for seq in admitted:
                        self._prefill(seq)
                    with self._cv:
                        self._admitting = 0
                    self._retire()
                    if self._running:
                        self._decode_step()
                        self._retire()
            except Exception as exc:  # noqa: BLE001 - one bad step fails its batch, not the server
                log.error("generation step for model '%s' failed", self.name, exc_info=exc)
                with self._cv:
                    failed = self._running + [s for s in admitted if s not in self._running]
                    self._running = []
                    self._admitting = 0
                self._batch = BatchCache()
                self.counters["failed"] += len(failed)
                tell_failed(failed, "generation failed", self.name)

    def _admit(self) -> list[Sequence]:
        """Take waiting sequences into free slots within the prefill budget (lock held)."""
        admitted: list[Sequence] = []
        budget = self.prefill_budget
        while self._waiting and len(self._running) + len(admitted) < self.max_running:
            seq = self._waiting[0]
            if admitted and len(seq.prompt_ids) > budget:
                break  # the rest waits one decode step; TTFT stays bounded for everyone
            self._waiting.popleft()
            budget -= len(seq.prompt_ids)
            admitted.append(seq)
        self._admitting = len(admitted)
        return admitted

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any) -> Any:
        return self.model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
            logits_to_keep=1, **{self._cache_arg: cache},
        )

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache()

    def _prefill(self, seq: Sequence) -> None:
        seq.t_admit = time.monotonic()
        if seq.aborted:
            self.counters["aborted"] += 1
            seq.abort()
            return
        n = len(seq.prompt_ids)
        ids = torch.tensor([seq.prompt_ids], dtype=torch.long, device=self.device)
        mask = torch.ones((1, n), dtype=torch.long, device=self.device)
        positions = torch.arange(n, device=self.device).unsqueeze(0)
        cache = self._new_cache()
        out = self._forward(ids, mask, positions, cache)
        returned = getattr(out, self._cache_arg, None)
        cache = returned if returned is not None else cache
        self.counters["prefills"] += 1
        self.counters["prompt_tokens"] += n
        seq.cached = n
        token = sample(out.logits[0, -1].float().cpu(), seq.params, seq.generator)
        self.counters["generated_tokens"] += 1
        seq.append(token)
        if seq.finished:
            self.counters["finished"] += 1
            return
        self._batch.join(cache, n, self.device)
        with self._cv:
            self._running.append(seq)

    def _retire(self) -> None:
        """Remove finished and aborted sequences from the batch and its cache."""
        keep: list[int] = []
        for row, seq in enumerate(self._running):
            if seq.aborted and not seq.finished:
                self.counters["aborted"] += 1
                seq.abort()
            elif seq.finished:
                self.record(seq)
                continue
            else:
                keep.append(row)
        if len(keep) == len(self._running):
            return
        with self._cv:
            self._running = [self._running[i] for i in keep]
        self._batch.keep(keep)

    def _decode_step(self) -> None:
        running = self._running
        rows = len(running)
        ids = torch.tensor([[seq.output_ids[-1]] for seq in running], dtype=torch.long, device=self.device)
        positions = torch.tensor([[seq.cached] for seq in running], dtype=torch.long, device=self.device)
        mask = self._batch.extended_mask()
        out = self._forward(ids, mask, positions, self._batch.cache)
        self._batch.advance(mask)
        logits = out.logits[:, -1].float().cpu()
        self.counters["decode_steps"] += 1
        self.counters["decode_rows"] += rows
        for row, seq in enumerate(running):
            seq.cached += 1
            seq.steps += 1
            seq.steps_batch_sum += rows
            if seq.aborted:
                continue
            token = sample(logits[row], seq.params, seq.generator)
            self.counters["generated_tokens"] += 1
            seq.append(token)
            if seq.finished:
                self.counters["finished"] += 1
