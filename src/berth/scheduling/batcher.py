"""The per-model queue and dynamic batcher.

Requests for one model wait in a bounded FIFO. Whenever the model has fewer than
``max_concurrency`` batches running and its device has a free worker slot, the batcher
takes the head of the queue plus every following request of the same shape, up to
``max_batch_size`` rows, concatenates them and runs them as one call. While all slots
are busy the queue grows, so the next batch is bigger: throughput rises with load
without adding latency when the server is idle. ``max_queue_delay_ms`` (default 0)
optionally holds a partial batch back for at most that long to let it fill.

Dispatch is deferred to the next turn of the event loop (``call_soon``), so every
request that arrives in the same turn — e.g. all the callers woken by the previous
batch's results — joins one batch.

Tiny models run inline. Handing a batch to a worker thread and back costs tens of
microseconds of the loop's own time (a wake-up through the self-pipe, a future, a
callback), more than a small model's whole run. A batch whose predicted run time is
under ``inline_max_us`` therefore runs directly on the event loop, where it blocks the
loop for less time than the hand-off would have. The prediction is a moving average
of the run time per row, measured on real requests on the worker threads: a model
runs inline only after ``_INLINE_AFTER`` such batches, only when every request has the
same static item shape. On a worker, a run's wall time also holds the wait for the GIL
once the model is done, which a busy loop keeps for up to the switch interval; for a
runtime that computes on the calling thread (``Runtime.cpu_timed``) the thread's CPU
time is taken instead, or a busy loop would keep a fast model on the threads for good.
Inline runs keep feeding the average, so a model that turns slow goes back to the
threads; and a model whose inline runs took more than ``_INLINE_TRIP`` times the
limit ``_INLINE_STRIKES`` times (fast on some inputs, slow on others) never runs
inline again. A run is a strike only if it also took that long in
CPU time on the loop's thread: the OS can pre-empt the loop at any time, and a busy
machine (or a profiler) did exactly that to a 20 µs model. Reading the thread's CPU
clock is a system call, so inline runs read it only once one has been slow by the wall
clock (that first slow run is never a strike). ``inline_max_us: 0`` turns this off.

Deferring dispatch costs a lone request two extra turns of the loop (the deferred
call, then waking its caller), which is most of the latency a tiny model adds at low
concurrency. So the batcher watches what deferring buys: after ``_LONE_AFTER``
deferred dispatches in a row that each found just one request and nothing running, a
request that could run inline runs at once, inside ``submit``, and its caller never
waits. One request in ``_PROBE_EVERY`` is still deferred as a probe; as soon as a
deferred dispatch finds company, batching resumes.

A request's deadline covers its queueing and its run. One whose deadline passes while it
waits, or while its batch runs on a worker thread, is answered then with
DeadlineExceeded (a timer watches the earliest deadline among the queued and running
requests), not when a slot frees up or the batch ends; a batch that ends later has that
row's result dropped. An inline run blocks the loop, so it is not timed out midway.

Everything here runs on the event loop except the model call itself, which runs on a
device worker thread. A request whose deadline has passed or whose caller has gone
(its future cancelled) is dropped before it reaches the model.

Each accepted request holds its model (the Registry's lease count). The batcher gives
the hold back when it is done with the request: when its batch ends, or when it drops
it. So a model is never evicted or unloaded while a batch of its runs, even one whose
requests were all answered early at their deadline: the Registry's drain of the holds
is all an unload has to wait for.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import operator
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np

from ..errors import DeadlineExceeded, InternalError, ModelNotReady, Overloaded
from ..runtimes.base import Runtime
from .workers import DeviceWorkers, current_worker_id

if TYPE_CHECKING:
    from ..registry.stats import ModelStats

log = logging.getLogger("berth.scheduling")

_INLINE_AFTER = 8  # real batches measured on worker threads before inline runs are allowed
_INLINE_TRIP = 20.0  # an inline run this many times over the limit is a strike
_INLINE_STRIKES = 3  # strikes before a model stops running inline for good
_LONE_AFTER = 8  # deferred dispatches that found one request alone before requests run at once
_PROBE_EVERY = 16  # while running at once, every this many-th request is deferred to look for company


class Prediction(NamedTuple):
    """An inference result plus where and how it ran: one per request, made here so
    that the hot path builds one object, not two. A named tuple: its fields are read in
    C, and the batcher builds it with ``tuple.__new__`` (see ``_new``)."""

    model: str
    version: str
    outputs: dict[str, np.ndarray]
    queue_ms: float
    compute_ms: float
    batch_size: int
    worker_id: int
    device_id: str
    accelerated: bool
    total_ms: float  # from acceptance to the answer (the Engine adds a load wait)


class _Item(NamedTuple):
    feeds: dict[str, np.ndarray]
    rows: int
    deadline: float
    future: asyncio.Future[Prediction]
    enqueued: float
    key: tuple[Any, ...] | None  # the item shapes and dtypes; None when every request has the same (uniform)


# Requests and results are built with tuple.__new__, a C call, rather than through the
# named tuples' generated Python __new__: two Python frames fewer per request, which
# is measurable when a batch of 32 costs a few microseconds per request in all.
_new = tuple.__new__

# a worker's run: outputs, wall seconds, seconds by the runtime's run clock (the
# thread's CPU time for a cpu_timed runtime), worker id
_Ran = tuple[dict[str, np.ndarray], float, float, int]
_future_of = operator.attrgetter("future")
_deadline_of = operator.attrgetter("deadline")
_rows_of = operator.attrgetter("rows")
_feeds_of = operator.attrgetter("feeds")
_enqueued_of = operator.attrgetter("enqueued")
_done = operator.methodcaller("done")


def _parts(batch: list[_Item], outputs: dict[str, np.ndarray], rows: int) -> Any:
    """Each request's rows of a batch's outputs, as views, in batch order."""
    if len(outputs) == 1 and rows == len(batch):
        # one output, one row per request (the common case): numpy hands out the rows
        # as (1, ...) views and each {name: row} is made in C (dict.fromkeys)
        ((name, value),) = outputs.items()
        return map(dict.fromkeys, itertools.repeat((name,)), value.reshape((rows, 1) + value.shape[1:]))
    return _slices(batch, outputs)


def _slices(batch: list[_Item], outputs: dict[str, np.ndarray]) -> Any:
    offset = 0
    for item in batch:
        end = offset + item.rows
        yield {name: value[offset:end] for name, value in outputs.items()}
        offset = end


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    """The batch's arrays of one input, one after another along the batch axis: what
    ``np.concatenate`` makes, for arrays that share a dtype and an item shape (batch
    mates do). Their bytes are copied with ``bytearray.join``, in C, which for 32
    digits images takes 3.5 µs against concatenate's 9 µs. An array that is not
    C-contiguous (join refuses it) or holds Python objects takes concatenate."""
    first = arrays[0]
    if first.size and not first.dtype.hasobject:
        try:
            joined = bytearray().join(arrays)  # writable, as concatenate's result is
        except TypeError:  # not C-contiguous
            pass
        else:
            return np.frombuffer(joined, first.dtype).reshape((-1,) + first.shape[1:])
    return np.concatenate(arrays)


def _shape_key(feeds: dict[str, np.ndarray]) -> tuple[Any, ...]:
    return tuple((name, array.shape[1:], array.dtype.str) for name, array in feeds.items())


class Batcher:
    def __init__(
        self,
        *,
        model: str,
        version: str,
        accelerated: bool,
        runtime: Runtime,
        workers: DeviceWorkers,
        max_batch_size: int,
        max_queue_delay_ms: float,
        max_concurrency: int,
        queue_size: int,
        stats: ModelStats,
        release: Callable[[int], None],
        inline_max_us: float = 0.0,
        uniform: bool = False,
    ) -> None:
        self.model = model
        self.version = version
        self.accelerated = accelerated
        self.runtime = runtime
        self.workers = workers
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_ms / 1000.0
        self.max_concurrency = max_concurrency
        self.queue_size = queue_size
        self.running = 0
        self._stats = stats
        self._release = release  # gives back the holds of requests the batcher is done with
        self._queue: list[_Item] = []  # FIFO; taken from the front in slices
        self._queued_rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._mean_batch_s = 0.0
        self._row_s = 0.0  # moving average of run time per row; 0 = not measured yet
        self._measured_batches = 0
        self._inline_strikes = 0
        self._measure_cpu = False  # read the CPU clock around inline runs (after a slow one)
        self._inline_max_s = inline_max_us / 1e6 if uniform else 0.0
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at = 0.0
        self._in_flight: list[list[_Item]] = []  # batches running on worker threads
        self._dispatch_scheduled = False
        self._lone_streak = 0  # deferred dispatches in a row that found one request alone
        self._run_at_once = 0  # requests run at once since the last probe
        self.ran_at_once = 0  # requests that skipped the queue, in all
        # every request has the same item shape and dtype (a fully static signature,
        # already enforced by the Engine), so batch-mates need no shape comparison
        self._uniform = uniform
        self._loop = asyncio.get_running_loop()

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, feeds: dict[str, np.ndarray], rows: int, deadline: float) -> asyncio.Future[Prediction]:
        """Queue one request; the returned future resolves with its slice of a batch."""
        if self._closed:
            raise ModelNotReady(f"model '{self.model}' is being unloaded; retry")
        if len(self._queue) >= self.queue_size:
            raise Overloaded(f"model '{self.model}' queue is full ({self.queue_size} waiting)", retry_after_s=self._retry_hint())
        future: asyncio.Future[Prediction] = self._loop.create_future()
        now = time.monotonic()
        item = _new(_Item, (feeds, rows, deadline, future, now, None if self._uniform else _shape_key(feeds)))
        if self._lone_streak >= _LONE_AFTER and self._may_run_at_once(rows, deadline, now):
            self.ran_at_once += 1
            self._run_inline([item])
            return future
        self._queue.append(item)
        self._queued_rows += rows
        if self._expiry is not None and deadline < self._expiry_at:
            self._expiry.cancel()  # re-armed for this earlier deadline if it has to wait
            self._expiry = None
        if not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            self._loop.call_soon(self._scheduled_dispatch)
        return future

    def _may_run_at_once(self, rows: int, deadline: float, now: float) -> bool:
        """Whether a request may skip the queue: nothing waiting or running, a model
        that runs inline, no batching delay asked for, and this is not a probe."""
        if self._queue or self.running or self._dispatch_scheduled or self.max_queue_delay_s > 0 or deadline <= now:
            return False
        if self._measured_batches < _INLINE_AFTER or self._row_s * rows >= self._inline_max_s:
            return False
        self._run_at_once += 1
        if self._run_at_once >= _PROBE_EVERY:
            self._run_at_once = 0
            return False
        return True

    def _scheduled_dispatch(self) -> None:
        self._dispatch_scheduled = False
        alone = len(self._queue) == 1 and not self.running
        self.dispatch()
        self._lone_streak = self._lone_streak + 1 if alone else 0

    def _arm_expiry(self) -> None:
        """Keep a timer on the earliest deadline among the queued and running requests.

        Scans only when no timer is armed; a timer left over for a request that has
        since been answered fires, finds nothing to expire and re-arms.
        """
        if self._expiry is not None:
            return
        deadlines = [item.deadline for item in self._queue]
        deadlines.extend(item.deadline for batch in self._in_flight for item in batch if not item.future.done())
        if not deadlines:
            return
        earliest = min(deadlines)
        self._expiry_at = earliest
        self._expiry = self._loop.call_later(max(0.0, earliest - time.monotonic()), self._expire)

    def _expire(self) -> None:
        self._expiry = None
        now = time.monotonic()
        kept: list[_Item] = []
        for item in self._queue:
            if item.future.done():
                self._queued_rows -= item.rows
                self._release(1)
            elif item.deadline <= now:
                self._queued_rows -= item.rows
                item.future.set_exception(DeadlineExceeded(f"request for model '{self.model}' waited past its deadline"))
                self._release(1)
            else:
                kept.append(item)
        self._queue = kept
        for batch in self._in_flight:
            for item in batch:
                if item.deadline <= now and not item.future.done():
                    item.future.set_exception(DeadlineExceeded(f"request for model '{self.model}' ran past its deadline"))
        self._arm_expiry()

    def _retry_hint(self) -> float:
        batches_ahead = self._queued_rows / max(1, self.max_batch_size)
        return max(0.05, batches_ahead * self._mean_batch_s / max(1, self.max_concurrency))

    def dispatch(self) -> None:
        """Start as many batches as slots allow. Called on submit, on completion and
        by the device when a slot frees up."""
        while self._queue and self.running < self.max_concurrency:
            self._drop_dead_head()
            if not self._queue:
                return
            if self.max_queue_delay_s > 0 and self._queued_rows < self.max_batch_size:
                ready_at = self._queue[0].enqueued + self.max_queue_delay_s
                wait = ready_at - time.monotonic()
                if wait > 0:
                    if self._timer is None:
                        self._timer = self._loop.call_later(wait, self._on_timer)
                    self._arm_expiry()
                    return
            if (
                self._measured_batches >= _INLINE_AFTER
                and self._row_s * max(self._queue[0].rows, min(self._queued_rows, self.max_batch_size)) < self._inline_max_s
            ):
                self._run_inline(self._take_batch())
                continue
            if self.workers.free <= 0:
                self.workers.try_acquire(self)  # registers us as waiting
                self._arm_expiry()
                return
            batch = self._take_batch()
            dispatched = time.monotonic()
            try:
                feeds = self._feeds(batch)
            except Exception as exc:  # noqa: BLE001 - the batch's callers hear of it; nothing is held yet
                self._fail(batch, exc)
                self._release(len(batch))
                continue
            self.workers.try_acquire(self)
            self.running += 1
            self._start(batch, feeds, dispatched)

        if self._queue:  # still waiting: every batch slot of this model is busy
            self._arm_expiry()

    def _on_timer(self) -> None:
        self._timer = None
        self.dispatch()

    def _drop_dead_head(self) -> None:
        now = time.monotonic()
        queue = self._queue
        dead = 0
        for item in queue:
            if item.future.done():  # caller went away (cancelled)
                pass
            elif item.deadline < now:
                item.future.set_exception(DeadlineExceeded(f"request for model '{self.model}' waited past its deadline"))
            else:
                break
            dead += 1
            self._queued_rows -= item.rows
        if dead:
            del queue[:dead]
            self._release(dead)

    def _take_batch(self) -> list[_Item]:
        """The head (already checked alive) and the live same-shaped requests after it."""
        queue = self._queue
        if self._uniform and self._queued_rows == len(queue):
            # the common case under load: one-row requests of one shape. The first
            # max_batch_size of them are the batch if none has gone or expired, which
            # is checked in C (map over the futures and deadlines) rather than per item
            count = min(self.max_batch_size, len(queue))
            batch = queue[:count]
            if not any(map(_done, map(_future_of, batch))) and min(map(_deadline_of, batch)) >= time.monotonic():
                del queue[:count]
                self._queued_rows -= count
                return batch
        head = queue[0]
        batch = [head]
        rows = head.rows
        limit = self.max_batch_size
        uniform = self._uniform
        now = time.monotonic()
        taken = 1  # queue[:taken] leaves the queue: the batch, and the requests dropped on the way
        dropped_rows = 0
        for item in itertools.islice(queue, 1, None):
            if rows >= limit:
                break
            if item.future.done() or item.deadline < now:  # gone, or expired: drop it here
                if not item.future.done():
                    item.future.set_exception(DeadlineExceeded(f"request for model '{self.model}' waited past its deadline"))
                dropped_rows += item.rows
            elif rows + item.rows > limit or (not uniform and item.key != head.key):
                break
            else:
                batch.append(item)
                rows += item.rows
            taken += 1
        del queue[:taken]
        self._queued_rows -= rows + dropped_rows
        if taken > len(batch):
            self._release(taken - len(batch))
        return batch

    @staticmethod
    def _feeds(batch: list[_Item]) -> dict[str, np.ndarray]:
        if len(batch) == 1:
            return batch[0].feeds
        return {name: _joined(list(map(operator.itemgetter(name), map(_feeds_of, batch)))) for name in batch[0].feeds}

    def _run_inline(self, batch: list[_Item]) -> None:
        try:
            self._run_here(batch)
        finally:
            self._release(len(batch))

    def _run_here(self, batch: list[_Item]) -> None:
        dispatched = time.monotonic()
        try:
            feeds = self._feeds(batch)
            cpu_started = time.thread_time() if self._measure_cpu else 0.0
            started = time.perf_counter()
            outputs = self.runtime.run(feeds)
        except Exception as exc:  # noqa: BLE001 - delivered to every caller in the batch
            self._fail(batch, exc)
            return
        elapsed = time.perf_counter() - started
        trip = _INLINE_TRIP * self._inline_max_s
        if elapsed > trip:
            if not self._measure_cpu:
                self._measure_cpu = True
            elif time.thread_time() - cpu_started > trip:
                self._inline_strikes += 1
                if self._inline_strikes >= _INLINE_STRIKES:
                    log.warning("model '%s' ran %.1f ms inline; it runs on worker threads from now on", self.model, elapsed * 1000)
                    self._inline_max_s = 0.0
        self._complete(batch, outputs, elapsed, elapsed, -1, dispatched)

    def _start(self, batch: list[_Item], feeds: dict[str, np.ndarray], dispatched: float) -> None:
        runtime = self.runtime

        # the thread's CPU clock only where it measures the run (a system call otherwise
        # not worth making); elsewhere the second reading is wall time again
        run_clock = time.thread_time if runtime.cpu_timed else time.perf_counter

        def run() -> _Ran:
            started = time.perf_counter()
            run_started = run_clock()
            outputs = runtime.run(feeds)
            return outputs, time.perf_counter() - started, run_clock() - run_started, current_worker_id()

        future = self.workers.submit(run)
        loop = self._loop
        self._in_flight.append(batch)
        earliest = min(map(_deadline_of, batch))
        if self._expiry is not None and earliest < self._expiry_at:
            self._expiry.cancel()  # re-armed below for this earlier deadline
            self._expiry = None
        self._arm_expiry()

        def done(f: Future[_Ran]) -> None:
            try:
                loop.call_soon_threadsafe(self._finish, batch, f, dispatched)
            except RuntimeError:  # loop closed during shutdown
                pass

        future.add_done_callback(done)

    def _finish(self, batch: list[_Item], future: Future[_Ran], dispatched: float) -> None:
        self.running -= 1
        self.workers.release()
        self._in_flight = [running for running in self._in_flight if running is not batch]
        try:
            self._deliver(batch, future, dispatched)
        finally:
            self._release(len(batch))
            self.dispatch()

    def _deliver(self, batch: list[_Item], future: Future[_Ran], dispatched: float) -> None:
        error = future.exception()
        if error is not None:
            self._fail(batch, error)
            return
        outputs, compute_s, run_s, worker_id = future.result()
        # run_s leaves out the wait for the GIL after the run (module docstring)
        self._complete(batch, outputs, compute_s, min(compute_s, run_s), worker_id, dispatched)

    def _fail(self, batch: list[_Item], error: BaseException) -> None:
        log.error("model '%s' failed on a batch of %d request(s)", self.model, len(batch), exc_info=error)
        self._fail_with(batch, f"model '{self.model}' failed while running the request")

    def _fail_with(self, batch: list[_Item], message: str) -> None:
        for item in batch:
            if not item.future.done():
                self._stats.failures += 1
                item.future.set_exception(InternalError(message))  # one each: a raised exception collects its traceback

    def _complete(
        self, batch: list[_Item], outputs: dict[str, np.ndarray], compute_s: float, run_s: float, worker_id: int, dispatched: float
    ) -> None:
        """Record a finished batch and answer its requests. ``compute_s`` is the run's
        wall time (reported); ``run_s`` what it would block the loop for if run inline."""
        compute_ms = compute_s * 1000.0
        count = len(batch)
        if count == 1:  # a request alone: no sums, slices or lists to make
            item = batch[0]
            rows = item.rows
            waited = (dispatched - item.enqueued) * 1000.0
            self._stats.record_batch(rows, 1, compute_ms, waited)
        else:
            rows = sum(map(_rows_of, batch))  # sums in C, not a loop per request
            queued_s = dispatched * count - sum(map(_enqueued_of, batch))
            self._stats.record_batch(rows, count, compute_ms, queued_s * 1000.0)
        self._mean_batch_s = compute_s if self._mean_batch_s == 0 else 0.9 * self._mean_batch_s + 0.1 * compute_s
        row_s = run_s / rows
        self._row_s = row_s if self._row_s == 0 else 0.9 * self._row_s + 0.1 * row_s
        if worker_id >= 0:  # inline is allowed only after enough runs on the threads
            self._measured_batches += 1
        model, version, accelerated, device_id = self.model, self.version, self.accelerated, self.workers.device_id
        finished = time.monotonic()
        if count == 1:
            future = item.future
            if not future.done():
                total_ms = (finished - item.enqueued) * 1000.0
                future.set_result(_new(Prediction, (model, version, outputs, waited, compute_ms, rows, worker_id, device_id, accelerated, total_ms)))
            return
        for name, value in outputs.items():
            if value.ndim == 0 or value.shape[0] != rows:
                self._fail_with(batch, f"model '{self.model}' output '{name}' does not keep the batch dimension; set max_batch_size: 1")
                return
        for item, part in zip(batch, _parts(batch, outputs, rows)):
            future = item.future
            if not future.done():
                enqueued = item.enqueued
                waited = (dispatched - enqueued) * 1000.0
                total_ms = (finished - enqueued) * 1000.0
                future.set_result(_new(Prediction, (model, version, part, waited, compute_ms, rows, worker_id, device_id, accelerated, total_ms)))

    def close(self) -> None:
        """Refuse new work and fail what is queued (the model is going away)."""
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.workers.forget(self)
        queue, self._queue = self._queue, []
        for item in queue:
            if not item.future.done():
                item.future.set_exception(ModelNotReady(f"model '{self.model}' was unloaded before the request ran"))
        self._queued_rows = 0
        if queue:
            self._release(len(queue))
