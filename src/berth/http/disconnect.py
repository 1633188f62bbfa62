"""Stop a handler's work when its client goes away.

Starlette does not cancel a handler when the client disconnects. After the body has
been read, the next ASGI message a request can receive is ``http.disconnect``, so a
small watcher waits for it and cancels the handler's task. Cancelling the handler
cancels its pending Engine future, and the batcher drops cancelled requests before
they reach the model. Only use this once the body has been read completely.

The watcher is a task, and most requests are answered in well under a millisecond, so
it is started only if the work is still pending after ``WATCH_AFTER_S``: a request that
waits in a queue is watched from then on, one that is answered at once costs a timer.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

from starlette.types import Receive

T = TypeVar("T")

WATCH_AFTER_S = 0.002


class ClientDisconnected(Exception):
    pass


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone away. Every ASGI message up to then is dropped,
    so only await this after the request body has been read."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _cancel_when_gone(receive: Receive, task: asyncio.Task[object]) -> None:
    await wait_for_disconnect(receive)
    task.cancel()


async def cancel_on_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it and raise
    :class:`ClientDisconnected`. ``receive`` is the request's ASGI receive callable."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    watcher: list[asyncio.Future[None]] = []

    def start_watching() -> None:
        watcher.append(asyncio.ensure_future(_cancel_when_gone(receive, task)))

    timer = loop.call_later(WATCH_AFTER_S, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        if watcher and watcher[0].done() and not watcher[0].cancelled():
            task.uncancel()
            raise ClientDisconnected() from None
        raise
    finally:
        timer.cancel()
        if watcher:
            watcher[0].cancel()
