"""Seed 000's JSON API (Paragon Server) over any served model.

``/infer``, ``/infer-batch`` and ``/blast`` take plain numbers for a single-input model
(flat, or image-shaped) and answer with the seed's fields; ``model`` in the body picks
a model, else the server's default model serves. ``/health``, ``/config`` and
``/save-session`` complete the set.

The seed calls the first output ``probs``. For a model whose first output is already a
probability distribution it is returned as is; otherwise (logits) ``probs`` is its
softmax and the raw values are returned as ``logits``.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..engine import Engine, Prediction
from ..errors import InvalidInput, PayloadTooLarge
from ..sessions import SessionStore, session_model_name
from ..streaming.preprocess import row_distributions
from .body import model_name, parse_json_object, read_body, read_raw_body
from .disconnect import ClientDisconnected, cancel_on_disconnect
from .errors import json_response, scope_request_id
from .fastlane import AsgiEndpoint, RawHandler, send_json
from .json_numbers import numbers_only

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


_second_cache: list[Any] = [-1, ""]
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]  # the fraction's text, made once


def _now() -> str:
    """RFC 3339 UTC with milliseconds; the date-time part is formatted once a second."""
    now = time.time()
    second = int(now)
    if second != _second_cache[0]:
        _second_cache[0] = second
        _second_cache[1] = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return _second_cache[1] + _MILLIS[int((now - second) * 1000)]


_KIND_NAMES = {"U": "a string", "S": "a string", "b": "a boolean"}


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _first_non_number(value: Any) -> str | None:
    """What the first leaf that is not a JSON number is, or None if all are numbers."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            return _json_kind(item)
    return None


def _numbers(value: Any, field: str, plain: bool = False) -> np.ndarray:
    """A float32 array from a JSON array of numbers, refusing anything else with a
    message that says what was wrong. ``plain`` says the body was proven to hold only
    numbers in its arrays (:func:`~berth.http.json_numbers.numbers_only`), which allows
    numpy's direct conversion; otherwise every element is checked, since numpy reads
    ``true`` as 1 and ``"1.5"`` as 1.5.

    JSON numbers arrive as finite doubles (orjson refuses anything that parses to an
    infinity), so the cast to float32 is the only place a value can stop being finite:
    it raises on overflow instead of a separate pass over the array afterwards."""
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"'{field}' must be a non-empty array of numbers")
    try:
        with np.errstate(over="raise"):
            if plain:
                try:
                    return np.asarray(value, dtype=np.float32)
                except (ValueError, TypeError, OverflowError):
                    pass  # ragged, or holding an object: the exact path below says which
            return _checked_numbers(value, field)
    except FloatingPointError:
        raise InvalidInput(f"'{field}' holds a value that is not a finite float32 number (out of range)") from None


