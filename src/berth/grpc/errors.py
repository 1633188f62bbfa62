"""The one table from error kind to gRPC status code, and the handler guards.

Every servicer method runs inside :func:`guard` (unary) or uses :func:`error_text`
(in-band stream errors). A :class:`~berth.errors.BerthError` becomes its status code
with the error's own message; anything else is logged with its traceback and the
client gets ``INTERNAL`` with a fixed message, never the exception's text.
"""

from __future__ import annotations

import functools
import logging
from typing import Awaitable, Callable, NoReturn, TypeVar

import grpc
from grpc import aio

from ..errors import BerthError, ErrorKind, Overloaded, retry_after

log = logging.getLogger("berth.grpc")

STATUS: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.OVERLOADED: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.DEADLINE: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}

INTERNAL_MESSAGE = "internal server error"
#: status details travel in a header; a message echoing a huge request field is cut
_MAX_DETAILS = 1024

Servicer = TypeVar("Servicer")
Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Servicer, Request, aio.ServicerContext], Awaitable[Response]]


class Unimplemented(Exception):
    """An RPC of the protocol that berth does not offer; the message says which."""


def error_text(exc: BaseException, where: str) -> str:
    """The message a client may see for ``exc`` (unknown errors are logged here)."""
    if isinstance(exc, BerthError):
        return _clip(exc.message)
    log.error("unhandled error in %s", where, exc_info=exc)
    return INTERNAL_MESSAGE


async def abort(context: aio.ServicerContext, exc: BaseException, where: str) -> NoReturn:
    """End the call with the status for ``exc``."""
    if isinstance(exc, Unimplemented):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _clip(str(exc)))
    if isinstance(exc, BerthError):
        code = STATUS[exc.kind]
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE) and not isinstance(exc, Overloaded):
            log.warning("%s -> %s: %s", where, code.name, _clip(exc.message))
        wait = retry_after(exc)  # the HTTP front end's Retry-After, as trailing metadata
        metadata: tuple[tuple[str, str], ...] = (("retry-after", wait),) if wait else ()
        await context.abort(code, _clip(exc.message), trailing_metadata=metadata)
    await context.abort(grpc.StatusCode.INTERNAL, error_text(exc, where))
    raise AssertionError("context.abort returned")  # it raises; grpc's stubs do not say so


def guard(method: Handler[Servicer, Request, Response]) -> Handler[Servicer, Request, Response]:
    """Wrap a unary servicer method so every failure leaves as a status code."""
    where = method.__name__

    @functools.wraps(method)
    async def wrapper(self: Servicer, request: Request, context: aio.ServicerContext) -> Response:
        try:
            return await method(self, request, context)
        except aio.AbortError:
            raise  # context.abort() already chose the status
        except Exception as exc:  # noqa: BLE001 - mapped (BerthError) or logged and hidden
            await abort(context, exc, where)

    return wrapper


def _clip(message: str) -> str:
    return message if len(message) <= _MAX_DETAILS else message[: _MAX_DETAILS - 3] + "..."
