"""Generation: continuous (iteration-level) batching for causal LMs.

- :mod:`.sampling`   sampling parameters and the per-row sampler (greedy, temperature, top-p, seed)
- :mod:`.sequence`   one generated sequence: detokenisation, stop strings, timings, events
- :mod:`.kvcache`    the batch's padded KV cache: join (merge), leave (select), trim
- :mod:`.scheduler`  the decode loop on a worker thread: admission, prefill, decode steps
- :mod:`.reasoning`  splitting ``<think>…</think>`` output into reasoning and content
- :mod:`.service`    the asyncio side: leases, submission, token streams for front ends

Front ends call :class:`.service.GenerationService`; the LM runtime
(:mod:`berth.runtimes.lm`) owns one :class:`.scheduler.BatchScheduler` per loaded model.
"""

from __future__ import annotations

from .sampling import SamplingParams
from .sequence import Delta, Sequence
from .scheduler import BatchScheduler, QueueFull

__all__ = ["BatchScheduler", "Delta", "QueueFull", "SamplingParams", "Sequence"]
