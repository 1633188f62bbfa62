"""The Registry: which models exist, which are resident where, and their lifecycle.

    UNLOADED ──load──▶ LOADING ──ok──▶ READY ──evict/idle/unload──▶ UNLOADING ──▶ UNLOADED
                          └──error──▶ FAILED (reason kept; retried after a back-off)
    READY ──worker process died (isolation: process)──▶ FAILED ──restart after 1 s, 2 s … 30 s──▶ LOADING

All state lives on the event loop and is changed only there, so no locks are needed;
blocking work (reading files, building sessions, warm-up, freeing) runs on a small
load executor whose size caps concurrent loads. Concurrent requests for a model that
is not resident share one load (single flight). A request holds a :class:`Lease`
for as long as it queues and runs; a leased or pinned model is never chosen as a
victim, and a request that needs room only busy models hold waits (bounded) for
one of them to become free.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from ..config import BerthConfig
from ..errors import BerthError, CapacityExceeded, DeadlineExceeded, ModelNotFound, ModelNotReady, Overloaded
from ..isolation.backoff import CrashBackoff
from ..repository import ModelSpec, Repository
from ..runtimes import Placement as RuntimePlacement
from ..runtimes import Runtime, runtime_class
from ..runtimes.base import default_intra_op_threads
from ..scheduling import Batcher, DeviceWorkers
from .capacity import Limits, Verdict, plan_room
from .devices import Device
from .entry import Lease, ModelEntry, ModelKey, ModelState
from .eviction import POLICIES
from .placement import Placement

log = logging.getLogger("berth.registry")

_MB = 1024 * 1024
_TORCH_BACKENDS = frozenset({"torchscript", "torch_export", "lm"})
_PATHS = re.compile(r"(?:[A-Za-z]:)?[\\/][^\s'\"]+")
FAILED_RETRY_S = 30.0


def _client_safe(message: str) -> str:
    """The first line of an error message, without filesystem paths, for clients.

    Framework errors can carry tracebacks and model source after their first line;
    the whole message goes to the log.
    """
    first = next((line.strip() for line in message.splitlines() if line.strip()), "")
    return _PATHS.sub("<path>", first)[:300]


def _warmup_is_optional(runtime: Runtime) -> bool:
    # with a variable non-batch dimension zeros of size 1 may be invalid input,
    # so a warm-up failure there is logged rather than failing the load
    return any(spec.static_tail is None for spec in runtime.signature.inputs)


def _weights_size(path: Path) -> int:
    """Bytes of a model file, or of the weights in a model folder (a Hugging Face LM)."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.glob("*.safetensors"))
    return path.stat().st_size


