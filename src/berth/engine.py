"""The Engine: the one API every front end calls.

Front ends (HTTP, gRPC, the CLI) parse their wire format into numpy arrays, call the
Engine and encode what it returns. They hold no model state and make no decisions
about loading, capacity or batching; all of that is behind this class.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, Awaitable, Callable, Mapping

import numpy as np

from .config import BerthConfig
from .errors import InvalidInput, ModelNotFound, PayloadTooLarge
from .quotas import KeyQuotas
from .registry import ModelEntry, ModelState, Registry, discover_devices
from .registry.entry import Lease
from .runtimes.base import Signature, TensorSpec
from .tensors import MAX_TENSOR_ELEMENTS, v2_datatype
from .scheduling import Prediction

log = logging.getLogger("berth.engine")

_MB = 1024 * 1024


class Engine:
    def __init__(self, config: BerthConfig) -> None:
        self.config = config
        self.devices = discover_devices(config)
        self.registry = Registry(config, self.devices)
        self.started_at = time.time()
        self._holding = 0  # requests waiting for their model to be READY
        self.ready = False
        self.default_timeout_s = config.server.request_timeout_s
        self.max_request_rows = config.server.max_request_rows
        auth = config.auth
        #: per-API-key request quotas, shared by every front end (HTTP and gRPC)
        self.quotas = KeyQuotas(auth.quota_rps, auth.quota_burst) if auth.quota_rps else None

    async def start(self) -> None:
        await self.registry.start()
        self.ready = True
        log.info(
            "engine started: %d device(s) [%s], %d model(s) known",
            len(self.devices), ", ".join(d.id for d in self.devices), len(self.registry.specs),
        )

    async def stop(self) -> None:
        self.ready = False
        await self.registry.stop()

    # ── data plane ─────────────────────────────────────────────────────────
    @property
    def default_model(self) -> str | None:
        if self.config.default_model:
            return self.config.default_model
        if len(self.registry.specs) == 1:
            return next(iter(self.registry.specs))
        return None

    def resolve_model(self, name: str | None) -> str:
        model = name or self.default_model
        if not model:
            raise InvalidInput("no model named and the server has no default_model")
        return model

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: str | None = None,
        timeout_s: float | None = None,
    ) -> Awaitable[Prediction]:
        """Run ``inputs`` (batch-leading arrays, named as the model's inputs); await it.

        A plain function. For a READY model (the hot path) it returns the batcher's
        future itself, so a request costs no coroutine of the Engine's; otherwise a
        coroutine that loads the model first. Bad input raises here, before any await.
        """
        entry = self.registry.hold_ready(model, version)
        if entry is None:
            return self._hold_then_submit(model, version, timeout_s, None, inputs)
        return self._submit(entry, inputs, self._deadline(timeout_s))

    def infer_values(
        self,
        model: str,
        values: np.ndarray,
        *,
        batched: bool,
        version: str | None = None,
        timeout_s: float | None = None,
    ) -> Awaitable[Prediction]:
        """Seed-000 style: plain numbers for a single-input model, reshaped to fit; await it.

        ``values`` holds one item (flat, or already item-shaped such as a 28×28
        image) or, when ``batched``, a leading batch dimension of such items. The
        numbers are reshaped to the model's input when the element count matches.
        """
        entry = self.registry.hold_ready(model, version)
        if entry is None:
            build = functools.partial(self._value_feeds, values=values, batched=batched, model=model)
            return self._hold_then_submit(model, version, timeout_s, build, None)
        return self._submit(entry, self._value_feeds(entry, values=values, batched=batched, model=model), self._deadline(timeout_s))

    def _deadline(self, timeout_s: float | None) -> float:
        return time.monotonic() + (timeout_s if timeout_s is not None else self.default_timeout_s)

    async def _hold_then_submit(
        self,
        model: str,
        version: str | None,
        timeout_s: float | None,
        build_feeds: Callable[[ModelEntry], Mapping[str, np.ndarray]] | None,
        inputs: Mapping[str, np.ndarray] | None,
    ) -> Prediction:
        """A request for a model that is not READY: hold it (loading it if needed, within
        the request's deadline), then submit as the hot path does."""
        started = time.monotonic()
        deadline = self._deadline(timeout_s)
        self._holding += 1
        try:
            entry = await self.registry.hold(model, version, deadline)
        finally:
            self._holding -= 1
        if build_feeds is not None:
            inputs = build_feeds(entry)
        assert inputs is not None
        prediction = await self._submit(entry, inputs, deadline)
        return prediction._replace(total_ms=(time.monotonic() - started) * 1000.0)  # the load wait included

    def _value_feeds(self, entry: ModelEntry, *, values: np.ndarray, batched: bool, model: str) -> dict[str, np.ndarray]:
        """:func:`value_feeds` for a held entry, giving the hold back if the numbers do
        not fit the model."""
        assert entry.runtime is not None  # READY
        try:
            return value_feeds(values, entry.runtime.signature, batched=batched, model=model)
        except BaseException:
            self.registry.release(entry)
            raise

    def _submit(self, entry: ModelEntry, inputs: Mapping[str, np.ndarray], deadline: float) -> "asyncio.Future[Prediction]":
        """Validate and queue a request on a held entry. From here the batcher owns the
        hold: it gives it back once it is done with the request (answered, dropped or
        failed), so a model stays resident while any of its requests is queued or running."""
        batcher = entry.batcher
        assert batcher is not None
        try:
            feeds, rows = self._validate(entry, inputs)
            return batcher.submit(feeds, rows, deadline)
        except BaseException:
            self.registry.release(entry)
            raise

    @property
    def inflight(self) -> int:
        """Requests being served: holding a model (queued, running, or reading its
        metadata) or waiting for one to load."""
        return self._holding + self.registry.holds

    def _validate(self, entry: ModelEntry, inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """Check names, dtypes and shapes against the signature (no casts: see _validate_each)."""
        assert entry.runtime is not None
        spec = entry.runtime.signature.lone_input
        if spec is not None and len(inputs) == 1:
            # the common case, checked with the fewest operations (a static item shape
            # equal to the tail also fixes the number of dimensions)
            array = inputs.get(spec.name)
            if array is not None and array.dtype == spec.dtype:
                shape = array.shape
                if shape[1:] == spec.static_tail and 0 < shape[0] <= self.max_request_rows and array.size <= MAX_TENSOR_ELEMENTS:
                    return {spec.name: array}, shape[0]
        return self._validate_each(entry.name, entry.runtime.signature.inputs, inputs)

    def _validate_each(self, model: str, specs: tuple[TensorSpec, ...], inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """:meth:`_validate` for any signature, naming what is wrong."""
        if len(inputs) != len(specs) or any(spec.name not in inputs for spec in specs):
            expected = [spec.name for spec in specs]
            unknown = sorted(set(inputs) - set(expected))
            if unknown:
                raise InvalidInput(f"model '{model}' has no input named {', '.join(map(repr, unknown))}; inputs are {expected}")
            missing = [name for name in expected if name not in inputs]
            raise InvalidInput(f"model '{model}' needs input {', '.join(map(repr, missing))}")
        feeds: dict[str, np.ndarray] = {}
        rows = -1
        for spec in specs:
            array = inputs[spec.name]
            if array.dtype != spec.dtype:
                # no silent casts (Triton refuses them too): BOOL or INT64 sent to an
                # FP32 input is a client error, not something to guess about
                raise InvalidInput(f"input '{spec.name}' must be {_dtype_text(spec.dtype)}, got {_dtype_text(array.dtype)}")
            shape = array.shape
            tail = spec.static_tail
            if (shape[1:] != tail) if tail is not None else (
                len(shape) != len(spec.shape) or any(d >= 0 and d != s for s, d in zip(shape[1:], spec.shape[1:]))
            ):
                raise InvalidInput(f"input '{spec.name}' must have shape {_shape_text(spec.shape)}, got {list(shape)}")
            if array.size > MAX_TENSOR_ELEMENTS:
                raise PayloadTooLarge(f"input '{spec.name}' has {array.size} elements; the limit is {MAX_TENSOR_ELEMENTS}")
            if rows < 0:
                rows = shape[0]
            elif shape[0] != rows:
                raise InvalidInput("all inputs must have the same batch size (first dimension)")
            feeds[spec.name] = array
        if rows == 0:
            raise InvalidInput("the batch is empty")
        if rows > self.max_request_rows:
            raise PayloadTooLarge(f"the batch has {rows} rows; the limit is {self.max_request_rows} (server.max_request_rows)")
        return feeds, rows

    # ── metadata ───────────────────────────────────────────────────────────
    async def signature(self, model: str, version: str | None = None) -> Signature:
        """The model's signature; loads the model if it is not resident. Not a use of
        the model (usage counts and recency, which drive eviction, stay as they were)."""
        with await self.lease(model, version, count_use=False) as lease:
            assert lease.entry.runtime is not None
            return lease.entry.runtime.signature

    async def lease(self, model: str, version: str | None = None, *, count_use: bool = True) -> Lease:
        """Hold the model resident (loading it if needed). ``count_use=False`` for
        metadata lookups, which must not count as uses for LRU/LFU eviction."""
        return await self.registry.acquire(model, version, count_use=count_use)

    # ── management ─────────────────────────────────────────────────────────
    async def load(self, model: str, version: str | None = None) -> dict[str, Any]:
        return self.describe(await self.registry.load(model, version))

    async def unload(self, model: str, version: str | None = None) -> dict[str, Any]:
        return self.describe(await self.registry.unload(model, version))

    async def pin(self, model: str, pinned: bool, version: str | None = None) -> dict[str, Any]:
        return self.describe(await self.registry.pin(model, pinned, version))

    def list_models(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every version of every model (or of model ``name``) the server knows."""
        return [self.describe(entry) for entry in self.known_entries(name)]

    def known_entries(self, name: str | None = None) -> list[ModelEntry]:
        """The entry of every version that has been used and every default version, of
        every model or of model ``name`` (none for an unknown name), in name and
        version order."""
        registry = self.registry
        specs = registry.specs
        chosen = sorted(specs.items()) if name is None else ([(name, specs[name])] if name in specs else [])
        entries = []
        for model, spec in chosen:
            versions = {v for (n, v) in registry.entries if n == model} | {spec.default_version}
            entries.extend(registry._entry(model, version) for version in sorted(versions, key=int))
        return entries

    async def statistics_entries(self, name: str | None = None, version: str | None = None) -> list[ModelEntry]:
        """The entries a V2 statistics request names (HTTP and gRPC alike): one version,
        every known version of one model, or every model. An unknown model or version
        is ModelNotFound."""
        if name and version:
            return [await self.registry.entry(name, version)]
        if name:
            await self.registry.entry(name)  # ModelNotFound for an unknown model
        return self.known_entries(name or None)

    async def unload_model(self, name: str) -> None:
        """Unload every resident version of a model, as Triton unloads a model as a
        whole. An unknown model is ModelNotFound."""
        await self.registry.entry(name)
        resident = (ModelState.READY, ModelState.LOADING, ModelState.UNLOADING)
        for entry in self.known_entries(name):
            if entry.state in resident:
                await self.unload(name, entry.version)

    def describe(self, entry: ModelEntry) -> dict[str, Any]:
        signature = entry.runtime.signature.to_dict() if entry.runtime is not None else None
        batcher = entry.batcher
        return {
            "name": entry.name,
            "version": entry.version,
            "versions": sorted(entry.spec.versions, key=int),
            "state": entry.state.value,
            "reason": entry.reason,
            "backend": entry.spec.backend,
            "platform": entry.info.get("platform"),
            "accelerated": entry.info.get("accelerated", False),
            "providers": entry.info.get("providers"),
            "device": entry.device.id if entry.device else None,
            "memory_mb": round(entry.memory_bytes / _MB, 3),
            "memory_measured": entry.memory_measured,
            "pinned": entry.pinned,
            "inflight": entry.leases,
            "queue_depth": batcher.depth if batcher else 0,
            "ran_at_once": batcher.ran_at_once if batcher else 0,
            "max_batch_size": batcher.max_batch_size if batcher else entry.spec.settings.max_batch_size,
            "description": entry.spec.settings.description,
            "labels": entry.spec.settings.labels,
            "signature": signature,
            "stats": entry.stats.to_dict(),
        }

    def model_stats(self, model: str | None = None) -> dict[str, Any]:
        rows = self.list_models(model)
        if model is not None and not rows:
            raise ModelNotFound(f"unknown model '{model}'")
        return {"models": rows, "server": self.server_stats()}

    def server_stats(self) -> dict[str, Any]:
        resident = self.registry.resident()
        limits = self.registry.limits
        return {
            "loaded_models": sum(1 for e in resident if e.state is ModelState.READY),
            "resident_models": len(resident),
            "max_models": limits.max_models,
            "memory_mb": round(sum(e.memory_bytes for e in resident) / _MB, 3),
            "max_memory_mb": round(limits.max_memory_bytes / _MB, 3),
            "eviction_policy": self.registry.policy.name,
            "devices": [d.describe() for d in self.devices],
            "inflight": self.inflight,
            "uptime_s": round(time.time() - self.started_at, 3),
        }

    def health(self) -> dict[str, Any]:
        entries = list(self.registry.entries.values())
        failed = [e.name for e in entries if e.state is ModelState.FAILED]
        # informational: preload models not resident now (evicted ones load again on demand)
        preload_pending = [
            s.name for s in self.registry.specs.values()
            if s.settings.preload and self.registry._entry(s.name, None).state is not ModelState.READY
        ]
        dead = [
            e.name for e in entries
            # a FAILED entry keeps its dead runtime until the restart replaces it
            if e.state is not ModelState.UNLOADING and e.runtime is not None and not _runtime_healthy(e)
        ]
        return {
            "live": True,
            # ready once start() has finished the preloads (an evicted preload model
            # loads again on demand; that does not make the server unready)
            "ready": self.ready and not dead,
            "failed_models": failed,
            "preload_pending": preload_pending,
            "dead_workers": dead,
            "inflight": self.inflight,
            "uptime_s": round(time.time() - self.started_at, 3),
            "accelerated": any(d.kind == "cuda" for d in self.devices),
        }


def _runtime_healthy(entry: ModelEntry) -> bool:
    try:
        return bool(entry.runtime is not None and entry.runtime.healthy())
    except Exception:  # noqa: BLE001 - a health check that raises is a failed health check
        log.warning("model '%s': health check raised", entry.name, exc_info=True)
        return False


def value_feeds(values: np.ndarray, signature: Signature, *, batched: bool, model: str) -> dict[str, np.ndarray]:
    """The feeds of a single-input model from plain numbers (see :meth:`Engine.infer_values`)."""
    if len(signature.inputs) != 1:
        raise InvalidInput(f"model '{model}' takes {len(signature.inputs)} inputs; name them (V2 API)")
    spec = signature.inputs[0]
    shaped = reshape_item(values, spec, batched=batched, model=model)
    # plain JSON numbers carry no dtype: they take the input's
    return {spec.name: shaped if shaped.dtype == spec.dtype else shaped.astype(spec.dtype)}


def reshape_item(values: np.ndarray, spec: TensorSpec, *, batched: bool, model: str) -> np.ndarray:
    """Fit flat or image-shaped numbers to the input ``spec`` (batch dim first)."""
    item_shape = spec.static_tail
    rows = values.shape[0] if batched else 1
    if batched and values.ndim < 1:
        raise InvalidInput("the batch must be a list of items")
    per_item = values.size // rows if rows else 0
    if item_shape is not None:
        expected = spec.item_size
        if per_item != expected or values.size != rows * expected:
            raise InvalidInput(
                f"model '{model}' takes {expected} values per item ({'x'.join(map(str, item_shape)) or 'scalar'}); got {per_item}"
            )
        return values.reshape((rows, *item_shape))
    # a variable item shape cannot be inferred from a count: take the numbers as shaped
    return values if batched else values[np.newaxis, ...]


def _dtype_text(dtype: np.dtype) -> str:
    try:
        return f"{v2_datatype(dtype)} ({dtype.name})"
    except ValueError:
        return dtype.name


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("N" if i == 0 and d < 0 else ("?" if d < 0 else str(d)) for i, d in enumerate(shape)) + "]"
