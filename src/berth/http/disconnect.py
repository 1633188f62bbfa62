"""Stop a handler's work when its client goes away.

Starlette does not cancel a handler when the client disconnects. After the body has
been read, the next ASGI message a request can receive is ``http.disconnect``, so a
small watcher waits for it and cancels the handler's task. Cancelling the handler
cancels its pending Engine future, and the batcher drops cancelled requests before
they reach the model. Only use this once the body has been read completely.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientDisconnected(Exception):
    pass


async def _watch(request: Request, task: asyncio.Task[object]) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            task.cancel()
            return


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    task = asyncio.current_task()
    assert task is not None
    watcher = asyncio.ensure_future(_watch(request, task))
    try:
        return await work
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            task.uncancel()
            raise ClientDisconnected() from None
        raise
    finally:
        watcher.cancel()
