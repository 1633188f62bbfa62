"""What the sync and async clients share: request bodies, answers, errors, SSE parsing."""

from __future__ import annotations

from typing import Any, Iterable

import httpx
import orjson

DEFAULT_URL = "http://127.0.0.1:8080"


class BerthClientError(Exception):
    """The server answered with an error status; ``status`` and its ``message``."""

    def __init__(self, status: int, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.request_id = request_id


#: a gRPC status code's name → the HTTP status berth answers for the same error
GRPC_TO_HTTP: dict[str, int] = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "ABORTED": 409, "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499, "UNKNOWN": 500, "INTERNAL": 500, "DATA_LOSS": 500, "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}


class GrpcError(BerthClientError):
    """A gRPC call failed: ``code`` is the status code's name (``"INVALID_ARGUMENT"``),
    ``status`` the matching HTTP status, ``message`` the server's details, and
    ``retry_after_s`` the server's hint when it was overloaded."""

    def __init__(self, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(GRPC_TO_HTTP.get(code, 500), message)
        self.args = (f"{code}: {message}",)
        self.code = code
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class StreamError(Exception):
    """A stream ended with an error event, or without any final event."""

    def __init__(self, message: str, event: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.event = event


def headers(api_key: str | None, extra: dict[str, str] | None) -> dict[str, str]:
    result = dict(extra or {})
    if api_key:
        result["X-API-Key"] = api_key
    return result


def check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise error_from(response, response.content)
    value: dict[str, Any] = orjson.loads(response.content)
    return value


def error_from(response: httpx.Response, content: bytes) -> BerthClientError:
    try:
        body = orjson.loads(content)
        message = str(body.get("error", content[:200].decode(errors="replace")))
        rid = body.get("request_id")
    except (orjson.JSONDecodeError, AttributeError):
        message, rid = content[:200].decode(errors="replace") or response.reason_phrase, None
    return BerthClientError(response.status_code, message, rid)


def seed001_body(batch: int, channels: int, length: int, steps: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"batch": batch, "channels": channels, "length": length}
    if steps is not None:
        body["steps"] = steps
    return body


def infer_body(values: Any, model: str | None, image: Any) -> dict[str, Any]:
    if (values is None) == (image is None):
        raise ValueError("give exactly one of input (flat numbers) or image (rows)")
    body: dict[str, Any] = {"image": _listed(image)} if image is not None else {"input": _listed(values)}
    if model is not None:
        body["model"] = model
    return body


def _listed(values: Any) -> Any:
    tolist = getattr(values, "tolist", None)  # a numpy array
    return tolist() if tolist is not None else values


def stream_body(duration_seconds: float | None, use_tensorrt: bool, fps: float, preprocess: bool, model: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"duration_seconds": duration_seconds, "use_tensorrt": use_tensorrt, "fps": fps, "preprocess": preprocess}
    if model is not None:
        body["model"] = model
    return body


def final_event(event: dict[str, Any]) -> bool:
    return "status" in event or "error" in event


class SseParser:
    """Server-sent events from text lines (the WHATWG rules berth's streams need:
    ``data:`` lines joined with newlines, comments and other fields ignored, an event
    dispatched at a blank line)."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, lines: Iterable[str]) -> list[dict[str, Any]]:
        events = []
        for line in lines:
            if line == "":
                if self._data:
                    events.append(orjson.loads("\n".join(self._data)))
                    self._data = []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if field == "data":
                self._data.append(value[1:] if value.startswith(" ") else value)
        return events