def _checked_numbers(value: list[Any], field: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        found = _first_non_number(value)
        if found is not None:
            raise InvalidInput(f"'{field}' must hold only numbers; found {found}") from None
        raise InvalidInput(f"'{field}' must be a rectangular array (every row the same length)") from None
    kind = array.dtype.kind
    if kind not in "fiu":
        found = _KIND_NAMES.get(kind) or _first_non_number(value) or "a value that is not a number"
        raise InvalidInput(f"'{field}' must hold only numbers; found {found}")
    found = _first_non_number(value)  # numpy reads [true, 1.5] as numbers
    if found is not None:
        raise InvalidInput(f"'{field}' must hold only numbers; found {found}")
    return array.astype(np.float32, copy=False)  # under the caller's errstate: overflow raises


_SMALL_ROW = 64  # up to this many values, a row is summarised in plain Python floats
_FLOAT32 = np.dtype(np.float32)  # compared as a dtype: np.float32 itself is converted on every compare


def _row_summary(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, int, float | None]:
    """(probabilities, logits or None, top index, top score) for one output row, as
    :func:`~berth.streaming.preprocess.row_distributions` reads rows.

    The /infer hot path: a classifier's row has a handful of values, where each numpy
    call costs more than the arithmetic, so small rows are checked (and, for logits,
    soft-maxed) as Python floats; the probabilities still go out as float32."""
    row = values if values.ndim == 1 else values.reshape(-1)
    if row.dtype != _FLOAT32:
        row = row.astype(_FLOAT32)
    size = row.size
    if not size:
        return row, None, -1, None
    if size > _SMALL_ROW:
        rows, logit_rows = row_distributions(row[np.newaxis])
        top = int(rows[0].argmax())
        return rows[0], None if logit_rows is None else logit_rows[0], top, float(rows[0][top])
    numbers = row.tolist()
    if min(numbers) >= 0.0 and abs(sum(numbers) - 1.0) <= 1e-3:
        top = numbers.index(max(numbers))
        return row, None, top, numbers[top]
    peak = max(numbers)
    exps = [math.exp(v - peak) for v in numbers]
    total = sum(exps)
    probs = np.array([e / total for e in exps], dtype=np.float32)
    top = numbers.index(peak)  # the softmax keeps the order
    return probs, row, top, float(probs[top])


class SeedApi:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: seed 001's EMG API (:class:`~berth.http.emg_api.EmgApi`), set by ``create_app``:
        #: ``/infer`` hands it seed-001 bodies and ``/health`` adds its fields
        self.seed001: Any = None
        server = engine.config.server
        self.body_limit = int(server.max_body_mb * 1024 * 1024)
        self.blast_max_n = server.blast_max_n
        sessions_dir = engine.config.resolve(server.sessions_dir)
        self.sessions = SessionStore(
            sessions_dir,
            server.sessions_dir,
            max_bytes=int(server.session_max_mb * 1024 * 1024),
            quota_bytes=int(server.sessions_quota_mb * 1024 * 1024),
        )

    def routes(self) -> list[Route]:
        return [
            Route("/infer", AsgiEndpoint(self.infer), methods=["POST"]),
            Route("/infer-batch", self.infer_batch, methods=["POST"]),
            Route("/blast", self.blast, methods=["POST"]),
            Route("/save-session", self.save_session, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/config", self.config, methods=["GET"]),
        ]

    async def _read(self, request: Request) -> tuple[dict[str, Any], bool]:
        """The JSON object body, and whether its number arrays hold only numbers."""
        raw = await read_body(request, self.body_limit)
        body = parse_json_object(raw)
        return body, numbers_only(raw, body)

    def _model(self, body: dict[str, Any]) -> str:
        return self.engine.resolve_model(model_name(body))

    def _item(self, prediction: Prediction, index: int = 0) -> dict[str, Any]:
        first = next(iter(prediction.outputs.values()))
        probs, logits, top, top_score = _row_summary(first[index])
        item: dict[str, Any] = {
            "top_index": top,
            "top_score": top_score,
            "probs": probs,
            "used_gpu": prediction.accelerated,
            "latency_ms": round(prediction.total_ms, 4),
            "queued_ms": round(prediction.queue_ms, 4),
            "compute_ms": round(prediction.compute_ms, 4),
            "batch_size": prediction.batch_size,
            "inflight": self.engine.inflight,
            "model": prediction.model,
            "device": prediction.device_id,
            "when": _now(),
        }
        if logits is not None:
            item["logits"] = logits
        return item

    async def infer(self, scope: Scope, receive: Receive, send: Send) -> int:
        """``POST /infer`` as a raw ASGI handler: it is also in the fast lane."""
        raw = await read_raw_body(scope, receive, self.body_limit)
        body = parse_json_object(raw)
        if self.seed001 is not None and self.seed001.is_seed001_body(body):
            return await self.seed001.infer_seed001(scope, receive, send, body)
        model = self._model(body)
        values = self._single_input(body, numbers_only(raw, body))
        prediction = await cancel_on_disconnect(receive, self.engine.infer_values(model, values, batched=False))
        return await send_json(send, 200, orjson.dumps(self._item(prediction), option=_NUMPY), scope_request_id(scope))

    def fast_routes(self) -> dict[tuple[str, str], RawHandler]:
        return {("POST", "/infer"): self.infer}

    @staticmethod
    def _single_input(body: dict[str, Any], plain: bool = False) -> np.ndarray:
        if "input" in body:
            return _numbers(body["input"], "input", plain)
        if "image" in body:
            image = _numbers(body["image"], "image", plain)
            if image.ndim != 2:
                raise InvalidInput("'image' must be a 2-D array (rows of pixels)")
            return image
        raise InvalidInput("send 'input' (flat numbers) or 'image' (a 2-D array)")

    async def infer_batch(self, request: Request) -> Response:
        body, plain = await self._read(request)
        model = self._model(body)
        if "batch" in body:
            values = _numbers(body["batch"], "batch", plain)
            if values.ndim < 2:
                raise InvalidInput("'batch' must be an array of flat inputs")
        elif "images" in body:
            values = _numbers(body["images"], "images", plain)
            if values.ndim != 3:
                raise InvalidInput("'images' must be an array of 2-D images")
        else:
            raise InvalidInput("send 'batch' (a list of flat inputs) or 'images' (a list of 2-D images)")
        try:
            prediction = await cancel_on_disconnect(request.receive, self.engine.infer_values(model, values, batched=True))
        except ClientDisconnected:
            return Response(status_code=499)
        first = next(iter(prediction.outputs.values()))
        probs, _ = row_distributions(first)
        top = probs.argmax(axis=1) if probs.size else np.zeros(0, dtype=np.int64)
        return json_response(
            request,
            {
                "top_indices": top,
                "top_scores": probs[np.arange(len(top)), top] if len(top) else [],
                "probs": probs,
                "used_gpu": prediction.accelerated,
                "latency_ms": round(prediction.total_ms, 4),
                "queued_ms": round(prediction.queue_ms, 4),
                "n": int(first.shape[0]),
                "model": prediction.model,
            },
        )

    async def blast(self, request: Request) -> Response:
        body, plain = await self._read(request)
        model = self._model(body)
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InvalidInput("'n' must be a positive integer")
        if n > self.blast_max_n:
            raise PayloadTooLarge(f"'n' is {n}; the limit is {self.blast_max_n}")
        values = self._single_input(body, plain) if ("input" in body or "image" in body) else None
        if values is None:
            signature = await self.engine.signature(model)
            shape = [d if d > 0 else 1 for d in signature.inputs[0].shape[1:]]
            values = np.zeros(shape, dtype=np.float32)
        started = time.perf_counter()

        async def burst() -> list[Prediction]:
            # each request is queued as it is made, so one refused (a full queue)
            # withdraws those already queued before the error is answered
            queued: list[asyncio.Future[Prediction]] = []
            try:
                for _ in range(n):
                    queued.append(asyncio.ensure_future(self.engine.infer_values(model, values, batched=False)))
            except BaseException:
                for work in queued:
                    work.cancel()
                raise
            return await asyncio.gather(*queued)

        try:
            predictions = await cancel_on_disconnect(request.receive, burst())
        except ClientDisconnected:
            return Response(status_code=499)
        total_ms = (time.perf_counter() - started) * 1000.0
        entry = self.engine.registry.entries.get((model, predictions[0].version))
        parallel = entry.batcher.max_concurrency if entry is not None and entry.batcher is not None else None
        return json_response(
            request,
            {
                "count": n,
                "results": [self._item(p) for p in predictions],
                "total_ms": round(total_ms, 3),
                "parallel": parallel,
                "model": model,
            },
        )

    async def save_session(self, request: Request) -> Response:
        payload = await read_body(request, self.sessions.max_bytes)
        try:
            session = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise InvalidInput("the session is not valid JSON") from None
        model = session_model_name(session)
        saved = await asyncio.to_thread(self.sessions.save, payload, model)
        return json_response(
            request,
            {"saved": True, "path": saved.display_path, "bytes": saved.bytes, "model": saved.model, "created": saved.created},
        )

    async def health(self, request: Request) -> Response:
        health = self.engine.health()
        return json_response(
            request,
            {
                "status": "ok" if health["ready"] else "starting",
                "uptime_s": health["uptime_s"],
                "inflight": health["inflight"],
                "gpu": health["accelerated"],
                "ready": health["ready"],
                "models_loaded": self.engine.server_stats()["loaded_models"],
                "failed_models": health["failed_models"],
                "dead_workers": health["dead_workers"],
                **(self.seed001.health_fields() if self.seed001 is not None else {}),
            },
        )

    async def config(self, request: Request) -> Response:
        model = self.engine.default_model
        if model is None:
            return json_response(
                request,
                {"model": None, "input": None, "classes": None, "gpu": False, "startedAt": _started(self.engine)},
            )
        lease = await self.engine.lease(model, count_use=False)
        try:
            entry = lease.entry
            assert entry.runtime is not None
            signature = entry.runtime.signature
            output_shape = signature.outputs[0].shape[1:]
            classes = int(np.prod(output_shape)) if output_shape and all(d > 0 for d in output_shape) else None
            repository = self.engine.registry.repository.root
            path = entry.spec.versions[entry.version]
            shown = str(path.relative_to(repository.parent)) if repository and path.is_relative_to(repository) else path.name
            return json_response(
                request,
                {
                    "input": list(signature.inputs[0].shape[1:]),
                    "classes": classes,
                    "gpu": bool(entry.info.get("accelerated")),
                    "model": entry.name,
                    "modelPath": shown,
                    "backend": entry.spec.backend,
                    "version": entry.version,
                    "labels": entry.spec.settings.labels,
                    "startedAt": _started(self.engine),
                },
            )
        finally:
            lease.release()


def _started(engine: Engine) -> str:
    return datetime.fromtimestamp(engine.started_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
