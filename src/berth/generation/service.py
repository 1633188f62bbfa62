"""The asyncio side of generation: lease the model, submit sequences, stream deltas.

A :class:`Generation` is one request: it holds a lease on the model for as long as any
of its sequences may still run (so the model is never evicted under it), submits its
sequences to the model's :class:`~.scheduler.BatchScheduler`, and receives each step's
:class:`~.sequence.Delta` through ``loop.call_soon_threadsafe``. Closing it aborts
whatever is unfinished (a client that went away) and releases the lease.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncIterator

from ..errors import InvalidInput
from .sampling import SamplingParams
from .sequence import Delta, Sequence

if TYPE_CHECKING:
    from ..engine import Engine
    from ..registry.entry import Lease
    from ..runtimes.lm import LanguageModel


class Generation:
    def __init__(self, lease: "Lease", runtime: "LanguageModel") -> None:
        self.lease = lease
        self.runtime = runtime
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Delta] = asyncio.Queue()
        self.sequences: list[Sequence] = []
        self._open = 0
        self._closed = False

    @property
    def model(self) -> str:
        return self.lease.entry.name

    def _emit(self, delta: Delta) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, delta)
        except RuntimeError:  # the loop is closed: the server is shutting down
            pass

    def add(self, prompt_ids: list[int], params: SamplingParams) -> Sequence:
        seq = Sequence(len(self.sequences), prompt_ids, params, self._emit)
        self.sequences.append(seq)
        return seq

    def submit(self) -> None:
        """Queue every sequence (all or none; :class:`~.scheduler.QueueFull` when full)."""
        self.runtime.scheduler.submit(self.sequences)
        self._open = len(self.sequences)

    async def deltas(self) -> AsyncIterator[Delta]:
        """Deltas of all sequences as they come, until every sequence has finished."""
        while self._open:
            delta = await self.queue.get()
            if delta.finish_reason is not None:
                self._open -= 1
            yield delta

    def abort(self) -> None:
        scheduler = self.runtime.scheduler
        if scheduler is not None:
            scheduler.abort([s for s in self.sequences if not s.finished])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if any(not s.finished for s in self.sequences):
            self.abort()
        self.lease.release()


class GenerationService:
    """What front ends call: open a :class:`Generation` on a language model."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine

    async def open(self, model: str) -> Generation:
        from ..runtimes.lm import LanguageModel

        lease = await self.engine.lease(model)
        runtime = lease.entry.runtime
        if not isinstance(runtime, LanguageModel) or runtime.scheduler is None:
            lease.release()
            raise InvalidInput(f"model '{model}' is not a language model")
        return Generation(lease, runtime)

    def stats(self) -> dict[str, Any]:
        """Counters of every resident language model's scheduler."""
        from ..runtimes.lm import LanguageModel

        out: dict[str, Any] = {}
        for entry in self.engine.registry.resident():
            runtime = entry.runtime
            if isinstance(runtime, LanguageModel) and runtime.scheduler is not None:
                out[entry.name] = runtime.scheduler.stats()
        return out
