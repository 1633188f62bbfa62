"""berth's one error hierarchy.

Every error a client can see is a :class:`BerthError`. Each carries a neutral
:class:`ErrorKind`, never a transport status: ``http/`` and ``grpc/`` each own a
small table from kind to status code, so the mapping is written once per protocol.

    BerthError
    ├── InvalidInput        the request is malformed or does not fit the model  (INVALID)
    ├── PayloadTooLarge     a body, tensor or batch is over a configured limit  (TOO_LARGE)
    ├── ModelNotFound       no such model or version                           (NOT_FOUND)
    ├── ModelNotReady       the model failed to load or is being unloaded      (UNAVAILABLE)
    ├── Overloaded          a queue is full; carries ``retry_after_s``         (OVERLOADED)
    ├── QuotaExceeded       an API key spent its request quota; ``retry_after_s`` (RATE_LIMITED)
    ├── CapacityExceeded    the model cannot fit, even after eviction          (UNAVAILABLE)
    ├── DeadlineExceeded    queue + run took longer than the request allowed   (DEADLINE)
    ├── Unauthorized / Forbidden
    └── InternalError       a runtime raised; the message is fixed, the cause is logged

Messages are written for the client: they name what was wrong and never carry a
traceback, a filesystem path or an internal class name.
"""

from __future__ import annotations

import enum
import math


class ErrorKind(enum.Enum):
    INVALID = "invalid"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    OVERLOADED = "overloaded"
    RATE_LIMITED = "rate_limited"
    DEADLINE = "deadline"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    INTERNAL = "internal"


class BerthError(Exception):
    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(BerthError):
    kind = ErrorKind.INVALID


class PayloadTooLarge(BerthError):
    kind = ErrorKind.TOO_LARGE


class ModelNotFound(BerthError):
    kind = ErrorKind.NOT_FOUND


class ModelNotReady(BerthError):
    kind = ErrorKind.UNAVAILABLE


class CapacityExceeded(BerthError):
    kind = ErrorKind.UNAVAILABLE


class Overloaded(BerthError):
    kind = ErrorKind.OVERLOADED

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QuotaExceeded(BerthError):
    kind = ErrorKind.RATE_LIMITED

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(BerthError):
    kind = ErrorKind.DEADLINE


class Unauthorized(BerthError):
    kind = ErrorKind.UNAUTHORIZED


class Forbidden(BerthError):
    kind = ErrorKind.FORBIDDEN


class InternalError(BerthError):
    kind = ErrorKind.INTERNAL


def retry_after(exc: BaseException) -> str | None:
    """Whole seconds to wait before retrying (the Retry-After value), for errors that say."""
    seconds = getattr(exc, "retry_after_s", None) if isinstance(exc, (Overloaded, QuotaExceeded)) else None
    return None if seconds is None else str(max(1, math.ceil(seconds)))


class ConfigError(Exception):
    """A bad server configuration; raised at start, names the key and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config error at '{key}': {reason}")
        self.key = key
        self.reason = reason