class Registry:
    def __init__(self, config: BerthConfig, devices: list[Device]) -> None:
        self.config = config
        self.repository = Repository(config)
        self.devices = devices
        self.workers: dict[str, DeviceWorkers] = {}
        first = 0
        for device in devices:
            self.workers[device.id] = DeviceWorkers(device.id, device.workers, first_worker_id=first)
            first += device.workers
        self.placement = Placement(config.gpus.assignment_strategy, devices)
        self.policy = POLICIES[config.capacity.eviction_policy]
        self.limits = Limits(config.capacity.max_models, int(config.capacity.max_memory_gb * 1024 * _MB))
        self.specs: dict[str, ModelSpec] = {}
        self.entries: dict[ModelKey, ModelEntry] = {}
        self.holds = 0  # holds on all entries together: requests being served
        self._default_entries: dict[str, ModelEntry] = {}  # name -> entry of its default version
        self._load_executor = ThreadPoolExecutor(config.capacity.max_concurrent_loads, thread_name_prefix="berth-load")
        self._changed = asyncio.Event()
        self._waiting_for_room = 0  # requests in _reserve waiting for capacity to change
        self._drained: dict[ModelKey, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._process = psutil.Process()
        self._prepared: set[tuple[type[Runtime], str]] = set()  # touched only on the load executor
        # a device-wide memory reading is only the model's if no other load on that
        # device runs meanwhile; CUDA loads therefore take their device's lock
        self._device_locks: dict[str, threading.Lock] = {d.id: threading.Lock() for d in devices}
        # isolation: process — restart delays after worker crashes, and pending restarts
        self._crashes = CrashBackoff()
        self._restarts: dict[ModelKey, asyncio.TimerHandle] = {}

    # ── start and stop ─────────────────────────────────────────────────────
    async def start(self) -> None:
        self.specs = await asyncio.to_thread(self.repository.scan)
        for spec in self.specs.values():
            if spec.settings.pinned:
                self._entry(spec.name, None).pinned = True
        preload = [self._entry(s.name, None) for s in self.specs.values() if s.settings.preload]
        results = await asyncio.gather(*(self._await_transition(self._begin_load(e)) for e in preload), return_exceptions=True)
        for entry, result in zip(preload, results):
            if isinstance(result, BaseException):
                log.error("preload of model '%s' failed: %s", entry.name, result)
        idle_minutes = self.config.capacity.idle_unload_minutes
        if idle_minutes > 0:
            self._tasks.append(asyncio.create_task(self._idle_loop(idle_minutes * 60.0)))
        if self.config.server.stats_report_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._report_loop(self.config.server.stats_report_interval_s)))

    async def stop(self) -> None:
        for handle in self._restarts.values():
            handle.cancel()
        self._restarts.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for entry in list(self.entries.values()):
            if entry.transition is not None:
                await asyncio.gather(asyncio.shield(entry.transition), return_exceptions=True)
            if entry.state is ModelState.READY:
                await self._await_transition(self._begin_unload(entry, "server shutdown", evicted=False))
        for handle in self._restarts.values():  # scheduled by restarts that failed meanwhile
            handle.cancel()
        self._restarts.clear()
        for workers in self.workers.values():
            await asyncio.to_thread(workers.shutdown)
        self._load_executor.shutdown(wait=False, cancel_futures=True)

    # ── lookups ────────────────────────────────────────────────────────────
    async def spec(self, name: str) -> ModelSpec:
        spec = self.specs.get(name)
        if spec is None:
            spec = await asyncio.to_thread(self.repository.find, name)
            if spec is None:
                raise ModelNotFound(f"unknown model '{name}'")
            self.specs[name] = spec
        return spec

    def _entry(self, name: str, version: str | None) -> ModelEntry:
        spec = self.specs[name]
        version = version or spec.default_version
        if version not in spec.versions:
            raise ModelNotFound(f"model '{name}' has no version '{version}'")
        key = (name, version)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = ModelEntry(spec=spec, version=version, pinned=spec.settings.pinned)
            if version == spec.default_version:
                self._default_entries[name] = entry
        return entry

    async def entry(self, name: str, version: str | None = None) -> ModelEntry:
        await self.spec(name)
        return self._entry(name, version)

    def resident(self) -> list[ModelEntry]:
        return [e for e in self.entries.values() if e.resident]

    # ── leases ─────────────────────────────────────────────────────────────
    # The data plane holds an entry directly (hold_ready / hold, then release): no
    # object per request. Everything else takes a Lease, which releases once.
    def hold_ready(self, name: str, version: str | None = None) -> ModelEntry | None:
        """Hold a model that is READY right now as one use of it, else None (then use
        :meth:`hold`). Give it back with :meth:`release`."""
        entry = self.entries.get((name, version)) if version else self._default_entries.get(name)
        if entry is None or entry.state is not ModelState.READY:
            return None
        return self._hold(entry, True, False)

    def _hold(self, entry: ModelEntry, count_use: bool, missed: bool) -> ModelEntry:
        """Hold a READY entry. A use counts as a hit or a miss; recency is stamped when
        a use's hold is given back (:meth:`release`), and a held model is not evictable
        meanwhile. A hold that is not a use (metadata lookups) leaves the usage counts
        and recency, which drive eviction, as they were."""
        entry.leases += 1
        self.holds += 1
        if count_use:
            stats = entry.stats
            if missed:
                stats.misses += 1
            else:
                stats.hits += 1
            stats.uses_since_load += 1
        return entry

    async def acquire(self, name: str, version: str | None = None, deadline: float | None = None, *, count_use: bool = True) -> Lease:
        """A lease on a READY model, loading it first if needed (see :meth:`hold`)."""
        entry = await self.hold(name, version, deadline, count_use=count_use)
        return Lease(entry, self, count_use)

    async def hold(self, name: str, version: str | None = None, deadline: float | None = None, *, count_use: bool = True) -> ModelEntry:
        """Hold a READY model, loading it first if needed (single flight); give it
        back with :meth:`release`.

        ``deadline`` (monotonic) bounds the wait for a load; the load itself goes on
        for the requests that can still use it.
        """
        entry = self.entries.get((name, version)) if version else self._default_entries.get(name)
        if entry is None:
            entry = await self.entry(name, version)
        missed = False
        while True:
            state = entry.state
            if state is ModelState.READY:
                return self._hold(entry, count_use, missed)
            if state is ModelState.FAILED and time.monotonic() - entry.failed_at < self._crashes.retry_after(entry.key, FAILED_RETRY_S):
                raise ModelNotReady(f"model '{entry.name}' failed to load: {entry.reason}")
            missed = True
            if state in (ModelState.UNLOADED, ModelState.FAILED):
                transition = self._begin_load(entry)
            else:  # LOADING or UNLOADING: wait for it, then look again
                assert entry.transition is not None
                transition = entry.transition
            if deadline is None:
                await self._await_transition(transition)
                continue
            try:
                await asyncio.wait_for(self._await_transition(transition), timeout=max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise DeadlineExceeded(f"model '{entry.name}' was still {entry.state.value.lower()} when the request's deadline passed") from None

    def release(self, entry: ModelEntry, counted: bool = True, holds: int = 1) -> None:
        """Give back ``holds`` holds; ``counted`` says they were uses (it updates recency)."""
        entry.leases -= holds
        self.holds -= holds
        if counted:
            entry.stats.last_used_mono = time.monotonic()
        if entry.leases == 0:
            drained = self._drained.get(entry.key)
            if drained is not None:
                drained.set()
            self._notify()

    def _notify(self) -> None:
        if self._waiting_for_room:
            self._changed.set()
            self._changed = asyncio.Event()

    @staticmethod
    async def _await_transition(transition: "asyncio.Future[BaseException | None]") -> None:
        error = await asyncio.shield(transition)
        if error is not None:
            raise error

    # ── management ─────────────────────────────────────────────────────────
    async def load(self, name: str, version: str | None = None) -> ModelEntry:
        entry = await self.entry(name, version)
        while entry.state is not ModelState.READY:
            if entry.state in (ModelState.UNLOADED, ModelState.FAILED):
                await self._await_transition(self._begin_load(entry))
            else:
                assert entry.transition is not None
                await self._await_transition(entry.transition)
        return entry

    async def unload(self, name: str, version: str | None = None) -> ModelEntry:
        entry = await self.entry(name, version)
        restart = self._restarts.pop(entry.key, None)  # a crashed worker's pending restart
        if restart is not None:
            restart.cancel()
        if entry.state is ModelState.FAILED:
            entry.runtime = None  # a crashed worker's dead runtime: unloaded now, not restarted
        if entry.state is ModelState.LOADING and entry.transition is not None:
            await asyncio.gather(asyncio.shield(entry.transition), return_exceptions=True)
        if entry.state in (ModelState.READY, ModelState.UNLOADING):
            await self._await_transition(self._begin_unload(entry, "unload requested", evicted=False))
        return entry

    async def pin(self, name: str, pinned: bool, version: str | None = None) -> ModelEntry:
        entry = await self.entry(name, version)
        entry.pinned = pinned
        if pinned:
            await self.load(name, version)
        else:
            self._notify()
        return entry

    # ── loading ────────────────────────────────────────────────────────────
    def _begin_load(self, entry: ModelEntry) -> "asyncio.Future[BaseException | None]":
        if entry.transition is None:
            entry.state = ModelState.LOADING
            entry.reason = None
            entry.transition = asyncio.ensure_future(self._load(entry))
        return entry.transition

    def _estimate(self, entry: ModelEntry) -> int:
        settings = entry.spec.settings
        if settings.memory_estimate_mb:
            return int(settings.memory_estimate_mb * _MB)
        path = entry.spec.versions[entry.version]
        try:
            size = _weights_size(path)
        except OSError:
            size = 0
        return max(_MB, 2 * size)

    async def _load(self, entry: ModelEntry) -> BaseException | None:
        started = time.monotonic()
        try:
            device = await self._reserve(entry)
        except BerthError as exc:
            entry.state = ModelState.UNLOADED
            entry.runtime = None  # (only ever a crashed worker's dead runtime here)
            entry.transition = None
            self._notify()
            return exc
        try:
            loop = asyncio.get_running_loop()
            runtime, measured = await loop.run_in_executor(self._load_executor, self._load_blocking, entry, device)
        except Exception as exc:  # noqa: BLE001 - any runtime error fails this model only
            log.error("model '%s' failed to load", entry.name, exc_info=exc)
            entry.state = ModelState.FAILED
            entry.reason = _client_safe(str(exc) or type(exc).__name__)
            entry.failed_at = time.monotonic()
            entry.stats.load_failures += 1
            entry.device = None
            entry.memory_bytes = 0
            entry.memory_measured = False
            entry.transition = None
            retry = self._crashes.restart_failed(entry.key)
            if retry is not None:  # a restart after a worker crash: try again, backing off
                self._schedule_restart(entry, retry)
            self._refresh_devices()  # the estimate booked for it on its device is free again
            self._notify()
            return ModelNotReady(f"model '{entry.name}' failed to load: {entry.reason}")
        entry.runtime = runtime
        entry.memory_bytes = measured
        entry.memory_measured = True
        info = runtime.info()
        entry.info = {"backend": runtime.backend, "platform": runtime.platform, **info.details, "accelerated": info.accelerated}
        entry.batcher = self._make_batcher(entry, runtime, device)
        entry.state = ModelState.READY
        entry.stats.loads += 1
        entry.stats.uses_since_load = 0
        entry.stats.last_used_mono = time.monotonic()
        entry.stats.time_to_ready_ms = (time.monotonic() - started) * 1000.0
        entry.transition = None
        log.info(
            "model '%s' v%s ready on %s in %.2fs (memory %.1f MB, %s)",
            entry.name, entry.version, device.id, entry.stats.time_to_ready_ms / 1000, measured / _MB, runtime.backend,
        )
        self._refresh_devices()
        self._notify()
        self._trim_after_measure(entry)
        if entry.spec.settings.isolation == "process":
            self._watch_worker(entry, runtime)
        return None

    def _make_batcher(self, entry: ModelEntry, runtime: Runtime, device: Device) -> Batcher:
        settings = entry.spec.settings
        max_batch = settings.max_batch_size
        if max_batch is None:
            batchable = all(s.shape and s.shape[0] < 0 for s in (*runtime.signature.inputs, *runtime.signature.outputs))
            max_batch = 32 if batchable else 1
        workers = self.workers[device.id]
        uniform = all(spec.static_tail is not None for spec in runtime.signature.inputs)
        # a worker process runs one batch at a time, so by default one batch is in
        # flight (the queue fills the next one meanwhile); and a round trip to another
        # process never runs inline on the event loop
        isolated = settings.isolation == "process"
        return Batcher(
            model=entry.name,
            version=entry.version,
            accelerated=bool(entry.info.get("accelerated")),
            runtime=runtime,
            workers=workers,
            max_batch_size=max_batch,
            max_queue_delay_ms=settings.max_queue_delay_ms or 0.0,
            max_concurrency=settings.max_concurrency or (1 if isolated else workers.size),
            queue_size=settings.queue_size or self.config.server.queue_size,
            stats=entry.stats,
            release=functools.partial(self.release, entry, True),
            uniform=uniform,
            inline_max_us=0.0 if isolated else settings.options.get("inline_max_us", self.config.server.inline_max_us),
        )

    def _runtime_options(self, entry: ModelEntry) -> dict[str, Any]:
        settings = entry.spec.settings
        options: dict[str, Any] = dict(settings.options)
        if settings.inputs and settings.outputs:
            options.setdefault("inputs", settings.inputs)
            options.setdefault("outputs", settings.outputs)
        if self.config.onnx.intra_op_threads:
            options.setdefault("intra_op_threads", self.config.onnx.intra_op_threads)
        if self.config.onnx.providers:
            options.setdefault("providers", self.config.onnx.providers)
        if entry.spec.backend in _TORCH_BACKENDS:
            # torch has one thread pool per process: in the server it is the config's;
            # a model in its own worker process may choose its own
            server_wide = self.config.torch.intra_op_threads or default_intra_op_threads()
            own = settings.options.get("torch_threads") if settings.isolation == "process" else None
            options["torch_threads"] = own or server_wide
        return options

    def _load_blocking(self, entry: ModelEntry, device: Device) -> tuple[Runtime, int]:
        path: Path = entry.spec.versions[entry.version]
        cls = runtime_class(entry.spec.backend)
        placement = RuntimePlacement(device.id, device.framework_device)
        runtime: Runtime
        if entry.spec.settings.isolation == "process":
            # imports pyzmq only when used
            if entry.spec.backend == "lm":
                from ..isolation.lm_runtime import ProcessLMRuntime

                runtime = ProcessLMRuntime(path, placement, self._runtime_options(entry), name=entry.name)
            else:
                from ..isolation.runtime import ProcessRuntime

                runtime = ProcessRuntime(entry.spec.backend, path, placement, self._runtime_options(entry), name=entry.name)
        else:
            if (cls, device.framework_device) not in self._prepared:
                cls.prepare(device.framework_device)
                self._prepared.add((cls, device.framework_device))
            runtime = cls(path, placement, self._runtime_options(entry))
        # loads that read the GPU's memory take turns on that GPU, so each delta is one
        # model's; the others (host memory, measured by RSS) load concurrently as on a CPU
        reads_gpu = device.kind == "cuda" and runtime.device_memory_bytes() is not None
        with self._device_locks[device.id] if reads_gpu else contextlib.nullcontext():
            rss_before = self._process.memory_info().rss
            device_before = runtime.device_memory_bytes() if reads_gpu else None
            runtime.load()
            if entry.spec.settings.warmup:
                self._warm_up(entry, runtime)
            device_after = runtime.device_memory_bytes()
            rss_after = self._process.memory_info().rss
            own = runtime.measured_memory_bytes()  # a worker process's RSS, say
        if own is not None:
            measured = own
        elif device_before is not None and device_after is not None:
            measured = max(0, device_after - device_before)
        else:
            # RSS can even shrink when freed heap is reused; the weights file size is
            # a floor on what the model really holds. With max_concurrent_loads > 1,
            # concurrent loads share this process-wide reading.
            measured = max(rss_after - rss_before, _weights_size(path))
        return runtime, int(measured)

    @staticmethod
    def _warm_up(entry: ModelEntry, runtime: Runtime) -> None:
        try:
            feeds = runtime.warmup_inputs(1)
            runtime.run(feeds)  # the first run pays one-time costs (allocations, kernels)
            runtime.run(feeds)  # the second settles caches and arenas before memory is read
        except Exception:
            if not _warmup_is_optional(runtime):
                raise
            log.warning("model '%s': warm-up with zeros failed (variable input shape); serving anyway", entry.name)

    # ── worker processes (isolation: process) ──────────────────────────────
    def _watch_worker(self, entry: ModelEntry, runtime: Runtime) -> None:
        self._crashes.loaded(entry.key)
        loop = asyncio.get_running_loop()

        def exited(reason: str) -> None:  # on the runtime's watcher thread
            try:
                loop.call_soon_threadsafe(self._worker_exited, entry, runtime, reason)
            except RuntimeError:  # the loop has closed: the server is stopping
                pass

        runtime.watch(exited)  # type: ignore[attr-defined]

    def _worker_exited(self, entry: ModelEntry, runtime: Runtime, reason: str) -> None:
        """A model's worker process died while serving: the model is FAILED now (its
        queued requests fail, other models go on) and restarts after a back-off."""
        if entry.runtime is not runtime or entry.state is not ModelState.READY:
            return  # already being unloaded or replaced
        delay = self._crashes.crashed(entry.key)
        log.error("model '%s' v%s: %s; FAILED, restarting in %.0fs", entry.name, entry.version, reason, delay)
        batcher, entry.batcher = entry.batcher, None
        if batcher is not None:
            batcher.close()
        entry.state = ModelState.FAILED
        entry.reason = reason
        entry.failed_at = time.monotonic()
        entry.device = None
        entry.memory_bytes = 0
        entry.memory_measured = False
        # entry.runtime keeps the dead runtime (healthy() False) until a restart
        # replaces it, so health reports the dead worker meanwhile
        entry.transition = asyncio.ensure_future(self._reap_worker(entry, runtime))
        self._refresh_devices()
        self._notify()
        self._schedule_restart(entry, delay)

    async def _reap_worker(self, entry: ModelEntry, runtime: Runtime) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, runtime.unload)  # socket, folder
        except Exception:  # noqa: BLE001 - the process is gone either way
            log.warning("model '%s': cleaning up after its worker failed", entry.name, exc_info=True)
        finally:
            entry.transition = None

    def _schedule_restart(self, entry: ModelEntry, delay: float) -> None:
        """Load a FAILED model again after ``delay`` unless something else has meanwhile
        (a request after the back-off, or an explicit load)."""
        failed_at = entry.failed_at
        previous = self._restarts.pop(entry.key, None)
        if previous is not None:
            previous.cancel()

        def restart() -> None:
            self._restarts.pop(entry.key, None)
            if entry.state is ModelState.FAILED and entry.failed_at == failed_at:
                if entry.transition is not None:  # still reaping the dead worker
                    self._schedule_restart(entry, 0.1)
                else:
                    self._begin_load(entry)  # its outcome is handled in _load

        self._restarts[entry.key] = asyncio.get_running_loop().call_later(delay, restart)

    # ── capacity ───────────────────────────────────────────────────────────
    async def _reserve(self, entry: ModelEntry) -> Device:
        """Choose a device and make room there; on return the estimate is booked."""
        need = self._estimate(entry)
        settings = entry.spec.settings
        give_up_at = time.monotonic() + self.config.capacity.capacity_wait_s
        while True:
            candidates = self.placement.candidates(settings.preferred_device, settings.preferred_gpu)
            if not candidates:
                raise CapacityExceeded(f"model '{entry.name}' prefers a device that does not exist")
            others = [e for e in self.resident() if e is not entry]
            plans = [(d, plan_room(entry, need, d, others, self.limits, self.policy)) for d in candidates]
            fitting = [(d, p) for d, p in plans if p.verdict is Verdict.FITS]
            if fitting:
                device, plan = min(fitting, key=lambda dp: len(dp[1].victims))
                entry.device = device
                entry.memory_bytes = need
                entry.memory_measured = False
                self._refresh_devices()
                unloads = [self._begin_unload(v, f"evicted ({self.policy.name}) to make room for '{entry.name}'", evicted=True) for v in plan.victims]
                for victim in plan.victims:
                    log.info("evicting model '%s' (policy %s, uses %d) for '%s'", victim.name, self.policy.name, victim.stats.uses_since_load, entry.name)
                await asyncio.gather(*(asyncio.shield(u) for u in unloads))
                return device
            if all(p.verdict is Verdict.NEVER for _, p in plans):
                raise CapacityExceeded(plans[0][1].reason)
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                raise Overloaded(f"no room for model '{entry.name}': every model it could replace is busy", retry_after_s=1.0)
            changed = self._changed
            self._waiting_for_room += 1
            try:
                await asyncio.wait_for(changed.wait(), timeout=remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                self._waiting_for_room -= 1

    def _trim_after_measure(self, entry: ModelEntry) -> None:
        """If the measured size pushed a limit over, evict idle models to get back under."""
        device = entry.device
        assert device is not None
        for _ in range(len(self.entries)):
            # a model already unloading is on its way out: count it as gone, or every
            # pass would evict one more idle model for memory that is already coming back
            others = [e for e in self.resident() if e is not entry and e.state is not ModelState.UNLOADING]
            used = sum(e.memory_bytes for e in others) + entry.memory_bytes
            on_device = sum(e.memory_bytes for e in others if e.device is device) + entry.memory_bytes
            over_server = used > self.limits.max_memory_bytes
            over_device = device.max_memory_bytes is not None and on_device > device.max_memory_bytes
            if not (over_server or over_device):
                return
            pool = [e for e in others if e.evictable and (over_server or e.device is device)]
            if not pool:
                log.warning("model '%s' measured %.1f MB, over the memory budget, and nothing can be evicted", entry.name, entry.memory_bytes / _MB)
                return
            victim = self.policy.order(pool)[0]
            self._begin_unload(victim, f"evicted ({self.policy.name}): '{entry.name}' measured larger than estimated", evicted=True)

    def _refresh_devices(self) -> None:
        for device in self.devices:
            device.models = set()
            device.memory_bytes = 0
        for entry in self.resident():
            assert entry.device is not None
            entry.device.models.add(entry.key)
            entry.device.memory_bytes += entry.memory_bytes

    # ── unloading ──────────────────────────────────────────────────────────
    def _begin_unload(self, entry: ModelEntry, reason: str, *, evicted: bool) -> "asyncio.Future[BaseException | None]":
        if entry.state is ModelState.UNLOADING and entry.transition is not None:
            return entry.transition
        entry.state = ModelState.UNLOADING
        entry.transition = asyncio.ensure_future(self._unload(entry, reason, evicted))
        return entry.transition

    async def _unload(self, entry: ModelEntry, reason: str, evicted: bool) -> BaseException | None:
        while entry.leases > 0:
            drained = self._drained.setdefault(entry.key, asyncio.Event())
            drained.clear()
            await drained.wait()
        self._drained.pop(entry.key, None)
        batcher, runtime = entry.batcher, entry.runtime
        entry.batcher = None
        entry.runtime = None
        if batcher is not None:
            batcher.close()  # nothing is queued or running: the holds have drained
        if runtime is not None:
            def free() -> None:
                runtime.unload()
                gc.collect()

            await asyncio.get_running_loop().run_in_executor(None, free)
        log.info("model '%s' v%s unloaded (%s)", entry.name, entry.version, reason)
        if evicted:
            entry.stats.record_eviction(reason)
        entry.state = ModelState.UNLOADED
        entry.device = None
        entry.memory_bytes = 0
        entry.memory_measured = False
        entry.transition = None
        self._refresh_devices()
        self._notify()
        return None

    # ── background ─────────────────────────────────────────────────────────
    async def _idle_loop(self, idle_s: float) -> None:
        period = max(0.05, min(60.0, idle_s / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for entry in list(self.entries.values()):
                if entry.evictable and now - entry.stats.last_used_mono >= idle_s:
                    log.info("model '%s' idle for %.0fs; unloading", entry.name, now - entry.stats.last_used_mono)
                    self._begin_unload(entry, f"idle for more than {idle_s:.0f}s", evicted=True)

    async def _report_loop(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            for line in self.report_lines():
                log.info("%s", line)

    def report_lines(self) -> list[str]:
        resident = self.resident()
        lines = [
            f"stats: {len(resident)}/{self.limits.max_models} models loaded, "
            f"{sum(e.memory_bytes for e in resident) / _MB:.1f}/{self.limits.max_memory_bytes / _MB:.0f} MB"
        ]
        now = time.monotonic()
        for entry in sorted(self.entries.values(), key=lambda e: e.name):
            s = entry.stats
            last = f"{now - s.last_used_mono:.0f}s ago" if s.usage_count else "never"
            mean = f"{s.mean_inference_ms:.2f}ms" if s.mean_inference_ms is not None else "-"
            lines.append(
                f"  {entry.name} v{entry.version} [{entry.state.value}] usage={s.usage_count} last={last} "
                f"avg_inference={mean} memory={entry.memory_bytes / _MB:.1f}MB evictions={s.evictions}"
            )
        return lines
